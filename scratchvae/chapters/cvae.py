"""A conditional VAE: "draw me a 7" (one step beyond the lecture).

The VAE of vae.py generates a digit, but not a digit of our choosing: the class is somewhere
in z, mixed with the style. A conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured
Output Representation using Deep Conditional Generative Models") gives the label y, one-hot,
to both networks:

    encoder  q_theta(z | x, y) = N(z; mu(x, y), diag sigma^2(x, y))    input [x, y]
    decoder  p_phi(x | z, y)                                           input [z, y]
    prior    p(z) = N(0, I), as before

and the ELBO of slide 15 becomes a bound on log p(x|y), term for term the same:

    log p(x|y) >= E_{q(z|x,y)}[ log p(x|z, y) ] - KL( q(z|x, y) || N(0, I) )

Since the decoder is told the class, z has no reason to carry it: z keeps what the label
does not say, the style (slant, thickness, width). Decoding one z with every label writes
every digit in one hand.

The backward pass is vae.py's: the label is an input, not a parameter, so the only change is
that the decoder's input gradient d[z, y] is cut to its first K columns, dz (the label's part
is not needed), and the encoder's input needs no gradient at all, as before.
"""
import numpy as np

from ..layers import MLP, Dense, sigmoid
from ..losses import gaussian_log_density, kl_standard_normal, kl_standard_normal_grads
from ..vae import VAE, _check_architecture, _need_count, _need_generator, _reshape, network_shapes

N_CLASSES = 10


