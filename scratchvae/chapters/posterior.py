"""The variational gap made visible: exact log p(x) and the true posterior for a 2-D latent.

Read with the lecture's probabilistic half (slides 17-21). The model is

    p(x, z) = p(x|z) p(z),   p(z) = N(0, I)                          (slide 17)
    p(z|x)  = p(x|z) p(z) / p(x),   p(x) = integral p(x|z) p(z) dz   (slide 18, "intractable")
    KL(q(z|x) || p(z|x)) = -ELBO + log p(x)                          (slides 20-21)

In high dimension the integral p(x) is out of reach, which is why the VAE maximises the
ELBO instead. With a 2-D latent it is not: cover the plane with a fine grid and add up.
Then every quantity of slides 17-21 becomes a number, and the gap log p(x) - ELBO
can be checked to be exactly KL(q || p(z|x)).

The quadrature rule (midpoint rule on a uniform grid). Cut a square window into n x n
cells of width h1 x h2 and evaluate at the cell centres z_g:

    integral f(z) dz  ~  h1 h2 sum_g f(z_g)

How fast the error falls depends on the decoder. For a smooth integrand (a tanh decoder,
the linear-Gaussian model of the tests) it vanishes faster than any power of h once h is
below the width of the bump (for a Gaussian of standard deviation s it is
~ exp(-2 pi^2 s^2 / h^2)). A ReLU decoder's logits are piecewise linear in z, so p(x, z)
has kinks along lines in the plane, and the error then falls only like a power of h,
about h^2 and unevenly (kinks cut cells at varying offsets). Measured on a toy 5-pixel
model, 5-8-2 with weights x3, against a 1601-point grid: ReLU 1.1e-4, 5.2e-5, 9.7e-6 nats
at 101, 201, 401 points a side; the same model with tanh 4.1e-6, 5e-11, 1e-13
(tests/chapters/test_posterior.py, test_log_px_converges_only_polynomially_for_a_relu_decoder).
The demo's 201 points are therefore accurate to about 1e-4 nats, far below the gaps it
shows. Add whatever mass lies outside the window. Both limits are reported: ``q_mass``
(should be 1) and ``edge_mass`` (posterior mass in the outermost ring of cells, should be ~0).

Every quantity below is computed with this one rule from the same grid values
log p(x, z_g), so the identity  log p(x) - ELBO = KL(q || p(z|x))  holds on the grid up to
log p(x) * (1 - q_mass) and rounding:

    log p(x) = logsumexp_g log p(x, z_g) + log(h1 h2)
    log p(z_g|x) = log p(x, z_g) - log p(x)
    ELBO     = h1 h2 sum_g q(z_g|x) [ log p(x, z_g) - log q(z_g|x) ]
    KL       = h1 h2 sum_g q(z_g|x) [ log q(z_g|x) - log p(z_g|x) ]

With grey-level targets (the demo's default, as in the PyTorch example) "p(x|z)" is the
Bernoulli formula applied to grey values, not a normalised density over grey images: every
identity here still holds (it holds for any positive p(x|z)), but log p(x) is then not the
number papers report for binarised MNIST.

Choosing the window (``exact_gap``): a coarse grid over [-R, R]^2, R = max(5, |mu| + 8 sigma)
(5 prior standard deviations: p(z) there is e^-12.5 of its peak; 8 sigma of q), doubled
until the posterior has no mass on its edge, finds where p(z|x) lives; the fine grid is
then the smallest square that holds that region (plus two coarse cells) and q's +-8 sigma box.

Shapes: x (N, D) with D the data size; a grid of G = n1 * n2 points z (G, 2), its values
reshaped to (n2, n1) for plotting (row = z_2, column = z_1, as matplotlib's contour expects).
"""
from dataclasses import dataclass

import numpy as np

from ..layers import exp_no_subnormal, softplus
from ..losses import gaussian_log_density
from ..vae import _need_count

