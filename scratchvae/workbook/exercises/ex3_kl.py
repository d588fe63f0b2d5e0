"""Exercise 3 of 8: the KL divergence to the prior N(0, I), and its gradient (slide 12).

Slide 12's regulariser KL(q_theta(z|x) || p(z)) keeps the encoder's codes close to the prior
p(z) = N(0, I). The encoder outputs, for each datapoint, the mean mu and the LOG-VARIANCE
logvar = log sigma^2 of a diagonal Gaussian q(z|x) = N(mu, diag sigma^2); for two Gaussians
the KL has a closed form (Kingma & Welling 2014, Appendix B):

    KL( N(mu, diag sigma^2) || N(0, I) ) = -1/2 sum_j ( 1 + log sigma_j^2 - mu_j^2 - sigma_j^2 )

Check it:   scratchvae workbook check WORKBOOK 3      (WORKBOOK: the folder of this file)
Stuck?      docs/derivations.md, section 5; the package's own answer is in
            scratchvae/losses.py: kl_standard_normal, kl_standard_normal_grads
"""
import numpy as np


def kl_standard_normal(mu, logvar):
    """KL(q(z|x) || N(0, I)) for q = N(mu, diag exp(logvar)) (slide 12).

    Implements:  KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)),  logvar = log sigma^2
    Shapes:      mu, logvar (..., K) -> (...): one number per datapoint, summed over the K
                 latent dimensions
    """
    raise NotImplementedError("write me")


def kl_standard_normal_grads(mu, logvar):
    """The gradient of the KL above with respect to mu and to logvar (not sigma!).

    Shapes:      mu, logvar (..., K) -> dmu (..., K), dlogvar (..., K)
    Returns:     (dmu, dlogvar) = (dKL/dmu, dKL/dlogvar)
    """
    raise NotImplementedError("write me")
