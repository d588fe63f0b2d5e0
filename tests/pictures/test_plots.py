"""Every figure function writes a valid PNG of its stated size from small arrays; the figure
pipeline is reproducible for a given seed."""
import struct

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from scratchvae import VAE
from scratchvae.pictures import plots
from scratchvae.chapters.autoencoder import Autoencoder
from scratchvae.chapters.estimators import compare_estimators
from scratchvae.pictures.figures import (FIGURES, latent_projection, make_figures, manifold_grid,
                                one_per_class)
from scratchvae.chapters.posterior import exact_gap
from helpers import (bernoulli_log_likelihood_of, drawn_figures, elbo_by_quadrature, gauss_hermite_2d,
                     log_px_by_quadrature, same_rows)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
D = 16                                  # 4 x 4 images keep the tests fast


def png_size(path):
    """(width, height) from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_png(path, size, dpi=plots.DPI):
    expected = (round(size[0] * dpi), round(size[1] * dpi))
    assert png_size(path) == expected
    pixels = imread(path)                              # decodes: a valid image, not only a header
    assert pixels.shape[:2] == expected[::-1]
    assert pixels.std() > 0.01                         # something was drawn


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def tiles_of(fig, n_rows, n_cols, side=4, pad=1, axes=0):
    """The (n_rows, n_cols, side^2) images of the mosaic drawn in ``fig.axes[axes]``."""
    grid = fig.axes[axes].get_images()[0].get_array()
    return np.array([[grid[r * (side + pad):r * (side + pad) + side, c * (side + pad):c * (side + pad) + side].ravel()
                      for c in range(n_cols)] for r in range(n_rows)])


def test_reconstructions(tmp_path, rng, monkeypatch):
    """Figure 1: the test images in the top row, each one's reconstruction under it (and a sample)."""
    figures = drawn_figures(monkeypatch)
    originals, reconstructions = rng.random((5, D)), rng.random((5, D))
    path = plots.plot_reconstructions(originals, reconstructions, tmp_path / "a.png")
    assert path == tmp_path / "a.png"
    assert_png(path, (8, 2.1))
    np.testing.assert_array_equal(tiles_of(figures[0], 2, 5), np.stack([originals, reconstructions]))
    drawn = (rng.random((5, D)) < 0.5).astype(float)                 # x~ ~ p(x|z): a third row
    assert_png(plots.plot_reconstructions(originals, reconstructions, tmp_path / "b.png",
                                          samples=drawn), (8, 2.9))
    np.testing.assert_array_equal(tiles_of(figures[1], 3, 5), np.stack([originals, reconstructions, drawn]))
    with pytest.raises(ValueError, match="5 originals but 4 samples"):
        plots.plot_reconstructions(rng.random((5, D)), rng.random((5, D)), tmp_path / "c.png",
                                   samples=drawn[:4])


def mahalanobis_squared(paths, mu, logvar):
    """(z - mu)^T Sigma^-1 (z - mu) at every vertex of each contour level's path."""
    return [np.sum((path.vertices - mu) ** 2 * np.exp(-logvar), axis=1) for path in paths]


