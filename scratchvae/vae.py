"""The Variational Autoencoder: encoder, reparameterisation, decoder, loss, and its backward.

Read this file beside the lecture's summary slide (slide 15):

    L(theta, phi) = sum_i ( -E_{z ~ q_theta(z|x_i)}[ log p_phi(x_i|z) ] + KL( q_theta(z|x_i) || p(z) ) )

``VAE.loss_and_grads`` computes it one equation per line, then runs the same lines in
reverse, each line the chain rule of its forward partner. ``VAE.elbo_probabilistic``
computes the same number the other way, as slides 21-25 define it,
E_q[ log p(x, z) - log q(z|x) ], with no closed-form KL ("They are equivalent!").

Letters, as the lecture uses them:

    theta   the encoder's weights: q_theta(z|x)        ``model.theta``  (the "enc.*" parameters)
    phi     the decoder's weights: p_phi(x|z)          ``model.phi``    (the "dec.*" parameters)
    lambda  the variational parameters of q(z|x), here (mu, log sigma^2) for each datapoint;
            the encoder computes them from x: lambda = encoder_theta(x)  (slide 24)

(Kingma & Welling's paper swaps the first two letters: it writes the encoder q_phi(z|x) and
the decoder p_theta(x|z). scratchvae follows the lecture.)

    logvar = log sigma^2        the encoder outputs the log-variance of q(z|x)
    sigma  = exp(0.5 * logvar)  the standard deviation
    eps ~ N(0, I),  z = mu + sigma * eps     (slide 14, reparameterisation)

Shapes: x (N, D) data, mu/logvar (N, K), eps and z (L, N, K) with L samples of z per
datapoint (the paper's L), logits (L, N, D).
"""
import math

import numpy as np

from .layers import MLP, Dense, sigmoid, share_one_buffer
from .losses import (bernoulli_log_likelihood, bernoulli_log_likelihood_grads,
                     gaussian_log_density, gaussian_log_density_grads,
                     kl_standard_normal, kl_standard_normal_grads)

LIKELIHOODS = ("bernoulli", "gaussian")


