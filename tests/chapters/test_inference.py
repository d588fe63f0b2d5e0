"""Variational inference for one datapoint: the gradient w.r.t. lambda = (mu, logvar) by
finite differences, and q* between the encoder's ELBO and the exact log p(x) on the grid."""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.machinery.data import load
from scratchvae.chapters.inference import (elbo_and_grads, elbo_on_grid, fit_q, gaps_on_grid, grid_modes,
                                           grids_holding)
from scratchvae.chapters.posterior import exact_gap
from scratchvae.optim import Adam


def rel_error(a, b):
    return np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b)))


@pytest.mark.parametrize("likelihood,activation", [("bernoulli", "tanh"), ("gaussian", "tanh"),
                                                   ("bernoulli", "relu")])
def test_elbo_gradient_wrt_mu_and_logvar_matches_finite_differences(likelihood, activation):
    rng = np.random.default_rng(3)
    N, D, K, L = 3, 7, 2, 4
    model = VAE(D, [6, 5], K, activation=activation, likelihood=likelihood, dtype=np.float64, seed=2)
    x = rng.random((N, D)) if likelihood == "bernoulli" else rng.standard_normal((N, D))
    mu, logvar = rng.standard_normal((N, K)), 0.5 * rng.standard_normal((N, K))
    eps = rng.standard_normal((L, N, K))                               # frozen
    grads_before = model.flat_grads.copy()
    _, dmu, dlogvar = elbo_and_grads(model, x, mu, logvar, eps)
    np.testing.assert_array_equal(model.flat_grads, grads_before)     # the model's gradients untouched
    h = 1e-6
    for name, lam, analytic in (("mu", mu, dmu), ("logvar", logvar, dlogvar)):
        numeric = np.zeros_like(lam)
        for idx in np.ndindex(lam.shape):
            old = lam[idx]
            lam[idx] = old + h
            up = elbo_and_grads(model, x, mu, logvar, eps)[0].sum()
            lam[idx] = old - h
            down = elbo_and_grads(model, x, mu, logvar, eps)[0].sum()
            lam[idx] = old
            numeric[idx] = (up - down) / (2 * h)
        err = rel_error(analytic, numeric)
        assert err <= 1e-7, f"d ELBO / d {name} ({likelihood}, {activation}) rel_error={err:.2e}"


def test_elbo_equals_the_models_negative_loss_at_the_encoders_lambda():
    rng = np.random.default_rng(0)
    model = VAE(9, [8], 3, dtype=np.float64, seed=1, beta=1.0)
    x = rng.random((5, 9))
    eps = rng.standard_normal((2, 5, 3))
    mu, logvar = model.encode(x)
    elbo, _, _ = elbo_and_grads(model, x, mu, logvar, eps)
    loss, _ = model.loss(x, eps)
    np.testing.assert_allclose(-elbo.mean(), loss, rtol=1e-13)


def test_fit_q_rejects_an_unknown_start():
    model = VAE(4, [3], 2, dtype=np.float64)
    with pytest.raises(ValueError, match="init"):
        fit_q(model, np.zeros((1, 4)), np.random.default_rng(0), steps=1, init="middle")


def test_the_two_gaps_are_log_px_minus_elbo_star_and_elbo_star_minus_the_encoders_by_quadrature():
    """Cremer et al.'s split, every number against Gauss-Hermite quadrature (no grid, no sampling):
    approximation gap = log p(x) - ELBO(q*), amortisation gap = ELBO(q*) - ELBO(q_encoder)."""
    from helpers import elbo_by_quadrature, gauss_hermite_2d, log_px_by_quadrature
    model = VAE(16, [8], 2, activation="tanh", dtype=np.float64, seed=1)
    for weights in model.phi.values():
        weights *= 3                                   # a posterior narrower than the prior, q* unlike q
    x = (np.random.default_rng(0).random((2, 16)) < 0.5).astype(float)
    gaps = gaps_on_grid(model, x, np.random.default_rng(0), points=81, steps=100)
    nodes, weights = gauss_hermite_2d()
    mu_enc, logvar_enc = model.encode(x)
    for i in range(len(x)):
        mu, logvar = gaps.fitted.mu[i], gaps.fitted.logvar[i]
        log_px = log_px_by_quadrature(model, x[i], mu, logvar, nodes, weights)
        elbo_star = elbo_by_quadrature(model, x[i], mu, logvar, nodes, weights)
        elbo_enc = elbo_by_quadrature(model, x[i], mu_enc[i], logvar_enc[i], nodes, weights)
        assert gaps.log_px[i] == pytest.approx(log_px, abs=1e-3)
        assert gaps.elbo_star[i] == pytest.approx(elbo_star, abs=1e-3)
        assert gaps.elbo_encoder[i] == pytest.approx(elbo_enc, abs=1e-3)
        assert gaps.approximation_gap[i] == pytest.approx(log_px - elbo_star, abs=1e-3)
        assert gaps.amortisation_gap[i] == pytest.approx(elbo_star - elbo_enc, abs=1e-3)
        assert gaps.q_star_mass[i] == pytest.approx(1.0, abs=1e-9)
        assert min(log_px - elbo_star, elbo_star - elbo_enc) > 0.1         # both gaps are there to see
    # elbo_on_grid, for a q of no one's making, against the same quadrature
    mu, logvar = np.array([[0.3, -0.4]]), np.array([[-0.7, -1.1]])
    elbo, mass = elbo_on_grid(gaps.grids[0], mu, logvar)
    assert elbo[0] == pytest.approx(elbo_by_quadrature(model, x[0], mu[0], logvar[0], nodes, weights), abs=1e-3)
    assert mass[0] == pytest.approx(1.0, abs=1e-9)


