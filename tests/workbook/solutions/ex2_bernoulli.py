"""A learner's solution of exercise 2."""
import numpy as np


def softplus(l):
    return np.maximum(l, 0) + np.log1p(np.exp(-np.abs(l)))


def sigmoid(l):
    return 0.5 * np.tanh(0.5 * l) + 0.5


def bernoulli_log_likelihood(x, logits):
    return np.sum(x * logits - softplus(logits), axis=-1)


def bernoulli_log_likelihood_grads(x, logits):
    return x - sigmoid(logits)