class VAE:
    """A VAE with MLP encoder q_theta(z|x) and MLP decoder p_phi(x|z) (slides 7-8).

    Encoder:  h = MLP(x) ;  mu = h W_mu + b_mu ;  logvar = h W_logvar + b_logvar
    Decoder:  h' = MLP(z) ; Bernoulli: logits = h' W + b
                            Gaussian:  mean = h' W_m + b_m ; logvar_x = h' W_v + b_v
    Prior:    p(z) = N(0, I)

    Parameters
    ----------
    input_dim : int              D, e.g. 784 for 28x28 digits
    hidden_dims : sequence[int]  hidden sizes of the encoder; the decoder mirrors them
                                 (``[400]`` is the PyTorch example; ``[]`` gives linear maps)
    latent_dim : int             K
    activation : str             hidden activation: "relu" (default) or "tanh" (as in the paper)
                                 ("sigmoid", "softplus" also work)
    likelihood : str             "bernoulli" (logits) or "gaussian" (mean and log-variance)
    n_samples : int              L, samples of z per datapoint when eps is drawn here
    beta : float                 weight of the KL term; beta = 1 is the ELBO
    dtype : numpy dtype          float32 for training, float64 for gradient checks
    seed : int                   seeds the initial weights and the model's own Generator

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        Every parameter and its gradient, under the same keys ("enc.fc1.W", "enc.mu.b",
        "dec.logits.W", ...).
    theta, phi : dict[str, ndarray]
        The lecture's two groups of ``params``: the encoder's ("enc.*") and the decoder's
        ("dec.*"). The same arrays, not copies.
    flat_params, flat_grads : 1-D ndarray
        All parameters (and all gradients) in one vector; every array of ``params``
        (``grads``) is a view into it, so an optimiser moves everything with a few vector
        operations: ``Adam(model.flat_params, model.flat_grads)``.
    rng : numpy.random.Generator
        Draws eps when ``loss_and_grads`` is not given one.
    """

    def __init__(self, input_dim, hidden_dims, latent_dim, activation="relu",
                 likelihood="bernoulli", n_samples=1, beta=1.0, dtype=np.float32, seed=0):
        hidden_dims, dtype = _check_architecture(input_dim, hidden_dims, latent_dim, likelihood,
                                                 n_samples, dtype, beta)
        self.input_dim, self.hidden_dims, self.latent_dim = int(input_dim), hidden_dims, int(latent_dim)
        self.activation, self.likelihood, self.dtype = activation, likelihood, dtype
        self.n_samples, self.beta = int(n_samples), float(beta)
        init_seed, eps_seed = np.random.SeedSequence(seed).spawn(2)
        init_rng, self.rng = np.random.default_rng(init_seed), np.random.default_rng(eps_seed)

        D, K = self.input_dim, self.latent_dim
        # the encoder q_theta(z|x): an MLP, then two linear heads for lambda = (mu, logvar)
        self.encoder = MLP(D, hidden_dims, activation, init_rng, dtype, name="enc")
        H = self.encoder.out_dim
        self.enc_mu = Dense(H, K, init_rng, dtype, name="mu")
        self.enc_logvar = Dense(H, K, init_rng, dtype, name="logvar")
        # the decoder p_phi(x|z): the mirror MLP, then the likelihood's parameters
        self.decoder = MLP(K, hidden_dims[::-1], activation, init_rng, dtype, name="dec")
        H = self.decoder.out_dim
        if likelihood == "bernoulli":
            self.dec_logits = Dense(H, D, init_rng, dtype, name="logits")
            self.dec_heads = [self.dec_logits]
        else:
            self.dec_mean = Dense(H, D, init_rng, dtype, name="mean")
            self.dec_logvar = Dense(H, D, init_rng, dtype, name="logvar")
            self.dec_heads = [self.dec_mean, self.dec_logvar]
        self._bind_flat_buffers()

    # ------------------------------------------------------------------ the encoder
    def encode(self, x):
        """q_theta(z|x) = N(z; mu, diag sigma^2): x (N, D) -> lambda = (mu, logvar), each (N, K).

        Why log sigma^2 and not sigma (slide 14 writes sigma): a linear layer outputs any
        real number, and a standard deviation must be positive. Reading the output as
        logvar = log sigma^2 makes every output valid with no constraint or clipping,
        sigma = exp(logvar / 2) is positive by construction, and log sigma^2 is what the
        KL and log q(z|x) need anyway (slide 12; docs/derivations.md, section 0).
        """
        x = self._check_x(x)
        h = self.encoder.forward(x)
        mu, logvar = self.enc_mu.forward(h), self.enc_logvar.forward(h)
        self._forget_caches()
        return mu, logvar

    # ------------------------------------------------------------------ the loss (slide 15)
    def loss_and_grads(self, x, eps=None):
        """Batch-mean negative ELBO (with beta on the KL) and all its parameter gradients.

        Implements (slide 15, per datapoint i, averaged over the batch):
            loss = mean_i [ -1/L sum_l log p(x_i | z_il) + beta * KL(q(z|x_i) || N(0, I)) ]
            z_il = mu_i + sigma_i * eps_il,   eps_il ~ N(0, I)
        Gradients: written into ``self.grads``, d(loss)/d(param) for theta and phi alike.
        Derivation: docs/derivations.md, sections 6-8 (each backward line is derived there).

        Parameters
        ----------
        x : (N, D) array        a batch of datapoints
        eps : (L, N, K) or (N, K) array, optional
            the noise of the reparameterisation; drawn from ``self.rng`` when omitted
            (L = ``self.n_samples``). Tests pass it to freeze the randomness.

        Returns
        -------
        loss : float            the batch mean of rec + beta * kl (the negative ELBO if beta = 1)
        parts : dict            "rec" = mean -E_q[log p(x|z)], "kl" = mean KL, "nelbo" = rec + kl,
                                "elbo" = -nelbo, all in nats per datapoint (Python floats)
        """
        x = self._check_x(x)
        N, D, K = x.shape[0], self.input_dim, self.latent_dim
        eps = self._check_eps(eps, N)
        L, beta = eps.shape[0], self.beta

        # ---- forward: encoder, reparameterisation, decoder, the two loss terms -------------
        h = self.encoder.forward(x)                              # (N, H)
        mu = self.enc_mu.forward(h)                              # (N, K)   mean of q_theta(z|x), slide 7
        logvar = self.enc_logvar.forward(h)                      # (N, K)   log sigma^2 (see encode)
        sigma = np.exp(0.5 * logvar)                             # (N, K)   sigma = exp(logvar / 2)
        z = mu + sigma * eps                                     # (L, N, K)  z = mu + sigma . eps, slide 14
        h_dec = self.decoder.forward(z.reshape(L * N, K))        # (L*N, H')  p_phi(x|z), slide 8
        if self.likelihood == "bernoulli":
            logits = self.dec_logits.forward(h_dec).reshape(L, N, D)        # (L, N, D)
            log_px_z = bernoulli_log_likelihood(x, logits)                  # (L, N)  log p(x|z_l), slide 9
        else:
            mean = self.dec_mean.forward(h_dec).reshape(L, N, D)           # (L, N, D)
            logvar_x = self.dec_logvar.forward(h_dec).reshape(L, N, D)     # (L, N, D)
            log_px_z = gaussian_log_density(x, mean, logvar_x)             # (L, N)  log p(x|z_l)
        rec = -np.mean(log_px_z, axis=0)                         # (N,)     -E_q[log p(x|z)] ~ L-sample mean, slide 11
        kl = kl_standard_normal(mu, logvar)                      # (N,)     KL(q(z|x) || N(0, I)), slide 12
        loss = np.mean(rec + beta * kl)                          # scalar   slide 15, as a batch mean

        # ---- backward: the same lines in reverse ------------------------------------------
        # d loss / d log p(x|z_l) = -1 / (L N): each sample's log-likelihood enters the mean once.
        if self.likelihood == "bernoulli":
            d_logits = (sigmoid(logits) - x) / (L * N)                       # -(x - sigmoid(l)) / (L N)
            dh_dec = self.dec_logits.backward(d_logits.reshape(L * N, D))
        else:
            dmean, dlogvar_x = gaussian_log_density_grads(x, mean, logvar_x)
            dh_dec = (self.dec_mean.backward(dmean.reshape(L * N, D) / -(L * N))
                      + self.dec_logvar.backward(dlogvar_x.reshape(L * N, D) / -(L * N)))
        dz = self.decoder.backward(dh_dec).reshape(L, N, K)                  # (L, N, K)
        dkl_dmu, dkl_dlogvar = kl_standard_normal_grads(mu, logvar)          # mu, (sigma^2 - 1) / 2
        dmu = dz.sum(axis=0) + (beta / N) * dkl_dmu                          # dz/dmu = 1
        dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma + (beta / N) * dkl_dlogvar  # dz/dlogvar = eps sigma / 2
        dh = self.enc_mu.backward(dmu) + self.enc_logvar.backward(dlogvar)   # h feeds both heads: add
        self.encoder.backward(dh, need_dx=False)                             # the data needs no gradient

        rec_mean, kl_mean = float(np.mean(rec)), float(np.mean(kl))
        parts = {"rec": rec_mean, "kl": kl_mean, "nelbo": rec_mean + kl_mean, "elbo": -(rec_mean + kl_mean)}
        return float(loss), parts

    def loss(self, x, eps=None, q=None):
        """Like ``loss_and_grads`` but without the backward pass (gradients untouched).

        ``q``: (mu, logvar) = ``self.encode(x)``, if already computed (as in ``log_weights``).
        """
        x = self._check_x(x)
        eps = self._check_eps(eps, x.shape[0])
        mu, logvar = self.encode(x) if q is None else q
        log_px_z, _ = self._log_px_z(x, mu, logvar, eps)         # (L, N)
        return self._loss_from(log_px_z, mu, logvar)

    # ------------------------------------------------------------------ the probabilistic view
    def log_weights(self, x, eps=None, q=None):
        """Importance log-weights  log w_l = log p(x, z_l) - log q(z_l|x),  z_l = mu + sigma * eps_l.

        Implements:  log p(x, z) = log p(x|z) + log p(z)            (slide 17, joint = likelihood x prior)
                     log q(z|x)  = log N(z; mu, diag sigma^2)
        Their mean over l estimates the ELBO (slide 21); log-mean-exp over l gives the
        importance-weighted bound on log p(x) (see machinery/evaluate.py).
        Derivation:  docs/derivations.md, section 9
        Shapes:      x (N, D), eps (L, N, K) -> (L, N)
        ``q``: (mu, logvar) = ``self.encode(x)``, if already computed (machinery/evaluate.py encodes a
        batch once for all its chunks of samples).
        """
        x = self._check_x(x)
        eps = self._check_eps(eps, x.shape[0])
        mu, logvar = self.encode(x) if q is None else q
        log_px_z, z = self._log_px_z(x, mu, logvar, eps)                     # log p(x|z), z (L, N, K)
        log_pz = gaussian_log_density(z, 0.0, 0.0)                           # log p(z), p = N(0, I)
        log_qz_x = gaussian_log_density(z, mu, logvar)                       # log q(z|x)
        return log_px_z + log_pz - log_qz_x

    def elbo_probabilistic(self, x, n_samples, rng=None):
        """The ELBO the probabilistic way (slides 21-22), by Monte Carlo, with no closed-form KL.

        Implements:  ELBO_i = E_{z ~ q(z|x_i)}[ log p(x_i, z) - log q(z|x_i) ]
                            ~ 1/S sum_s [ log p(x_i, z_s) - log q(z_s|x_i) ]
        The deep-learning loss of ``loss_and_grads`` (with beta = 1) is minus the same
        number, computed with the KL in closed form instead (slide 23 turns one into the other).
        Derivation:  docs/derivations.md, section 9

        Returns
        -------
        elbo : (N,) array       the estimate per datapoint
        stderr : (N,) array     its Monte Carlo standard error, std(log w) / sqrt(S)
        """
        rng = self.rng if rng is None else _need_generator(rng)
        x = self._check_x(x)
        _need_count(n_samples, "n_samples", at_least=2, why=" (the standard error needs two)")
        eps = rng.standard_normal((int(n_samples), x.shape[0], self.latent_dim), dtype=self.dtype)
        log_w = self.log_weights(x, eps)                                     # (S, N)
        return log_w.mean(axis=0), log_w.std(axis=0, ddof=1) / np.sqrt(log_w.shape[0])

    # ------------------------------------------------------------------ using a trained model
    def decode(self, z):
        """p_phi(x|z): z (M, K) -> logits (M, D), or (mean, logvar) for the Gaussian decoder."""
        out = self._decoder_forward(self._check_z(z))
        self._forget_caches()
        return out

    def decode_mean(self, z):
        """The decoder's mean image E[x|z]: sigmoid(logits) (Bernoulli) or the Gaussian mean."""
        out = self.decode(z)
        return sigmoid(out) if self.likelihood == "bernoulli" else out[0]

    def sample(self, n, rng=None):
        """Generate: z ~ p(z) = N(0, I), then the decoder's mean image. Returns (n, D) in the data's units.

        "Generates MNIST digits from random (Gaussian) noise" (slide 6).
        """
        rng = self.rng if rng is None else _need_generator(rng)
        _need_count(n, "n, the number of images to generate,")
        return self.decode_mean(rng.standard_normal((int(n), self.latent_dim), dtype=self.dtype))

    def reconstruct(self, x):
        """Encode, take z = mu (the mode of q(z|x)), decode: the decoder's mean image (N, D)."""
        mu, _ = self.encode(x)
        return self.decode_mean(mu)

    def config(self):
        """The constructor arguments (without seed), enough to rebuild the architecture."""
        return dict(input_dim=self.input_dim, hidden_dims=list(self.hidden_dims),
                    latent_dim=self.latent_dim, activation=self.activation,
                    likelihood=self.likelihood, n_samples=self.n_samples, beta=self.beta,
                    dtype=self.dtype.name)

    # ================================================================== plumbing
    # Nothing below is part of the lecture's story: what the rest of the program asks of a
    # kind of model, parameter bookkeeping, input checks, and the decoder's forward/backward
    # as reusable pieces for chapters/estimators.py and decode.

    # ---- what the machinery asks of a kind of model (machinery/models.py lists the kinds)
    kind = "vae"                          # TrainConfig.model, --model, model.json's "type"
    title, article = "VAE", "a VAE"       # in messages: "VAE 784-400-20-400-784", "holds a VAE"
    summary = "the VAE (vae.py)"          # its line in `scratchvae train --help`
    objective = "elbo"                    # the TrainConfig.objective it trains: slide 15's loss
    loss_name = "the negative ELBO"       # what its loss_and_grads computes, for the progress lines
    variational = True                    # q(z|x) and a KL term: trained and reported on the ELBO
    conditional = False                   # is it given the label y? (the conditional VAE is)
    random_streams = ("eps",)             # its own generators, saved in rng.json beside the data's
    fixed_fields = {}                     # TrainConfig fields it cannot use: {field: (value, why)}
    # the trainer's record of each epoch (machinery/runner.py writes these, machinery/checkpoint.py checks them) ...
    history_fields = ("epoch", "step", "beta", "train_loss", "train_nelbo", "train_rec", "train_kl",
                      "test_nelbo", "test_rec", "test_kl", "img_per_s", "seconds")
    # ... and these, absent from the records of runs begun before the trainer wrote them
    history_newer = ("train_eval_nelbo", "train_eval_rec", "train_eval_kl", "train_eval_n",
                     "test_active_units")

    @classmethod
    def from_config(cls, config, input_dim, **extra):
        """The untrained model a TrainConfig describes (machinery/config.py), for input_dim pixels.

        Its initial weights come from child 0 of ``config.seed``, its eps from child 1
        (machinery/runner.py: derive_streams). ``extra``: a subclass's own arguments."""
        return cls(input_dim, config.hidden, config.latent, activation=config.activation,
                   likelihood=config.likelihood, n_samples=config.n_samples, beta=config.beta,
                   seed=config.seed, **extra)

    @classmethod
    def parameter_shapes(cls, arch):
        """The parameters model.json's ``arch`` describes, name -> shape, without building them.

        The layers of ``__init__``: encoder MLP "enc.fc1" ..., heads "enc.mu", "enc.logvar";
        decoder MLP "dec.fc1" ..., heads "dec.logits" (Bernoulli) or "dec.mean", "dec.logvar".
        """
        return network_shapes(arch, encoder_heads=("mu", "logvar"))

    @property
    def theta(self):
        """The encoder's parameters theta of q_theta(z|x): the "enc.*" entries of ``params``."""
        return {k: v for k, v in self.params.items() if k.startswith("enc.")}

    @property
    def phi(self):
        """The decoder's parameters phi of p_phi(x|z): the "dec.*" entries of ``params``."""
        return {k: v for k, v in self.params.items() if k.startswith("dec.")}

    def _named_dense_layers(self):
        return ([(f"enc.{d.name}", d) for d in self.encoder.dense_layers]
                + [("enc.mu", self.enc_mu), ("enc.logvar", self.enc_logvar)]
                + [(f"dec.{d.name}", d) for d in self.decoder.dense_layers]
                + [(f"dec.{d.name}", d) for d in self.dec_heads])

    def _bind_flat_buffers(self, flat_params=None, flat_grads=None):
        """Move every weight and gradient into one flat vector each, with named views.

        Each bias lands right after its weight, so [W; b] is one (D_in + 1, D_out) block of
        ``flat_params`` (fast/fused_step.py relies on this), and the encoder's parameters come first.
        The arrays, if given, are the flat vectors to use (e.g. in shared memory); the
        current values are copied into them.
        """
        layers = self._named_dense_layers()
        named = {f"{prefix}.{k}": d.params[k] for prefix, d in layers for k in ("W", "b")}
        self.flat_params, self.params = share_one_buffer(named, self.dtype, out=flat_params)
        grads = {f"{prefix}.{k}": d.grads[k] for prefix, d in layers for k in ("W", "b")}
        self.flat_grads, self.grads = share_one_buffer(grads, self.dtype, out=flat_grads)
        for prefix, d in layers:
            for k in ("W", "b"):
                d.params[k], d.grads[k] = self.params[f"{prefix}.{k}"], self.grads[f"{prefix}.{k}"]

    def use_buffers(self, flat_params, flat_grads):
        """Keep the parameters and gradients in the given flat arrays from now on (values copied).

        Anything holding the old ``model.flat_params`` (an optimiser) must be pointed at the new one.
        """
        for name, a in (("flat_params", flat_params), ("flat_grads", flat_grads)):
            if a.shape != self.flat_params.shape or a.dtype != self.dtype or not a.flags.c_contiguous:
                raise ValueError(f"{name} must be a contiguous {self.dtype} vector of {self.flat_params.size}")
        self._bind_flat_buffers(flat_params, flat_grads)

    def _check_x(self, x):
        return check_input(self, "x", x, ("N", self.input_dim), data=True)

    def _check_z(self, z):
        return check_input(self, "z", z, ("M", self.latent_dim))

    def _check_eps(self, eps, N):
        """eps (L, N, K), or (N, K) for L = 1, checked; drawn from ``self.rng`` when None (L = n_samples)."""
        K = self.latent_dim
        if eps is None:
            return self.rng.standard_normal((self.n_samples, N, K), dtype=self.dtype)
        eps = np.asarray(eps)
        return check_input(self, "eps", eps[None] if eps.shape == (N, K) else eps, ("L", N, K),
                           also=f"({N}, {K}) for L = 1")

    def draw_eps(self, N):
        """The noise ``loss_and_grads`` draws when it is not given eps: (L, N, K) from ``self.rng``
        (gradcheck.py freezes it). IWAE's draws its k samples."""
        return self._check_eps(None, N)

    def _decoder_forward(self, z):
        """z (M, K) -> logits (M, D), or (mean, logvar_x) for the Gaussian decoder."""
        h = self.decoder.forward(z)
        outputs = [head.forward(h) for head in self.dec_heads]
        return outputs[0] if self.likelihood == "bernoulli" else tuple(outputs)

    def _decoder_backward(self, d_outputs):
        """d(loss)/d(decoder outputs) -> d(loss)/dz (M, K); fills the decoder's grads."""
        if self.likelihood == "bernoulli":
            d_outputs = (d_outputs,)
        dh = sum(head.backward(d) for head, d in zip(self.dec_heads, d_outputs))
        return self.decoder.backward(dh)

    def _log_likelihood(self, x, out):
        """log p(x|z) per sample and datapoint: x (N, D), out (L, N, D) -> (L, N)."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, out)
        mean, logvar_x = out
        return gaussian_log_density(x, mean, logvar_x)

    def _log_likelihood_grads(self, x, out):
        """d log p(x|z) / d(decoder outputs), each (L, N, D)."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood_grads(x, out)
        mean, logvar_x = out
        return gaussian_log_density_grads(x, mean, logvar_x)

    def _log_px_z(self, x, mu, logvar, eps):
        """z = mu + sigma * eps and log p(x|z) there: returns (log_px_z (L, N), z (L, N, K))."""
        L, N, K = eps.shape
        z = mu + np.exp(0.5 * logvar) * eps                      # (L, N, K)
        out = _reshape(self._decoder_forward(z.reshape(L * N, K)), (L, N, -1))
        self._forget_caches()
        return self._log_likelihood(x, out), z

    def _loss_from(self, log_px_z, mu, logvar):
        """``loss``'s (loss, parts) from log p(x|z) (L, N) and lambda = (mu, logvar), each (N, K)."""
        rec, kl = -np.mean(log_px_z, axis=0), kl_standard_normal(mu, logvar)
        rec_mean, kl_mean = float(np.mean(rec)), float(np.mean(kl))
        parts = {"rec": rec_mean, "kl": kl_mean, "nelbo": rec_mean + kl_mean, "elbo": -(rec_mean + kl_mean)}
        return float(np.mean(rec + self.beta * kl)), parts

    def _forget_caches(self):
        layers = [*self.encoder.layers, self.enc_mu, self.enc_logvar, *self.decoder.layers, *self.dec_heads]
        for layer in layers:
            layer._cache = None


