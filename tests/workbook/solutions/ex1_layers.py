"""A learner's solution of exercise 1, written from the exercise's docstrings (the tests edit it
to make each catalogued mistake)."""
import numpy as np


def dense_backward(x, W, dout):
    dx = dout @ W.T
    dW = x.T @ dout
    db = dout.sum(axis=0)
    return dx, dW, db


def relu_backward(y, dout):
    return dout * (y > 0)


def tanh_backward(y, dout):
    return dout * (1 - y ** 2)
