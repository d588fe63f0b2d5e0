"""Variational inference for one datapoint, before any encoder: choose lambda to maximise the ELBO.

Read with the lecture's slides 19-24. For one x, with the decoder p_phi(x|z) fixed,

    choose lambda = (mu, log sigma^2) to minimise KL( q_lambda(z|x) || p(z|x) )        (slides 19-20)
    <=> maximise  ELBO(lambda) = E_{z ~ q_lambda}[ log p(x|z) ] - KL( q_lambda(z|x) || p(z) )   (slides 21-23)

since log p(x) = ELBO(lambda) + KL(q_lambda || p(z|x)) and log p(x) does not depend on lambda.
Slide 24 then lets a network output lambda = encoder_theta(x), one network for every x
("amortised"). This module does the step before: it optimises lambda itself, for each x
separately, by stochastic gradient ascent (Adam) on the reparameterised ELBO. The
gradient is the VAE's backward pass (vae.py, ``loss_and_grads``) stopped at mu and
logvar instead of going on into the encoder's weights:

    z = mu + sigma * eps                       dz/dmu = 1,  dz/dlogvar = eps * sigma / 2
    dELBO/dmu     = 1/L sum_l dlog p(x|z_l)/dz_l               - mu
    dELBO/dlogvar = 1/L sum_l dlog p(x|z_l)/dz_l * eps_l sigma/2 - (sigma^2 - 1) / 2

The best diagonal Gaussian q*(z|x) found this way splits the VAE's gap in two
(Cremer, Li & Duvenaud, "Inference Suboptimality in Variational Autoencoders", ICML 2018):

    log p(x) - ELBO(q_encoder) =  [ log p(x) - ELBO(q*) ]        approximation gap: the price of
                                                                 a diagonal Gaussian family
                                + [ ELBO(q*) - ELBO(q_encoder) ] amortisation gap: the price of
                                                                 one network for all x

``gaps_on_grid`` measures both for a model with a 2-D latent, every ELBO and log p(x) by the
midpoint rule on the grids of posterior.py (no Monte Carlo). What the grid cannot certify is
that the ascent found the best Gaussian: ELBO(lambda) has a local optimum in each mode of
p(z|x), and an ascent started in the wrong one stays there. So q* is fitted from several
starts (the encoder's lambda, the prior, the highest modes of p(z|x) on the grid) and the
best ELBO kept; still, the q* found is only as good as the best start, ELBO(q*_found) <=
ELBO(q*), so

    measured approximation gap  log p(x) - ELBO(q*_found)  >=  the true approximation gap   (an upper bound)
    measured amortisation gap   ELBO(q*_found) - ELBO(q_encoder)  <=  the true one          (a lower bound)

(up to the grid's quadrature error, about 1e-4 nats at 201 points a side: posterior.py).
``summary`` reduces a Gaps to the numbers ``python -m scratchvae.chapters.inference`` prints
(means, standard errors and medians over the images; docs/results.md).

Shapes: x (N, D), mu/logvar (N, K), eps (L, N, K). N datapoints are optimised at once, but
each lambda_i only ever sees its own x_i: the objective is a sum of independent ELBOs.
"""
from dataclasses import dataclass

import numpy as np

from ..losses import gaussian_log_density, kl_standard_normal, kl_standard_normal_grads
from ..layers import exp_no_subnormal
from ..optim import Adam
from ..vae import _need_count
from .posterior import Q_SIGMAS, exact_gap, posterior_window, square_grid, variational_gap


