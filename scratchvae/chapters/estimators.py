"""Why reparameterise: two unbiased estimators of one gradient, and their variances.

Read with the lecture's slide 14 (the reparameterisation trick). Training needs the
gradient, with respect to the encoder's outputs mu and sigma, of an expectation

    F(mu, sigma) = E_{z ~ N(mu, diag sigma^2)}[ f(z) ],    f(z) = log p(x|z) for the VAE,

and the expectation is over a distribution that itself depends on mu and sigma. Two
Monte Carlo estimators are unbiased; both use S samples z_s = mu + sigma * eps_s,
eps_s ~ N(0, I). Per coordinate j (everything is elementwise, the Gaussian is diagonal):

1. Reparameterisation (pathwise; Kingma & Welling 2014, Sec. 2.4; slide 14).
   Write the expectation over the fixed noise instead: F = E_eps[ f(mu + sigma * eps) ].
   Now mu and sigma sit inside f, and the derivative passes through it (chain rule,
   dz_j/dmu_j = 1, dz_j/dsigma_j = eps_j):

       dF/dmu_j    = E[ df/dz_j (z) ]           ~ 1/S sum_s df/dz_j (z_s)
       dF/dsigma_j = E[ df/dz_j (z) eps_j ]     ~ 1/S sum_s df/dz_j (z_s) eps_sj

   It needs df/dz: the decoder's backward pass.

2. Score function (REINFORCE, likelihood ratio; Williams 1992; the "naive" estimator
   of Kingma & Welling 2014, Sec. 2.2). Differentiate the density instead of f:

       dF/dlambda = d/dlambda integral q(z) f(z) dz = integral q(z) d log q(z)/dlambda f(z) dz
                  = E[ f(z) d log q(z)/dlambda ]        (using dq = q d log q)

   where lambda = (mu, sigma) are q's variational parameters (the lecture's letter).

   With log q(z) = sum_j [ -(z_j - mu_j)^2 / (2 sigma_j^2) - log sigma_j ] - K/2 log(2 pi):

       d log q / dmu_j    = (z_j - mu_j) / sigma_j^2                  = eps_j / sigma_j
       d log q / dsigma_j = (z_j - mu_j)^2 / sigma_j^3 - 1 / sigma_j  = (eps_j^2 - 1) / sigma_j

   so  dF/dmu_j    ~ 1/S sum_s f(z_s) (z_sj - mu_j) / sigma_j^2
       dF/dsigma_j ~ 1/S sum_s f(z_s) ((z_sj - mu_j)^2 / sigma_j^3 - 1 / sigma_j)

   It needs only values of f, never its gradient -- but it multiplies the whole value
   f(z) (for MNIST log p(x|z) is about -100 nats) by a zero-mean random factor, so its
   variance is large. This is the baseline-free estimator on purpose: subtracting a
   baseline b from f keeps it unbiased (E[d log q] = 0) and tames the variance; without
   one we see what the reparameterisation trick buys.

Each estimator here returns its per-sample terms (S, ..., K); their mean over the first
axis is the estimate, and their variance over it the variance of a single-sample
estimate (an S-sample estimate has 1/S of it). Both take f and its gradient as callables,
so they run on any f; ``decoder_log_likelihood`` adapts a VAE's decoder.

Shapes: mu, sigma (N, K); eps, z (S, N, K); f(z) (S, N); grad_f(z) (S, N, K).
"""
from dataclasses import dataclass

import numpy as np

from ..vae import _need_count


def reparameterisation_terms(grad_f, mu, sigma, eps):
    """Per-sample terms of the reparameterisation (pathwise) gradient of E_q[f(z)].

    Implements:  z_s = mu + sigma * eps_s                                  (slide 14)
                 dF/dmu    ~ 1/S sum_s grad_f(z_s)
                 dF/dsigma ~ 1/S sum_s grad_f(z_s) * eps_s
    Shapes:      mu, sigma (N, K); eps (S, N, K) -> (terms_mu, terms_sigma), each (S, N, K)
    """
    z = mu + sigma * eps                                           # (S, N, K)
    df_dz = grad_f(z)                                              # (S, N, K)
    return df_dz, df_dz * eps                                      # dz/dmu = 1, dz/dsigma = eps


def score_function_terms(f, mu, sigma, eps):
    """Per-sample terms of the score-function (REINFORCE) gradient of E_q[f(z)], no baseline.

    Implements:  z_s = mu + sigma * eps_s
                 dF/dmu    ~ 1/S sum_s f(z_s) (z_s - mu) / sigma^2
                 dF/dsigma ~ 1/S sum_s f(z_s) ((z_s - mu)^2 / sigma^3 - 1 / sigma)
                 (the derivation is in the module docstring)
    Shapes:      mu, sigma (N, K); eps (S, N, K) -> (terms_mu, terms_sigma), each (S, N, K)
    """
    z = mu + sigma * eps                                           # (S, N, K)
    f_z = f(z)[..., None]                                          # (S, N, 1)
    dlogq_dmu = (z - mu) / sigma**2                                # d log q / dmu
    dlogq_dsigma = (z - mu) ** 2 / sigma**3 - 1 / sigma            # d log q / dsigma
    return f_z * dlogq_dmu, f_z * dlogq_dsigma


