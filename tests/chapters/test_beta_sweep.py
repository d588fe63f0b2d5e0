"""The beta sweep (slides 12-13): what weighting the KL term does, as tests that fail if the
story is wrong -- the rate falls and the distortion rises as beta grows, beta = 0 has no KL
gradient at all, the figure's dashed lines are lines of equal -ELBO, and the command refuses
bad input in one line."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchvae import VAE
from scratchvae.chapters.beta_sweep import CIRCLE_95, main, measure, run_beta_sweep, table
from scratchvae.losses import kl_standard_normal_grads
from scratchvae.pictures.plots import iso_elbo_lines, plot_beta_sweep
from scratchvae.machinery.runner import TrainConfig
from helpers import circle_radii, drawn_figures, same_rows, scatter_points, synthetic_images

# The radius of the circle that holds 95 % of N(0, I) in 2-D: |z|^2 is chi-square with 2 degrees
# of freedom, whose 95 % quantile the tables give as 5.991464547 (checked by sampling below).
R95 = 5.991464547107979 ** 0.5

IMAGES = synthetic_images(600, D=36, seed=3)
LABELS = np.zeros(100, dtype=np.int64)


def tiny_config(beta, epochs, seed):
    """The sweep's run, shrunk: 36-pixel images of four prototypes, a 36-16-2 VAE."""
    return TrainConfig(hidden=(16,), latent=2, beta=beta, epochs=epochs, seed=seed, batch_size=50, lr=1e-2)


@pytest.fixture(scope="module")
def tiny_sweep():
    return run_beta_sweep(IMAGES[:500], IMAGES[500:], LABELS, betas=(0, 1, 4), epochs=MARGINS["epochs"],
                          seed=MARGINS["seed"], log=lambda _: None, config=tiny_config, n_samples=4)


MARGINS = dict(epochs=6, seed=2)


def test_rate_falls_and_distortion_rises_as_beta_grows(tiny_sweep):
    rate = [r["rate"] for r in tiny_sweep]
    distortion = [r["distortion"] for r in tiny_sweep]
    # seed 2: R 25.6, 2.17, 0.36 and D 7.08, 11.71, 17.42; seeds 1-5 all keep these margins
    assert rate[0] > rate[1] + 10 and rate[1] > rate[2] + 1, rate
    assert distortion[0] < distortion[1] - 0.5 and distortion[1] < distortion[2] - 3, distortion


def test_each_run_trained_its_own_beta_and_the_numbers_are_the_trainers(tiny_sweep):
    for r in tiny_sweep:
        assert {record["beta"] for record in r["history"]} == {r["beta"]}     # beta = 0: no KL in any step
        last = r["history"][-1]
        assert (r["distortion"], r["rate"]) == (last["test_rec"], last["test_kl"])
        assert r["nelbo"] == pytest.approx(r["distortion"] + r["rate"])
        assert r["objective"] == pytest.approx(r["distortion"] + r["beta"] * r["rate"])
        assert r["inside"] == np.mean(np.hypot(*r["codes"].T) < R95)
        assert r["samples"].shape == (4, 36)
    # the same z ~ N(0, I) decoded by every model: the samples differ only by the model
    assert not np.allclose(tiny_sweep[0]["samples"], tiny_sweep[2]["samples"])
    assert table(tiny_sweep).count("\n") == 2 + len(tiny_sweep) - 1


@pytest.mark.parametrize("binarize", ["threshold", "dynamic"])
def test_binarized_targets_reach_every_run_and_its_numbers(binarize):
    """--binarize (the demo's, the command's) trains and measures each run on 0/1 targets:
    its D and R are still the trainer's own, and they differ from the grey-level run's."""
    images = (IMAGES * 0.7).astype(np.uint8)                 # grey levels, so that a cut at 0.5 changes them
    grey, binary = (run_beta_sweep(images[:500], images[500:], LABELS, betas=(1,), epochs=2, seed=1,
                                   log=lambda _: None, config=tiny_config, n_samples=4, binarize=b)[0]
                    for b in ("none", binarize))
    last = binary["history"][-1]
    assert (binary["distortion"], binary["rate"]) == (last["test_rec"], last["test_kl"])
    assert binary["distortion"] != grey["distortion"] and not np.array_equal(binary["codes"], grey["codes"])


