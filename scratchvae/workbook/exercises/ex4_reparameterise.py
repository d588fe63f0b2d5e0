"""Exercise 4 of 8: the reparameterisation z = mu + sigma * eps, and its backward (slide 14).

Slide 14 asks: "Given z drawn from q_theta(z|x), how do we take derivatives of (a function
of) z w.r.t. theta?" Answer: draw the noise outside, eps ~ N(0, I), and make z a
deterministic function of the encoder's outputs,

    z = mu + sigma * eps          (elementwise: slide 14's circled dot)

Then the loss's gradient flows through z back to mu and logvar, and on into the encoder.
The encoder outputs logvar = log sigma^2 (any real number is a valid log-variance), not sigma.
With L samples per datapoint, eps has shape (L, N, K) and so does z; mu and logvar are (N, K).

Check it:   scratchvae workbook check WORKBOOK 4      (WORKBOOK: the folder of this file)
Stuck?      docs/derivations.md, section 6; the package's own answer is in
            scratchvae/vae.py: VAE.loss_and_grads (the lines of z and of dmu, dlogvar)
"""
import numpy as np


def reparameterise(mu, logvar, eps):
    """z = mu + sigma * eps with sigma the standard deviation of q(z|x) (slide 14).

    Given:     mu, logvar (N, K): q(z|x) = N(mu, diag exp(logvar)); eps (L, N, K) ~ N(0, I)
    Returns:   z (L, N, K), one sample z_l for each eps_l
    """
    raise NotImplementedError("write me")


def reparameterise_backward(dz, eps, logvar):
    """The backward of reparameterise: from d(loss)/dz to d(loss)/dmu and d(loss)/dlogvar.

    Given:     dz (L, N, K) = d(loss)/dz for every sample z_l; eps (L, N, K), the noise the
               forward used; logvar (N, K)
    Returns:   (dmu, dlogvar), each (N, K)
    (Also for one datapoint, as exercises 7 and 8 use it: dz, eps (L, K), logvar (K,) -> (K,).)
    """
    raise NotImplementedError("write me")