def test_inference_gaps(tmp_path, rng, monkeypatch):
    """Figure 9 read back: the numbers under each panel against log p(x) and both ELBOs computed
    here by Gauss-Hermite quadrature (no grid, no Monte Carlo), and the drawn q(z|x) and q*(z|x)
    against the ellipses of those Gaussians: a Gaussian's region of mass m is the ellipse of
    Mahalanobis radius^2 -2 log(1 - m)."""
    from scratchvae.chapters.inference import gaps_on_grid
    figures = drawn_figures(monkeypatch)
    model = VAE(D, [8], 2, activation="tanh", dtype=np.float64, seed=1)
    for weights in model.phi.values():
        weights *= 3                                 # a posterior narrower than the prior, q* unlike q
    images = (rng.random((2, D)) < 0.5).astype(float)
    gaps = gaps_on_grid(model, images, np.random.default_rng(0), points=81, steps=100)
    assert_png(plots.plot_inference_gaps(gaps, images, tmp_path / "g.png"), (6.8, 4.8))
    nodes, weights = gauss_hermite_2d()
    fig = figures[0]
    texts = [t.get_text() for t in fig.texts if t.get_text().startswith("log p(x)")]
    panels = [ax for ax in fig.axes if ax.get_xlabel() == "z_1"]
    assert len(texts) == len(panels) == 2
    for i, (text, ax) in enumerate(zip(texts, panels)):
        x = images[i]
        mu_star, logvar_star = gaps.fitted.mu[i], gaps.fitted.logvar[i]
        log_px = log_px_by_quadrature(model, x, mu_star, logvar_star, nodes, weights)
        mu_enc, logvar_enc = (a[0] for a in model.encode(x[None]))
        elbo_star = elbo_by_quadrature(model, x, mu_star, logvar_star, nodes, weights)
        elbo_enc = elbo_by_quadrature(model, x, mu_enc, logvar_enc, nodes, weights)
        shown = {line.split("=")[0].strip(): float(line.split("=")[1]) for line in text.splitlines()}
        assert shown["log p(x)"] == pytest.approx(log_px, abs=0.006)
        assert shown["ELBO(q*)"] == pytest.approx(elbo_star, abs=0.006)
        assert shown["ELBO(q_encoder)"] == pytest.approx(elbo_enc, abs=0.006)
        assert shown["approximation gap"] == pytest.approx(log_px - elbo_star, abs=0.001)
        assert shown["amortisation gap"] == pytest.approx(elbo_star - elbo_enc, abs=0.001)
        assert abs((log_px - elbo_star) - (elbo_star - elbo_enc)) > 0.1       # the two gaps differ
        # the contour lines: red, the encoder's q; black dashed, q*; each at 99, 90 and 50 % of its mass
        for colour, mu, logvar in (("tab:red", mu_enc, logvar_enc), ("black", mu_star, logvar_star)):
            sets = [c for c in ax.collections if hasattr(c, "levels") and len(c.get_edgecolor())
                    and np.allclose(c.get_edgecolor()[0][:3], to_rgb(colour))]
            assert len(sets) == 1, colour
            for r2, mass in zip(mahalanobis_squared(sets[0].get_paths(), mu, logvar), (0.99, 0.9, 0.5)):
                assert np.all(np.abs(r2 / (-2 * np.log(1 - mass)) - 1) < 0.1), (colour, mass, r2.min(), r2.max())
    with pytest.raises(ValueError, match="one image per posterior"):
        plots.plot_inference_gaps(gaps, images[:1], tmp_path / "h.png")


def test_samples_and_dpi(tmp_path, rng, monkeypatch):
    figures = drawn_figures(monkeypatch)
    images = rng.random((9, D))
    assert_png(plots.plot_samples(images, tmp_path / "s.png"), (6, 6.4))
    np.testing.assert_array_equal(tiles_of(figures[0], 3, 3).reshape(9, D), images)     # row by row
    assert_png(plots.plot_samples(rng.random((4, D)), tmp_path / "s50.png", dpi=50), (6, 6.4), dpi=50)


def test_manifold(tmp_path, rng, monkeypatch):
    """Figure 3: image [i, j] is drawn at column j, row i, with no gap (a manifold, not a grid of
    separate images), and the axes are labelled with the z of each column and row."""
    figures = drawn_figures(monkeypatch)
    z_values, points = manifold_grid(3)
    images = rng.random((9, D))
    assert_png(plots.plot_manifold(images, z_values, tmp_path / "m.png"), (5.6, 5.8))
    np.testing.assert_array_equal(tiles_of(figures[0], 3, 3, pad=0).reshape(9, D), images)
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{z:.2f}" for z in z_values]          # z_1 grows right
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{z:.2f}" for z in z_values[::-1]]    # z_2 grows up


