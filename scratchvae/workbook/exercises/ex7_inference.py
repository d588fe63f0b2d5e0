"""Exercise 7 of 8: the gradient of the ELBO with respect to lambda, for one datapoint
(slides 19-24).

Before any encoder: for one image x and a fixed decoder p_phi(x|z), variational inference
chooses q_lambda(z|x) = N(mu, diag sigma^2), lambda = (mu, log sigma^2), to minimise
KL(q_lambda(z|x) || p(z|x)) (slides 19-20), which is the same as maximising the ELBO
(slides 21-23):

    ELBO(lambda) = E_{z ~ q_lambda}[ log p(x|z) ] - KL( q_lambda(z|x) || p(z) )

With z_l = mu + sigma * eps_l (slide 14) and the expectation estimated by L samples, the
ELBO is a function of lambda you can differentiate, and gradient ascent on it finds the best
q for this x. Slide 24 then lets the encoder output lambda = encoder(x) for every x at once;
exercise 5 is that step. Use your functions of exercises 2-4.

The decoder you are given is a fixed network:
    logits = decoder.forward(z)         z (L, K) -> logits (L, D): one row per sample
    dz = decoder.backward(dlogits)      dlogits (L, D) = d(something)/d(logits) -> dz (L, K),
                                        the chain rule through the forward just made (call
                                        forward first; one backward per forward)

Check it:   scratchvae workbook check WORKBOOK 7      (WORKBOOK: the folder of this file)
Stuck?      the package's own answer is in scratchvae/chapters/inference.py: elbo_and_grads
            (for N datapoints at once; here N = 1)
"""
import numpy as np

from ex2_bernoulli import bernoulli_log_likelihood, bernoulli_log_likelihood_grads   # noqa: F401
from ex3_kl import kl_standard_normal, kl_standard_normal_grads            # noqa: F401
from ex4_reparameterise import reparameterise, reparameterise_backward    # noqa: F401


def elbo_and_grads(decoder, x, mu, logvar, eps):
    """The L-sample ELBO of one datapoint and its gradient with respect to lambda = (mu, logvar).

    Implements:  ELBO = 1/L sum_l log p(x|z_l) - KL(N(mu, diag sigma^2) || N(0, I)),
                 z_l = mu + sigma * eps_l,  sigma = exp(logvar / 2)      (slides 14, 21-23)
    Given:       decoder (see above); x (D,) one image in [0, 1]; mu, logvar (K,); eps (L, K)
    Returns:     (elbo, dmu, dlogvar): the ELBO (a number), and dELBO/dmu, dELBO/dlogvar (K,)
                 (the gradient of the ELBO itself, uphill: not of the loss -ELBO)
    """
    raise NotImplementedError("write me")
