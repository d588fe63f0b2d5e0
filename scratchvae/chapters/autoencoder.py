"""The deterministic autoencoder the lecture starts from (slides 3-5), to set the VAE against.

    "attempt to learn identity function", "constrained in some way" (a small code z),
    "can generate new images by giving different latent vectors" -- and then
    "Variational: use probabilistic latent encoding" (slide 5).

The same encoder and decoder MLPs as vae.py, the same likelihoods of losses.py, but:

    z    = encoder(x)                      no sampling, no sigma, no eps
    loss = mean_i [ -log p(x_i | z_i) ]    no KL term

So nothing asks the codes z to look like draws from N(0, I), and nothing asks nearby codes
to decode to similar images. Its reconstructions are better than the VAE's (it spends
nothing on the KL), and its codes land wherever the optimiser puts them, which is why
decoding z ~ N(0, I) gives poor digits (figure "autoencoder vs VAE", pictures/figures.py).

Shapes: x (N, D), z (N, K), logits (N, D).
"""
import numpy as np

from ..layers import MLP, Dense, share_one_buffer, sigmoid
from ..losses import bernoulli_log_likelihood, gaussian_log_density, gaussian_log_density_grads
from ..vae import _check_architecture, _need_count, _need_generator, check_input, network_shapes


class Autoencoder:
    """Encoder MLP -> z -> decoder MLP -> p(x|z), trained on -log p(x|z) alone (slides 3-5).

    Parameters are those of ``VAE`` without n_samples and beta. Attributes: params, grads
    (keys "enc.fc1.W", ..., "enc.z.W", "dec.logits.W", ...), flat_params, flat_grads.
    """

    def __init__(self, input_dim, hidden_dims, latent_dim, activation="relu",
                 likelihood="bernoulli", dtype=np.float32, seed=0):
        hidden_dims, dtype = _check_architecture(input_dim, hidden_dims, latent_dim, likelihood, 1, dtype)
        self.input_dim, self.hidden_dims, self.latent_dim = int(input_dim), hidden_dims, int(latent_dim)
        self.activation, self.likelihood, self.dtype = activation, likelihood, dtype
        init_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])   # as VAE(seed=seed)
        D, K = self.input_dim, self.latent_dim
        self.encoder = MLP(D, hidden_dims, activation, init_rng, dtype, name="enc")
        self.enc_z = Dense(self.encoder.out_dim, K, init_rng, dtype, name="z")        # one head: z itself
        self.decoder = MLP(K, hidden_dims[::-1], activation, init_rng, dtype, name="dec")
        H = self.decoder.out_dim
        if likelihood == "bernoulli":
            self.dec_heads = [Dense(H, D, init_rng, dtype, name="logits")]
        else:
            self.dec_heads = [Dense(H, D, init_rng, dtype, name="mean"), Dense(H, D, init_rng, dtype, name="logvar")]
        layers = ([(f"enc.{d.name}", d) for d in self.encoder.dense_layers] + [("enc.z", self.enc_z)]
                  + [(f"dec.{d.name}", d) for d in self.decoder.dense_layers + self.dec_heads])
        named = {f"{p}.{k}": d.params[k] for p, d in layers for k in ("W", "b")}
        self.flat_params, self.params = share_one_buffer(named, dtype)
        self.flat_grads, self.grads = share_one_buffer({f"{p}.{k}": d.grads[k] for p, d in layers
                                                        for k in ("W", "b")}, dtype)
        for p, d in layers:
            for k in ("W", "b"):
                d.params[k], d.grads[k] = self.params[f"{p}.{k}"], self.grads[f"{p}.{k}"]

    def encode(self, x):
        """z = encoder(x): x (N, D) -> z (N, K). One point per image, not a distribution."""
        return self.enc_z.forward(self.encoder.forward(self._check_x(x)))

    def loss_and_grads(self, x):
        """Batch-mean reconstruction loss -log p(x|z), z = encoder(x), and all its parameter gradients.

        Implements:  loss = mean_i [ -log p(x_i | z_i) ],  z_i = encoder(x_i)        (slides 3-4, 9)
                     Bernoulli: -log p(x|z) = -sum_d [ x_d l_d - softplus(l_d) ],  l = logits(z)
        Gradients:   d loss / d logits = (sigmoid(l) - x) / N, then the decoder's backward, which
                     gives dz; z is the encoder's output, so dz goes straight into its backward
                     (the VAE's dmu = dz + dKL/dmu without the KL, and no logvar at all).
        Returns:     loss (float), parts {"rec": loss}
        """
        x = self._check_x(x)
        N = x.shape[0]
        # ---- forward --------------------------------------------------------------------
        h = self.encoder.forward(x)                              # (N, H)
        z = self.enc_z.forward(h)                                # (N, K)   the code
        h_dec = self.decoder.forward(z)                          # (N, H')
        out = [head.forward(h_dec) for head in self.dec_heads]   # logits, or (mean, logvar_x)
        if self.likelihood == "bernoulli":
            log_px_z = bernoulli_log_likelihood(x, out[0])       # (N,)  log p(x|z)
        else:
            log_px_z = gaussian_log_density(x, out[0], out[1])
        loss = -np.mean(log_px_z)                                # scalar
        # ---- backward: the same lines in reverse ------------------------------------------
        if self.likelihood == "bernoulli":
            d_out = [(sigmoid(out[0]) - x) / N]                  # -(x - sigmoid(l)) / N
        else:
            d_out = [d / -N for d in gaussian_log_density_grads(x, out[0], out[1])]
        dh_dec = sum(head.backward(d) for head, d in zip(self.dec_heads, d_out))
        dz = self.decoder.backward(dh_dec)                       # (N, K)
        dh = self.enc_z.backward(dz)                             # (N, H)
        self.encoder.backward(dh, need_dx=False)
        return float(loss), {"rec": float(loss)}

    def reconstruction_error(self, x):
        """-log p(x|z) at z = encoder(x), per datapoint: (N,). The loss without its mean."""
        x = self._check_x(x)
        out = self._decoder_forward(self.encode(x))             # a diverged code's inf: reported, not refused
        return -(bernoulli_log_likelihood(x, out) if self.likelihood == "bernoulli"
                 else gaussian_log_density(x, *out))

    def decode(self, z):
        """z (M, K) -> logits (M, D), or (mean, logvar) for the Gaussian decoder."""
        return self._decoder_forward(self._check_z(z))

    def decode_mean(self, z):
        """The decoder's mean image: sigmoid(logits), or the Gaussian mean. (M, D)."""
        out = self.decode(z)
        return sigmoid(out) if self.likelihood == "bernoulli" else out[0]

    def reconstruct(self, x):
        """Encode, decode: the mean image (N, D)."""
        return self.decode_mean(self.encode(x))

    def sample(self, n, rng):
        """Decode z ~ N(0, I) as the VAE does -- although nothing made the codes look like N(0, I)."""
        _need_count(n, "n, the number of images to generate,")
        return self.decode_mean(_need_generator(rng).standard_normal((n, self.latent_dim)).astype(self.dtype))

    def config(self):
        """The constructor arguments (without seed), enough to rebuild the architecture (machinery/checkpoint.py)."""
        return dict(input_dim=self.input_dim, hidden_dims=list(self.hidden_dims),
                    latent_dim=self.latent_dim, activation=self.activation,
                    likelihood=self.likelihood, dtype=self.dtype.name)

    # ---- what the machinery asks of a kind of model (vae.py has the list)
    kind = "autoencoder"
    title, article = "autoencoder", "an autoencoder"
    summary = "z = encoder(x), loss -log p(x|z), no KL (chapters/autoencoder.py, slides 3-5)"
    objective = "elbo"                    # TrainConfig.objective's default: it has one loss of its own
    loss_name = "-log p(x|z), no KL"
    variational = False                   # no q(z|x), no KL, no prior it was trained with
    conditional = False
    random_streams = ()                   # it draws no eps
    fixed_fields = {"beta": (1.0, "it has no KL term to weight; leave --beta out"),
                    "warmup_epochs": (0.0, "it has no KL term to warm up; leave --warmup-epochs out"),
                    "n_samples": (1, "its z = encoder(x) is not sampled; leave --samples out")}
    # the trainer's record of each epoch: no KL, no ELBO, no beta -- its loss -log p(x|z) is "rec"
    history_fields = ("epoch", "step", "train_loss", "train_rec", "train_eval_rec", "train_eval_n",
                      "test_rec", "img_per_s", "seconds")
    history_newer = ()

    @classmethod
    def from_config(cls, config, input_dim):
        """The untrained autoencoder a TrainConfig describes; weights from child 0 of its seed, as the VAE's."""
        return cls(input_dim, config.hidden, config.latent, activation=config.activation,
                   likelihood=config.likelihood, seed=config.seed)

    @classmethod
    def parameter_shapes(cls, arch):
        """The VAE's layers with one encoder head, "enc.z"."""
        return network_shapes(arch, encoder_heads=("z",))

    def _check_x(self, x):                                  # the VAE's checks (vae.py: check_input)
        return check_input(self, "x", x, ("N", self.input_dim), data=True)

    def _check_z(self, z):
        return check_input(self, "z", z, ("M", self.latent_dim))

    def _decoder_forward(self, z):
        h = self.decoder.forward(z)
        out = [head.forward(h) for head in self.dec_heads]
        return out[0] if self.likelihood == "bernoulli" else tuple(out)