def linear_gaussian_vae(seed=0, D=5):
    """VAE(D, [], 2, gaussian) with the decoder's log-variance weights zeroed: x | z ~ N(A z + b, Psi).
    Its posterior is N(m, S) with S^-1 = I + A^T Psi^-1 A, m = S A^T Psi^-1 (x - b) (Bishop, PRML
    2.3.3); the diagonal Gaussian closest to it in KL(q || p) has mean m and variances 1 / (S^-1)_jj."""
    model = VAE(D, [], 2, likelihood="gaussian", dtype=np.float64, seed=seed)
    model.params["dec.logvar.W"][...] = 0
    A, b = model.params["dec.mean.W"].T, model.params["dec.mean.b"]
    psi = np.exp(model.params["dec.logvar.b"])
    precision = np.eye(2) + A.T @ (A / psi[:, None])
    best = lambda x: (np.linalg.solve(precision, A.T @ ((x - b) / psi).T).T, -np.log(np.diag(precision)))
    return model, best


@pytest.mark.parametrize("init", ["encoder", "prior"])
def test_q_star_is_the_best_diagonal_gaussian_of_a_gaussian_posterior(init):
    """fit_q's defaults (500 Adam steps, 16 samples, lr 0.05 falling to 0.002) reach the closed
    form from either start: measured within 0.016 (mu) and 0.023 (logvar) for seeds 0 and 2."""
    for seed in (0, 2):
        model, best = linear_gaussian_vae(seed)
        x = np.random.default_rng(seed + 1).standard_normal((3, 5))
        fitted = fit_q(model, x, np.random.default_rng(0), init=init)
        mu_star, logvar_star = best(x)
        assert np.abs(fitted.mu - mu_star).max() < 0.05, (seed, fitted.mu, mu_star)
        assert np.abs(fitted.logvar - logvar_star).max() < 0.08, (seed, fitted.logvar, logvar_star)


def test_fit_q_steps_adam_downhill_on_minus_the_elbo_with_a_geometric_learning_rate(monkeypatch):
    """What each step does, read from a recording Adam: its gradient is minus elbo_and_grads' at the
    current lambda with that step's eps (n_samples draws, in the model's dtype), its learning rate
    falls from lr to final_lr geometrically; the trace holds each step's ELBO; the defaults."""
    import scratchvae.chapters.inference as inference
    seen = []

    class Recording(Adam):
        def step(self):
            seen.append((self.lr, self.params.copy(), self.grads.copy()))
            super().step()

    monkeypatch.setattr(inference, "Adam", Recording)
    model = VAE(6, [5], 2, seed=1)                                       # float32
    x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    for init, start in (("encoder", model.encode(x)), ("prior", (np.zeros((3, 2)), np.zeros((3, 2))))):
        seen.clear()
        fitted = fit_q(model, x, np.random.default_rng(5), steps=4, n_samples=3, lr=0.1, final_lr=0.001, init=init)
        np.testing.assert_allclose([lr for lr, _, _ in seen], 0.1 * 0.01 ** (np.arange(4) / 3), rtol=1e-12)
        replay = np.random.default_rng(5)
        for t, (_, lam, dlam) in enumerate(seen):
            eps = replay.standard_normal((3, 3, 2)).astype(np.float32)
            mu, logvar = lam[:6].reshape(3, 2), lam[6:].reshape(3, 2)
            if t == 0:
                np.testing.assert_array_equal(mu, start[0])
                np.testing.assert_array_equal(logvar, start[1])
            elbo, g_mu, g_logvar = elbo_and_grads(model, x, mu, logvar, eps)
            np.testing.assert_array_equal(dlam, -np.concatenate([g_mu.ravel(), g_logvar.ravel()]))
            np.testing.assert_array_equal(fitted.elbo_trace[t], elbo)
        assert fitted.mu.dtype == fitted.logvar.dtype == np.float32 and fitted.elbo_trace.shape == (4, 3)
    seen.clear()
    drawn = []
    monkeypatch.setattr(inference, "elbo_and_grads",
                        lambda model, x, mu, logvar, eps: drawn.append(eps.shape) or elbo_and_grads(model, x, mu, logvar, eps))
    fit_q(model, x, np.random.default_rng(5))
    assert len(seen) == 500 and set(drawn) == {(16, 3, 2)}
    assert seen[0][0] == 0.05 and seen[-1][0] == pytest.approx(0.002, rel=1e-12)

# ------------------------------------------------------------------ restarts: an encoder in the wrong mode
def two_mode_model(x, c, sigma_x, enc_mu, enc_logvar):
    """A 1-pixel model, p(x|z) = N(x; relu(z_1) + c relu(-z_1), sigma_x^2), whose encoder says enc_mu.

    For x > 0 and c > 0, p(z|x) has two modes, z_1 near x and near -x / c, each a Gaussian in z_1
    (sigma_x small) times N(0, 1) in z_2: the best single Gaussian sits in the heavier mode and
    misses the other's mass, so its approximation gap is -log P(that mode | x).
    """
    model = VAE(1, [2], 2, activation="relu", likelihood="gaussian", dtype=np.float64, seed=0)
    model.flat_params[...] = 0
    model.params["dec.fc1.W"][...] = [[1, -1], [0, 0]]                 # h = (relu(z_1), relu(-z_1))
    model.params["dec.mean.W"][...] = [[1], [c]]
    model.params["dec.logvar.b"][...] = np.log(sigma_x ** 2)
    model.params["enc.mu.b"][...] = enc_mu                              # W = 0: the same q for every x
    model.params["enc.logvar.b"][...] = enc_logvar
    return model, np.array([[x]])


