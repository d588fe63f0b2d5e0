"""The conditional VAE (cvae.py): its gradient, what the label does, and its bound on log p(x|y)."""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.chapters.cvae import CVAE
from scratchvae.gradcheck import numerical_gradient, rel_error

TOL = 1e-7     # float64 central differences give ~1e-9; a wrong term gives ~1e-2 or more


def tiny_problem(likelihood, L, N=5, D=6, K=3, C=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((N, D))
    if likelihood == "bernoulli":
        x[:, :2] = np.round(x[:, :2])
    return x, rng.integers(0, C, N), rng.standard_normal((L, N, K))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("hidden,activation", [([5], "tanh"), ([7, 5], "relu"), ([], "tanh")])
@pytest.mark.parametrize("L,beta", [(1, 1.0), (3, 0.5)])
def test_every_gradient_matches_finite_differences(likelihood, hidden, activation, L, beta):
    model = CVAE(6, hidden, 3, n_classes=4, activation=activation, likelihood=likelihood, beta=beta,
                 dtype=np.float64, seed=1)
    x, y, eps = tiny_problem(likelihood, L)
    model.loss_and_grads(x, y, eps)
    analytic = {name: g.copy() for name, g in model.grads.items()}
    errors = {name: rel_error(numerical_gradient(lambda _: model.loss(x, y, eps)[0], p), analytic[name])
              for name, p in model.params.items()}
    assert set(errors) == set(model.params)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst} rel_error={errors[worst]:.1e}"


def test_the_label_enters_both_networks_and_changes_the_loss():
    model = CVAE(6, [5], 3, n_classes=4, dtype=np.float64, seed=1)
    assert model.params["enc.fc1.W"].shape == (6 + 4, 5) and model.params["dec.fc1.W"].shape == (3 + 4, 5)
    x, y, eps = tiny_problem("bernoulli", 1)
    assert model.loss(x, y, eps)[0] != model.loss(x, (y + 1) % 4, eps)[0]
    z = np.zeros((2, 3))
    assert not np.allclose(model.decode_mean(z, [0, 0]), model.decode_mean(z, [0, 1]))
    assert model.sample(3, 2).shape == (3, 6)


def test_its_loss_is_minus_the_mean_log_weight_plus_a_zero_mean_kl_difference():
    """The two views of slides 21-25 agree here too: mean over many samples of -log w -> -ELBO."""
    model = CVAE(6, [5], 3, n_classes=4, dtype=np.float64, seed=2)
    x, y, _ = tiny_problem("bernoulli", 1)
    eps = np.random.default_rng(1).standard_normal((20000, 5, 3))
    log_w = model.log_weights(x, y, eps)                                   # (S, N)
    _, parts = model.loss(x, y, eps)
    stderr = log_w.std(axis=0, ddof=1).mean() / np.sqrt(len(eps))
    assert abs(-log_w.mean() - parts["nelbo"]) < 5 * stderr


def test_a_zero_label_weight_row_makes_it_the_unconditional_vae():
    """With the label's rows of both first weights set to 0, the CVAE computes the VAE's loss."""
    cvae = CVAE(6, [5], 3, n_classes=4, dtype=np.float64, seed=3)
    vae = VAE(6, [5], 3, dtype=np.float64, seed=3)
    for name, p in vae.params.items():
        q = cvae.params[name]
        q[...] = 0.0
        q[:p.shape[0]] = p                                                 # label rows stay 0
    x, y, eps = tiny_problem("bernoulli", 2)
    assert cvae.loss(x, y, eps)[0] == pytest.approx(vae.loss(x, eps)[0], rel=1e-13)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_the_forward_only_loss_agrees_with_loss_and_grads_and_leaves_the_gradients(likelihood):
    model = CVAE(6, [5], 3, n_classes=4, likelihood=likelihood, beta=0.5, dtype=np.float64, seed=4)
    x, y, eps = tiny_problem(likelihood, 2)
    loss, parts = model.loss_and_grads(x, y, eps)
    grads = model.flat_grads.copy()
    mu, logvar = model.encode(x, y)
    assert model.loss(x, y, eps) == (loss, parts)
    assert model.loss(x, y, eps, q=(mu, logvar)) == (loss, parts)
    assert model.loss(x, y, eps, q=(mu + 1, logvar)) != (loss, parts)
    assert np.array_equal(model.flat_grads, grads)


