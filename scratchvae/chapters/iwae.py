"""The importance-weighted bound L_k as a training objective (one step beyond the lecture).

The lecture trains on the ELBO (slide 15) and ends at log p(x) = ELBO + KL(q || p(z|x))
(slide 21): the ELBO is loose by that KL. Importance weighting tightens it. With k samples
z_1..z_k ~ q(z|x) and the importance weights of machinery/evaluate.py,

    w_i = p(x, z_i) / q(z_i|x),      L_k(x) = E[ log 1/k sum_i w_i ]  <=  log p(x)

and ELBO = L_1 <= L_k <= L_{k+1} -> log p(x) (Burda, Grosse & Salakhutdinov 2016,
"Importance Weighted Autoencoders", Theorem 1). machinery/evaluate.py uses L_k to measure a model
(k = 1000 by default, 5000 in the literature's protocol); here L_k is the loss that trains it:

    loss = mean_n [ -( logsumexp_i log w_in - log k ) ]

Its gradient (docs/derivations.md, section 13) is the ELBO's with the sample average 1/k
replaced by the normalised weights  w~_i = w_i / sum_j w_j = softmax_i(log w):

    d L_k = sum_i w~_i  d log w_i,     log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)

so the backward pass is vae.py's with L = k samples, each sample's decoder gradient scaled
by w~_i instead of 1/L, and, since there is no closed-form KL here, the gradients of
log p(z) and log q(z|x) themselves. With k = 1, w~ = 1: the VAE with its KL estimated by
Monte Carlo, exactly (tests/chapters/test_iwae.py).

``IWAE`` is a VAE (same layers, same parameters, same checkpoint) whose ``loss_and_grads``
is -L_k. Everything else is the VAE's: ``loss`` and machinery/evaluate.py still report the ELBO,
so the two objectives are compared on the same numbers.
"""
import numpy as np

from ..layers import exp_no_subnormal
from ..losses import gaussian_log_density, gaussian_log_density_grads
from ..vae import VAE, _need_count, _reshape