def test_latent_space(tmp_path, rng, monkeypatch):
    """Figure 4: every code at its place, in the colour its label has in the legend."""
    from matplotlib.colors import to_hex
    figures = drawn_figures(monkeypatch)
    z, labels = rng.standard_normal((50, 2)), rng.integers(0, 10, 50)
    assert_png(plots.plot_latent_space(z, labels, tmp_path / "l.png"), (7, 6))
    ax = figures[0].axes[0]
    legend = {text.get_text(): to_hex(handle.get_color())
              for text, handle in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
    assert set(legend) == {str(k) for k in np.unique(labels)}
    for scatter in ax.collections:
        points, colour = scatter.get_offsets(), to_hex(scatter.get_facecolor()[0], keep_alpha=False)
        (label,) = [k for k, c in legend.items() if c == colour]
        assert same_rows(points, z[labels == int(label)]), label
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(z)


def test_interpolation(tmp_path, rng, monkeypatch):
    figures = drawn_figures(monkeypatch)
    images, ends = rng.random((2, 5, D)), rng.random((2, 2, D))
    assert_png(plots.plot_interpolation(images, tmp_path / "i.png"), (8, 3.2))
    np.testing.assert_array_equal(tiles_of(figures[0], 2, 5), images)
    assert_png(plots.plot_interpolation(images, tmp_path / "j.png", ends=ends), (8, 3.2))
    drawn = tiles_of(figures[1], 2, 9)                               # x_a, a blank, the 5 steps, a blank, x_b
    np.testing.assert_array_equal(drawn[:, 2:7], images)
    np.testing.assert_array_equal(drawn[:, 0], ends[:, 0])
    np.testing.assert_array_equal(drawn[:, 8], ends[:, 1])
    assert np.all(drawn[:, [1, 7]] == 0)


def drawn_figure(monkeypatch):
    """Capture the matplotlib Figure a plot function saves (to look at what it drew)."""
    figures, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: figures.append(fig) or save(fig, path, dpi))
    return figures


def test_training_curves(tmp_path, rng):
    history = [{f"{s}_{k}": float(v) for s in ("train", "test") for k, v in
                zip(("nelbo", "rec", "kl"), rng.random(3))} for _ in range(3)]
    assert_png(plots.plot_training_curves(history, tmp_path / "t.png"), (11, 3.6))


def test_training_curves_compare_numbers_taken_the_same_way(tmp_path, rng, monkeypatch):
    """After-epoch training and test values are the curves; the running mean is drawn apart."""
    figures = drawn_figure(monkeypatch)
    history = [{f"{s}_{k}": float(v) for s in ("train", "train_eval", "test") for k, v in
                zip(("nelbo", "rec", "kl"), rng.random(3))} | {"train_eval_n": 1000} for _ in range(3)]
    plots.plot_training_curves(history, tmp_path / "t.png")
    ax = figures[0].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    after = lines["training images (1,000), after the epoch"]
    assert list(after.get_ydata()) == [h["train_eval_nelbo"] for h in history]
    assert list(lines["test images, after the epoch"].get_ydata()) == [h["test_nelbo"] for h in history]
    running = lines["training images, running mean during the epoch"]
    assert running.get_linestyle() == ":" and list(running.get_ydata()) == [h["train_nelbo"] for h in history]
    gap = history[-1]["test_nelbo"] - history[-1]["train_eval_nelbo"]
    assert any(f"test - training = {gap:.2f}" in t.get_text() for t in figures[0].texts)