@pytest.mark.parametrize("bad", [np.array([0, 1, 2, 3, 4]), np.array([0, 1, 2, 3, -1]),
                                 np.array([0.0, 1, 2, 3, 1]), np.array([0, 1])])
def test_bad_labels_are_refused_with_a_clear_message(bad):
    model = CVAE(6, [5], 3, n_classes=4)
    x, _, eps = tiny_problem("bernoulli", 1)
    with pytest.raises(ValueError, match="label"):
        model.loss(x.astype(np.float32), bad, eps)


def test_the_gaussian_decoder_the_labels_columns_and_reconstructions():
    """decode_mean of a Gaussian CVAE is the mean head (not the log-variance); the parameter shapes
    have C label columns for any C (10 when model.json names none); reconstruct decodes mu(x, y) with y."""
    model = CVAE(6, [5], 3, n_classes=4, likelihood="gaussian", dtype=np.float64, seed=7)
    z, y = np.random.default_rng(0).standard_normal((3, 3)), np.array([0, 3, 1])
    mean, logvar = model.decode(z, y)
    np.testing.assert_array_equal(model.decode_mean(z, y), mean)
    assert not np.allclose(mean, logvar)
    built = {name: p.shape for name, p in model.params.items()}
    assert CVAE.parameter_shapes(model.config()) == built
    ten = CVAE(6, [5], 3, seed=0)
    assert CVAE.parameter_shapes({k: v for k, v in ten.config().items() if k != "n_classes"}) == \
        {name: p.shape for name, p in ten.params.items()}
    x = np.random.default_rng(1).random((3, 6))
    mu, _ = model.encode(x, y)
    np.testing.assert_array_equal(model.reconstruct(x, y), model.decode_mean(mu, y))
    assert not np.allclose(model.reconstruct(x, y), model.reconstruct(x, (y + 1) % 4))


def test_sample_draws_z_from_the_generator_it_is_given_or_its_own():
    model, twin = CVAE(6, [5], 2, n_classes=4, seed=3), CVAE(6, [5], 2, n_classes=4, seed=3)
    z = twin.rng.standard_normal((5, 2), dtype=np.float32)
    np.testing.assert_array_equal(model.sample(5, 2), twin.decode_mean(z, np.full(5, 2)))
    z = np.random.default_rng(8).standard_normal((5, 2), dtype=np.float32)
    np.testing.assert_array_equal(model.sample(5, 1, np.random.default_rng(8)), model.decode_mean(z, np.full(5, 1)))
    with pytest.raises(ValueError, match="^n, the number of images to generate, must be an integer >= 1, got 0$"):
        model.sample(0, 1)


def test_log_weights_use_the_q_they_are_given():
    model = CVAE(6, [5], 3, n_classes=4, dtype=np.float64, seed=2)
    x, y, _ = tiny_problem("bernoulli", 1)
    eps = np.random.default_rng(1).standard_normal((4, 5, 3))
    mu, logvar = model.encode(x, y)
    np.testing.assert_array_equal(model.log_weights(x, y, eps, q=(mu, logvar)), model.log_weights(x, y, eps))
    assert not np.allclose(model.log_weights(x, y, eps, q=(mu + 1, logvar)), model.log_weights(x, y, eps))


# ------------------------------------------------------------------ cvae_run: training, figures, bounds
import scratchvae.chapters.cvae_run as cvae_run                                          # noqa: E402
from scratchvae.machinery.evaluate import importance_sampled_nll                   # noqa: E402

import json                                                              # noqa: E402

import scratchvae.machinery.cli as cli                                               # noqa: E402
from scratchvae.machinery.checkpoint import load_checkpoint, load_model            # noqa: E402
from helpers import write_dataset                                      # noqa: E402


def test_the_labelled_bound_goes_through_evaluate_unchanged():
    model = CVAE(6, [5], 3, n_classes=4, dtype=np.float64, seed=5)
    x, y, _ = tiny_problem("bernoulli", 1)
    nll = importance_sampled_nll(model, x, 50, rng=np.random.default_rng(0), batch_size=len(x), labels=y)
    eps = np.random.default_rng(0).standard_normal((50, 5, 3))
    log_w = model.log_weights(x, y, eps)
    direct = -(np.logaddexp.reduce(log_w, axis=0) - np.log(50))
    np.testing.assert_allclose(nll, direct, rtol=1e-12)