PRIOR_RADIUS = 5.0        # the coarse grid covers at least +-5 prior standard deviations
Q_SIGMAS = 8.0            # ... and +-8 standard deviations of q(z|x): all but 1e-15 of its mass
CHUNK = 4096              # grid points decoded at a time (a chunk of 784-pixel logits is 25 MB)


@dataclass(frozen=True)
class Grid:
    """Cell centres of a uniform grid over a rectangle in the 2-D latent space.

    z1 (n1,) and z2 (n2,) are the centres along each axis; ``points`` lists every
    (z1, z2) pair, z1 varying fastest, so values over the grid reshape to (n2, n1).
    """
    z1: np.ndarray
    z2: np.ndarray

    @property
    def cell_area(self):
        """h1 * h2, the weight of every point in the midpoint rule."""
        return float((self.z1[1] - self.z1[0]) * (self.z2[1] - self.z2[0]))

    @property
    def shape(self):
        return (len(self.z2), len(self.z1))

    @property
    def points(self):
        """(G, 2) array of the cell centres, G = n1 * n2."""
        Z1, Z2 = np.meshgrid(self.z1, self.z2)            # each (n2, n1)
        return np.stack([Z1.ravel(), Z2.ravel()], axis=1)


def square_grid(center, half_width, points):
    """The midpoint grid of ``points`` x ``points`` cells over the square center +- half_width.

    Cell width h = 2 half_width / points; centres at lo + (i + 1/2) h, i = 0 .. points - 1.
    """
    _need_count(points, "points", at_least=2, why=" (a grid needs at least 2 points a side)")
    if not half_width > 0:
        raise ValueError(f"half_width must be positive, got {half_width}")
    h = 2.0 * half_width / points
    axes = [c - half_width + (np.arange(points) + 0.5) * h for c in np.asarray(center, float)]
    return Grid(z1=axes[0], z2=axes[1])


def logsumexp(a, axis=-1):
    """log sum exp(a) along ``axis``, without overflow: m + log sum exp(a - m), m = max a.

    Terms far below the largest (a - m < -707 in float64) would make exp subnormal, which
    is slow; exp_no_subnormal floors them at e * tiny, which cannot change a sum >= 1.
    """
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(exp_no_subnormal(a - m), axis=axis))


def log_joint_on_grid(model, x, grid, chunk=CHUNK):
    """log p(x, z) = log p(x|z) + log p(z) for every datapoint and every grid point.

    Implements:  log p(x, z_g) = log p(x|z_g) + log N(z_g; 0, I)              (slide 17)
                 Bernoulli: log p(x|z) = sum_d [ x_d l_d - softplus(l_d) ],  l = logits(z)
                            = x . l - sum_d softplus(l_d): the second part does not depend on
                            x, so all datapoints share it and the first is one matrix product.
    The decoder and the per-pixel terms run in the model's dtype, on ``chunk`` grid points
    at a time. So do two of the sums over pixels: the product x . l (a BLAS product in the
    model's dtype, float32 for a float32 model) and the Gaussian decoder's sum; only
    sum_d softplus(l_d) is accumulated in float64. The (N, G) result is stored in float64,
    and everything computed from it (log p(x), the posterior, the ELBO, the KL) is float64.
    For a float64 model (as in the tests) every step is float64.
    Shapes:      x (N, D), grid of G points -> (N, G) float64
    """
    _check_model(model)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != model.input_dim:
        raise ValueError(f"x must have shape (N, {model.input_dim}), got {x.shape}")
    x = x.astype(model.dtype)
    z = grid.points                                                    # (G, 2)
    log_px_z = np.empty((x.shape[0], len(z)))                          # (N, G)
    for start in range(0, len(z), chunk):
        part = slice(start, start + chunk)
        out = model.decode(z[part])                                    # logits (C, D), or (mean, logvar)
        if model.likelihood == "bernoulli":
            log_px_z[:, part] = x @ out.T                              # x . l            (N, C)
            log_px_z[:, part] -= softplus(out).sum(axis=1, dtype=np.float64)   # - sum softplus(l)
        else:
            mean, logvar_x = (o[None] for o in out)                    # (1, C, D)
            log_px_z[:, part] = gaussian_log_density(x[:, None, :], mean, logvar_x)
    log_pz = gaussian_log_density(z, 0.0, 0.0)                         # (G,)  log N(z; 0, I)
    return log_px_z + log_pz


