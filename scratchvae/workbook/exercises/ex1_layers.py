"""Exercise 1 of 8: the backward of a dense layer, of ReLU and of tanh (slides 7-8).

The encoder q_theta(z|x) and the decoder p_phi(x|z) of slides 7-8 are neural networks: dense
layers y = x W + b, each followed by a nonlinearity. Backpropagation runs every piece in
reverse. A piece's backward is given dout = d(loss)/d(its output), of the output's shape,
and returns d(loss)/d(its input), of the input's shape (and of its parameters, if it has any).
That is the chain rule, one piece at a time; the loss itself is never needed.

Rules for every exercise: arrays are batch first (x is (N, D), one row per datapoint); a
float32 input gives a float32 output, a float64 input a float64 output (the checker tries both).

Check it:   scratchvae workbook check WORKBOOK 1      (WORKBOOK: the folder of this file)
Stuck?      docs/derivations.md, sections 1-2; the package's own answer is in
            scratchvae/layers.py: Dense.backward, ReLU.backward, Tanh.backward
"""
import numpy as np


def dense_backward(x, W, dout):
    """The backward of a dense layer (slides 7-8: every layer of the encoder and the decoder).

    Forward:   y = x W + b,   that is  y_nk = sum_j x_nj W_jk + b_k
    Given:     x (N, D_in) the layer's input, W (D_in, D_out) its weight,
               dout (N, D_out) = d(loss)/dy
    Returns:   dx (N, D_in), dW (D_in, D_out), db (D_out,): d(loss)/dx, d(loss)/dW, d(loss)/db
               (b itself is not needed to compute them)
    """
    raise NotImplementedError("write me")


def relu_backward(y, dout):
    """The backward of ReLU, the hidden activation of the demo's encoder and decoder.

    Forward:   y = max(x, 0), elementwise
    Given:     y, the forward's OUTPUT (any shape), and dout = d(loss)/dy of the same shape
    Returns:   dx = d(loss)/dx, of the same shape (take the derivative at x = 0 to be 0)
    """
    raise NotImplementedError("write me")


def tanh_backward(y, dout):
    """The backward of tanh, the hidden activation of Kingma & Welling's experiments.

    Forward:   y = tanh(x), elementwise
    Given:     y, the forward's OUTPUT (any shape), and dout = d(loss)/dy of the same shape
    Returns:   dx = d(loss)/dx, of the same shape
    """
    raise NotImplementedError("write me")
