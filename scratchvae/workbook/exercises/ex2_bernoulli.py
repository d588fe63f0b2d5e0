"""Exercise 2 of 8: the Bernoulli reconstruction log-likelihood from logits, and its gradient
(slides 8-11).

The decoder p_phi(x|z) "outputs parameters for 28 x 28 Bernoulli variables" (slide 8): one
logit l_d per pixel, whose probability of ink is s_d = sigmoid(l_d) = 1 / (1 + exp(-l_d)).
The reconstruction log-likelihood log p_phi(x|z) of slides 9-11 measures how well the decoder
explains the image x it is given: the pixels are independent given z, so

    log p(x|z) = sum_d [ x_d log s_d + (1 - x_d) log(1 - s_d) ]

x may be 0/1 pixels or grey levels in [0, 1]. A decoder that is sure of itself gives logits
like +-30 or +-1000; the log-likelihood must stay finite and exact there too.

Check it:   scratchvae workbook check WORKBOOK 2      (WORKBOOK: the folder of this file)
Stuck?      docs/derivations.md, section 3; the package's own answer is in
            scratchvae/losses.py: bernoulli_log_likelihood, bernoulli_log_likelihood_grads
"""
import numpy as np


def bernoulli_log_likelihood(x, logits):
    """log p(x|z) for Bernoulli pixels with probabilities sigmoid(logits) (slides 9-11).

    Implements:  log p(x|z) = sum_d [ x_d log s_d + (1 - x_d) log(1 - s_d) ],  s = sigmoid(logits)
    Shapes:      x (..., D), logits (..., D), broadcastable (x (N, D) with logits (L, N, D)
                 gives (L, N): one number per sample and datapoint) -> (...)
    Must be:     finite and exact for any logits, e.g. +-1000 (no log of 0, and no clipping:
                 a clipped probability has the wrong gradient)
    """
    raise NotImplementedError("write me")


def bernoulli_log_likelihood_grads(x, logits):
    """d log p(x|z) / d logits: the gradient of the function above, one entry per logit.

    Shapes:      x (..., D), logits (..., D), broadcastable -> the broadcast shape
    Must be:     finite and exact for any logits
    """
    raise NotImplementedError("write me")