@dataclass
class GapOnGrid:
    """Slides 17-21 as numbers, for N datapoints on one grid (see the module docstring).

    log_px, elbo, kl, q_mass, edge_mass are (N,); log_joint, log_posterior, log_q are
    (N, G) over ``grid.points`` (reshape a row to ``grid.shape`` to plot it).
    mu, logvar (N, 2) are the encoder's q(z|x) = N(mu, diag exp(logvar)).
    """
    grid: Grid
    mu: np.ndarray
    logvar: np.ndarray
    log_joint: np.ndarray       # log p(x, z_g)
    log_px: np.ndarray          # log p(x) by the midpoint rule
    log_posterior: np.ndarray   # log p(z_g | x)
    log_q: np.ndarray           # log q(z_g | x)
    elbo: np.ndarray            # E_q[log p(x, z) - log q(z|x)] by the midpoint rule
    kl: np.ndarray              # KL(q(z|x) || p(z|x)) by the midpoint rule
    q_mass: np.ndarray          # h1 h2 sum_g q(z_g|x): 1 when the grid holds and resolves q
    edge_mass: np.ndarray       # posterior mass in the outermost ring of cells: ~0 when the window holds p(z|x)

    @property
    def gap(self):
        """log p(x) - ELBO, the price of approximating p(z|x) by q(z|x)."""
        return self.log_px - self.elbo

    def posterior_moments(self):
        """Mean and covariance of p(z|x) by the midpoint rule: what q(z|x) would have to match.

        Implements:  m = A sum_g p(z_g|x) z_g ,  S = A sum_g p(z_g|x) (z_g - m)(z_g - m)^T
        A diagonal q can match m and the diagonal of S, never the off-diagonal (the tilt).
        Shapes:      -> mean (N, 2), cov (N, 2, 2)
        """
        mass = exp_no_subnormal(self.log_posterior) * self.grid.cell_area        # (N, G)
        z = self.grid.points                                                      # (G, 2)
        mean = mass @ z                                                           # (N, 2)
        d = z[None] - mean[:, None]                                               # (N, G, 2)
        return mean, np.einsum("ng,ngi,ngj->nij", mass, d, d)


def variational_gap(model, x, grid, chunk=CHUNK):
    """log p(x), the true posterior, the ELBO and KL(q || p(z|x)) on one grid, for a 2-D latent.

    Implements (midpoint rule, cell area A = h1 h2, all sums over grid points g):
        log p(x)     = logsumexp_g log p(x, z_g) + log A                 (slide 18, the evidence)
        log p(z_g|x) = log p(x, z_g) - log p(x)                          (slide 18, Bayes)
        ELBO         = A sum_g q_g [ log p(x, z_g) - log q_g ]           (slide 21)
        KL(q || p)   = A sum_g q_g [ log q_g - log p(z_g|x) ]            (slide 20)
        so that log p(x) - ELBO - KL = log p(x) (1 - A sum_g q_g) = log p(x) (1 - q_mass).
    Source:  lecture slides 17-21; Kingma & Welling 2014, eq. (1)-(2).
    Shapes:  x (N, D) -> GapOnGrid with (N,) numbers and (N, G) grids
    """
    log_joint = log_joint_on_grid(model, x, grid, chunk)               # (N, G)
    area = grid.cell_area
    log_px = logsumexp(log_joint, axis=1) + np.log(area)               # (N,)
    log_posterior = log_joint - log_px[:, None]                        # (N, G)

    mu, logvar = (a.astype(np.float64) for a in model.encode(x))       # (N, 2) each
    z = grid.points                                                    # (G, 2)
    log_q = gaussian_log_density(z[None], mu[:, None], logvar[:, None])   # (N, G)
    q = exp_no_subnormal(log_q)                                        # q(z_g|x); no subnormals, as in logsumexp
    elbo = area * np.sum(q * (log_joint - log_q), axis=1)              # E_q[log p(x,z) - log q]
    kl = area * np.sum(q * (log_q - log_posterior), axis=1)            # E_q[log q - log p(z|x)]
    q_mass = area * q.sum(axis=1)

    posterior_mass = exp_no_subnormal(log_posterior + np.log(area)).reshape(-1, *grid.shape)
    interior = posterior_mass[:, 1:-1, 1:-1].sum(axis=(1, 2))
    edge_mass = np.maximum(posterior_mass.sum(axis=(1, 2)) - interior, 0.0)
    return GapOnGrid(grid=grid, mu=mu, logvar=logvar, log_joint=log_joint, log_px=log_px,
                     log_posterior=log_posterior, log_q=log_q, elbo=elbo, kl=kl,
                     q_mass=q_mass, edge_mass=edge_mass)


