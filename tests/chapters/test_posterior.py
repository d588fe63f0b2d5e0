"""Exact log p(x) by grid integration: a closed form to match, the identity of slides 20-21,
convergence as the grid refines, and agreement with the model's own ELBO."""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.losses import bernoulli_log_likelihood, gaussian_log_density
from scratchvae.chapters.posterior import (Grid, exact_gap, log_joint_on_grid, logsumexp, posterior_window,
                                  square_grid, variational_gap)

D = 5


def linear_gaussian(seed=0, decoder_logvar=None):
    """VAE(D, [], 2, gaussian) with the decoder's log-variance weights zeroed: the linear
    Gaussian model  z ~ N(0, I),  x | z ~ N(A z + b, Psi),  A = W_mean^T (D, 2),  Psi = diag(exp(b_logvar)).

    Closed forms (Bishop, PRML 2.3.3 and 12.2.1):
        p(x)   = N(x; b, A A^T + Psi)
        p(z|x) = N(m, S),  S = (I + A^T Psi^-1 A)^-1,  m = S A^T Psi^-1 (x - b)
    """
    model = VAE(D, [], 2, likelihood="gaussian", dtype=np.float64, seed=seed)
    model.params["dec.logvar.W"][...] = 0
    if decoder_logvar is not None:
        model.params["dec.logvar.b"][...] = decoder_logvar
    A = model.params["dec.mean.W"].T                                  # (D, 2): mean = z W + b = A z + b
    b, psi = model.params["dec.mean.b"], np.exp(model.params["dec.logvar.b"])
    evidence_cov = A @ A.T + np.diag(psi)
    S = np.linalg.inv(np.eye(2) + A.T @ (A / psi[:, None]))
    posterior_mean = lambda x: (x - b) / psi @ A @ S                  # rows: S A^T Psi^-1 (x_n - b)
    return model, b, evidence_cov, posterior_mean, S


def gaussian_log_pdf(x, mean, cov):
    diff = x - mean
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (len(mean) * np.log(2 * np.pi) + logdet
                   + np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff))


def gaussian_kl(mu_q, var_q, mean_p, cov_p):
    """KL(N(mu_q, diag var_q) || N(mean_p, cov_p)) in closed form, for one datapoint."""
    prec = np.linalg.inv(cov_p)
    diff = mean_p - mu_q
    return 0.5 * (np.trace(prec * var_q) + diff @ prec @ diff - len(mu_q)
                  + np.linalg.slogdet(cov_p)[1] - np.sum(np.log(var_q)))


def data(n=4, seed=1):
    return np.random.default_rng(seed).standard_normal((n, D))


@pytest.mark.parametrize("decoder_logvar", [None, -3.0])       # a wide and a narrow posterior
def test_log_px_matches_the_linear_gaussian_closed_form(decoder_logvar):
    model, b, evidence_cov, posterior_mean, S = linear_gaussian(decoder_logvar=decoder_logvar)
    x = data()
    results = exact_gap(model, x)
    log_px = np.array([r.log_px[0] for r in results])
    np.testing.assert_allclose(log_px, gaussian_log_pdf(x, b, evidence_cov), rtol=0, atol=1e-11)
    assert all(r.edge_mass[0] < 1e-12 for r in results)


def test_posterior_and_kl_match_the_linear_gaussian_closed_form():
    model, b, evidence_cov, posterior_mean, S = linear_gaussian(seed=2)
    x = data(3)
    mu, logvar = model.encode(x)
    m = posterior_mean(x)
    for i, r in enumerate(exact_gap(model, x)):
        z = r.grid.points
        density = np.exp(r.log_posterior[0])
        mass = density * r.grid.cell_area
        np.testing.assert_allclose(mass @ z, m[i], atol=1e-10)               # posterior mean
        cov = (z - m[i]).T * mass @ (z - m[i])
        np.testing.assert_allclose(cov, S, atol=1e-10)                        # posterior covariance
        kl = gaussian_kl(mu[i], np.exp(logvar[i]), m[i], S)
        assert r.kl[0] == pytest.approx(kl, abs=1e-11)
        assert r.kl[0] > 0.05                                                # the gap is real here