def mode_masses(gap):
    """P(z_1 > 0 | x) and P(z_1 < 0 | x) on the grid."""
    p = np.exp(gap.log_posterior[0]) * gap.grid.cell_area
    right = gap.grid.points[:, 0] > 0
    return p[right].sum(), p[~right].sum()


def test_restarts_find_the_mode_an_encoder_in_the_wrong_mode_misses():
    # modes at z_1 = 2 / 1.04 and -2.353; the right one holds about 0.69 of p(z|x), and the
    # encoder puts q in the left one (mean -2.5, sd 0.2)
    model, x = two_mode_model(2.0, c=0.8, sigma_x=0.2, enc_mu=(-2.5, 0.0), enc_logvar=(np.log(0.04), 0.0))
    gaps = gaps_on_grid(model, x, np.random.default_rng(0))
    assert gaps.grids[0].grid.shape == (201, 201)                       # the default grid
    right, left = mode_masses(gaps.grids[0])
    assert 0.6 < right < 0.8 and left == pytest.approx(1 - right, abs=1e-9)
    # the encoder's start alone ends in the left mode: its gap is -log P(left), not -log P(right)
    from_encoder = dict(gaps.starts[0])["encoder"]
    assert gaps.log_px[0] - from_encoder == pytest.approx(-np.log(left), abs=0.02)
    # q* is the best start's: a diagonal Gaussian on the right mode, which has the larger mass
    assert gaps.best_start[0].startswith("mode")
    assert gaps.fitted.mu[0, 0] == pytest.approx(2 / 1.04, abs=0.02)
    assert gaps.elbo_star[0] == max(elbo for _, elbo in gaps.starts[0])
    assert gaps.approximation_gap[0] == pytest.approx(-np.log(right), abs=0.02)
    assert gaps.amortisation_gap[0] >= np.log(right / left) - 0.02


def test_the_grid_modes_are_the_local_maxima_of_the_posterior():
    model, x = two_mode_model(2.0, c=0.8, sigma_x=0.2, enc_mu=(-2.5, 0.0), enc_logvar=(np.log(0.04), 0.0))
    gap = exact_gap(model, x, points=201)[0]
    h = gap.grid.z1[1] - gap.grid.z1[0]
    modes = grid_modes(gap, n=5)
    # log p(x, z) = -(m(z_1) - 2)^2 / (2 * 0.04) - |z|^2 / 2 + const: maxima at z_1 = 2 / 1.04
    # and z_1 = -0.8 * 2 / (0.64 + 0.04) = -2.353, z_2 = 0; the higher one first
    assert len(modes) == 2
    np.testing.assert_allclose(modes, [[2 / 1.04, 0.0], [-1.6 / 0.68, 0.0]], atol=h)
    assert len(grid_modes(gap, n=1)) == 1


def test_a_fitted_q_the_grid_does_not_hold_is_scored_on_a_grid_of_its_own():
    # a narrow posterior at z_1 = 3 (sd 0.2); the encoder's q far off at z_1 = -3 with sd 1. With
    # one Adam step every q stays where it starts, and the mode start (at z_1 = 3, sd 1) reaches
    # beyond the window that holds p(z|x) and the encoder's q: it wins on a grid of its own.
    model, x = two_mode_model(3.0, c=-1.0, sigma_x=0.2, enc_mu=(-3.0, 0.0), enc_logvar=(0.0, 0.0))
    gaps = gaps_on_grid(model, x, np.random.default_rng(0), points=201, steps=1)
    window = exact_gap(model, x, points=201)[0]
    assert gaps.best_start[0] == "mode 1"
    assert elbo_on_grid(window, gaps.fitted.mu, gaps.fitted.logvar)[1][0] < 1 - 1e-6   # not held there
    assert gaps.q_star_mass[0] == pytest.approx(1, abs=1e-6)                          # held here
    held = grids_holding(model, x, gaps.fitted.mu, gaps.fitted.logvar, points=401)[0]
    assert gaps.elbo_star[0] == pytest.approx(elbo_on_grid(held, gaps.fitted.mu, gaps.fitted.logvar)[0][0], abs=1e-3)
    assert gaps.log_px[0] == pytest.approx(window.log_px[0], abs=1e-6)
    assert gaps.elbo_encoder[0] == pytest.approx(window.elbo[0], abs=1e-6)


@pytest.fixture(scope="module")
def trained_2d(request):
    """A 784-64-2 VAE trained for 8 epochs on 2,000 real MNIST digits (about 10 s), and 1,000 others."""
    from conftest import _shared
    split = load("mnist", "test", _shared("mnist"), download=False)
    x = split.images.reshape(len(split.images), -1).astype(np.float32) / 255
    model = VAE(784, [64], 2, seed=0)
    adam = Adam(model.flat_params, model.flat_grads, lr=2e-3)
    rng = np.random.default_rng(0)
    train = x[:2000]
    for _ in range(8):
        for batch in np.array_split(rng.permutation(len(train)), 20):
            model.loss_and_grads(train[batch])
            adam.step()
    return model, x[9000:]