def elbo_and_grads(model, x, mu, logvar, eps):
    """The reparameterised ELBO of each datapoint and its gradient w.r.t. lambda = (mu, logvar).

    Implements:  ELBO_i = 1/L sum_l log p(x_i | z_il) - KL( N(mu_i, diag sigma_i^2) || N(0, I) ),
                 z_il = mu_i + sigma_i * eps_il,  sigma = exp(logvar / 2)      (slides 14, 21-23)
    Gradients:   dELBO_i/dmu_i     = 1/L sum_l g_il - mu_i
                 dELBO_i/dlogvar_i = 1/L sum_l g_il * eps_il * sigma_i / 2 - (sigma_i^2 - 1) / 2
                 with g_il = d log p(x_i|z)/dz at z_il, the decoder's backward pass.
    The decoder is the model's (its weights phi are not changed; the model's gradients are
    left as they were). beta is 1 here: this is the ELBO itself, whatever the model trained with.
    Shapes:      x (N, D), mu, logvar (N, K), eps (L, N, K) -> elbo (N,), dmu (N, K), dlogvar (N, K)
    """
    x = model._check_x(x)
    mu, logvar = np.asarray(mu, model.dtype), np.asarray(logvar, model.dtype)
    eps = model._check_eps(eps, x.shape[0])
    L, N, K = eps.shape
    saved_grads = model.flat_grads.copy()                    # the decoder's backward writes into them

    sigma = np.exp(0.5 * logvar)                             # (N, K)
    z = mu + sigma * eps                                     # (L, N, K)  slide 14
    out = model._decoder_forward(z.reshape(L * N, K))        # logits (L*N, D), or (mean, logvar_x)
    out = out.reshape(L, N, -1) if isinstance(out, np.ndarray) else tuple(o.reshape(L, N, -1) for o in out)
    log_px_z = model._log_likelihood(x, out)                 # (L, N)  log p(x|z_l)
    kl = kl_standard_normal(mu, logvar)                      # (N,)    KL(q || N(0, I)), slide 12
    elbo = log_px_z.mean(axis=0) - kl                        # (N,)    slide 23

    d_out = model._log_likelihood_grads(x, out)              # d log p(x|z_l) / d(decoder outputs)
    if isinstance(d_out, np.ndarray):
        d_out = d_out.reshape(L * N, -1) / L
    else:
        d_out = tuple(d.reshape(L * N, -1) / L for d in d_out)
    dz = model._decoder_backward(d_out).reshape(L, N, K)     # 1/L d log p(x|z_l)/dz_l
    dkl_dmu, dkl_dlogvar = kl_standard_normal_grads(mu, logvar)
    dmu = dz.sum(axis=0) - dkl_dmu                           # dz/dmu = 1
    dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma - dkl_dlogvar     # dz/dlogvar = eps sigma / 2

    model.flat_grads[...] = saved_grads
    return elbo, dmu, dlogvar


@dataclass
class FittedQ:
    """q*(z|x) = N(mu, diag exp(logvar)) for each datapoint, and how the ascent went.

    mu, logvar (N, K); elbo_trace (steps, N) the stochastic ELBO estimate at each step.
    """
    mu: np.ndarray
    logvar: np.ndarray
    elbo_trace: np.ndarray


def fit_q(model, x, rng, steps=500, n_samples=16, lr=0.05, final_lr=0.002, init="encoder",
          progress=None):
    """Stochastic gradient ascent on ELBO(lambda) for each x separately: q*(z|x) (slides 19-23).

    Implements:  lambda_{t+1} = Adam step uphill on  1/L sum_l [ log p(x|z_l) ] - KL(q_lambda || p(z)),
                 z_l = mu + sigma * eps_l, eps_l ~ N(0, I) fresh each step (L = ``n_samples``);
                 the learning rate falls geometrically from ``lr`` to ``final_lr`` so that the
                 last steps average out the Monte Carlo noise.
    init:        "encoder" starts from the encoder's lambda (the search begins where
                 amortised inference ends); "prior" from mu = 0, logvar = 0, i.e. q = p(z),
                 with no encoder at all; or a pair (mu0, logvar0) of (N, K) arrays. Each is
                 one start: the ascent finds the optimum of the mode it starts in
                 (``gaps_on_grid`` tries several).
    progress:    called as progress(t, steps) after every 50th step and the last, if given.
    Shapes:      x (N, D) -> FittedQ with mu, logvar (N, K)
    """
    x = model._check_x(x)
    _need_count(steps, "steps"), _need_count(n_samples, "n_samples")
    N, K = x.shape[0], model.latent_dim
    lam = np.zeros(2 * N * K, dtype=model.dtype)             # lambda = (mu, logvar), one flat vector
    dlam = np.zeros_like(lam)
    mu, logvar = lam[:N * K].reshape(N, K), lam[N * K:].reshape(N, K)
    dmu, dlogvar = dlam[:N * K].reshape(N, K), dlam[N * K:].reshape(N, K)
    if isinstance(init, str) and init == "encoder":
        mu[...], logvar[...] = model.encode(x)
    elif isinstance(init, tuple) and len(init) == 2 and all(np.shape(a) == (N, K) for a in init):
        mu[...], logvar[...] = init
    elif not (isinstance(init, str) and init == "prior"):
        raise ValueError(f"init must be 'encoder', 'prior' or a pair (mu0, logvar0) of ({N}, {K}) arrays, "
                         f"got {init!r}")
    adam = Adam(lam, dlam, lr=lr)
    decay = (final_lr / lr) ** (1.0 / max(1, steps - 1))
    trace = np.empty((steps, N))
    for t in range(steps):
        eps = rng.standard_normal((n_samples, N, K)).astype(model.dtype)
        elbo, g_mu, g_logvar = elbo_and_grads(model, x, mu, logvar, eps)
        dmu[...], dlogvar[...] = -g_mu, -g_logvar            # Adam descends: minimise -ELBO
        adam.step()
        adam.lr *= decay
        trace[t] = elbo
        if progress is not None and ((t + 1) % 50 == 0 or t + 1 == steps):
            progress(t + 1, steps)
    return FittedQ(mu=mu.copy(), logvar=logvar.copy(), elbo_trace=trace)