def test_posterior_moments_are_the_linear_gaussian_closed_form():
    model, b, evidence_cov, posterior_mean, S = linear_gaussian(seed=3)
    x = data(3)
    for i, r in enumerate(exact_gap(model, x)):
        mean, cov = r.posterior_moments()
        np.testing.assert_allclose(mean[0], posterior_mean(x)[i], atol=1e-10)
        np.testing.assert_allclose(cov[0], S, atol=1e-10)
        assert abs(S[0, 1]) > 0.05 * np.sqrt(S[0, 0] * S[1, 1])            # a tilt a diagonal q cannot follow


def test_gap_equals_kl_on_the_grid():
    """Slide 21: log p(x) - ELBO = KL(q(z|x) || p(z|x)), every term by the same quadrature.

    On the grid this is close to an algebraic identity: with log p(z_g|x) = log p(x, z_g) - c,
    KL = -ELBO + c * q_mass for *any* constant c, so the gap equals the KL whenever q_mass = 1,
    even if log p(x) had a wrong normaliser (a missing log of the cell area passes here).
    It checks the bookkeeping (same grid, same q, no term dropped); what catches a wrong
    normaliser is the closed-form test, test_log_px_matches_the_linear_gaussian_closed_form."""
    model = VAE(D, [8], 2, likelihood="bernoulli", activation="tanh", dtype=np.float64, seed=3)
    x = np.random.default_rng(4).random((5, D))
    for r in exact_gap(model, x):
        assert r.q_mass[0] == pytest.approx(1.0, abs=1e-12)
        assert r.gap[0] == pytest.approx(r.kl[0], abs=1e-11)
        assert r.kl[0] > 1e-3                                                # and it is not 0 = 0
        assert r.log_px[0] >= r.elbo[0]                                      # the ELBO is a lower bound


def test_grid_elbo_matches_the_models_monte_carlo_elbo():
    """The grid ELBO is the same number as the model's own ELBO (slide 22), within Monte Carlo error."""
    model = VAE(D, [8], 2, likelihood="bernoulli", dtype=np.float64, seed=5)
    x = np.random.default_rng(6).random((3, D))
    elbo_mc, stderr = model.elbo_probabilistic(x, 40_000, np.random.default_rng(7))
    elbo_grid = np.array([r.elbo[0] for r in exact_gap(model, x)])
    assert np.all(np.abs(elbo_grid - elbo_mc) < 4 * stderr)
    assert np.all(stderr < 0.01)