def test_q_star_lies_between_the_encoders_elbo_and_the_exact_log_px(trained_2d):
    model, test = trained_2d
    x = test[:12]
    gaps = gaps_on_grid(model, x, np.random.default_rng(1), points=151, steps=300)
    assert np.all(gaps.q_star_mass > 1 - 1e-6), gaps.q_star_mass           # the grid holds q*
    # never above log p(x): KL(q* || p(z|x)) >= 0, up to quadrature
    assert np.all(gaps.approximation_gap >= -1e-6), gaps.approximation_gap
    # at least as good as the encoder (both ELBOs exact on the grid; the ascent's own noise
    # is what "within Monte Carlo error" leaves: 0.05 nats)
    assert np.all(gaps.amortisation_gap >= -0.05), gaps.amortisation_gap
    # and strictly better on average: this encoder is far from the best q for each x
    assert gaps.amortisation_gap.mean() > 0.1, gaps.amortisation_gap


def test_q_star_from_the_prior_with_no_encoder_reaches_the_encoders_elbo(trained_2d):
    model, test = trained_2d
    x = test[12:18]
    fitted = fit_q(model, x, np.random.default_rng(2), steps=400, init="prior")
    grids = grids_holding(model, x, fitted.mu, fitted.logvar, points=151)
    for i, g in enumerate(grids):
        elbo_star, mass = elbo_on_grid(g, fitted.mu[i:i + 1], fitted.logvar[i:i + 1])
        # inference alone, started from q = p(z), finds a q at least as good as the network's
        # (a multimodal p(z|x) could trap it in a worse mode: 1 nat of slack)
        assert mass[0] > 1 - 1e-6
        assert elbo_star[0] >= g.elbo[0] - 1.0, (i, elbo_star[0], g.elbo[0])
        assert elbo_star[0] <= g.log_px[0] + 1e-6


# ------------------------------------------------------------------ the command: bad input is one line, exit 2
import scratchvae.chapters.inference as inference                                        # noqa: E402
from scratchvae.chapters.autoencoder import Autoencoder                          # noqa: E402
from scratchvae.chapters.cvae import CVAE                                        # noqa: E402
from helpers import assert_one_line_error, run_main, tiny_checkpoint  # noqa: E402
from helpers import write_dataset                                     # noqa: E402

INFERENCE = "python -m scratchvae.chapters.inference"


def run_inference(argv, capsys):
    return run_main(inference.main, argv, capsys)


@pytest.mark.parametrize("flag,value", [("--n", "0"), ("--n", "-2"), ("--n", "1"), ("--steps", "-5"),
                                        ("--steps", "0"), ("--seed", "-1")])
def test_inference_main_refuses_a_bad_number(tmp_path, capsys, flag, value):
    code, err = run_inference([str(tmp_path / "missing.npz"), flag, value], capsys)
    assert_one_line_error(code, err, INFERENCE, flag)


@pytest.mark.parametrize("model,words", [(Autoencoder(784, [4], 2, seed=0), ["an autoencoder"]),
                                         (CVAE(784, [4], 2, seed=0), ["conditional VAE"])])
def test_inference_main_refuses_a_checkpoint_that_is_not_an_unconditional_vae(tmp_path, capsys, model, words):
    path = tiny_checkpoint(tmp_path / "checkpoint.npz", model)
    code, err = run_inference([str(path), "--data-dir", str(tmp_path / "no-data")], capsys)
    assert_one_line_error(code, err, INFERENCE, str(path), "unconditional VAE", *words)


@pytest.mark.parametrize("model,split,words", [(VAE(12, [4], 2, seed=0), "test[:5]", ["12 pixels", "784"]),
                                               (VAE(784, [4], 2, seed=0), "test[9:]", ["--split", "at least 2"])])
def test_inference_main_refuses_data_it_cannot_use(tmp_path, capsys, model, split, words):
    write_dataset(tmp_path / "data", n_test=10)
    path = tiny_checkpoint(tmp_path / "checkpoint.npz", model)
    code, err = run_inference([str(path), "--data-dir", str(tmp_path / "data"), "--split", split], capsys)
    assert_one_line_error(code, err, INFERENCE, *words)


# ------------------------------------------------------------------ summary: the numbers the command prints
import math         # noqa: E402
import statistics   # noqa: E402

from scratchvae.chapters.inference import AMORTISATION, APPROXIMATION, Gaps, summary  # noqa: E402


def made_up_gaps():
    """Six images' gaps, made up so that every count has a boundary case: an amortisation gap of
    exactly 0 and one below 0, an encoder's start that stops exactly 0.1 nats short (not counted:
    "more than 0.1") and one just beyond, a start ("prior") that never wins, a "mode 2" tried on
    some images only, and an even n (the median is the mean of the middle two)."""
    starts = [[("encoder", -10.0), ("prior", -12.0), ("mode 1", -9.5)],
              [("encoder", 0.0), ("prior", -3.0), ("mode 1", 0.1)],                  # short by 0.1 exactly
              [("encoder", -50.0), ("prior", -80.0), ("mode 1", -20.0), ("mode 2", -30.0)],
              [("encoder", -7.0), ("prior", -9.0)],
              [("encoder", -4.0), ("prior", -6.0), ("mode 1", -5.0), ("mode 2", -3.75)],
              [("encoder", -1.0), ("prior", -1.5), ("mode 1", -1.25)]]
    elbo_star = np.array([max(e for _, e in s) for s in starts])
    best = np.array([max(s, key=lambda p: p[1])[0] for s in starts])
    log_px = elbo_star + np.array([0.25, 0.5, 1.0, 0.0625, 2.0, 0.125])
    elbo_encoder = elbo_star - np.array([3.0, 0.0, 31.0, 0.5, -0.25, 1.5])          # one 0, one < 0
    return Gaps(log_px=log_px, elbo_star=elbo_star, elbo_encoder=elbo_encoder, q_star_mass=np.ones(6),
                fitted=None, grids=None, starts=starts, best_start=best)