def decoder_log_likelihood(model, x):
    """f(z) = log p(x|z) and its gradient df/dz through a VAE's decoder, for fixed x.

    Returns (f, grad_f): f(z) (S, N, K) -> (S, N); grad_f(z) (S, N, K) -> (S, N, K).
    grad_f runs the decoder forward, d log p(x|z) / d(decoder outputs), and the decoder's
    hand-written backward -- the same three steps as inside ``VAE.loss_and_grads``.
    The model's gradient buffer is left as it was.
    Shapes:  x (N, D)
    """
    x = model._check_x(x)

    def f(z):
        S, N, K = z.shape
        out = model.decode(z.reshape(S * N, K).astype(model.dtype))
        return model._log_likelihood(x, _reshape(out, (S, N, -1)))              # (S, N)

    def grad_f(z):
        S, N, K = z.shape
        saved = model.flat_grads.copy()                    # the backward writes decoder grads
        try:
            out = model._decoder_forward(z.reshape(S * N, K).astype(model.dtype))
            d_out = model._log_likelihood_grads(x, _reshape(out, (S, N, -1)))  # d log p / d out
            dz = model._decoder_backward(_reshape(d_out, (S * N, -1)))         # (S*N, K)
        finally:
            model.flat_grads[...] = saved
            model._forget_caches()
        return dz.reshape(S, N, K)

    return f, grad_f


@dataclass
class EstimatorComparison:
    """Repeated S-sample estimates of dF/dmu and dF/dsigma by both estimators.

    ``reparam_mu`` etc. are (R, N, K): R independent S-sample estimates each (the
    same noise for both estimators in each repeat). ``reference_mu``/``reference_sigma``
    (N, K) are one independent reparameterisation estimate with ``n_reference`` samples.
    """
    n_samples: int
    n_reference: int
    reparam_mu: np.ndarray
    reparam_sigma: np.ndarray
    score_mu: np.ndarray
    score_sigma: np.ndarray
    reference_mu: np.ndarray
    reference_sigma: np.ndarray

    def difference_stderr(self, estimator, param):
        """Standard error of (average of the R estimates - reference), per coordinate.

        Implements:  sqrt( Var_r / R + Var_reparam,single / n_reference ),
                     Var_reparam,single = S * Var_r(reparam estimates)   (an S-sample mean has 1/S of it)
        estimator: "reparam" or "score"; param: "mu" or "sigma".   Shapes: -> (N, K)
        """
        estimates = getattr(self, f"{estimator}_{param}")
        R = len(estimates)
        reference_var = self.n_samples * getattr(self, f"reparam_{param}").var(axis=0, ddof=1) / self.n_reference
        return np.sqrt(estimates.var(axis=0, ddof=1) / R + reference_var)

    def variance_ratio(self):
        """Var(score function) / Var(reparameterisation) per coordinate, for mu and for sigma.

        Shapes: -> (ratio_mu, ratio_sigma), each (N, K)
        """
        return (self.score_mu.var(axis=0) / self.reparam_mu.var(axis=0),
                self.score_sigma.var(axis=0) / self.reparam_sigma.var(axis=0))


def compare_estimators(f, grad_f, mu, sigma, n_samples, n_repeats, rng, n_reference=20_000,
                       chunk=10_000):
    """Run both estimators ``n_repeats`` times with ``n_samples`` samples each.

    Each repeat r has its own noise eps_r (S, N, K), and both estimators get the same eps_r,
    so they differ only in how they turn the same samples into a gradient. The reference
    is an independent reparameterisation estimate with ``n_reference`` samples. f and
    grad_f are called on about ``chunk`` samples at a time (big matrix products are fast).
    Shapes:  mu, sigma (N, K) -> EstimatorComparison with (R, N, K) estimates
    """
    mu, sigma = np.asarray(mu), np.asarray(sigma)
    S, R = _need_count(n_samples, "n_samples"), _need_count(n_repeats, "n_repeats", at_least=2)
    _need_count(n_reference, "n_reference")
    _need_count(chunk, "chunk")
    eps = rng.standard_normal((R, S, *mu.shape))                      # (R, S, N, K)
    estimates = {k: np.empty((R, *mu.shape)) for k in
                 ("reparam_mu", "reparam_sigma", "score_mu", "score_sigma")}
    step = max(1, chunk // S)                                         # repeats per call
    for r in range(0, R, step):
        e = eps[r:r + step]                                           # (r', S, N, K)
        flat = e.reshape(-1, *mu.shape)                               # (r' S, N, K)
        for name, terms in (("reparam", reparameterisation_terms(grad_f, mu, sigma, flat)),
                            ("score", score_function_terms(f, mu, sigma, flat))):
            estimates[f"{name}_mu"][r:r + step] = terms[0].reshape(e.shape).mean(axis=1)
            estimates[f"{name}_sigma"][r:r + step] = terms[1].reshape(e.shape).mean(axis=1)
    sums, done = [np.zeros(mu.shape), np.zeros(mu.shape)], 0
    while done < n_reference:
        e = rng.standard_normal((min(chunk, n_reference - done), *mu.shape))
        for total, terms in zip(sums, reparameterisation_terms(grad_f, mu, sigma, e)):
            total += terms.sum(axis=0)
        done += len(e)
    return EstimatorComparison(n_samples=S, n_reference=done, reference_mu=sums[0] / done,
                               reference_sigma=sums[1] / done, **estimates)


def _reshape(out, shape):
    """Reshape the decoder output: an array, or a (mean, logvar) pair for the Gaussian decoder."""
    return out.reshape(shape) if isinstance(out, np.ndarray) else tuple(o.reshape(shape) for o in out)