def _is_count(value, at_least=1):
    """A positive integer (int or NumPy integer; True, 400.7 and "400" are not)."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and value >= at_least)


def _is_finite_number(value):
    """A real number (not a bool) that is finite as a float; Python ints of any size included."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:                                # an int beyond the float range
        return False


def _need_count(value, name, at_least=1, why=""):
    """Refuse a count (a size, a number of samples, images or steps) that is not an integer >= at_least."""
    if not _is_count(value, at_least):
        raise ValueError(f"{name} must be an integer >= {at_least}{why}, got {value!r:.60}")
    return int(value)


def _need_generator(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


FREE_SIZES = {"N": "datapoints", "M": "codes", "L": "samples"}      # the letters of check_input's shapes


def check_input(model, name, value, shape, data=False, also=None):
    """The one input check of every kind of model (VAE, IWAE, CVAE, the autoencoder): x, eps and z.

    ``shape``: the shape ``value`` must have, with a letter where any size >= 1 will do
    ("N" datapoints, "M" codes, "L" samples), e.g. ("N", 784) for x; ``also``: another shape
    the caller accepts, for the message. The values must be real numbers, finite in the
    model's dtype. ``data``: ``value`` is x, the data: then integer pixels above 1 are
    refused (divide by 255), and so are values outside [0, 1] under the Bernoulli likelihood.
    Returns ``value`` as an array of the model's dtype (float32 stays float32).
    """
    a = np.asarray(value)
    if a.ndim != len(shape) or any(n != s for n, s in zip(a.shape, shape) if not isinstance(s, str)):
        wanted = "(" + ", ".join(map(str, shape)) + ")" + (f" or {also}" if also else "")
        per_row = " (one flattened datapoint per row)" if data else ""
        raise ValueError(f"{name} must have shape {wanted}{per_row}, got shape {a.shape}")
    empty = [s for n, s in zip(a.shape, shape) if n == 0]
    if empty:
        raise ValueError(f"{name} holds no {FREE_SIZES[empty[0]]} (shape {a.shape}); it needs {empty[0]} >= 1")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if data and np.issubdtype(a.dtype, np.integer) and a.max() > 1:
        raise ValueError(f"{name} holds {a.dtype} values up to {a.max()}, like pixels 0..255: divide "
                         f"uint8 images by 255 (data.iterate_batches does) to get values in [0, 1]")
    with np.errstate(over="ignore"):                     # beyond the dtype's range: inf, refused below
        a = a.astype(model.dtype, copy=False)
    lowest, highest = a.min(), a.max()                   # nan or inf anywhere propagates to both
    if not (np.isfinite(lowest) and np.isfinite(highest)):
        bad = a.size - np.count_nonzero(np.isfinite(a))
        raise ValueError(f"{name} holds {bad:,} {'value that is' if bad == 1 else 'values that are'} "
                         f"nan or inf (as {model.dtype}); every value must be finite")
    if data and model.likelihood == "bernoulli" and (lowest < 0 or highest > 1):
        raise ValueError(f"{name} holds values in [{lowest:g}, {highest:g}], but the Bernoulli "
                         f"likelihood needs x in [0, 1] (grey levels or 0/1 pixels); rescale "
                         f"x, or use likelihood='gaussian' for real-valued data")
    return a


def _check_architecture(input_dim, hidden_dims, latent_dim, likelihood, n_samples, dtype, beta=1.0):
    """Validate the constructor's arguments; return (hidden_dims as a list of ints, dtype)."""
    if not isinstance(hidden_dims, (list, tuple)):
        raise ValueError(f"hidden_dims must be a list of layer sizes, e.g. [400] or [512, 256] "
                         f"([] for linear maps), got {hidden_dims!r}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
    for name, value in (("input_dim", input_dim), ("latent_dim", latent_dim),
                        ("n_samples", n_samples), *(("hidden size", h) for h in hidden_dims)):
        if not _is_count(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    hidden_dims = [int(h) for h in hidden_dims]
    if not _is_finite_number(beta) or beta < 0:
        raise ValueError(f"beta (the KL weight) must be a finite number >= 0, got {beta!r:.60}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return hidden_dims, dtype


def network_shapes(arch, encoder_heads, label_columns=0):
    """Parameter shapes of an encoder MLP with ``encoder_heads`` and its mirrored decoder.

    ``arch``: model.json's input_dim, hidden_dims, latent_dim and likelihood; ``label_columns``
    C extra inputs of both MLPs (the conditional VAE's one-hot label). Returns name -> shape.
    """
    D, K, H = arch["input_dim"], arch["latent_dim"], list(arch["hidden_dims"])
    shapes = {}

    def dense(name, d_in, d_out):
        shapes[f"{name}.W"], shapes[f"{name}.b"] = (d_in, d_out), (d_out,)
    sizes = [D + label_columns, *H]
    for i in range(len(H)):
        dense(f"enc.fc{i + 1}", sizes[i], sizes[i + 1])
    for head in encoder_heads:
        dense(f"enc.{head}", sizes[-1], K)
    sizes = [K + label_columns, *H[::-1]]
    for i in range(len(H)):
        dense(f"dec.fc{i + 1}", sizes[i], sizes[i + 1])
    for head in (["logits"] if arch.get("likelihood", "bernoulli") == "bernoulli" else ["mean", "logvar"]):
        dense(f"dec.{head}", sizes[-1], D)
    return shapes


def _reshape(out, shape):
    """Reshape the decoder output: an array, or a (mean, logvar) pair for the Gaussian decoder."""
    return out.reshape(shape) if isinstance(out, np.ndarray) else tuple(o.reshape(shape) for o in out)