def test_summary_is_the_mean_standard_error_and_median_of_each_number_and_the_counts_of_the_starts():
    """summary's numbers against the statistics module and plain loops: the standard error of a
    mean is stdev (n - 1) / sqrt(n); the encoder's start alone would leave ELBO(q*) lower by
    ELBO(q*) - ELBO(encoder's start), and its approximation gap is then log p(x) - ELBO(encoder's start)."""
    gaps = made_up_gaps()
    s = summary(gaps)
    assert s.n == 6 and s.starts == 3 + 3 + 4 + 2 + 4 + 3
    columns = {"log p(x)": gaps.log_px, "ELBO(q*)": gaps.elbo_star, "ELBO(q_encoder)": gaps.elbo_encoder,
               APPROXIMATION: gaps.log_px - gaps.elbo_star, AMORTISATION: gaps.elbo_star - gaps.elbo_encoder}
    assert list(s.table) == list(columns)                                    # the order printed
    for name, column in columns.items():
        values = [float(v) for v in column]
        mean, sem, median = s.table[name]
        assert mean == pytest.approx(statistics.mean(values), rel=1e-14, abs=1e-14), name
        assert sem == pytest.approx(statistics.stdev(values) / math.sqrt(6), rel=1e-13), name
        assert median == pytest.approx(statistics.median(values), rel=1e-14, abs=1e-14), name
    amortisation = [float(a) for a in columns[AMORTISATION]]
    assert s.negative == sum(a < 0 for a in amortisation) == 1
    assert s.smallest == min(amortisation) == -0.25
    assert s.won == {"encoder": 2, "prior": 0, "mode 1": 3, "mode 2": 1}        # every start, in the order tried
    assert list(s.won) == ["encoder", "prior", "mode 1", "mode 2"]
    from_encoder = [dict(starts)["encoder"] for starts in gaps.starts]
    short = [float(e) - e0 for e, e0 in zip(gaps.elbo_star, from_encoder)]
    np.testing.assert_array_equal(s.short, short)
    assert s.short_images == sum(d > 0.1 for d in short) == 3                # 0.1 itself is not "more than"
    assert s.worst == short.index(max(short)) == 2
    assert s.approximation_gap_from_encoder == pytest.approx(
        statistics.mean(float(p) - e0 for p, e0 in zip(gaps.log_px, from_encoder)), rel=1e-14)


def test_summary_needs_two_images_for_a_standard_error():
    gaps = made_up_gaps()
    one = Gaps(log_px=gaps.log_px[:1], elbo_star=gaps.elbo_star[:1], elbo_encoder=gaps.elbo_encoder[:1],
               q_star_mass=gaps.q_star_mass[:1], fitted=None, grids=None, starts=gaps.starts[:1],
               best_start=gaps.best_start[:1])
    with pytest.raises(ValueError, match="at least 2 images, got 1"):
        summary(one)
    two = Gaps(log_px=gaps.log_px[:2], elbo_star=gaps.elbo_star[:2], elbo_encoder=gaps.elbo_encoder[:2],
               q_star_mass=gaps.q_star_mass[:2], fitted=None, grids=None, starts=gaps.starts[:2],
               best_start=gaps.best_start[:2])
    assert summary(two).table["log p(x)"][1] == pytest.approx(abs(gaps.log_px[0] - gaps.log_px[1]) / 2)