def test_variational_gap(tmp_path, rng, monkeypatch):
    figures = drawn_figure(monkeypatch)
    model = VAE(D, [8], 2, seed=1)
    x = rng.random((2, D))
    gaps = exact_gap(model, x, points=41, coarse_points=21)
    assert_png(plots.plot_variational_gap(gaps, x, tmp_path / "g.png"), (3.4 * 2, 4.6))
    text = " ".join(t.get_text() for t in figures[0].texts)
    assert "IS" not in text and "midpoint rule on the grid" in figures[0]._suptitle.get_text()   # no check, none shown
    for g in gaps:
        assert f"log p(x), grid     = {g.log_px[0]:8.2f}" in text and f"KL(q || p(z|x))    = {g.kl[0]:8.3f}" in text


def test_the_importance_sampled_check_agrees_with_the_grid():
    """Figure 7's independent check: IS shares no step with the grid, yet both give log p(x)."""
    from scratchvae.pictures.figures import importance_sampled_log_px
    model = VAE(D, [8], 2, dtype=np.float64, seed=3)
    x = np.random.default_rng(4).random((3, D))
    grid = np.array([g.log_px[0] for g in exact_gap(model, x)])
    estimate, stderr = importance_sampled_log_px(model, x, 5000, np.random.default_rng(5), chunk=700)
    assert np.all(stderr > 0) and np.all(stderr < 0.02), stderr
    assert np.all(np.abs(estimate - grid) < 4 * stderr + 1e-9), (estimate - grid, stderr)
    wrong = grid + 0.1                                                  # and the check has power
    assert np.all(np.abs(estimate - wrong) > 4 * stderr)


def test_gradient_estimators(tmp_path, rng, monkeypatch):
    """Figure 8's numbers from the estimates: for f(z) = -|z|^2 / 2, F = -(|mu|^2 + |sigma|^2) / 2,
    so the reference gradients are -mu and -sigma; the bars are Var(score) / Var(reparam.) per
    coordinate; the 'within 2 s.e.' lines count what they say."""
    figures = drawn_figures(monkeypatch)
    mu, sigma = rng.standard_normal((2, 3)), np.full((2, 3), 0.5)
    f = lambda z: -0.5 * np.sum(z ** 2, axis=-1)
    c = compare_estimators(f, lambda z: -z, mu, sigma, 5, 20, rng, n_reference=20_000)
    assert_png(plots.plot_gradient_estimators(c, tmp_path / "e.png"), (13, 4))
    spread, averages, ratio = [ax for ax in figures[0].axes if ax.get_legend() is not None]
    heights = np.array([bar.get_height() for bar in ratio.patches])
    expected = [c.score_mu.var(axis=0).ravel() / c.reparam_mu.var(axis=0).ravel(),
                c.score_sigma.var(axis=0).ravel() / c.reparam_sigma.var(axis=0).ravel()]
    np.testing.assert_allclose(heights, np.concatenate(expected), rtol=1e-12)
    np.testing.assert_allclose(c.reference_mu, -mu, atol=4 * 0.5 / np.sqrt(20_000))    # 4 s.e. of the reference
    np.testing.assert_allclose(c.reference_sigma, -sigma, atol=4 * 0.5 * np.sqrt(2) / np.sqrt(20_000))
    texts = {t.get_text().split(":")[0]: t.get_text() for t in averages.texts}
    for name, k in (("reparameterisation", "reparam"), ("score function", "score")):
        # s.e. of (average of R = 20 estimates - reference): Var / R, plus the reference's own,
        # S = 5 times the variance of one 5-sample reparameterisation estimate, over 20,000 samples
        within = [np.abs(getattr(c, f"{k}_{p}").mean(axis=0) - getattr(c, f"reference_{p}"))
                  <= 2 * np.sqrt(getattr(c, f"{k}_{p}").var(axis=0, ddof=1) / 20
                                 + 5 * getattr(c, f"reparam_{p}").var(axis=0, ddof=1) / 20_000)
                  for p in ("mu", "sigma")]
        assert texts[name] == f"{name}: {np.mean(within):.0%} within 2 s.e."