class CVAE(VAE):
    """A VAE whose encoder and decoder both see the one-hot label y (Sohn et al. 2015).

    Parameters: VAE's, plus ``n_classes`` C (10 digits). ``x (N, D)``, ``y (N,)`` integer
    labels 0..C-1. The parameters are named as in the VAE; "enc.fc1.W" has D + C rows and
    the decoder's first weight K + C rows.
    """

    def __init__(self, input_dim, hidden_dims, latent_dim, n_classes=N_CLASSES, activation="relu",
                 likelihood="bernoulli", n_samples=1, beta=1.0, dtype=np.float32, seed=0):
        hidden_dims, dtype = _check_architecture(input_dim, hidden_dims, latent_dim, likelihood,
                                                 n_samples, dtype, beta)
        _need_count(n_classes, "n_classes", at_least=2)
        self.n_classes = int(n_classes)
        self.input_dim, self.hidden_dims, self.latent_dim = int(input_dim), hidden_dims, int(latent_dim)
        self.activation, self.likelihood, self.dtype = activation, likelihood, dtype
        self.n_samples, self.beta = int(n_samples), float(beta)
        init_seed, eps_seed = np.random.SeedSequence(seed).spawn(2)
        init_rng, self.rng = np.random.default_rng(init_seed), np.random.default_rng(eps_seed)

        D, K, C = self.input_dim, self.latent_dim, self.n_classes
        self.encoder = MLP(D + C, hidden_dims, activation, init_rng, dtype, name="enc")   # q(z | x, y)
        H = self.encoder.out_dim
        self.enc_mu = Dense(H, K, init_rng, dtype, name="mu")
        self.enc_logvar = Dense(H, K, init_rng, dtype, name="logvar")
        self.decoder = MLP(K + C, hidden_dims[::-1], activation, init_rng, dtype, name="dec")  # p(x | z, y)
        H = self.decoder.out_dim
        if likelihood == "bernoulli":
            self.dec_logits = Dense(H, D, init_rng, dtype, name="logits")
            self.dec_heads = [self.dec_logits]
        else:
            self.dec_mean = Dense(H, D, init_rng, dtype, name="mean")
            self.dec_logvar = Dense(H, D, init_rng, dtype, name="logvar")
            self.dec_heads = [self.dec_mean, self.dec_logvar]
        self._bind_flat_buffers()

    # ------------------------------------------------------------------ the loss
    def loss_and_grads(self, x, y, eps=None):
        """Batch-mean negative conditional ELBO (a bound on -log p(x|y)) and all its gradients.

        Implements:  loss = mean_i [ -1/L sum_l log p(x_i | z_il, y_i) + beta KL(q(z|x_i, y_i) || N(0, I)) ]
                     z_il = mu(x_i, y_i) + sigma(x_i, y_i) * eps_il
        Gradients:   vae.py's backward; the decoder's input gradient d[z, y] keeps its z columns.
        Returns:     (loss, parts) as ``VAE.loss_and_grads``.
        """
        x, onehot = self._check_x(x), self.one_hot(y, len(x))
        N, K = x.shape[0], self.latent_dim
        eps = self._check_eps(eps, N)
        L, beta = eps.shape[0], self.beta

        # ---- forward --------------------------------------------------------------------
        h = self.encoder.forward(np.concatenate([x, onehot], axis=1))          # (N, H)   q sees [x, y]
        mu, logvar = self.enc_mu.forward(h), self.enc_logvar.forward(h)        # (N, K)
        sigma = np.exp(0.5 * logvar)
        z = mu + sigma * eps                                                   # (L, N, K)
        zy = np.concatenate([z, np.broadcast_to(onehot, (L, N, self.n_classes))], axis=2)   # (L, N, K + C)
        out = _reshape(self._decoder_forward(zy.reshape(L * N, -1)), (L, N, -1))  # p sees [z, y]
        log_px_z = self._log_likelihood(x, out)                                # (L, N)  log p(x | z, y)
        rec = -np.mean(log_px_z, axis=0)                                       # (N,)
        kl = kl_standard_normal(mu, logvar)                                    # (N,)
        loss = np.mean(rec + beta * kl)

        # ---- backward -------------------------------------------------------------------
        d_out = self._log_likelihood_grads(x, out)                             # d log p(x|z,y) / d outputs
        scale = -1.0 / (L * N)
        d_out = (tuple((scale * d).reshape(L * N, -1) for d in d_out) if isinstance(d_out, tuple)
                 else (scale * d_out).reshape(L * N, -1))
        dzy = self._decoder_backward(d_out).reshape(L, N, -1)                  # (L, N, K + C)
        dz = dzy[..., :K]                                                      # the label is data: no gradient kept
        dkl_dmu, dkl_dlogvar = kl_standard_normal_grads(mu, logvar)
        dmu = dz.sum(axis=0) + (beta / N) * dkl_dmu
        dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma + (beta / N) * dkl_dlogvar
        dh = self.enc_mu.backward(dmu) + self.enc_logvar.backward(dlogvar)
        self.encoder.backward(dh, need_dx=False)

        rec_mean, kl_mean = float(np.mean(rec)), float(np.mean(kl))
        parts = {"rec": rec_mean, "kl": kl_mean, "nelbo": rec_mean + kl_mean, "elbo": -(rec_mean + kl_mean)}
        return float(loss), parts

    def loss(self, x, y, eps=None, q=None):
        """Like ``loss_and_grads`` but without the backward pass (gradients untouched).

        ``q``: (mu, logvar) = ``self.encode(x, y)``, if already computed (as in ``log_weights``).
        """
        x = self._check_x(x)
        self.one_hot(y, len(x))                                   # a clear error for bad labels
        eps = self._check_eps(eps, x.shape[0])
        mu, logvar = self.encode(x, y) if q is None else q
        log_px_z, _ = self._log_px_zy(x, y, mu, logvar, eps)
        return self._loss_from(log_px_z, mu, logvar)

    def log_weights(self, x, y, eps, q=None):
        """log w_l = log p(x | z_l, y) + log p(z_l) - log q(z_l | x, y): (L, N), for the bound on log p(x|y).

        ``q``: (mu, logvar) = ``self.encode(x, y)``, if already computed (as ``VAE.log_weights``).
        """
        x = self._check_x(x)
        self.one_hot(y, len(x))                                   # a clear error for bad labels
        eps = self._check_eps(eps, x.shape[0])
        mu, logvar = self.encode(x, y) if q is None else q
        log_px_zy, z = self._log_px_zy(x, y, mu, logvar, eps)
        return log_px_zy + gaussian_log_density(z, 0.0, 0.0) - gaussian_log_density(z, mu, logvar)

    # ------------------------------------------------------------------ using it
    def encode(self, x, y):
        """q(z | x, y): x (N, D), y (N,) -> (mu, logvar), each (N, K)."""
        x = self._check_x(x)
        h = self.encoder.forward(np.concatenate([x, self.one_hot(y, len(x))], axis=1))
        mu, logvar = self.enc_mu.forward(h), self.enc_logvar.forward(h)
        self._forget_caches()
        return mu, logvar

    def decode(self, z, y):
        """p(x | z, y): z (M, K), y (M,) -> logits (M, D), or (mean, logvar) for the Gaussian decoder."""
        z = self._check_z(z)
        return self._decode(z, self.one_hot(y, len(z)))

    def decode_mean(self, z, y):
        out = self.decode(z, y)
        return sigmoid(out) if self.likelihood == "bernoulli" else out[0]

    def sample(self, n, digit, rng=None):
        """Draw me a ``digit``: z ~ N(0, I), then the decoder's mean image given that label. (n, D)."""
        rng = self.rng if rng is None else _need_generator(rng)
        _need_count(n, "n, the number of images to generate,")
        self.one_hot([digit], 1)                                  # a clear error for a bad digit
        return self.decode_mean(rng.standard_normal((int(n), self.latent_dim), dtype=self.dtype),
                                np.full(int(n), digit))

    def reconstruct(self, x, y):
        mu, _ = self.encode(x, y)
        return self.decode_mean(mu, y)

    def config(self):
        return {**super().config(), "n_classes": self.n_classes}

    # ------------------------------------------------------------------ plumbing
    # what the machinery asks of a kind of model (vae.py has the list)
    kind = "cvae"
    title, article = "conditional VAE", "a conditional VAE"
    summary = "the conditional VAE, q(z|x, y) and p(x|z, y) given the one-hot label (chapters/cvae.py)"
    loss_name = "the negative ELBO of p(x|y)"
    conditional = True

    @classmethod
    def from_config(cls, config, input_dim):
        return super().from_config(config, input_dim, n_classes=N_CLASSES)

    @classmethod
    def parameter_shapes(cls, arch):
        """VAE's, with the one-hot label's C columns added to both MLPs' first layers."""
        return network_shapes(arch, encoder_heads=("mu", "logvar"), label_columns=arch.get("n_classes", N_CLASSES))

    def _log_px_zy(self, x, y, mu, logvar, eps):
        """z = mu + sigma * eps and log p(x | z, y) there: returns (log p (L, N), z (L, N, K))."""
        L, N, K = eps.shape
        z = mu + np.exp(0.5 * logvar) * eps
        out = _reshape(self._decode(z.reshape(L * N, K), np.tile(self.one_hot(y, N), (L, 1))), (L, N, -1))
        return self._log_likelihood(x, out), z

    def _decode(self, z, onehot):
        """``decode`` of z (M, K) and one-hot labels (M, C) already checked."""
        out = self._decoder_forward(np.concatenate([z, onehot], axis=1))
        self._forget_caches()
        return out

    def one_hot(self, y, N):
        """Labels y (N,) integers 0..C-1 -> one-hot (N, C) in the model's dtype."""
        y = np.asarray(y)
        if y.shape != (N,):
            raise ValueError(f"y must hold one label per datapoint, shape ({N},), got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or (N and (y.min() < 0 or y.max() >= self.n_classes)):
            raise ValueError(f"labels must be integers 0..{self.n_classes - 1}, got {y[:5]!r}...")
        return np.eye(self.n_classes, dtype=self.dtype)[y]