def test_the_figures_share_z_along_columns():
    model = CVAE(16, [5], 2, n_classes=10, seed=6)
    tiles = cvae_run.draw_me_a_digit(model, 3, np.random.default_rng(0))
    assert tiles.shape == (10, 3, 16)
    z = np.random.default_rng(0).standard_normal((3, 2), dtype=np.float32)
    np.testing.assert_array_equal(tiles[7], model.decode_mean(z, np.full(3, 7)))   # row 7: the sevens
    x = np.random.default_rng(1).random((2, 16)).astype(np.float32)
    hand = cvae_run.same_hand_every_digit(model, x, np.array([3, 4]))
    assert hand.shape == (2, 11, 16)
    np.testing.assert_array_equal(hand[:, 0], x)
    mu, _ = model.encode(x, np.array([3, 4]))
    np.testing.assert_array_equal(hand[:, 1 + 9], model.decode_mean(mu, np.full(2, 9)))


def test_cvae_run_trains_draws_and_compares_and_refuses_missing_labels(tmp_path, capsys):
    write_dataset(tmp_path / "data", n_test=60)
    out = tmp_path / "out"
    code = cvae_run.main(["--data-dir", str(tmp_path / "data"), "--train-split", "test[:40]",
                          "--test-split", "test[40:]", "--hidden", "8", "--latent", "2", "--epochs", "2",
                          "--batch-size", "10", "--is-k", "5", "--limit", "20", "--out", str(out)])
    assert code == 0
    assert (out / "cvae_draw_me_a_7.png").stat().st_size > 1000
    assert (out / "cvae_same_hand.png").stat().st_size > 1000
    saved = load_checkpoint(out / "checkpoint.npz")                      # trained by train()
    assert saved["model"]["type"] == "cvae" and len(saved["history"]) == 2
    assert saved["config"]["binarize"] == "dynamic" and saved["config"]["train_split"] == "test[:40]"
    results = json.loads(capsys.readouterr().out)
    assert results["checkpoint"] == str(out / "checkpoint.npz") and np.isfinite(results["cvae_nll_x_given_y"])
    assert cli.main(["sample", str(out / "checkpoint.npz"), "--digit", "7", "--out", str(out / "7.png")]) == 0
    assert (out / "7.png").stat().st_size > 100 and "of class 7" in capsys.readouterr().out
    before = (out / "checkpoint.npz").read_bytes()                      # run again: nothing is retrained
    assert cvae_run.main(["--data-dir", str(tmp_path / "data"), "--train-split", "test[:40]",
                          "--test-split", "test[40:]", "--hidden", "8", "--latent", "2", "--epochs", "2",
                          "--batch-size", "10", "--is-k", "5", "--limit", "20", "--out", str(out)]) == 0
    assert (out / "checkpoint.npz").read_bytes() == before
    assert json.loads(capsys.readouterr().out) == results
    (tmp_path / "data" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert cvae_run.main(["--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "label" in err, err


# ------------------------------------------------------------------ cvae_run: bad input is one line, exit 2
from scratchvae import Adam                                              # noqa: E402
from scratchvae.chapters.autoencoder import Autoencoder                           # noqa: E402
from scratchvae.machinery.checkpoint import save_checkpoint                        # noqa: E402
from helpers import assert_one_line_error, run_main, tiny_checkpoint  # noqa: E402



def run_cvae(argv, capsys):
    return run_main(cvae_run.main, argv, capsys)


CVAE_RUN = "python -m scratchvae.chapters.cvae_run"



@pytest.mark.parametrize("flag,value", [("--is-k", "0"), ("--is-k", "-3"), ("--limit", "0"), ("--limit", "-1"),
                                        ("--limit", "1"), ("--epochs", "0"), ("--batch-size", "0"),
                                        ("--latent", "0"), ("--hidden", "-8"), ("--lr", "0"), ("--lr", "nan"),
                                        ("--seed", "-1")])
def test_cvae_run_refuses_a_bad_number_before_training(tmp_path, capsys, flag, value):
    out = tmp_path / "out"
    code, err = run_cvae(["--data-dir", str(tmp_path / "no-data"), "--out", str(out), flag, value], capsys)
    assert_one_line_error(code, err, CVAE_RUN, flag)
    assert not out.exists()                                              # nothing was trained


def test_cvae_run_refuses_a_test_split_of_one_image(tmp_path, capsys):
    write_dataset(tmp_path / "data", n_test=60)
    out = tmp_path / "out"
    code, err = run_cvae(["--data-dir", str(tmp_path / "data"), "--train-split", "test[:40]",
                          "--test-split", "test[59:]", "--out", str(out)], capsys)
    assert_one_line_error(code, err, CVAE_RUN, "--test-split", "at least 2")
    assert not out.exists()


@pytest.mark.parametrize("model,dataset,words", [
    (Autoencoder(784, [4], 2, seed=0), "mnist", ["an autoencoder", "unconditional VAE"]),
    (CVAE(784, [4], 2, seed=0), "mnist", ["conditional VAE", "unconditional VAE"]),
    (VAE(784, [4], 2, seed=0), "fashion-mnist", ["fashion-mnist", "--dataset"]),
    (VAE(12, [4], 2, seed=0), "mnist", ["12 pixels", "784"]),
])
def test_cvae_run_compare_refuses_what_it_cannot_compare_before_training(tmp_path, capsys, model, dataset, words):
    write_dataset(tmp_path / "data", n_test=60)
    other = tiny_checkpoint(tmp_path / "other" / "checkpoint.npz", model, dataset)
    out = tmp_path / "out"
    code, err = run_cvae(["--data-dir", str(tmp_path / "data"), "--train-split", "test[:40]",
                          "--test-split", "test[40:]", "--compare", str(other), "--out", str(out)], capsys)
    assert_one_line_error(code, err, CVAE_RUN, "--compare", *words)
    assert not out.exists()                                              # refused before training


def z_independent_vae(logits):
    """A VAE whose decoder ignores z (its z weights are 0) and whose encoder outputs q = N(0, I).

    Then p(x|z) = p(x) for every z, q(z|x) = p(z|x) = p(z), and every importance weight is
    p(x) itself: the exact -log p(x) = -sum_d [x_d l_d - softplus(l_d)] is the only number any
    correct estimate can give, with no noise (a closed form for the --compare test)."""
    vae = VAE(784, [4], 2, seed=0)
    vae.flat_params[...] = 0.0
    vae.params["dec.logits.b"][...] = logits
    return vae


def independent_nll_given_y(model, x, y, k, rng):
    """-log p(x|y) per image by importance sampling from the model's q(z|x, y), written out here:
    log w = log p(x|z, y) + log N(z; 0, I) - log N(z; mu, sigma^2), -log p ~ -log mean_l w_l."""
    mu, logvar = (a.astype(np.float64) for a in model.encode(x, y))
    sigma = np.exp(0.5 * logvar)
    out = np.empty(len(x))
    for i in range(len(x)):
        eps = rng.standard_normal((k, 2))
        z = mu[i] + sigma[i] * eps
        logits = model.decode(z, np.full(k, y[i])).astype(np.float64)
        log_px_z = x[i] @ logits.T - np.logaddexp(0, logits).sum(axis=1)
        log_pz = -0.5 * (z ** 2).sum(axis=1) - np.log(2 * np.pi)
        log_q = -0.5 * (eps ** 2).sum(axis=1) - np.log(2 * np.pi) - np.log(sigma[i]).sum()
        log_w = log_px_z + log_pz - log_q
        out[i] = -(np.logaddexp.reduce(log_w) - np.log(k))
    return out


def test_cvae_run_compares_with_an_unconditional_vae_of_the_same_data(tmp_path, capsys):
    """Every number of the comparison against one computed here: the VAE's -log p(x) in closed
    form, the conditional VAE's -log p(x|y) by an importance sampler written out in the test, and
    the gain log p(y|x) = log p(x|y) - log p(x) = nll(x) - nll(x|y) with its paired standard error."""
    written = write_dataset(tmp_path / "data", n_test=60)
    logits = np.random.default_rng(7).normal(0, 2, 784)
    other = tiny_checkpoint(tmp_path / "other" / "checkpoint.npz", z_independent_vae(logits))
    out = tmp_path / "out"
    assert cvae_run.main(["--data-dir", str(tmp_path / "data"), "--train-split", "test[:40]",
                          "--test-split", "test[40:]", "--hidden", "8", "--latent", "2", "--epochs", "1",
                          "--batch-size", "10", "--is-k", "200", "--limit", "20", "--compare", str(other),
                          "--seed", "1", "--out", str(out)]) == 0
    results = json.loads(capsys.readouterr().out)
    images, labels = written["test"][0][40:60], written["test"][1][40:60].astype(np.int64)
    rng = np.random.default_rng(1 + 2)                                  # --seed 1: the run's binarisation
    x = (rng.random(images.shape, dtype=np.float32) < images / np.float32(255)).astype(np.float64)
    exact_nll_x = -(x @ logits - np.logaddexp(0, logits).sum())         # (20,) closed form
    np.testing.assert_allclose(results["vae_nll_x"], exact_nll_x.mean(), rtol=1e-5)
    np.testing.assert_allclose(results["vae_nelbo"], exact_nll_x.mean(), rtol=1e-5)   # KL = 0, rec exact
    cvae = load_model(out / "checkpoint.npz")
    nll_x_given_y = independent_nll_given_y(cvae, x, labels, 1000, np.random.default_rng(0))
    assert results["n"] == 20 and results["is_k"] == 200
    # two importance samplers of one number (k = 200 and 1,000; measured 548.93 and 548.86-548.91):
    # within 0.2 nats, where a slip moves it by nats or by the 265-nat gain
    assert abs(results["cvae_nll_x_given_y"] - nll_x_given_y.mean()) < 0.2, (results, nll_x_given_y.mean())
    assert results["cvae_nelbo"] > nll_x_given_y.mean() - 0.5                 # a bound, one sample of z
    gain = exact_nll_x - nll_x_given_y                                  # log p(y|x) per image
    assert abs(gain.mean()) > 10                                        # the sign is not a detail here
    assert abs(results["log_p_y_given_x_gain"] - gain.mean()) < 0.2, (results, gain.mean())
    np.testing.assert_allclose(results["gain_stderr"], gain.std(ddof=1) / np.sqrt(20), rtol=0.02)
    np.testing.assert_allclose(results["cvae_nll_stderr"], nll_x_given_y.std(ddof=1) / np.sqrt(20), rtol=0.02)


def test_cvae_run_that_diverges_is_one_line_and_exit_code_1(tmp_path, capsys):
    """Not bad input but a failed run: exit 1, as scratchvae train and beta_sweep report it."""
    write_dataset(tmp_path / "data", n_test=60)
    code, err = run_cvae(["--data-dir", str(tmp_path / "data"), "--train-split", "test[:40]",
                          "--test-split", "test[40:]", "--hidden", "8", "--latent", "2", "--epochs", "1",
                          "--batch-size", "10", "--lr", "1e30", "--out", str(tmp_path / "out")], capsys)
    last = err.strip().splitlines()[-1]                                  # after the trainer's progress
    assert code == 1 and last.startswith(f"{CVAE_RUN}: error: ") and "learning rate" in last, err
    assert "Traceback" not in err


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_a_float64_cvae_draws_every_layer_in_float64_with_a_mirrored_decoder(likelihood):
    """CVAE(6, [7, 5], 2, n_classes=4): the encoder [x, y] (6 + 4) -> 7 -> 5 -> mu, logvar (2) and the
    decoder [z, y] (2 + 4) -> 5 -> 7 -> 6 (hidden sizes reversed). A float64 model draws each layer in
    float64 (not float32 draws widened), W then b, U(-1/sqrt(D_in), 1/sqrt(D_in)), from child 0 of its
    seed, so its weights are exactly the draws written out here."""
    model = CVAE(6, [7, 5], 2, n_classes=4, likelihood=likelihood, dtype=np.float64, seed=3)
    heads = [("dec.logits", (7, 6))] if likelihood == "bernoulli" else [("dec.mean", (7, 6)), ("dec.logvar", (7, 6))]
    shapes = [("enc.fc1", (10, 7)), ("enc.fc2", (7, 5)), ("enc.mu", (5, 2)), ("enc.logvar", (5, 2)),
              ("dec.fc1", (6, 5)), ("dec.fc2", (5, 7)), *heads]
    rng = np.random.default_rng(np.random.SeedSequence(3).spawn(2)[0])
    drawn = {}
    for name, (d_in, d_out) in shapes:
        bound = 1 / np.sqrt(d_in)
        drawn[f"{name}.W"] = rng.uniform(-bound, bound, size=(d_in, d_out))
        drawn[f"{name}.b"] = rng.uniform(-bound, bound, size=(d_out,))
    assert list(model.params) == list(drawn)
    for name, p in model.params.items():
        assert p.dtype == np.float64 and p.shape == drawn[name].shape, name
        np.testing.assert_array_equal(p, drawn[name], err_msg=name)


def test_the_cvaes_layers_have_the_names_its_parameters_and_messages_use():
    model = CVAE(6, [5], 2, n_classes=4, likelihood="gaussian", seed=0)
    assert repr(model.encoder) == "MLP('enc', [Dense('fc1'), ReLU('relu1')])"
    assert repr(model.decoder) == "MLP('dec', [Dense('fc1'), ReLU('relu1')])"
    assert [repr(d) for d in (model.enc_mu, model.enc_logvar, *model.dec_heads)] == \
        ["Dense('mu')", "Dense('logvar')", "Dense('mean')", "Dense('logvar')"]
    with pytest.raises(RuntimeError, match="^Dense 'logvar': backward"):
        model.enc_logvar.backward(np.zeros((1, 2), np.float32))


def test_the_defaults_and_the_refusals_of_the_constructor():
    """CVAE(D, hidden, K) has 10 classes, one sample of eps, beta 1, float32 and seed 0; two classes
    are the fewest it takes; a bad n_classes or beta is refused with a message naming it."""
    model = CVAE(6, [5], 2)
    assert (model.n_classes, model.n_samples, model.beta, model.dtype) == (10, 1, 1.0, np.float32)
    assert model.params["enc.fc1.W"].shape == (16, 5)
    np.testing.assert_array_equal(model.flat_params, CVAE(6, [5], 2, seed=0).flat_params)
    assert not np.array_equal(model.flat_params, CVAE(6, [5], 2, seed=1).flat_params)
    assert CVAE(6, [5], 2, n_classes=2).params["dec.fc1.W"].shape == (2 + 2, 5)
    for bad in (1, 0, 2.5):
        with pytest.raises(ValueError) as refused:
            CVAE(6, [5], 2, n_classes=bad)
        assert str(refused.value) == f"n_classes must be an integer >= 2, got {bad!r}"
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError) as refused:
            CVAE(6, [5], 2, beta=bad)
        assert str(refused.value) == f"beta (the KL weight) must be a finite number >= 0, got {bad!r}"


def test_the_one_hot_label_is_in_the_models_dtype_so_float32_stays_float32():
    """one_hot(y) is rows of the identity in the model's dtype; a float32 model's encoder, decoder
    and loss see [x, y] in float32 (a float64 one-hot would widen all of it)."""
    model = CVAE(6, [5], 2, n_classes=4, seed=0)
    y = np.array([2, 0, 3])
    onehot = model.one_hot(y, 3)
    assert onehot.dtype == np.float32
    np.testing.assert_array_equal(onehot, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    mu, logvar = model.encode(x, y)
    assert mu.dtype == logvar.dtype == np.float32
    assert model.decode(mu, y).dtype == np.float32
    eps = np.random.default_rng(1).standard_normal((1, 3, 2)).astype(np.float32)
    loss, _ = model.loss_and_grads(x, y, eps)
    assert model.flat_grads.dtype == np.float32
    wide = CVAE(6, [5], 2, n_classes=4, dtype=np.float64, seed=0)
    wide.flat_params[...] = model.flat_params
    expected, _ = wide.loss_and_grads(x.astype(np.float64), y, eps.astype(np.float64))
    assert loss == pytest.approx(expected, rel=1e-6) and loss != expected       # float32 arithmetic, not float64
