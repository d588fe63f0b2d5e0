"""A learner's solution of exercise 8."""
import math

import numpy as np

from ex2_bernoulli import bernoulli_log_likelihood, bernoulli_log_likelihood_grads
from ex4_reparameterise import reparameterise, reparameterise_backward


def iwae_bound(log_w):
    m = np.max(log_w)
    return m + np.log(np.sum(np.exp(log_w - m))) - np.log(len(log_w))


def normalised_weights(log_w):
    w = np.exp(log_w - np.max(log_w))
    return w / np.sum(w)


def iwae_and_grads(decoder, x, mu, logvar, eps):
    sigma = np.exp(0.5 * logvar)
    z = reparameterise(mu, logvar, eps)                                # (k, K)
    logits = decoder.forward(z)                                        # (k, D)
    log_px_z = bernoulli_log_likelihood(x, logits)                     # (k,)
    log_pz = -0.5 * np.sum(math.log(2 * math.pi) + z ** 2, axis=-1)
    log_qz = -0.5 * np.sum(math.log(2 * math.pi) + logvar + eps ** 2, axis=-1)   # (z - mu) / sigma = eps
    log_w = log_px_z + log_pz - log_qz
    w_tilde = normalised_weights(log_w)                                # (k,)
    dz = decoder.backward(w_tilde[:, None] * bernoulli_log_likelihood_grads(x, logits))
    dz = dz - w_tilde[:, None] * z                                     # d log p(z) / dz = -z
    dmu, dlogvar = reparameterise_backward(dz, eps, logvar)
    dlogvar = dlogvar + 0.5 * np.sum(w_tilde)                          # - d log q / d logvar = +1/2
    return iwae_bound(log_w), dmu, dlogvar