def test_inference_main_prints_the_summarys_numbers(tmp_path, capsys, monkeypatch):
    """The command prints what summary computes, each number rounded as the docs' table shows it
    (gaps_on_grid replaced by the made-up gaps: this checks the printing, not the fit)."""
    write_dataset(tmp_path / "data", n_test=10)
    path = tiny_checkpoint(tmp_path / "checkpoint.npz", VAE(784, [4], 2, seed=0))
    calls = []
    monkeypatch.setattr(inference, "gaps_on_grid",
                        lambda model, x, rng, **kw: calls.append((x.shape, kw)) or made_up_gaps())
    code = inference.main([str(path), "--data-dir", str(tmp_path / "data"), "--split", "test[:8]", "--n", "6",
                           "--steps", "7", "--modes", "2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and calls == [((6, 784), {"steps": 7, "modes": 2, "log": calls[0][1]["log"]})]
    s = summary(made_up_gaps())
    assert out[0].startswith("6 images of mnist test[:8], 7 Adam steps on lambda from 19 starts, ")
    for line, (name, (mean, sem, median)) in zip(out[1:6], s.table.items()):
        assert line.split() == [*name.split(), "mean", f"{mean:.3f}", "+/-", f"{sem:.3f}", "median", f"{median:.3f}"]
    assert out[6] == "  amortisation gap < 0 (q* worse than the encoder) on 1 images, smallest -0.250"
    assert out[7] == "  q* came from the start 'encoder' on 2, 'mode 1' on 3, 'mode 2' on 1"
    assert out[8] == ("  from the encoder's lambda alone, ELBO(q*) would be more than 0.1 nats lower on 3 images "
                      f"(by 30.00 nats at most, image 2); its mean approximation gap "
                      f"{s.approximation_gap_from_encoder:.3f} instead of {s.table[APPROXIMATION][0]:.3f}")
    assert len(out) == 10


def test_the_commands_defaults_are_those_of_the_docs_table(tmp_path):
    """docs/results.md's command for its 100-digit table names --split 'test[9000:]' and --n 100,
    and says 500 Adam steps and up to three modes: a learner who copies it (or leaves flags out)
    gets those. The seed is the default, 0 (the table's numbers are that seed's)."""
    import re
    import shlex
    from pathlib import Path
    docs = " ".join((Path(__file__).parents[2] / "docs" / "results.md").read_text().split())
    command = re.search(r"`(python -m scratchvae\.chapters\.inference [^`]*)`", docs).group(1)
    documented = inference.build_parser().parse_args(shlex.split(command)[3:])
    defaults = inference.build_parser().parse_args(["OUT/latent2d/checkpoint.npz"])
    assert documented.split == defaults.split == "test[9000:]"
    assert documented.n == defaults.n == 100
    assert defaults.steps == 500 and "500 Adam steps" in docs
    assert defaults.modes == 3 and "up to three, `--modes`" in docs
    assert defaults.seed == 0 and defaults.dataset == "mnist" and defaults.data_dir is None
    assert defaults.checkpoint == Path("OUT/latent2d/checkpoint.npz")        # a Path, as load_model takes it
    assert documented.data_dir == Path("../shared/data/mnist")


# ------------------------------------------------------------------ each number in its place
def test_each_datapoints_elbo_and_gradient_are_its_own_and_in_the_models_dtype():
    """The N ELBOs are independent: row i of a batch call equals the call on x_i, eps_i alone
    (so ELBO_i averages log p(x_i|z_il) over l only, not over the batch). And a float32 model
    given float64 lambda computes in float32: the numbers are those of lambda cast to float32."""
    rng = np.random.default_rng(4)
    model = VAE(7, [6], 2, activation="tanh", dtype=np.float64, seed=2)
    x, mu, logvar = rng.random((3, 7)), rng.standard_normal((3, 2)), 0.5 * rng.standard_normal((3, 2))
    eps = rng.standard_normal((4, 3, 2))
    batch = elbo_and_grads(model, x, mu, logvar, eps)
    for i in range(3):
        alone = elbo_and_grads(model, x[i:i + 1], mu[i:i + 1], logvar[i:i + 1], eps[:, i:i + 1])
        for name, b, a in zip(("elbo", "dmu", "dlogvar"), batch, alone):
            np.testing.assert_allclose(b[i], a[0], rtol=1e-12, err_msg=f"{name} of datapoint {i}")
    model32 = VAE(7, [6], 2, activation="tanh", seed=2)
    f32 = lambda a: a.astype(np.float32)
    for lam in ((mu, f32(logvar)), (f32(mu), logvar), (mu, logvar)):
        got = elbo_and_grads(model32, f32(x), *lam, f32(eps))
        want = elbo_and_grads(model32, f32(x), f32(mu), f32(logvar), f32(eps))
        for g, w in zip(got, want):
            assert g.dtype == np.float32
            np.testing.assert_array_equal(g, w)


def test_elbo_on_grid_and_grids_holding_read_lambda_in_float64_whatever_its_dtype():
    """The grid's numbers are float64: a lambda given in float32 or in extended precision is read
    as its float64 value, and gives the very numbers and grid that value gives."""
    model, x = two_mode_model(2.0, c=0.8, sigma_x=0.2, enc_mu=(-2.5, 0.0), enc_logvar=(np.log(0.04), 0.0))
    gap = exact_gap(model, x, points=41)[0]
    mu, logvar = np.array([[1.3, -0.2]], np.float32), np.array([[-1.7, -0.4]], np.float32)
    want = elbo_on_grid(gap, mu.astype(np.float64), logvar.astype(np.float64))
    held = grids_holding(model, x, mu.astype(np.float64), logvar.astype(np.float64), points=41)[0]
    for dtype in (np.float32, np.longdouble):
        for lam in ((mu.astype(dtype), logvar), (mu, logvar.astype(dtype)), (mu.astype(dtype), logvar.astype(dtype))):
            for got, w in zip(elbo_on_grid(gap, *lam), want):
                assert got.dtype == np.float64, dtype
                np.testing.assert_array_equal(got, w)
            grid = grids_holding(model, x, *lam, points=41)[0].grid
            assert grid.z1.dtype == grid.z2.dtype == np.float64, dtype
            np.testing.assert_array_equal(grid.z1, held.grid.z1)
            np.testing.assert_array_equal(grid.z2, held.grid.z2)


def test_grids_holding_is_the_square_around_the_posteriors_window_and_q_plus_minus_q_sigmas():
    """Per image, the bounding box of posterior_window's square and of mu +- Q_SIGMAS sigma along
    each axis (sigma = exp(logvar / 2)); the grid is the square centred on that box whose side is
    the box's longer one. Each q here reaches beyond the window on a different side."""
    from scratchvae.chapters.posterior import Q_SIGMAS, posterior_window, square_grid, variational_gap
    model, _ = two_mode_model(2.0, c=0.8, sigma_x=0.2, enc_mu=(-2.5, 0.0), enc_logvar=(np.log(0.04), 0.0))
    x = np.array([[2.0], [1.0], [1.5]])
    mu = np.array([[-9.0, 0.5], [0.3, 7.5], [0.0, 0.0]])
    logvar = np.array([[np.log(0.25), np.log(4.0)], [np.log(9.0), np.log(0.36)], [np.log(0.01), np.log(0.01)]])
    centers, half_widths = posterior_window(model, x)
    grids = grids_holding(model, x, mu, logvar, points=31)
    assert len(grids) == 3
    for i, g in enumerate(grids):
        lo, hi = [], []
        for j in range(2):
            sigma = np.sqrt(np.exp(logvar[i, j]))
            lo.append(min(centers[i, j] - half_widths[i], mu[i, j] - Q_SIGMAS * sigma))
            hi.append(max(centers[i, j] + half_widths[i], mu[i, j] + Q_SIGMAS * sigma))
        half = max(hi[0] - lo[0], hi[1] - lo[1]) / 2
        want = square_grid([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2], half, 31)
        np.testing.assert_allclose(g.grid.z1, want.z1, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(g.grid.z2, want.z2, rtol=1e-14, atol=1e-14)
        alone = variational_gap(model, x[i:i + 1], want)
        assert g.log_px.shape == (1,) and g.log_px[0] == pytest.approx(alone.log_px[0], rel=1e-12)
    assert (mu[0, 0] - Q_SIGMAS * 0.5 < centers[0, 0] - half_widths[0]           # q beyond the window's left
            and mu[1, 1] + Q_SIGMAS * 0.6 > centers[1, 1] + half_widths[1])      # and above it
    assert grids_holding(model, x[:1], mu[:1], logvar[:1])[0].grid.shape == (201, 201)   # the default


def cones(points, peaks):
    """A made-up one-datapoint GapOnGrid for grid_modes: log p(x, z) on a points x points grid is
    max_k (h_k - distance in cells to peak k), whose local maxima are exactly the peaks (row, col, h)
    that no higher peak's cone covers. Values are negative, as log p(x, z) is for images."""
    from types import SimpleNamespace
    from scratchvae.chapters.posterior import square_grid
    rows, cols = np.indices((points, points))
    values = np.max([h - np.hypot(rows - r, cols - c) for r, c, h in peaks], axis=0)
    return SimpleNamespace(grid=square_grid((0.0, 0.0), 1.0, points), log_joint=values.reshape(1, -1))


def at(gap, row, col):
    """The point z of grid cell (row, col): z_1 varies along a row."""
    return gap.grid.points[row * len(gap.grid.z1) + col]


@pytest.mark.parametrize("points,radius", [(201, 5), (41, 1), (80, 2), (119, 2)])
def test_a_mode_is_the_highest_point_within_a_fortieth_of_the_grid_by_default(points, radius):
    """Default radius: points // 40 cells, at least 1. A lower peak `radius` cells from a higher
    one is not a mode of its own; one cell further away it is."""
    c = points // 2
    for d, modes in ((radius, 1), (radius + 1, 2)):
        gap = cones(points, [(c, c, -10.0), (c, c + d, -10.5)])
        found = grid_modes(gap, n=5)
        want = [at(gap, c, c), at(gap, c, c + d)][:modes]
        np.testing.assert_array_equal(found, want, err_msg=f"{points} points, peaks {d} cells apart")
    gap = cones(points, [(c, c, -10.0), (c + radius + 1, c, -10.5)])
    assert len(grid_modes(gap, n=5, radius=radius + 1)) == 1                      # a radius given


def test_a_mode_on_the_edge_of_the_grid_is_found():
    """The grid's edge is padded with -inf: a corner cell higher than its neighbours is a mode,
    however negative its value."""
    gap = cones(41, [(0, 0, -300.0), (20, 20, -310.0), (40, 25, -305.0)])
    np.testing.assert_array_equal(grid_modes(gap, n=5), [at(gap, 0, 0), at(gap, 40, 25), at(gap, 20, 20)])


def test_modes_of_equal_height_come_in_the_grids_order():
    """Highest first, and modes of the same height in grid order (row by row): a stable sort, so
    which mode is "mode 1" does not depend on NumPy's choice of sorting algorithm."""
    spots = [(r, c) for r in range(6, 200, 13) for c in range(6, 200, 13)]          # 225 peaks, 13 cells apart
    heights = [-10.0 - 0.5 * ((7 * k) % 3) for k in range(len(spots))]
    gap = cones(201, [(r, c, h) for (r, c), h in zip(spots, heights)])
    order = sorted(range(len(spots)), key=lambda k: (-heights[k], spots[k]))
    np.testing.assert_array_equal(grid_modes(gap, n=len(spots)), [at(gap, *spots[k]) for k in order])
    np.testing.assert_array_equal(grid_modes(gap, n=4), [at(gap, *spots[k]) for k in order[:4]])


def test_fit_q_reports_progress_every_50_steps_and_at_the_last():
    model = VAE(4, [3], 2, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).random((2, 4))
    for steps, want in ((120, [50, 100, 120]), (100, [50, 100]), (49, [49]), (1, [1])):
        calls = []
        fit_q(model, x, np.random.default_rng(0), steps=steps, n_samples=1,
              progress=lambda t, total: calls.append((t, total)))
        assert calls == [(t, steps) for t in want], steps


def test_fit_q_refuses_bad_counts_and_starts_by_name():
    model = VAE(4, [3], 2, dtype=np.float64)
    x, rng = np.zeros((3, 4)), np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"^steps must be an integer >= 1, got 0"):
        fit_q(model, x, rng, steps=0)
    with pytest.raises(ValueError, match=r"^n_samples must be an integer >= 1, got 0"):
        fit_q(model, x, rng, steps=1, n_samples=0)
    good = np.zeros((3, 2))
    for init in ([good, good],                    # a list, not the pair
                 (good, good, good),              # three arrays
                 (good[:1], good[:1]),            # (1, K) arrays would broadcast
                 (good, good[:, :1])):            # one of the two the wrong shape
        with pytest.raises(ValueError, match=r"^init must be 'encoder', 'prior' or a pair \(mu0, logvar0\) of \(3, 2\)"):
            fit_q(model, x, rng, steps=1, init=init)


def test_fit_q_with_two_steps_uses_lr_then_final_lr(monkeypatch):
    """The geometric decay lr * (final_lr / lr)^(t / (steps - 1)) reaches final_lr at the last
    step for any number of steps >= 2 (and one step uses lr)."""
    import scratchvae.chapters.inference as inference
    seen = []

    class Recording(Adam):
        def step(self):
            seen.append(self.lr)
            super().step()

    monkeypatch.setattr(inference, "Adam", Recording)
    model = VAE(4, [3], 2, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).random((2, 4))
    for steps, want in ((2, [0.1, 0.004]), (3, [0.1, 0.02, 0.004]), (1, [0.1])):
        seen.clear()
        fit_q(model, x, np.random.default_rng(0), steps=steps, n_samples=1, lr=0.1, final_lr=0.004)
        np.testing.assert_allclose(seen, want, rtol=1e-12, err_msg=str(steps))


def test_gaps_on_grid_from_every_start_keeps_the_best_rows_fit_and_says_what_it_did(monkeypatch):
    """Two images, one mode start each: the starts are named and fitted in order (encoder, prior,
    mode 1 per image, one row each); q* is the best row's fit (its lambda and its trace); a
    fitted q the window does not hold, and only such a q, is scored on a grid of its own with the
    points asked for, which then is that image's grid; the log says these counts."""
    import scratchvae.chapters.inference as inference
    model, _ = two_mode_model(3.0, c=-1.0, sigma_x=0.2, enc_mu=(-3.0, 0.0), enc_logvar=(0.0, 0.0))
    x = np.array([[3.0], [-2.0]])
    fits, holding, lines = [], [], []
    monkeypatch.setattr(inference, "fit_q", lambda *a, **kw: fits.append(fit_q(*a, **kw)) or fits[-1])
    monkeypatch.setattr(inference, "grids_holding",
                        lambda *a: holding.append(a) or grids_holding(*a))
    gaps = gaps_on_grid(model, x, np.random.default_rng(0), points=61, modes=1, steps=3, log=lines.append)
    (fitted,) = fits
    assert [[name for name, _ in s] for s in gaps.starts] == [["encoder", "prior", "mode 1"]] * 2
    windows = exact_gap(model, x, points=61)
    rows = {"encoder": 0, "prior": 1, "mode 1": 2}
    best = [3 * i + rows[name] for i, name in enumerate(gaps.best_start)]
    np.testing.assert_array_equal(gaps.fitted.mu, fitted.mu[best])
    np.testing.assert_array_equal(gaps.fitted.logvar, fitted.logvar[best])
    np.testing.assert_array_equal(gaps.fitted.elbo_trace, fitted.elbo_trace[:, best])
    assert fitted.elbo_trace.shape == (3, 6)
    not_held = [r for r in range(6)
                if elbo_on_grid(windows[r // 3], fitted.mu[r:r + 1], fitted.logvar[r:r + 1])[1][0] < 1 - 1e-6]
    assert 0 < len(not_held) < 6 and len(holding) == len(not_held)
    assert best[0] in not_held and best[1] not in not_held        # one q* on a grid of its own, one on the window
    for r, (_, x_r, mu_r, logvar_r, points) in zip(not_held, holding):
        np.testing.assert_array_equal(x_r, x[r // 3:r // 3 + 1])
        np.testing.assert_array_equal(mu_r, fitted.mu[r:r + 1])
        assert points == 61
    for i, g in enumerate(gaps.grids):
        assert g.grid.shape == (61, 61) and g.log_px.shape == (1,)
        elbo, mass = elbo_on_grid(g, gaps.fitted.mu[i:i + 1], gaps.fitted.logvar[i:i + 1])
        assert mass[0] > 1 - 1e-6 and elbo[0] == gaps.elbo_star[i]             # q* scored on this grid
        if best[i] not in not_held:
            np.testing.assert_array_equal(g.grid.z1, windows[i].grid.z1)
    assert lines == ["grids for p(z|x) done; fitting q* from 6 starts (3.0 per image)",
                     "  Adam step 3/3 on lambda",
                     f"scored the 6 fitted q on the grids ({len(not_held)} on grids of their own)"]


def test_gaps_on_grid_starts_from_as_many_modes_as_asked():
    """p(z|x) with two modes (see two_mode_model): modes=1 starts from the higher only, modes=0
    from none, and the default (MODE_STARTS = 3) from both, as many as there are."""
    model, x = two_mode_model(2.0, c=0.8, sigma_x=0.2, enc_mu=(-2.5, 0.0), enc_logvar=(np.log(0.04), 0.0))
    assert len(grid_modes(exact_gap(model, x, points=41)[0], n=5)) == 2
    for modes, names in ((1, ["encoder", "prior", "mode 1"]), (0, ["encoder", "prior"]),
                         (None, ["encoder", "prior", "mode 1", "mode 2"])):
        kw = {} if modes is None else {"modes": modes}
        gaps = gaps_on_grid(model, x, np.random.default_rng(0), points=41, steps=1, **kw)
        assert [name for name, _ in gaps.starts[0]] == names, modes
