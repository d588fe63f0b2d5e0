"""Exercise 8 of 8, beyond the lecture: the importance-weighted bound L_k, its normalised
weights and its gradient.

The ELBO is below log p(x) by KL(q(z|x) || p(z|x)) (slide 21). Averaging k importance
weights INSIDE the log instead of outside gives a tighter bound (Burda, Grosse &
Salakhutdinov 2016, "Importance Weighted Autoencoders"):

    w_i = p(x, z_i) / q(z_i|x),   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)
    z_i = mu + sigma * eps_i,  i = 1..k
    L_k = log (1/k) sum_i w_i          ELBO = L_1 <= L_k <= log p(x)

The log-weights of one image can lie hundreds of nats apart (a sample in the tail of q), so
exp(log w) overflows or underflows: work with log w.

    log p(z) = log N(z; 0, I)          = -1/2 sum_j ( log(2 pi) + z_j^2 )
    log q(z|x) = log N(z; mu, sigma^2)  = -1/2 sum_j ( log(2 pi) + logvar_j + (z_j - mu_j)^2 / sigma_j^2 )

The decoder is the one of exercise 7 (decoder.forward(z), decoder.backward(dlogits)).

Check it:   scratchvae workbook check WORKBOOK 8      (WORKBOOK: the folder of this file)
Stuck?      docs/derivations.md, section 13; the package's own answer is in
            scratchvae/chapters/iwae.py: IWAE.loss_and_grads (for N datapoints; here N = 1)
"""
import numpy as np

from ex2_bernoulli import bernoulli_log_likelihood, bernoulli_log_likelihood_grads   # noqa: F401
from ex4_reparameterise import reparameterise, reparameterise_backward    # noqa: F401


def iwae_bound(log_w):
    """L_k = log (1/k) sum_i exp(log w_i), for any log-weights, even -1000 or +1000.

    Shapes:    log_w (k,) -> a number
    """
    raise NotImplementedError("write me")


def normalised_weights(log_w):
    """The normalised importance weights w~_i = w_i / sum_j w_j, for any log-weights.

    They are also d L_k / d log w_i: the share of each sample in L_k's gradient.
    Shapes:    log_w (k,) -> w~ (k,), non-negative, summing to 1
    """
    raise NotImplementedError("write me")


def iwae_and_grads(decoder, x, mu, logvar, eps):
    """L_k of one datapoint and its gradient with respect to lambda = (mu, logvar).

    Given:     decoder (exercise 7); x (D,) one image in [0, 1]; mu, logvar (K,); eps (k, K)
    Returns:   (L_k, dmu, dlogvar): the bound (a number), dL_k/dmu and dL_k/dlogvar (K,)
    (With k = 1 this is exercise 7's ELBO with the KL estimated from the sample.)
    """
    raise NotImplementedError("write me")