def elbo_on_grid(gap, mu, logvar):
    """ELBO of q = N(mu, diag exp(logvar)) by the midpoint rule on the grid of a GapOnGrid.

    Implements:  ELBO = A sum_g q(z_g) [ log p(x, z_g) - log q(z_g) ]   (slide 21; posterior.py)
    Returns (elbo (N,), q_mass (N,)): q_mass = A sum_g q(z_g) is 1 when the grid holds q.
    Shapes:      gap with N datapoints, mu, logvar (N, 2)
    """
    z = gap.grid.points                                                  # (G, 2)
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    log_q = gaussian_log_density(z[None], mu[:, None], logvar[:, None])  # (N, G)
    q = exp_no_subnormal(log_q)
    area = gap.grid.cell_area
    return area * np.sum(q * (gap.log_joint - log_q), axis=1), area * q.sum(axis=1)


MODE_STARTS = 3           # q* is also fitted from this many of the highest modes of p(z|x) on the grid


@dataclass
class Gaps:
    """Cremer, Li & Duvenaud's decomposition for N datapoints, every number exact on a grid.

    log_px, elbo_star, elbo_encoder, q_star_mass (N,); fitted: the FittedQ of q*, the best
    start's fit for each datapoint; grids: the per-datapoint GapOnGrid holding p(z|x), the
    encoder's q and q* (the encoder's q in it); starts: for each datapoint the list of
    (start, ELBO on the grid of the q fitted from it), e.g. ("encoder", -151.3), ("mode 1", -150.9);
    best_start (N,): the start q* came from.
    """
    log_px: np.ndarray
    elbo_star: np.ndarray
    elbo_encoder: np.ndarray
    q_star_mass: np.ndarray
    fitted: FittedQ
    grids: list
    starts: list
    best_start: np.ndarray

    @property
    def approximation_gap(self):
        """log p(x) - ELBO(q*): what no diagonal Gaussian can close (measured: an upper bound)."""
        return self.log_px - self.elbo_star

    @property
    def amortisation_gap(self):
        """ELBO(q*) - ELBO(q_encoder): what one network for all x costs (measured: a lower bound)."""
        return self.elbo_star - self.elbo_encoder