def vae_reconstruction_error(vae, x):
    """The VAE's -log p(x|z) at z = mu, its most likely code, per datapoint (N,): the fairest
    comparison with the autoencoder's deterministic z (no sampling noise added)."""
    x = vae._check_x(x)
    mu, _ = vae.encode(x)
    return -vae._log_likelihood(x, vae.decode(mu)[None] if vae.likelihood == "bernoulli"
                                else tuple(o[None] for o in vae.decode(mu)))[0]


def empty_prior_fraction(codes, z_prior, quantile=0.99):
    """The fraction of prior samples that land where no code is.

    Implements:  r = the ``quantile`` of the codes' nearest-neighbour distances
                     (for each code z_i, min_{j != i} |z_i - z_j|): how far apart codes are
                     where the data put them;
                 a prior sample z ~ N(0, I) lands where no code is if its nearest code is
                 farther than r;  returns #{such z} / #{z}.
    The same r rule for any model, so the number does not depend on the codes' scale.
    Shapes:      codes (N, K), z_prior (M, K) -> float
    """
    codes, z_prior = np.asarray(codes, np.float64), np.asarray(z_prior, np.float64)

    def nearest(a, b, exclude_self):
        sq = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]
        if exclude_self:
            np.fill_diagonal(sq, np.inf)
        return np.sqrt(np.maximum(sq.min(axis=1), 0))

    r = np.quantile(nearest(codes, codes, True), quantile)
    return float(np.mean(nearest(z_prior, codes, False) > r))