class IWAE(VAE):
    """A VAE trained on the k-sample importance-weighted bound L_k instead of the ELBO.

    Takes VAE's arguments plus ``k`` (samples of z per datapoint, k >= 1). ``n_samples``
    stays 1: L_k draws its own k samples. beta must be 1: L_k is a bound on log p(x) only
    with the true weights. ``config()`` is the VAE's, so a checkpoint of an IWAE loads as a
    VAE (the objective is how the weights were trained, not what they are).
    """

    def __init__(self, *args, k=5, **kwargs):
        _need_count(k, "k, the number of importance samples,")
        super().__init__(*args, **kwargs)
        if self.beta != 1.0:
            raise ValueError(f"the importance-weighted bound has no KL weight: beta must be 1, got {self.beta!r}")
        self.k = int(k)

    # what the machinery asks (vae.py): an IWAE is saved and loaded as a VAE, trained with objective "iwae"
    objective = "iwae"
    fixed_fields = {"beta": (1.0, "L_k has no KL weight"), "warmup_epochs": (0.0, "L_k has no KL weight"),
                    "n_samples": (1, "it draws iwae_k samples")}

    @property
    def loss_name(self):
        return f"the bound L_k, k = {self.k}"

    @classmethod
    def from_config(cls, config, input_dim):
        return super().from_config(config, input_dim, k=config.iwae_k)

    def loss_and_grads(self, x, eps=None):
        """Batch-mean -L_k and all its parameter gradients (written into ``self.grads``).

        Implements (per datapoint n, averaged over the batch):
            log w_in = log p(x_n|z_in) + log p(z_in) - log q(z_in|x_n),  z_in = mu_n + sigma_n eps_in
            loss     = mean_n -( logsumexp_i log w_in - log k )
        Gradients:   d loss / d log w_in = -w~_in / N,   w~_in = softmax_i(log w_in)
        Derivation:  docs/derivations.md, section 13
        Source:      Burda, Grosse & Salakhutdinov 2016, eq. (8) and (13)

        Parameters
        ----------
        x : (N, D) array
        eps : (k, N, K) or (N, K) array, optional   drawn from ``self.rng`` when omitted

        Returns
        -------
        loss : float     -L_k, the batch mean (nats per datapoint)
        parts : dict     "iwae" = L_k; "rec" = mean -log p(x|z) and "kl" = mean of
                         log q(z|x) - log p(z) over the k samples (a Monte Carlo KL);
                         "nelbo" = rec + kl, the k-sample estimate of -ELBO; "elbo" = -nelbo
        """
        x = self._check_x(x)
        N, K = x.shape[0], self.latent_dim
        eps = self.draw_eps(N) if eps is None else self._check_eps(eps, N)
        k = eps.shape[0]

        # ---- forward: encoder, reparameterisation, decoder, log w ------------------------
        h = self.encoder.forward(x)                              # (N, H)
        mu = self.enc_mu.forward(h)                              # (N, K)
        logvar = self.enc_logvar.forward(h)                      # (N, K)
        sigma = np.exp(0.5 * logvar)                             # (N, K)
        z = mu + sigma * eps                                     # (k, N, K)  z_i = mu + sigma . eps_i
        out = self._decoder_forward(z.reshape(k * N, K))         # (k*N, D), or (mean, logvar_x)
        out = _reshape(out, (k, N, -1))
        log_px_z = self._log_likelihood(x, out)                  # (k, N)  log p(x|z_i)
        log_pz = gaussian_log_density(z, 0.0, 0.0)               # (k, N)  log p(z_i), p = N(0, I)
        log_qz_x = gaussian_log_density(z, mu, logvar)           # (k, N)  log q(z_i|x)
        log_w = log_px_z + log_pz - log_qz_x                     # (k, N)  log w_i = log p(x, z_i) / q(z_i|x)
        m = log_w.max(axis=0)                                    # (N,)    the largest log-weight
        unnorm = exp_no_subnormal(log_w - m)                     # (k, N)  w_i / w_max, in (0, 1]
        total = unnorm.sum(axis=0)                               # (N,)    sum_i w_i / w_max >= 1
        L_k = m + np.log(total) - np.log(k)                      # (N,)    log 1/k sum_i w_i
        loss = -np.mean(L_k)

        # ---- backward ---------------------------------------------------------------------
        w_tilde = unnorm / total                                 # (k, N)  w~_i = softmax_i(log w)
        w_tilde[w_tilde < np.finfo(self.dtype).eps ** 2] = 0    # too small to change any sum: 0, not subnormal
        a = w_tilde / N                                          # (k, N)  w~_in / N = -d loss / d log w_in
        d_out = self._log_likelihood_grads(x, out)               # d log p(x|z_i) / d(decoder outputs)
        d_out = _scale(d_out, -a[..., None], (k * N, -1))        # d loss / d(decoder outputs)
        dz = self._decoder_backward(d_out).reshape(k, N, K)      # (k, N, K)  through the decoder
        dlogq_dmu, dlogq_dlogvar = gaussian_log_density_grads(z, mu, logvar)   # (z - mu)/sigma^2, ((z - mu)^2/sigma^2 - 1)/2
        dlogp_dz = -z                                            # d log N(z; 0, I) / dz
        dlogq_dz = -dlogq_dmu                                    # d log q / dz = -d log q / dmu
        dz -= a[..., None] * (dlogp_dz - dlogq_dz)               # log p(z) - log q(z|x) also depend on z
        dmu = dz.sum(axis=0) + np.sum(a[..., None] * dlogq_dmu, axis=0)                 # dz/dmu = 1, and q's own mu
        dlogvar = ((dz * eps).sum(axis=0) * 0.5 * sigma                                 # dz/dlogvar = eps sigma / 2
                   + np.sum(a[..., None] * dlogq_dlogvar, axis=0))                       # and q's own logvar
        dh = self.enc_mu.backward(dmu) + self.enc_logvar.backward(dlogvar)
        self.encoder.backward(dh, need_dx=False)

        rec, kl = -log_px_z.mean(axis=0), (log_qz_x - log_pz).mean(axis=0)
        rec_mean, kl_mean = float(np.mean(rec)), float(np.mean(kl))
        parts = {"iwae": float(np.mean(L_k)), "rec": rec_mean, "kl": kl_mean,
                 "nelbo": rec_mean + kl_mean, "elbo": -(rec_mean + kl_mean)}
        return float(loss), parts

    def bound(self, x, eps=None):
        """L_k per datapoint, forward only, from ``log_weights``: (N,) = log 1/k sum_i w_i.

        The same number as ``-loss_and_grads`` before the batch mean, computed by vae.py's
        probabilistic view (tests compare the two). ``loss`` stays the VAE's ELBO.
        """
        x = self._check_x(x)
        eps = self.draw_eps(x.shape[0]) if eps is None else self._check_eps(eps, x.shape[0])
        log_w = self.log_weights(x, eps)                         # (k, N)
        m = log_w.max(axis=0)
        return m + np.log(exp_no_subnormal(log_w - m).sum(axis=0)) - np.log(log_w.shape[0])

    def draw_eps(self, N):
        """The noise ``loss_and_grads`` and ``bound`` draw when not given eps: k samples, (k, N, K).
        (``loss`` and ``log_weights`` are the VAE's: they draw n_samples = 1.)"""
        return self.rng.standard_normal((self.k, N, self.latent_dim), dtype=self.dtype)


def _scale(d_out, factor, shape):
    """factor * d_out reshaped, for one array (Bernoulli) or a (dmean, dlogvar) pair (Gaussian)."""
    if isinstance(d_out, np.ndarray):
        return (factor * d_out).reshape(shape)
    return tuple((factor * d).reshape(shape) for d in d_out)
