"""The two terms of the loss: the reconstruction log-likelihood and the KL regulariser.

Read with the lecture's slides 9-12 ("Loss function", "Negative reconstruction
log-likelihood", "KL Divergence as regularizer"):

    l_i = -E_{z ~ q(z|x_i)}[ log p(x_i|z) ] + KL( q(z|x_i) || p(z) )

Each function returns one number per datapoint (it sums over the last axis) and has a
partner ``*_grads`` that returns the derivative of that number with respect to its
inputs. Everything keeps the dtype of its inputs (float32 in, float32 out).
"""
import numpy as np

from .layers import sigmoid, softplus

LOG_2PI = float(np.log(2 * np.pi))


def bernoulli_log_likelihood(x, logits):
    """log p(x|z) for pixels that are Bernoulli with probability sigmoid(logits).

    Implements:  log p(x|z) = sum_d [ x_d * l_d - softplus(l_d) ]
                 which is  sum_d [ x_d log s_d + (1 - x_d) log(1 - s_d) ],  s = sigmoid(l),
                 rewritten so that no log of 0 (and no clipping) is ever needed.
    Source:      Kingma & Welling 2014, Appendix C.1; lecture slide 8 "Decoder"
                 ("output parameters for 28 x 28 Bernoulli variables").
    Gradient:    d/dl_d = x_d - sigmoid(l_d)       (see bernoulli_log_likelihood_grads)
    Derivation:  docs/derivations.md, section 3
    Targets:     binary x in {0, 1}, or grayscale x in [0, 1] as in the PyTorch example
                 (then it is minus the binary cross-entropy, not a normalised likelihood).
    Shapes:      x (..., D), logits (..., D), broadcastable -> (...)
    """
    return np.sum(x * logits - softplus(logits), axis=-1)


def bernoulli_log_likelihood_grads(x, logits):
    """d log p(x|z) / d logits = x - sigmoid(logits).   Shapes: as broadcast(x, logits)."""
    return x - sigmoid(logits)


def gaussian_log_density(x, mean, logvar):
    """log N(x; mean, diag(exp(logvar))), summed over the last axis.

    Implements:  log N(x; m, diag s^2) = -1/2 sum_d [ log(2 pi) + logvar_d + (x_d - m_d)^2 exp(-logvar_d) ]
    Source:      Kingma & Welling 2014, Appendix C.2 (Gaussian MLP decoder, used for Frey Face).
    Used for:    the Gaussian decoder's log p(x|z); and in the probabilistic view for
                 log q(z|x) = log N(z; mu, diag sigma^2) and log p(z) = log N(z; 0, I).
    Gradients:   d/dm = (x - m) exp(-logvar) ;  d/dlogvar = -1/2 + 1/2 (x - m)^2 exp(-logvar)
    Derivation:  docs/derivations.md, section 4
    Shapes:      x, mean, logvar (..., D), broadcastable -> (...)
    """
    return -0.5 * np.sum(LOG_2PI + logvar + (x - mean) ** 2 * np.exp(-logvar), axis=-1)


def gaussian_log_density_grads(x, mean, logvar):
    """Return (d/dmean, d/dlogvar) of gaussian_log_density; see its docstring."""
    precision = np.exp(-logvar)                                    # 1 / s^2
    diff = x - mean
    dmean = diff * precision                                       # (x - m) / s^2
    dlogvar = 0.5 * (diff * diff * precision - 1)                  # -1/2 + 1/2 (x - m)^2 / s^2
    return dmean, dlogvar


def kl_standard_normal(mu, logvar):
    """KL(q(z|x) || N(0, I)) for a diagonal Gaussian q = N(mu, diag exp(logvar)).

    Implements:  KL = -1/2 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))
                    =  1/2 * sum_j (mu_j^2 + expm1(logvar_j) - logvar_j)
                 The second form is the one computed: each term is >= 0 even after
                 rounding (expm1(v) >= v for every float v), so the computed KL is never
                 negative, and it is exactly 0 at mu = 0, logvar = 0.
    Source:      Kingma & Welling 2014, Appendix B; lecture slide 12 "KL Divergence as regularizer"
                 (p(z) = N(0, I)).
    Gradients:   dKL/dmu = mu ;  dKL/dlogvar = 1/2 * (exp(logvar) - 1)
    Derivation:  docs/derivations.md, section 5
    Shapes:      mu, logvar (..., K) -> (...)
    """
    return 0.5 * np.sum(mu * mu + (np.expm1(logvar) - logvar), axis=-1)


def kl_standard_normal_grads(mu, logvar):
    """Return (dKL/dmu, dKL/dlogvar) = (mu, 1/2 (exp(logvar) - 1)); see kl_standard_normal."""
    return mu, 0.5 * np.expm1(logvar)