def compare_with_vae(ae, vae, images, labels, rng, n_samples=100):
    """What figure 10 shows, as arrays and numbers: codes, prior decodes, and their statistics.

    Returns (codes, samples, numbers): codes {"autoencoder": z (N, 2), "VAE": mu (N, 2)},
    samples {name: decoder means of the same z ~ N(0, I) (n_samples, D)}, numbers {name:
    dict(rec = mean test -log p(x|z) at the code, code_mean (K,), code_std (K,),
    empty = empty_prior_fraction of 10,000 prior samples, inside = the fraction of codes
    within the circle that holds 95 % of N(0, I) (K = 2))}.
    """
    _need_count(n_samples, "n_samples")
    codes = {"autoencoder": ae.encode(images), "VAE": vae.encode(images)[0]}
    z = rng.standard_normal((n_samples, ae.latent_dim)).astype(ae.dtype)
    samples = {"autoencoder": ae.decode_mean(z), "VAE": vae.decode_mean(z)}
    prior = rng.standard_normal((10_000, ae.latent_dim))
    rec = {"autoencoder": ae.reconstruction_error(images), "VAE": vae_reconstruction_error(vae, images)}
    radius = np.sqrt(-2 * np.log(0.05))                  # the circle holding 95 % of N(0, I) in 2-D
    numbers = {name: dict(rec=float(rec[name].mean()), code_mean=c.mean(axis=0), code_std=c.std(axis=0),
                          empty=empty_prior_fraction(c, prior),
                          inside=float(np.mean(np.linalg.norm(c, axis=1) < radius)))
               for name, c in codes.items()}
    return codes, samples, numbers


def comparison_text(numbers):
    """Figure 10's caption lines for each model, from ``compare_with_vae``'s numbers: {name: text}."""
    return {name: (f"test -log p(x|z) {n['rec']:.2f};  codes' mean ({n['code_mean'][0]:.2f}, "
                   f"{n['code_mean'][1]:.2f}), s.d. ({n['code_std'][0]:.2f}, {n['code_std'][1]:.2f});\n"
                   f"codes inside N(0, I)'s 95 % circle: {100 * n['inside']:.1f} %;\n"
                   f"prior samples where no code is: {100 * n['empty']:.1f} %")
            for name, n in numbers.items()}