def test_log_px_converges_as_the_grid_refines():
    model, b, evidence_cov, _, _ = linear_gaussian(seed=6)
    x = data(2)
    exact = gaussian_log_pdf(x, b, evidence_cov)
    errors = [np.max(np.abs(variational_gap(model, x, square_grid((0, 0), 8.0, n)).log_px - exact))
              for n in (6, 12, 24, 48)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-3 and errors[-1] < 1e-10, errors


def test_log_px_converges_only_polynomially_for_a_relu_decoder():
    """A ReLU decoder puts kinks into p(x, z): the midpoint rule's error falls like a power of h,
    where the same network with tanh converges faster than any power (the module docstring's numbers)."""
    errors = {}
    for activation in ("relu", "tanh"):
        model = VAE(D, [8], 2, activation=activation, dtype=np.float64, seed=0)
        for value in model.params.values():
            value *= 3                                                   # sharper kinks
        x = np.random.default_rng(1).random((1, D))
        (center,), (half,) = posterior_window(model, x)
        log_px = lambda n: variational_gap(model, x, square_grid(center, half, n)).log_px[0]
        reference = log_px(1601)
        errors[activation] = [abs(log_px(n) - reference) for n in (101, 201, 401)]
    relu, tanh = errors["relu"], errors["tanh"]
    assert relu[0] > 4 * relu[2] and max(relu) < 1e-3, relu          # it converges ...
    assert min(relu) > 1e-6, relu                                     # ... only polynomially
    assert tanh[1] < 1e-9 and tanh[2] < 1e-11, tanh                   # smooth: spectral


def test_bernoulli_shortcut_equals_the_likelihood_function():
    """x . l - sum softplus(l) is bernoulli_log_likelihood, and log p(z) is added."""
    model = VAE(D, [8], 2, dtype=np.float64, seed=8)
    x = np.random.default_rng(9).random((3, D))
    grid = square_grid((0.5, -1.0), 2.0, 7)
    logits = model.decode(grid.points)
    expected = (bernoulli_log_likelihood(x[:, None], logits[None])
                + gaussian_log_density(grid.points, 0.0, 0.0))
    np.testing.assert_allclose(log_joint_on_grid(model, x, grid, chunk=10), expected, rtol=1e-13)


def test_float32_model_and_chunking_give_the_same_grid_values():
    model = VAE(D, [8], 2, dtype=np.float32, seed=10)
    x = np.random.default_rng(11).random((2, D))
    grid = square_grid((0, 0), 3.0, 9)
    a, b = log_joint_on_grid(model, x, grid, chunk=5), log_joint_on_grid(model, x, grid)
    assert a.dtype == np.float64 and a.shape == (2, 81)
    np.testing.assert_allclose(a, b, rtol=1e-6)             # float32 decoder: BLAS rounding only


def test_grid_is_the_midpoint_rule():
    grid = square_grid((1.0, -2.0), 0.5, 4)
    np.testing.assert_allclose(grid.z1, [0.625, 0.875, 1.125, 1.375])
    np.testing.assert_allclose(grid.z2, [-2.375, -2.125, -1.875, -1.625])
    assert grid.cell_area == pytest.approx(0.0625)
    assert grid.points.shape == (16, 2) and grid.shape == (4, 4)
    np.testing.assert_array_equal(grid.points[1], [0.875, -2.375])         # z1 varies fastest


def test_window_holds_the_posterior_and_q():
    model, _, _, posterior_mean, S = linear_gaussian(seed=12, decoder_logvar=-3.0)
    x = data(3) * 3
    mu, logvar = model.encode(x)
    centers, half = posterior_window(model, x)
    m, sd = posterior_mean(x), np.sqrt(np.diag(S))
    for i in range(len(x)):
        for center_of_mass, spread in ((m[i], 6 * sd), (mu[i], 8 * np.exp(0.5 * logvar[i]))):
            assert np.all(np.abs(center_of_mass - centers[i]) + spread <= half[i] + 1e-9)


def test_logsumexp_does_not_overflow():
    a = np.array([[1000.0, 1000.0], [-1000.0, -1000.0]])
    np.testing.assert_allclose(logsumexp(a, axis=1), [1000 + np.log(2), -1000 + np.log(2)])


def test_logsumexp_of_terms_far_below_the_largest_makes_no_subnormal():
    a = np.array([[0.0, -720.0, -800.0, -5000.0], [3.0, 2.0, -1e4, -np.inf]])
    with np.errstate(under="raise"):
        got = logsumexp(a, axis=1)
    np.testing.assert_array_equal(got, [0.0, 3 + np.log1p(np.exp(-1.0))])


def test_clear_errors():
    with pytest.raises(ValueError, match="2-D latent"):
        log_joint_on_grid(VAE(D, [4], 3), np.zeros((1, D)), square_grid((0, 0), 1.0, 3))
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        log_joint_on_grid(VAE(D, [4], 2), np.zeros((1, 4)), square_grid((0, 0), 1.0, 3))
    with pytest.raises(ValueError, match="at least 2 points"):
        square_grid((0, 0), 1.0, 1)
    assert isinstance(square_grid((0, 0), 1.0, 2), Grid)


def test_exact_gap_is_one_201_point_grid_per_datapoint_in_the_window_of_a_101_point_coarse_grid():
    model = VAE(D, [8], 2, activation="tanh", dtype=np.float64, seed=3)
    x = np.random.default_rng(4).random((3, D))
    gaps = exact_gap(model, x)
    centers, half_widths = posterior_window(model, x, 101)
    assert len(gaps) == 3
    for i, g in enumerate(gaps):
        expected = variational_gap(model, x[i:i + 1], square_grid(centers[i], half_widths[i], 201))
        assert g.grid.shape == (201, 201) and g.log_px.shape == (1,)
        np.testing.assert_array_equal(g.grid.z1, expected.grid.z1)
        assert g.log_px[0] == expected.log_px[0] and g.elbo[0] == expected.elbo[0]


def window_by_its_docstring(model, x, coarse_points=101, threshold=23.0):
    """posterior_window's two steps written out: the coarse grid over [-R, R]^2, R = max(5, max |mu| +
    8 sigma), doubled until no posterior puts more than 1e-9 of its mass on the outermost ring; per
    datapoint, the box of the coarse cells within ``threshold`` nats of the largest log p(x, z),
    grown by two cells and joined with mu +- 8 sigma, and the square around it."""
    mu, logvar = (a.astype(np.float64) for a in model.encode(x))
    sigma = np.exp(0.5 * logvar)
    R = max(5.0, np.max(np.abs(mu) + 8 * sigma))
    while True:
        h = 2 * R / coarse_points
        axis = -R + (np.arange(coarse_points) + 0.5) * h
        Z1, Z2 = np.meshgrid(axis, axis)
        z = np.column_stack([Z1.ravel(), Z2.ravel()])
        log_joint = np.stack([log_p_x_and_z(model, xi, z) for xi in x])            # (N, G)
        post = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
        post = (post / post.sum(axis=1, keepdims=True)).reshape(len(x), coarse_points, coarse_points)
        ring = post.sum(axis=(1, 2)) - post[:, 1:-1, 1:-1].sum(axis=(1, 2))
        if np.all(ring < 1e-9) or R >= 80:
            break
        R *= 2
    centers, half_widths = [], []
    for i in range(len(x)):
        bulk = z[log_joint[i] >= log_joint[i].max() - threshold]
        lo = np.minimum(bulk.min(axis=0) - 2 * h, mu[i] - 8 * sigma[i])
        hi = np.maximum(bulk.max(axis=0) + 2 * h, mu[i] + 8 * sigma[i])
        centers.append((lo + hi) / 2)
        half_widths.append(np.max(hi - lo) / 2)
    return np.array(centers), np.array(half_widths), R


def log_p_x_and_z(model, x, z):
    """log p(x|z) + log N(z; 0, I) for a Gaussian decoder, written out."""
    mean, logvar = model.decode(z)
    return (-0.5 * np.sum(np.log(2 * np.pi) + logvar + (x - mean) ** 2 / np.exp(logvar), axis=1)
            - 0.5 * np.sum(z ** 2, axis=1) - np.log(2 * np.pi))


def test_the_window_is_built_as_its_docstring_says_doubling_for_a_far_posterior():
    """A linear-Gaussian model whose posterior sits near z = 11 (and the encoder's q near 0): the
    coarse grid must double from R = 8-ish to 16 to hold it; the window is then exactly the box
    the docstring describes."""
    model, b, _, posterior_mean, S = linear_gaussian(seed=12, decoder_logvar=-3.0)
    for name in ("enc.mu.W", "enc.mu.b", "enc.logvar.W", "enc.logvar.b"):
        model.params[name][...] = 0.0                                         # q = N(0, I): R starts at 8
    A = model.params["dec.mean.W"].T
    x = (b + A @ np.array([11.0, -6.0]))[None] + 0.01 * data(1)            # z = (11, -6) explains it
    centers, half_widths = posterior_window(model, x)
    expected_centers, expected_half, R = window_by_its_docstring(model, x)
    assert R == 16.0                                                          # 8, doubled once
    np.testing.assert_allclose(centers, expected_centers, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(half_widths, expected_half, rtol=1e-12)
    assert np.all(np.abs(posterior_mean(x)[0] - centers[0]) + 6 * np.sqrt(np.diag(S)) <= half_widths[0])
    near = data(2) * 0.5                                                      # posteriors near 0: no doubling
    got, want = posterior_window(model, near), window_by_its_docstring(model, near)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)


def test_variational_gap_keeps_every_array_it_computes_and_the_mass_on_the_edge():
    """Its fields, each against this test's own computation: the encoder's q (float64), log p(x, z),
    log q on the grid, and the posterior mass in the outermost ring of cells of a grid too small
    to hold the posterior."""
    model, b, evidence_cov, _, _ = linear_gaussian(seed=6)
    x = data(2)
    grid = square_grid((0.0, 0.0), 1.0, 12)                                   # +-1: cuts the posterior
    gap = variational_gap(model, x, grid)
    mu, logvar = model.encode(x)
    np.testing.assert_array_equal(gap.mu, mu) and np.testing.assert_array_equal(gap.logvar, logvar)
    assert gap.mu.dtype == gap.logvar.dtype == np.float64
    log_joint = np.stack([log_p_x_and_z(model, xi, grid.points) for xi in x])
    np.testing.assert_allclose(gap.log_joint, log_joint, rtol=1e-12)
    log_q = -0.5 * np.sum(np.log(2 * np.pi) + logvar[:, None] + (grid.points - mu[:, None]) ** 2
                          / np.exp(logvar[:, None]), axis=2)
    np.testing.assert_allclose(gap.log_q, log_q, rtol=1e-12)
    mass = np.exp(log_joint - gap.log_px[:, None]) * grid.cell_area            # posterior mass per cell
    ring = mass.reshape(2, 12, 12)
    edge = ring.sum(axis=(1, 2)) - ring[:, 1:-1, 1:-1].sum(axis=(1, 2))
    np.testing.assert_allclose(gap.edge_mass, edge, rtol=1e-10)
    assert np.all(gap.edge_mass > 0.05)                                       # the test has something to find


def test_a_float32_models_grid_values_are_its_float32_products_and_float64_sums():
    """log_joint_on_grid computes x . l in the model's dtype (float32 here) and sums softplus in float64."""
    from scratchvae.layers import softplus
    model = VAE(D, [4], 2, seed=1)
    x = np.random.default_rng(0).random((2, D))
    grid = square_grid((0.0, 0.0), 2.0, 5)
    logits = model.decode(grid.points)                                        # float32
    expected = x.astype(np.float32) @ logits.T - softplus(logits).sum(axis=1, dtype=np.float64)
    expected = expected - 0.5 * np.sum(grid.points ** 2, axis=1) - np.log(2 * np.pi)
    np.testing.assert_allclose(log_joint_on_grid(model, x, grid), expected, rtol=1e-13)   # float64 x . l: 1e-7 off


def test_logsumexp_keeps_the_other_axes_and_a_grid_needs_a_positive_width():
    a = np.random.default_rng(0).standard_normal((2, 1, 5))
    got = logsumexp(a, axis=-1)
    assert got.shape == (2, 1)
    np.testing.assert_allclose(got, np.log(np.exp(a).sum(axis=-1)), rtol=1e-14)
    with pytest.raises(ValueError, match="half_width must be positive"):
        square_grid((0, 0), 0.0, 5)


# ------------------------------------------------------------------ the window, when the posterior decides it
def with_a_pinpoint_q(model):
    """The encoder set to q(z|x) = N(0, e^-20 I) for every x: its +-8 sigma box is 4e-4 wide and the
    first coarse grid is [-5, 5]^2 (R = max(5, 8 sigma) = 5), so the window is the posterior's alone."""
    for name in ("enc.mu.W", "enc.mu.b", "enc.logvar.W"):
        model.params[name][...] = 0.0
    model.params["enc.logvar.b"][...] = -20.0
    return model


def data_with_posterior_means(model, S, means):
    """Datapoints x whose linear-Gaussian posterior mean m = S A^T Psi^-1 (x - b) is each of ``means``."""
    A, b = model.params["dec.mean.W"].T, model.params["dec.mean.b"]
    psi = np.exp(model.params["dec.logvar.b"])
    return np.stack([b + psi * (A @ np.linalg.solve(A.T @ A, np.linalg.solve(S, m))) for m in np.asarray(means, float)])


def coarse_masses(model, x, R=5.0, n=101):
    """Each posterior's mass per cell of the n x n coarse grid over [-R, R]^2, written out (N, n, n)."""
    grid = square_grid((0.0, 0.0), R, n)
    log_joint = np.stack([log_p_x_and_z(model, xi, grid.points) for xi in x])
    post = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
    return (post / post.sum(axis=1, keepdims=True)).reshape(len(x), n, n)


def test_the_edge_is_the_outermost_ring_of_coarse_cells_only():
    """Two narrow posteriors (s.d. 0.08, a coarse cell 0.099 wide) set in opposite corners of [-5, 5]^2, so
    that less than 1e-9 of either lies in the outermost ring of cells, yet more than 1e-9 in the next
    row or column on each of the four sides: the window must stop at R = 5. A ring one cell too
    thick on any side, or a sum over both datapoints, doubles R (and so changes the window)."""
    model, _, _, posterior_mean, S = linear_gaussian(seed=12, decoder_logvar=-6.0)
    with_a_pinpoint_q(model)
    x = data_with_posterior_means(model, S, [(-4.38, -4.38), (4.38, 4.38)])
    np.testing.assert_allclose(posterior_mean(x), [(-4.38, -4.38), (4.38, 4.38)], atol=1e-9)
    mass = coarse_masses(model, x)
    ring = mass.sum(axis=(1, 2)) - mass[:, 1:-1, 1:-1].sum(axis=(1, 2))
    assert np.all(ring < 1e-10), ring
    second = [mass[0, 1, 1:-1].sum(), mass[0, 1:-1, 1].sum(), mass[1, -2, 1:-1].sum(), mass[1, 1:-1, -2].sum()]
    assert min(second) > 1e-8, second                      # rows and columns 1 and n - 2: inside the edge
    centers, half_widths = posterior_window(model, x)
    expected_centers, expected_half, R = window_by_its_docstring(model, x)
    assert R == 5.0
    np.testing.assert_allclose(centers, expected_centers, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(half_widths, expected_half, rtol=1e-12)


def test_the_coarse_grid_doubles_from_5_to_max_radius_and_no_further(monkeypatch):
    """A posterior far outside any window (near z = (300, 0)) next to one near 0: the coarse grid
    doubles while either has mass on its edge, 5, 10, 20, 40, 80, and stops at max_radius = 80
    (radius >= max_radius) though the far one is still cut; max_radius = 30 stops it at 40. The
    radii of the coarse grids are recorded, and the window is the docstring's on the last one."""
    from scratchvae.chapters import posterior
    model, _, _, _, S = linear_gaussian(seed=12, decoder_logvar=-3.0)
    with_a_pinpoint_q(model)
    x = data_with_posterior_means(model, S, [(0.3, -0.2), (300.0, 0.0)])
    radii, log_joint = [], posterior.log_joint_on_grid
    monkeypatch.setattr(posterior, "log_joint_on_grid",
                        lambda m, xs, grid: radii.append(grid.z1[-1] + (grid.z1[1] - grid.z1[0]) / 2)
                        or log_joint(m, xs, grid))
    centers, half_widths = posterior_window(model, x)
    np.testing.assert_allclose(radii, [5, 10, 20, 40, 80], rtol=1e-12)
    expected_centers, expected_half, R = window_by_its_docstring(model, x)
    assert R == 80
    np.testing.assert_allclose(centers, expected_centers, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(half_widths, expected_half, rtol=1e-12)
    radii.clear()
    posterior_window(model, x, max_radius=30.0)
    np.testing.assert_allclose(radii, [5, 10, 20, 40], rtol=1e-12)


def test_the_window_is_the_box_of_the_cells_within_23_nats_of_the_peak():
    """With q a pinpoint, the window is the posterior's bulk alone: the coarse cells within
    ``threshold`` nats of the largest log p(x, z) (23 by default; 24 would give another box here),
    grown by two cells, joined with q's box at 0. threshold = 0 keeps the peak cell itself (>=, not >:
    the cells within 0 nats of the peak are the peak)."""
    model, _, _, _, S = linear_gaussian(seed=12, decoder_logvar=-3.0)
    with_a_pinpoint_q(model)
    x = data_with_posterior_means(model, S, [(0.3, -0.2), (-1.0, 0.5)])
    for threshold in (23.0, 0.0):
        want_centers, want_half, R = window_by_its_docstring(model, x, threshold=threshold)
        got_centers, got_half = posterior_window(model, x) if threshold == 23 else posterior_window(model, x, threshold=0.0)
        np.testing.assert_allclose(got_centers, want_centers, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_half, want_half, rtol=1e-12)
    h = 2 * R / 101
    other = window_by_its_docstring(model, x, threshold=24.0)
    assert np.all(np.abs(other[1] - window_by_its_docstring(model, x)[1]) > h / 4)   # the test has something to find


def test_exact_gap_puts_its_fine_grid_in_the_window_of_its_coarse_grid():
    """exact_gap's fine grids are square_grid(posterior_window(model, x, coarse_points)) with the
    coarse_points given (101 by default); the windows of 101, 102 and 51 coarse points differ here."""
    model, _, _, _, S = linear_gaussian(seed=12, decoder_logvar=-3.0)
    with_a_pinpoint_q(model)
    x = data_with_posterior_means(model, S, [(0.3, -0.2), (-1.0, 0.5)])
    windows = {n: posterior_window(model, x, n) for n in (101, 102, 51)}
    assert not np.allclose(windows[101][1], windows[102][1]) and not np.allclose(windows[101][1], windows[51][1])
    for n, gaps in ((101, exact_gap(model, x, points=21)), (51, exact_gap(model, x, points=21, coarse_points=51))):
        centers, half_widths = windows[n]
        for gap, c, w in zip(gaps, centers, half_widths):
            np.testing.assert_array_equal(gap.grid.z1, square_grid(c, w, 21).z1)
            np.testing.assert_array_equal(gap.grid.z2, square_grid(c, w, 21).z2)


def test_the_fine_grids_are_decoded_chunk_points_at_a_time(monkeypatch):
    """``chunk`` bounds the decoder's batch (memory): variational_gap and exact_gap pass it on to
    log_joint_on_grid. The sizes of the decoder's calls are recorded: 81 points in chunks of 20."""
    model, _, _, _, S = linear_gaussian(seed=12, decoder_logvar=-3.0)
    with_a_pinpoint_q(model)
    x = data_with_posterior_means(model, S, [(0.3, -0.2)])
    sizes, decode = [], model.decode
    monkeypatch.setattr(model, "decode", lambda z: sizes.append(len(z)) or decode(z))
    variational_gap(model, x, square_grid((0.0, 0.0), 2.0, 9), chunk=20)
    assert sizes == [20, 20, 20, 20, 1]
    sizes.clear()
    exact_gap(model, x, points=9, coarse_points=11, chunk=20)
    assert sizes == [121, 20, 20, 20, 20, 1]                 # the coarse grid in one piece, then the fine one


def test_a_grid_refuses_one_point_a_side_in_one_line_that_names_it():
    with pytest.raises(ValueError) as refused:
        square_grid((0, 0), 1.0, 1)
    assert str(refused.value) == "points must be an integer >= 2 (a grid needs at least 2 points a side), got 1"


def test_a_float32_center_gives_the_float64_grid_of_its_value():
    """The centres lo + (i + 1/2) h are computed in float64 from the center's value (a float32 model's
    mu as a center does not make c - half_width a float32 subtraction)."""
    center = np.float32([0.1, -0.7])
    grid = square_grid(center, 1 / 3, 5)
    h = 2 / 3 / 5
    for axis, c in zip((grid.z1, grid.z2), center.astype(np.float64)):
        assert axis.dtype == np.float64
        np.testing.assert_array_equal(axis, c - 1 / 3 + (np.arange(5) + 0.5) * h)