def grid_modes(gap, n=MODE_STARTS, radius=None):
    """The n highest local maxima of log p(x, z) on the grid of a one-datapoint GapOnGrid.

    A grid point is a local maximum when no point within ``radius`` cells of it along either
    axis (default: a fortieth of the grid's side, at least 1) is higher: the modes of p(z|x),
    where an ascent on the ELBO can get stuck.
    Shapes:  gap with one datapoint -> (m, 2) points z, m <= n, highest first (ties in grid order)
    """
    values = gap.log_joint[0].reshape(gap.grid.shape)                 # (n2, n1)
    r = int(radius or max(1, len(gap.grid.z1) // 40))
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(values, r, constant_values=-np.inf),
                                                       (2 * r + 1, 2 * r + 1))
    peaks = np.flatnonzero(values.ravel() >= windows.max(axis=(2, 3)).ravel())
    best = peaks[np.argsort(-values.ravel()[peaks], kind="stable")[:n]]
    return gap.grid.points[best]


def gaps_on_grid(model, x, rng, points=201, modes=MODE_STARTS, log=None, **fit_kwargs):
    """log p(x), ELBO(q*), ELBO(q_encoder) for each x, on its own grid (a model with a 2-D latent).

    1. One grid per datapoint that holds p(z|x) and the encoder's q (``posterior.exact_gap``).
    2. Starts for each x: the encoder's lambda, the prior (mu = 0, logvar = 0), and the
       ``modes`` highest modes of p(z|x) on that grid (``grid_modes``; logvar the encoder's).
    3. ``fit_q`` from every start at once (each (x, start) pair is a row of its own), then per
       x the fitted q with the highest ELBO by the midpoint rule is q*. A fitted q that the
       grid does not hold (q_mass < 1 - 1e-6) is scored on a grid of its own
       (``grids_holding``), which becomes that x's grid if it wins.
    The gaps then carry no Monte Carlo error; what remains is that the best start may still
    miss the best Gaussian: the approximation gap is an upper bound, the amortisation gap a
    lower bound (module docstring). ``log``: called with a line of progress text, if given.
    Cost: 101^2 + N points^2 decoder evaluations for the grids, and, for the ascent, 2 + modes
    times one start's: steps x n_samples decoder passes forward and back per row.
    Shapes:  x (N, D) -> Gaps with (N,) arrays
    """
    say = log or (lambda text: None)
    x = model._check_x(x)
    N, K = x.shape[0], model.latent_dim
    grids = exact_gap(model, x, points)
    mu_enc, logvar_enc = model.encode(x)
    rows, names, mu0, logvar0 = [], [], [], []                        # one row per (x, start)
    for i, g in enumerate(grids):
        found = [(f"mode {j + 1}", z, logvar_enc[i]) for j, z in enumerate(grid_modes(g, modes))]
        for name, m, lv in [("encoder", mu_enc[i], logvar_enc[i]), ("prior", np.zeros(K), np.zeros(K)), *found]:
            rows.append(i), names.append(name), mu0.append(m), logvar0.append(lv)
    rows = np.array(rows)
    say(f"grids for p(z|x) done; fitting q* from {len(rows)} starts ({len(rows) / N:.1f} per image)")
    fitted = fit_q(model, x[rows], rng, init=(np.array(mu0), np.array(logvar0)),
                   progress=lambda t, steps: say(f"  Adam step {t}/{steps} on lambda"), **fit_kwargs)
    elbo, mass, own = np.empty(len(rows)), np.empty(len(rows)), [None] * len(rows)
    for r, i in enumerate(rows):
        lam = fitted.mu[r:r + 1], fitted.logvar[r:r + 1]
        (elbo[r],), (mass[r],) = elbo_on_grid(grids[i], *lam)
        if mass[r] < 1 - 1e-6:                                        # not held: a grid of its own
            own[r] = grids_holding(model, x[i:i + 1], *lam, points)[0]
            (elbo[r],), (mass[r],) = elbo_on_grid(own[r], *lam)
    say(f"scored the {len(rows)} fitted q on the grids ({sum(o is not None for o in own)} on grids of their own)")
    best = np.array([np.flatnonzero(rows == i)[np.argmax(elbo[rows == i])] for i in range(N)])
    grids = [own[r] if own[r] is not None else grids[i] for i, r in enumerate(best)]
    return Gaps(log_px=np.array([g.log_px[0] for g in grids]), elbo_star=elbo[best],
                elbo_encoder=np.array([g.elbo[0] for g in grids]), q_star_mass=mass[best],
                fitted=FittedQ(mu=fitted.mu[best], logvar=fitted.logvar[best],
                               elbo_trace=fitted.elbo_trace[:, best]),
                grids=grids, starts=[[(names[r], elbo[r]) for r in np.flatnonzero(rows == i)] for i in range(N)],
                best_start=np.array([names[r] for r in best]))


def grids_holding(model, x, mu, logvar, points=201):
    """posterior.variational_gap for each x on a square that holds p(z|x), the encoder's q and N(mu, logvar).

    Shapes:  x (N, D), mu, logvar (N, 2) -> list of N GapOnGrid (the encoder's q in each)
    """
    centers, half_widths = posterior_window(model, x)
    mu, sigma = np.asarray(mu, np.float64), np.exp(0.5 * np.asarray(logvar, np.float64))
    lo = np.minimum(centers - half_widths[:, None], mu - Q_SIGMAS * sigma)
    hi = np.maximum(centers + half_widths[:, None], mu + Q_SIGMAS * sigma)
    return [variational_gap(model, x[i:i + 1], square_grid((lo[i] + hi[i]) / 2, np.max(hi[i] - lo[i]) / 2, points))
            for i in range(len(x))]


APPROXIMATION = "approximation gap log p(x) - ELBO(q*)"
AMORTISATION = "amortisation gap ELBO(q*) - ELBO(q_encoder)"
SHORT_BY = 0.1            # nats: how far below ELBO(q*) the encoder's start alone must stop to count


@dataclass
class GapsSummary:
    """The numbers ``python -m scratchvae.chapters.inference`` prints (docs/results.md's tables).

    n: images; starts: (image, start) pairs fitted.
    table: {quantity: (mean, standard error, median)} over the n images, for log p(x),
        ELBO(q*), ELBO(q_encoder), APPROXIMATION and AMORTISATION; the standard error of
        the mean is std(ddof=1) / sqrt(n).
    negative: images whose amortisation gap is < 0 (q* worse than the encoder's q);
        smallest: the smallest amortisation gap.
    won: {start: images whose q* came from it}, every start in the order tried (0s too).
    short (n,): ELBO(q*) - ELBO(q fitted from the encoder's lambda), >= 0 since q* is the best
        start's: how much lower ELBO(q*) would be from the encoder's start alone.
    short_images: images with short > SHORT_BY nats; worst: the image with the largest short.
    approximation_gap_from_encoder: the mean approximation gap had q* come from the encoder's
        start alone, mean(log p(x) - ELBO(q*) + short).
    """
    n: int
    starts: int
    table: dict
    negative: int
    smallest: float
    won: dict
    short: np.ndarray
    short_images: int
    worst: int
    approximation_gap_from_encoder: float


def summary(gaps):
    """Means, standard errors, medians and counts of a Gaps over its n >= 2 images: a GapsSummary."""
    n = len(gaps.log_px)
    if n < 2:
        raise ValueError(f"the standard errors need at least 2 images, got {n}")
    table = {name: (a.mean(), a.std(ddof=1) / np.sqrt(n), np.median(a))
             for name, a in (("log p(x)", gaps.log_px), ("ELBO(q*)", gaps.elbo_star),
                             ("ELBO(q_encoder)", gaps.elbo_encoder), (APPROXIMATION, gaps.approximation_gap),
                             (AMORTISATION, gaps.amortisation_gap))}
    names = dict.fromkeys(name for starts in gaps.starts for name, _ in starts)     # in the order tried
    short = gaps.elbo_star - np.array([dict(starts)["encoder"] for starts in gaps.starts])
    return GapsSummary(n=n, starts=sum(map(len, gaps.starts)), table=table,
                       negative=int(np.sum(gaps.amortisation_gap < 0)), smallest=gaps.amortisation_gap.min(),
                       won={name: int(np.sum(gaps.best_start == name)) for name in names},
                       short=short, short_images=int(np.sum(short > SHORT_BY)), worst=int(np.argmax(short)),
                       approximation_gap_from_encoder=(gaps.approximation_gap + short).mean())


def build_parser():
    from ..machinery.arguments import Parser, nonnegative_int, path_arg, positive_int
    from ..machinery.data import DATASETS, _split_arg

    parser = Parser(prog="python -m scratchvae.chapters.inference",
                    description="approximation and amortisation gaps of a 2-D-latent VAE",
                    memory_advice="use fewer images (--n)")
    parser.add_argument("checkpoint", type=path_arg)
    parser.add_argument("--dataset", default="mnist", choices=list(DATASETS))
    parser.add_argument("--data-dir", type=path_arg, default=None)
    parser.add_argument("--split", type=_split_arg, default="test[9000:]")
    parser.add_argument("--n", type=positive_int, default=100, help="images (default 100, at least 2)")
    parser.add_argument("--steps", type=positive_int, default=500, help="Adam steps on lambda (default 500)")
    parser.add_argument("--modes", type=nonnegative_int, default=MODE_STARTS,
                        help=f"modes of p(z|x) on the grid to start q* from, besides the encoder's lambda "
                             f"and the prior (default {MODE_STARTS})")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    return parser


def main(argv=None):
    """python -m scratchvae.chapters.inference CHECKPOINT --data-dir DIR --split 'test[9000:]' --n 100

    Prints log p(x), ELBO(q*), ELBO(q_encoder) and the two gaps averaged over the first n
    images of the split (grey levels / 255, as the demo trains), for a 2-D-latent checkpoint;
    then which start q* came from, and on how many images the ascent from the encoder's
    lambda alone would have stopped short of it. Progress goes to stderr.
    Every way it ends is an exit code and one line (machinery/entry.py).
    """
    from ..machinery import entry
    return entry.run(build_parser(), argv, _gaps_command)


def _gaps_command(args):
    import sys
    import time

    from ..machinery.checkpoint import CheckpointError, load_model
    from ..machinery.config import ConfigError
    from ..machinery.data import DataError, load

    if args.n < 2:                                           # the standard errors divide by n - 1
        raise ConfigError(f"--n: the standard errors need at least 2 images, got {args.n}")
    model = load_model(args.checkpoint)
    if not model.variational or model.conditional:           # (an IWAE is saved as a VAE)
        raise CheckpointError(f"{args.checkpoint} holds {model.article}; this needs an unconditional VAE checkpoint")
    if model.latent_dim != 2:
        raise CheckpointError(f"{args.checkpoint}: needs a model with latent_dim 2, this one has {model.latent_dim}")
    split = load(args.dataset, args.split, args.data_dir, download=False)
    pixels = int(np.prod(split.images.shape[1:]))
    if model.input_dim != pixels:
        raise DataError(f"the model has {model.input_dim} pixels, the images of {args.split} have {pixels}")
    if len(split) < 2:
        raise DataError(f"--split {args.split} holds only {len(split)} image; "
                        f"the standard errors need at least 2")
    x = split.images[:args.n].reshape(min(args.n, len(split.images)), -1).astype(model.dtype) / 255
    start = time.perf_counter()

    def progress(text):
        print(f"[{time.perf_counter() - start:5.0f} s] {text}", file=sys.stderr, flush=True)

    progress(f"grids for p(z|x) of {len(x)} images ({model.input_dim} pixels)")
    g = gaps_on_grid(model, x, np.random.default_rng(args.seed), steps=args.steps, modes=args.modes,
                     log=progress)
    s = summary(g)
    print(f"{s.n} images of {args.dataset} {args.split}, {args.steps} Adam steps on lambda from "
          f"{s.starts} starts, {time.perf_counter() - start:.0f} s")
    for name, (mean, sem, median) in s.table.items():
        print(f"  {name:45s} mean {mean:9.3f} +/- {sem:.3f}   median {median:9.3f}")
    print(f"  amortisation gap < 0 (q* worse than the encoder) on {s.negative} images, "
          f"smallest {s.smallest:.3f}")
    print("  q* came from the start " + ", ".join(f"{name!r} on {k}" for name, k in s.won.items() if k))
    print(f"  from the encoder's lambda alone, ELBO(q*) would be more than {SHORT_BY} nats lower on "
          f"{s.short_images} images (by {s.short[s.worst]:.2f} nats at most, image {s.worst}); "
          f"its mean approximation gap {s.approximation_gap_from_encoder:.3f} instead of "
          f"{s.table[APPROXIMATION][0]:.3f}")
    print("  (the measured approximation gap is an upper bound of the true one, the amortisation gap a lower "
          "bound: a better q* may exist that no start reached)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