def posterior_window(model, x, coarse_points=101, threshold=23.0, max_radius=80.0):
    """A square (center, half_width) per datapoint that holds p(z|x) and q(z|x).

    1. Coarse grid over [-R, R]^2, R = max(5, max_j |mu_j| + 8 sigma_j); R doubles while
       any posterior has more than 1e-9 of its mass on the grid's edge.
    2. Per datapoint: the bounding box of the coarse cells within ``threshold`` nats of the
       largest log p(x, z) (e^-23 ~ 1e-10), grown by two coarse cells, joined with
       mu +- 8 sigma; the square around that box.
    Shapes:  x (N, D) -> centers (N, 2), half_widths (N,)
    """
    _check_model(model)
    mu, logvar = (a.astype(np.float64) for a in model.encode(x))
    sigma = np.exp(0.5 * logvar)
    radius = max(PRIOR_RADIUS, float(np.max(np.abs(mu) + Q_SIGMAS * sigma)))
    while True:
        coarse = square_grid((0.0, 0.0), radius, coarse_points)
        log_joint = log_joint_on_grid(model, x, coarse)                # (N, G)
        log_post = log_joint - logsumexp(log_joint, axis=1)[:, None]
        mass = exp_no_subnormal(log_post).reshape(-1, *coarse.shape)
        edge = mass.sum(axis=(1, 2)) - mass[:, 1:-1, 1:-1].sum(axis=(1, 2))
        if np.all(edge < 1e-9) or radius >= max_radius:
            break
        radius *= 2
    h = 2 * radius / coarse_points
    z = coarse.points
    centers, half_widths = np.empty((len(mu), 2)), np.empty(len(mu))
    for i in range(len(mu)):                                           # one box per datapoint
        bulk = z[log_joint[i] >= log_joint[i].max() - threshold]       # (B, 2)
        lo = np.minimum(bulk.min(axis=0) - 2 * h, mu[i] - Q_SIGMAS * sigma[i])
        hi = np.maximum(bulk.max(axis=0) + 2 * h, mu[i] + Q_SIGMAS * sigma[i])
        centers[i], half_widths[i] = (lo + hi) / 2, np.max(hi - lo) / 2
    return centers, half_widths


def exact_gap(model, x, points=201, coarse_points=101, chunk=CHUNK):
    """``variational_gap`` for each datapoint on its own fine grid from ``posterior_window``.

    Returns a list of N GapOnGrid, each for one datapoint (arrays with a leading axis of 1).
    Cost: (coarse_points^2 + N points^2) decoder evaluations.
    """
    x = np.asarray(x)
    centers, half_widths = posterior_window(model, x, coarse_points)
    return [variational_gap(model, x[i:i + 1], square_grid(c, w, points), chunk)
            for i, (c, w) in enumerate(zip(centers, half_widths))]


def _check_model(model):
    if model.latent_dim != 2:
        raise ValueError(f"the exact posterior by grid integration needs a 2-D latent space "
                         f"(latent_dim=2), this model has latent_dim={model.latent_dim}")
