"""A learner's solution of exercise 7."""
import numpy as np

from ex2_bernoulli import bernoulli_log_likelihood, bernoulli_log_likelihood_grads
from ex3_kl import kl_standard_normal, kl_standard_normal_grads
from ex4_reparameterise import reparameterise, reparameterise_backward


def elbo_and_grads(decoder, x, mu, logvar, eps):
    L = eps.shape[0]
    z = reparameterise(mu, logvar, eps)                       # (L, K)
    logits = decoder.forward(z)                               # (L, D)
    elbo = np.mean(bernoulli_log_likelihood(x, logits)) - kl_standard_normal(mu, logvar)
    dz = decoder.backward(bernoulli_log_likelihood_grads(x, logits) / L)
    dmu, dlogvar = reparameterise_backward(dz, eps, logvar)
    dkl_dmu, dkl_dlogvar = kl_standard_normal_grads(mu, logvar)
    return elbo, dmu - dkl_dmu, dlogvar - dkl_dlogvar