def test_the_tables_radius_holds_95_percent_of_the_prior():
    z = np.random.default_rng(0).standard_normal((1_000_000, 2))
    assert abs(np.mean(np.hypot(*z.T) < R95) - 0.95) < 0.001          # s.e. 0.0002
    assert CIRCLE_95 == pytest.approx(R95, rel=1e-12)


def model_with_codes(codes, D):
    """A linear VAE (no hidden layer) whose encoder maps image i, the one-hot e_i, to mu = codes[i]."""
    model = VAE(D, [], 2, seed=0)
    model.params["enc.mu.W"][...] = 0.0
    model.params["enc.mu.W"][:len(codes)] = codes
    model.params["enc.mu.b"][...] = 0.0
    return model


def test_measure_counts_the_codes_inside_the_95_percent_circle_and_their_spread():
    """measure's codes, their mean, s.d. and the fraction inside the circle, for codes placed on
    purpose just inside and just outside R95 (so that a radius off by 1e-3 changes the count)."""
    offsets = np.array([-1.0, -0.2, -0.01, -0.001, 0.001, 0.01, 0.2, 1.0])
    radii = np.concatenate([R95 + offsets, [0.3, 4.0]])
    angles = np.linspace(0, 2 * np.pi, len(radii), endpoint=False) + 0.3
    codes = np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
    D = len(codes) + 2
    images = (np.eye(len(codes), D) * 255).astype(np.uint8)             # x_i = e_i after / 255
    numbers = measure(model_with_codes(codes, D), images, seed=1)
    np.testing.assert_allclose(numbers["codes"], codes, rtol=1e-6, atol=1e-6)
    assert numbers["inside"] == 5 / 10                                  # 4 offsets below, and 0.3
    np.testing.assert_allclose(numbers["code_mean"], codes.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(numbers["code_std"], codes.std(axis=0), rtol=1e-5)
    model = model_with_codes(codes, D)
    logvar = images[:, :D] / 255.0 @ model.params["enc.logvar.W"].astype(np.float64) + model.params["enc.logvar.b"]
    kl = 0.5 * np.sum(codes ** 2 + np.exp(logvar) - 1 - logvar, axis=1)      # closed form, slide 12
    assert numbers["rate"] == pytest.approx(kl.mean(), rel=1e-5)
    assert numbers["nelbo"] == pytest.approx(numbers["distortion"] + numbers["rate"])


def test_beta_zero_has_no_kl_gradient_and_beta_scales_the_known_one():
    """loss = rec + beta KL: the decoder's gradients do not depend on beta, and the encoder's
    heads differ from beta = 0's by beta times dKL/dmu = mu, dKL/dlogvar = (sigma^2 - 1)/2."""
    rng = np.random.default_rng(0)
    x, eps = rng.random((5, 6)), rng.standard_normal((2, 5, 3))
    grads = {}
    for beta in (0.0, 2.5):
        model = VAE(6, [4], 3, beta=beta, dtype=np.float64, seed=1)
        loss, parts = model.loss_and_grads(x, eps)
        grads[beta] = {k: g.copy() for k, g in model.grads.items()}
        if beta == 0:
            assert loss == parts["rec"]                          # the KL is reported, not trained on
    h = model.encoder.forward(x)                                 # (N, H), the input of both heads
    mu, logvar = model.encode(x)
    dkl_dmu, dkl_dlogvar = kl_standard_normal_grads(mu, logvar)
    np.testing.assert_allclose(dkl_dmu, mu)
    np.testing.assert_allclose(dkl_dlogvar, 0.5 * (np.exp(logvar) - 1))
    N = len(x)
    expected = {"enc.mu.W": h.T @ mu / N, "enc.mu.b": mu.sum(axis=0) / N,
                "enc.logvar.W": h.T @ dkl_dlogvar / N, "enc.logvar.b": dkl_dlogvar.sum(axis=0) / N}
    for name, g in expected.items():
        np.testing.assert_allclose(grads[2.5][name] - grads[0.0][name], 2.5 * g, rtol=1e-10, atol=1e-14,
                                   err_msg=name)
    for name in model.phi:
        np.testing.assert_array_equal(grads[2.5][name], grads[0.0][name], err_msg=name)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 500)), min_size=1, max_size=6),
       st.floats(-10, 0), st.floats(1, 200))