def test_gradient_estimators_keep_one_colour_per_estimator(tmp_path, rng, monkeypatch):
    """Blue is the reparameterisation and orange the score function in every panel; the ratio
    panel, which is neither, uses neither colour."""
    from matplotlib.colors import to_hex
    figures = drawn_figure(monkeypatch)
    mu, sigma = rng.standard_normal((2, 3)), np.full((2, 3), 0.5)
    f = lambda z: -0.5 * np.sum(z ** 2, axis=-1)
    comparison = compare_estimators(f, lambda z: -z, mu, sigma, 5, 20, rng, n_reference=200)
    plots.plot_gradient_estimators(comparison, tmp_path / "e.png")
    spread, averages, ratio = [ax for ax in figures[0].axes if ax.get_legend() is not None]
    colour_of = {"reparameterisation": to_hex("tab:blue"), "score function": to_hex("tab:orange")}
    for ax in (spread, averages):
        handles, labels = ax.get_legend_handles_labels()
        seen = set()
        for handle, label in zip(handles, labels):
            for name, colour in colour_of.items():
                if label.startswith(name):
                    artist = handle[0] if isinstance(handle, tuple) else handle
                    face = artist.get_color() if hasattr(artist, "get_linestyle") and not hasattr(artist, "get_width") \
                        else artist.get_facecolor()
                    assert to_hex(face) == colour, (label, to_hex(face))
                    seen.add(name)
        assert seen == set(colour_of), labels
    bars = [to_hex(patch.get_facecolor()) for patch in ratio.patches]
    assert bars and not set(bars) & set(colour_of.values())
    assert "without a baseline" in figures[0]._suptitle.get_text()


def test_mosaic_places_tiles_with_padding():
    images = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)        # 2 x 2 tiles
    tiles = plots.mosaic(images, pad=1)
    assert tiles.shape == (2 * 3 - 1, 3 * 3 - 1)
    np.testing.assert_array_equal(tiles[3:5, 6:8], images[1, 2].reshape(2, 2))
    assert np.all(tiles[2] == 0) and np.all(tiles[:, 2] == 0)           # the gaps are blank


def test_mass_levels_enclose_the_asked_mass():
    z = np.linspace(-6, 6, 241)
    h = z[1] - z[0]
    density = np.exp(-0.5 * (z[:, None] ** 2 + z[None] ** 2)) / (2 * np.pi)
    levels = plots.mass_levels(density, h * h, masses=(0.9, 0.5))
    assert np.all(np.diff(levels) > 0)
    for level, mass in zip(levels, (0.9, 0.5)):
        # for N(0, I) in 2-D the region {p >= level} is a disc; its mass is 1 - 2 pi level
        assert 1 - 2 * np.pi * level == pytest.approx(mass, abs=0.01)


def test_manifold_grid_is_the_inverse_gaussian_cdf():
    z_values, points = manifold_grid(4)
    np.testing.assert_allclose(z_values, [-1.1503494, -0.3186394, 0.3186394, 1.1503494], rtol=1e-6)
    np.testing.assert_array_equal(points[0], [z_values[0], z_values[-1]])   # top-left: small z_1, large z_2
    np.testing.assert_array_equal(points[1], [z_values[1], z_values[-1]])   # z_1 grows along a row


def test_latent_projection_says_what_it_shows():
    rng = np.random.default_rng(1)
    mu2 = rng.standard_normal((30, 2))
    z, labels = latent_projection(mu2)
    np.testing.assert_array_equal(z, mu2)
    assert labels == ("z_1", "z_2")
    mu5 = rng.standard_normal((30, 5)) * [5, 3, 0.1, 0.1, 0.1]
    z, labels = latent_projection(mu5)
    assert z.shape == (30, 2) and "principal component 1" in labels[0]
    np.testing.assert_allclose(np.var(z, axis=0).sum(), np.var(mu5, axis=0).sum(), rtol=0.02)


