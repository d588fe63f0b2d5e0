"""Exercise 6 of 8: Adam's step, with its bias correction (slide 15: "use gradient descent").

Slide 15 learns theta and phi by gradient descent. Adam (Kingma & Ba 2015, Algorithm 1)
adapts the step of each parameter to the size of its recent gradients. At step t = 1, 2, ...
with the gradient g_t, and m_0 = v_0 = 0:

    m_t     = beta1 m_{t-1} + (1 - beta1) g_t          running mean of g
    v_t     = beta2 v_{t-1} + (1 - beta2) g_t^2        running mean of g^2
    m_hat_t = m_t / (1 - beta1^t)                       bias corrections: m and v start at 0,
    v_hat_t = v_t / (1 - beta2^t)                       so early averages are too small
    w_t     = w_{t-1} - lr m_hat_t / (sqrt(v_hat_t) + eps)

w is every parameter of the model in one vector (the encoder's theta and the decoder's phi).

Check it:   scratchvae workbook check WORKBOOK 6      (WORKBOOK: the folder of this file)
Stuck?      docs/derivations.md, section 10; the package's own answer is
            scratchvae/optim.py: Adam (its step computes the same numbers, rearranged)
"""
import numpy as np


def adam_step(w, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One step of Adam, Algorithm 1 of Kingma & Ba (2015), bias correction included.

    Given:     w, g, m, v, 1-D arrays of one shape: the parameters w_{t-1}, the gradient g_t,
               the moments m_{t-1} and v_{t-1}; t, this step's number (1 for the first step);
               the hyper-parameters (the paper's defaults)
    Returns:   (w, m, v): w_t, m_t and v_t (new arrays, or the given ones updated in place)
    """
    raise NotImplementedError("write me")