def test_iso_elbo_lines_have_slope_minus_one_through_each_models_point(points, r0, r1):
    rates, distortions = np.array(points).T
    lines = iso_elbo_lines(rates, distortions, (r0, r1))
    assert len(lines) == len(points)
    for (level, r, d), R, D in zip(lines, rates, distortions):
        assert level == pytest.approx(R + D)                                     # its -ELBO
        np.testing.assert_allclose(r, (r0, r1))
        assert (d[1] - d[0]) / (r[1] - r[0]) == pytest.approx(-1)                 # slope -1
        assert d[0] + (R - r[0]) * -1 == pytest.approx(D, abs=1e-9 * (1 + level))  # through (R, D)
    with pytest.raises(ValueError, match="two"):
        iso_elbo_lines(rates, distortions[:-1] if len(points) > 1 else [], (r0, r1))


def test_the_figure_draws_each_models_point_its_elbo_line_its_codes_and_the_95_percent_circle(
        tmp_path, monkeypatch):
    """Figure 11 read back from what it drew: the (R, D) points, a dashed line of equal D + R
    through each, the table's D + R and D + beta R, each model's codes with the circle that holds
    95 % of N(0, I), and its samples."""
    from matplotlib.image import imread
    figures = drawn_figures(monkeypatch)
    rng = np.random.default_rng(0)
    labels = np.arange(50) % 10
    codes = [rng.standard_normal((50, 2)) * s for s in (20, 2, 1, 0.1)]
    samples = [rng.random((9, 16)) for _ in range(4)]
    betas, rates, distortions = [0, 0.1, 1, 4], [30, 12, 6, 1], [140, 145, 150, 170]
    path = plot_beta_sweep(betas, rates, distortions, codes, labels, samples, tmp_path / "f.png",
                           active_units=[2, 2, 2, 1])
    assert imread(path).shape[:2] == (1250, 1500)
    fig = figures[0]
    plane = next(ax for ax in fig.axes if ax.get_xlabel().startswith("rate"))
    points = [(line.get_xdata()[0], line.get_ydata()[0]) for line in plane.get_lines() if line.get_marker() == "o"]
    assert same_rows(points, list(zip(rates, distortions)))
    dashed = [line for line in plane.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == len(betas)
    for line, R, D in zip(dashed, rates, distortions):             # every point of it: D + R = -ELBO
        np.testing.assert_allclose(np.add(line.get_xdata(), line.get_ydata()), R + D)
    text = next(t.get_text() for t in fig.texts if "D + beta R" in t.get_text())
    rows = [line.split() for line in text.splitlines()[1:1 + len(betas)]]
    for row, beta, R, D in zip(rows, betas, rates, distortions):
        assert [float(v) for v in row[:5]] == pytest.approx([beta, D, R, D + R, D + beta * R])
    assert "the lowest dashed line is beta = 1's" in text          # D + R: 170, 157, 156, 171
    code_axes = [ax for ax in fig.axes if "test codes" in ax.get_title()]
    sample_axes = [ax for ax in fig.axes if "decoded from" in ax.get_title()]
    assert len(code_axes) == len(sample_axes) == len(betas)
    for ax, c, s in zip(code_axes, codes, samples):
        assert same_rows(scatter_points(ax), c)
        assert circle_radii(ax) == [pytest.approx(R95, rel=1e-6)]
        assert f"({c[:, 0].std():.2f}, {c[:, 1].std():.2f})" in ax.get_title()
    for ax, s in zip(sample_axes, samples):
        tiles = ax.get_images()[0].get_array()                     # 3 x 3 tiles of 4 x 4, 1 pixel apart
        for i, image in enumerate(s):
            r, c = divmod(i, 3)
            np.testing.assert_array_equal(tiles[5 * r:5 * r + 4, 5 * c:5 * c + 4], image.reshape(4, 4))
    with pytest.raises(ValueError, match="one rate"):
        plot_beta_sweep([0, 1], [1], [2, 3], codes[:2], labels, samples[:2], tmp_path / "g.png")
    with pytest.raises(ValueError, match="square"):
        plot_beta_sweep([0], [1], [2], codes[:1], labels, [rng.random((8, 16))], tmp_path / "h.png")


@pytest.mark.parametrize("argv, says", [
    (["--betas", "-1"], "finite number >= 0"),
    (["--betas", "nan"], "finite number >= 0"),
    (["--epochs", "0"], "positive integer"),
    (["--train-split", "test[5:"], "split"),
    (["--seed", "-3"], "--seed"),
    (["--no-such-flag"], "unrecognized"),
    (["--no-download", "--data-dir", "{tmp}/empty"], "mnist"),
    (["--out", "{tmp}/a_file"], "a_file"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, says, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a directory")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stop:
        raise SystemExit(main(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m scratchvae.chapters.beta_sweep: error:"), err
    assert says in err, err


@pytest.mark.slow           # five 784-400-2 models, 10 epochs each on 9,000 real digits: 91-258 s on 2 shared cores
def test_the_real_sweep_tells_the_story(shared_mnist_dir, tmp_path, capsys):
    argv = ["--data-dir", str(shared_mnist_dir), "--no-download", "--train-split", "test[:9000]",
            "--test-split", "test[9000:]", "--out", str(tmp_path)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "beta_sweep.json").read_text())
    assert [r["beta"] for r in results] == [0, 0.1, 1, 4, 25]
    rate, distortion = [r["rate"] for r in results], [r["distortion"] for r in results]
    nelbo, inside = [r["nelbo"] for r in results], [r["inside"] for r in results]
    assert all(a > b + 0.5 for a, b in zip(rate, rate[1:])), rate
    # measured 165.12, 165.10, 166.19, 169.29, 210.88: beta = 0 and 0.1 tie after 10 epochs
    assert all(b > a - 0.5 for a, b in zip(distortion, distortion[1:])), distortion
    assert distortion[-1] > distortion[0] + 20, distortion
    assert nelbo.index(min(nelbo)) == 2, nelbo                   # beta = 1 trained on D + R itself
    assert inside[0] < 0.25 and inside[2] > 0.6, inside          # beta = 0's codes leave N(0, I) behind
    assert [r["active_units"] for r in results] == [2, 2, 2, 2, 1]   # beta = 25: posterior collapse
    assert (tmp_path / "11_beta_sweep.png").stat().st_size > 10_000


# ------------------------------------------------------------------ the sweep's configuration, table and figure
def test_each_run_is_the_demos_2d_vae_with_the_kl_weighted_by_beta():
    from scratchvae.chapters.beta_sweep import EPOCHS, sweep_config
    assert sweep_config(0.5, 3, 7) == TrainConfig(hidden=(400,), latent=2, activation="relu", likelihood="bernoulli",
                                                  binarize="none", beta=0.5, epochs=3, seed=7)
    assert sweep_config(4.0) == sweep_config(4.0, EPOCHS, 1) and EPOCHS == 10


@pytest.mark.parametrize("betas", [(), (-1.0,), (float("inf"),), (float("nan"), 1.0)])
def test_the_sweep_refuses_no_betas_and_betas_that_are_not_finite_and_at_least_0(betas):
    with pytest.raises(ValueError, match="betas must be finite numbers >= 0"):
        run_beta_sweep(IMAGES[:50], IMAGES[50:60], LABELS[:10], betas=betas, epochs=1, log=lambda _: None,
                       config=tiny_config)


def test_the_sweep_says_only_what_it_logs_and_repeats_itself_from_its_seed(capsys):
    """Seed 1 by default; the same seed gives the same numbers and the same decoded prior samples,
    and nothing reaches the terminal but the log lines."""
    said = []
    run = lambda **kw: run_beta_sweep(IMAGES[:100], IMAGES[500:], LABELS, betas=(1,), epochs=1, log=said.append,
                                      config=tiny_config, n_samples=4, **kw)[0]
    first, again, seeded = run(), run(), run(seed=1)
    assert capsys.readouterr() == ("", "")
    assert len(said) == 3 and said[0].startswith("beta 1: D ") and said[0].endswith(" s)")
    for other in (again, seeded):
        np.testing.assert_array_equal(first["samples"], other["samples"])
        assert (first["distortion"], first["rate"]) == (other["distortion"], other["rate"])
    assert first["history"][-1]["epoch"] == 1
    assert 0 < first["seconds"] < 60


def test_the_sweep_draws_its_figure_from_its_own_results(tmp_path, monkeypatch):
    figures = drawn_figures(monkeypatch)
    results = run_beta_sweep(IMAGES[:100], IMAGES[500:], LABELS, betas=(0, 2), epochs=1, log=lambda _: None,
                             config=tiny_config, n_samples=4, figure_path=tmp_path / "f.png")
    assert (tmp_path / "f.png").exists()
    fig = figures[0]
    plane = next(ax for ax in fig.axes if ax.get_xlabel().startswith("rate"))
    points = [(line.get_xdata()[0], line.get_ydata()[0]) for line in plane.get_lines() if line.get_marker() == "o"]
    assert same_rows(points, [(r["rate"], r["distortion"]) for r in results])
    for ax, r in zip([ax for ax in fig.axes if "test codes" in ax.get_title()], results):
        assert ax.get_title().startswith(f"β = {r['beta']:g}: test codes") and same_rows(scatter_points(ax), r["codes"])
    for ax, r in zip([ax for ax in fig.axes if "decoded from" in ax.get_title()], results):
        tiles = ax.get_images()[0].get_array()                         # 2 x 2 tiles of 6 x 6, 1 pixel apart
        np.testing.assert_array_equal(tiles[7:13, 7:13], r["samples"][3].reshape(6, 6))
    text = next(t.get_text() for t in fig.texts if "D + beta R" in t.get_text())
    assert f"{results[1]['active_units']:>6} of 2" in text.splitlines()[2]


def hand_made_result(beta, D, R, active, std, inside):
    return dict(beta=beta, distortion=D, rate=R, nelbo=D + R, active_units=active, code_std=np.array(std),
                inside=inside)


def test_the_table_is_the_one_in_the_results_and_its_rows_say_the_numbers():
    from pathlib import Path
    from scratchvae.chapters.beta_sweep import summary_line
    results = [hand_made_result(0.1, 165.104, 12.826, 2, (1.854, 2.966), 0.235),
               hand_made_result(25, 210.88, 0.08, 1, (0.06, 0.31), 1.0)]
    lines = table(results).split("\n")
    docs = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text().splitlines()
    start = docs.index(lines[0])                                       # the header docs/results.md shows
    assert docs[start + 1] == lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2:] == ["| 0.1 | 165.10 | 12.83 | 177.93 | 2 of 2 | (1.85, 2.97) | 23.5 % |",
                         "| 25 | 210.88 | 0.08 | 210.96 | 1 of 2 | (0.06, 0.31) | 100.0 % |"]
    assert summary_line(results[0]) == ("D 165.10  R 12.83  D + R 177.93  active units 2 of 2  codes' s.d. "
                                        "(1.85, 2.97)  inside N(0, I)'s 95 % circle 23.5 %")


def test_measure_encodes_the_images_as_its_evaluation_sees_them():
    """With dynamic binarisation the codes are those of the very 0/1 draws evaluate_nelbo scores
    (substream 0 of the run's evaluation stream), in float64, in the images' order. The images
    are grey (pixels 0 and 178), so that a draw from another stream, or no draw at all, gives
    other 0/1 images and other codes."""
    from scratchvae.machinery.data import iterate_batches
    from scratchvae.machinery.evaluate import substream
    from scratchvae.machinery.runner import derive_streams
    model = VAE(36, [8], 2, seed=3)
    images = (IMAGES[:40] * 0.7).astype(np.uint8)                      # 0 or 178: p = 0.7 of a 1
    numbers = measure(model, images, seed=5, binarize="dynamic")
    eval_seed = derive_streams(5)["eval"]
    draws = lambda i: next(iterate_batches(images, 40, np.random.default_rng(substream(eval_seed, i)),
                                           binarize="dynamic", shuffle=False))
    x = draws(0)
    assert numbers["codes"].dtype == np.float64
    np.testing.assert_array_equal(numbers["codes"], model.encode(x)[0].astype(np.float64))
    grey = measure(model, images, seed=5)                               # binarize "none" by default
    np.testing.assert_array_equal(grey["codes"], model.encode(images / np.float32(255))[0].astype(np.float64))
    for other in (draws(1), images / np.float32(255)):                  # the eps stream's draws; no draws
        assert not np.array_equal(x, other)
        assert np.abs(model.encode(other)[0] - numbers["codes"]).max() > 1e-3


def test_a_code_exactly_on_the_95_percent_circle_is_not_inside():
    """inside = mean(|mu| < r95), the open disc, as autoencoder.compare_with_vae counts for figure 10
    (so the two figures' percentages are the same statistic). A float64 linear model puts one code
    exactly on the circle, |(r95, 0)| = r95 to the last bit, and one just inside it."""
    codes = np.array([[CIRCLE_95, 0.0], [np.nextafter(CIRCLE_95, 0), 0.0], [0.0, 3.0], [0.5, 0.5]])
    D = len(codes) + 2
    model = VAE(D, [], 2, dtype=np.float64, seed=0)
    model.params["enc.mu.W"][...] = 0.0
    model.params["enc.mu.W"][:len(codes)] = codes
    model.params["enc.mu.b"][...] = 0.0
    images = (np.eye(len(codes), D) * 255).astype(np.uint8)
    numbers = measure(model, images, seed=1)
    np.testing.assert_array_equal(numbers["codes"], codes)
    assert np.linalg.norm(numbers["codes"][0]) == CIRCLE_95
    assert numbers["inside"] == 2 / 4                                   # the one just inside, and (0.5, 0.5)


def test_the_sweep_config_names_every_choice_of_the_demos_2d_model(monkeypatch):
    """sweep_config passes each field of the demo's 2-D model itself (784-400-2, ReLU, Bernoulli, grey
    levels) rather than leaning on TrainConfig's defaults, which are the main model's (latent 20) and
    may change: the TrainConfig call is recorded."""
    from scratchvae.chapters import beta_sweep
    calls = []
    monkeypatch.setattr(beta_sweep, "TrainConfig", lambda **kw: calls.append(kw) or kw)
    beta_sweep.sweep_config(0.5, 3, 7)
    assert calls == [dict(hidden=(400,), latent=2, activation="relu", likelihood="bernoulli", binarize="none",
                          beta=0.5, epochs=3, seed=7)]