def test_one_per_class_cycles_through_the_labels():
    labels = np.array([3, 1, 1, 0, 3, 0, 2])
    pick = one_per_class(labels, 6, np.random.default_rng(0))
    np.testing.assert_array_equal(labels[pick], [0, 1, 2, 3, 0, 1])


def tiny_figures(out, seed):
    rng = np.random.default_rng(2)
    images, labels = rng.random((40, D)).astype(np.float32), np.arange(40) % 10
    history = [{"train_nelbo": 3.0, "train_rec": 2.0, "train_kl": 1.0},
               {"train_nelbo": 2.0, "train_rec": 1.5, "train_kl": 0.5}]
    sizes = dict(n_latent=30, gap_points=31, n_gap=2, grad_repeats=5, grad_reference=50, n_manifold=4,
                 infer_steps=20)
    return make_figures(out, model=VAE(D, [8], 3, seed=3), model2d=VAE(D, [8], 2, seed=4),
                        autoencoder=Autoencoder(D, [8], 2, seed=5), images=images, labels=labels,
                        history=history, seed=seed, sizes=sizes, log=lambda _: None)


def test_figures_are_reproducible_for_a_seed(tmp_path):
    first, again, other = (tiny_figures(tmp_path / name, seed) for name, seed in
                           (("a", 5), ("b", 5), ("c", 6)))
    assert list(first) == list(FIGURES)
    for name in FIGURES:
        assert first[name].read_bytes() == again[name].read_bytes(), name
    # a different seed draws other images and noise
    assert first["samples"].read_bytes() != other["samples"].read_bytes()


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="must be a square"):
        plots.plot_samples(np.zeros((5, D)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="D = side"):
        plots.plot_samples(np.zeros((4, 15)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_training_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="2 originals but 3"):
        plots.plot_reconstructions(np.zeros((2, D)), np.zeros((3, D)), tmp_path / "x.png")


def test_variational_gap_shows_the_range_of_independent_importance_sampled_runs(tmp_path, monkeypatch):
    figures = drawn_figure(monkeypatch)
    model = VAE(D, [8], 2, seed=1)
    x = np.random.default_rng(7).random((2, D))
    gaps = exact_gap(model, x, points=41, coarse_points=21)
    runs = np.array([[-12.345, -12.2, -12.41], [-6.789, -6.7, -6.75]])
    plots.plot_variational_gap(gaps, x, tmp_path / "g.png", is_runs=runs, is_k=700)
    text = " ".join(t.get_text() for t in figures[0].texts) + figures[0]._suptitle.get_text()
    assert "log p(x), IS runs  =   -12.41 to -12.20" in text and "-6.79 to -6.70" in text
    assert "the range of 3 independent importance-sampled estimates of log p(x), k = 700 each" in text
    with pytest.raises(ValueError, match="is_runs must be"):
        plots.plot_variational_gap(gaps, x, tmp_path / "h.png", is_runs=runs[:, :1])


def test_independent_importance_sampled_runs_scatter_around_the_grids_log_px():
    """figures.importance_sampled_runs: R fresh estimates per image, which differ from each other
    and whose mean is log p(x) on the grid within their own spread (a model whose weights are tame)."""
    from scratchvae.pictures.figures import importance_sampled_runs
    model = VAE(D, [8], 2, dtype=np.float64, seed=3)
    x = np.random.default_rng(4).random((3, D))
    grid = np.array([g.log_px[0] for g in exact_gap(model, x)])
    runs = importance_sampled_runs(model, x, 500, 8, np.random.default_rng(5))
    assert runs.shape == (8, 3)
    spread = runs.std(axis=0, ddof=1)
    assert np.all(spread > 1e-4), spread                                # independent: not one run repeated
    assert np.all(np.abs(runs.mean(axis=0) - grid) < 4 * spread / np.sqrt(8) + 1e-9), (runs.mean(axis=0) - grid, spread)
    assert np.all(np.abs(runs.mean(axis=0) - (grid + 0.1)) > 4 * spread / np.sqrt(8))   # and the check has power
