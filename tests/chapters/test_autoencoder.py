"""The deterministic autoencoder: its hand-written backward against finite differences, and
on real digits the two things the lecture says of it -- it reconstructs better than the VAE,
and its codes are not where N(0, I) puts its samples."""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.chapters.autoencoder import (Autoencoder, compare_with_vae, comparison_text, empty_prior_fraction,
                                             vae_reconstruction_error)
from scratchvae.machinery.data import load
from scratchvae.gradcheck import numerical_gradient, rel_error
from scratchvae.optim import Adam

TOL = 1e-7


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation,hidden", [("tanh", [7]), ("tanh", [7, 5]), ("relu", [7])])
def test_whole_autoencoder_gradient_matches_finite_differences(likelihood, activation, hidden):
    rng = np.random.default_rng(0)
    x = rng.random((5, 6)) if likelihood == "bernoulli" else rng.standard_normal((5, 6))
    model = Autoencoder(6, hidden, 3, activation=activation, likelihood=likelihood, dtype=np.float64, seed=1)
    model.loss_and_grads(x)
    analytic = {k: g.copy() for k, g in model.grads.items()}
    assert set(analytic) == set(model.params) and "enc.z.b" in analytic      # every tensor, biases too
    for name, p in model.params.items():
        numeric = numerical_gradient(lambda _: model.loss_and_grads(x)[0], p)
        err = rel_error(analytic[name], numeric)
        assert err < TOL, f"{name} rel_error={err:.1e} ({likelihood}, {activation}, {hidden})"


def test_float32_stays_float32_and_shapes():
    model = Autoencoder(6, [4], 2, seed=0)
    x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    assert model.encode(x).shape == (3, 2) and model.encode(x).dtype == np.float32
    assert model.reconstruct(x).dtype == np.float32
    assert model.reconstruction_error(x).shape == (3,)
    np.testing.assert_allclose(model.reconstruction_error(x).mean(), model.loss_and_grads(x)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        model.encode(np.zeros((3, 5)))


def test_empty_prior_fraction_on_constructed_codes():
    rng = np.random.default_rng(0)
    prior = rng.standard_normal((2000, 2))
    # codes drawn from N(0, I) themselves: prior samples almost never land where no code is
    assert empty_prior_fraction(rng.standard_normal((5000, 2)), prior) < 0.02
    # codes on a ring of radius 30: every prior sample lands where no code is
    angle = rng.uniform(0, 2 * np.pi, 5000)
    ring = 30 * np.column_stack([np.cos(angle), np.sin(angle)])
    assert empty_prior_fraction(ring, prior) == 1.0


@pytest.fixture(scope="module")
def mnist():
    from conftest import _shared
    split = load("mnist", "test", _shared("mnist"), download=False)
    return split.images.reshape(len(split.images), -1).astype(np.float32) / 255


def train(model, x, epochs=8, batches=20, seed=0):
    adam = Adam(model.flat_params, model.flat_grads, lr=2e-3)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), batches):
            model.loss_and_grads(x[batch])
            adam.step()
    return model


@pytest.mark.slow          # two models, 600 steps each on real digits: 16-60 s on 2 shared cores
def test_the_autoencoder_reconstructs_better_than_the_vae_on_the_same_data_and_budget(mnist):
    train_x, test_x = mnist[:2000], mnist[9000:]
    # 30 epochs of 20 steps for each (after 8 epochs the VAE is still ahead: 200.8 against 201.9;
    # the autoencoder's unconstrained codes take longer to settle)
    ae = train(Autoencoder(784, [64], 2, seed=0), train_x, epochs=30)
    vae = train(VAE(784, [64], 2, seed=0), train_x, epochs=30)
    ae_error = ae.reconstruction_error(test_x).mean()
    vae_error = vae_reconstruction_error(vae, test_x).mean()       # at z = mu: no sampling noise
    assert ae_error < vae_error, (ae_error, vae_error)
    # the VAE's codes are near N(0, I) (the KL term); the autoencoder's need not be
    vae_codes, ae_codes = vae.encode(test_x)[0], ae.encode(test_x)
    prior = np.random.default_rng(1).standard_normal((2000, 2))
    assert empty_prior_fraction(vae_codes, prior) < empty_prior_fraction(ae_codes, prior), (
        empty_prior_fraction(vae_codes, prior), empty_prior_fraction(ae_codes, prior),
        ae_codes.mean(axis=0), ae_codes.std(axis=0))


def test_the_comparison_figure_from_two_untrained_models(tmp_path, monkeypatch):
    """Figure 10 read back from what it drew: each model's codes, the circle that holds 95 % of
    N(0, I) (radius from the chi-square table), the samples, the caption."""
    from matplotlib.image import imread

    import scratchvae.pictures.plots as plots
    from helpers import circle_radii, drawn_figures, same_rows, scatter_points
    figures = drawn_figures(monkeypatch)
    rng = np.random.default_rng(0)
    images, labels = rng.random((30, 16)).astype(np.float32), np.arange(30) % 10
    ae, vae = Autoencoder(16, [8], 2, seed=1), VAE(16, [8], 2, seed=2)
    codes, samples, numbers = compare_with_vae(ae, vae, images, labels, rng, n_samples=9)
    assert codes["autoencoder"].shape == codes["VAE"].shape == (30, 2)
    assert samples["VAE"].shape == (9, 16)
    np.testing.assert_allclose(numbers["autoencoder"]["rec"], ae.loss_and_grads(images)[0], rtol=1e-5)
    assert 0 <= numbers["VAE"]["empty"] <= 1
    path = plots.plot_autoencoder_vs_vae(codes, labels, samples, {"VAE": "text"}, tmp_path / "f.png")
    assert imread(path).shape[:2] == (1100, 1100)
    fig = figures[0]
    for name in ("autoencoder", "VAE"):
        ax = next(ax for ax in fig.axes if ax.get_title().startswith(f"{name}: test digits' codes"))
        assert same_rows(scatter_points(ax), codes[name])
        assert circle_radii(ax) == [pytest.approx(R95, rel=1e-6)]
        tiles = next(ax for ax in fig.axes if ax.get_title() == f"{name}: decoded from z ~ N(0, I)").get_images()[0]
        for i, image in enumerate(samples[name]):                     # 3 x 3 tiles of 4 x 4, 1 pixel apart
            r, c = divmod(i, 3)
            np.testing.assert_array_equal(tiles.get_array()[5 * r:5 * r + 4, 5 * c:5 * c + 4], image.reshape(4, 4))
    assert any(ax.get_title() == "VAE: test digits' codes\ntext" for ax in fig.axes)
    with pytest.raises(ValueError, match="square number"):
        plots.plot_autoencoder_vs_vae(codes, labels, {k: v[:8] for k, v in samples.items()}, {}, tmp_path / "g.png")


R95 = 5.991464547107979 ** 0.5        # chi-square, 2 degrees of freedom, 95 % quantile (tables)


def codes_on_circles(turn=0.3):
    """Ten codes: eight just inside or just outside R95, one well inside, one well outside."""
    radii = np.concatenate([R95 + np.array([-1.0, -0.2, -0.01, -0.001, 0.001, 0.01, 0.2, 1.0]), [0.3, 4.0]])
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False) + turn
    return np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])


def minus_log_bernoulli(x, logits):
    """-log p(x|z) = -sum_d [x_d log s_d + (1 - x_d) log(1 - s_d)], s = sigmoid(logits), written out."""
    log_s, log_1_s = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
    return -np.sum(x * log_s + (1 - x) * log_1_s, axis=-1)


def test_compare_with_vae_on_codes_placed_on_purpose():
    """Figure 10's numbers for two linear models whose codes are known: image i is e_i, the
    autoencoder's code of it codes[i], the VAE's mu the same codes turned, with sigma = 1 (so that a
    reconstruction error taken at a sampled z, not at z = mu, is far off)."""
    D = 12
    images = np.eye(10, D, dtype=np.float32)
    labels = np.arange(10)
    ae_codes, vae_codes = codes_on_circles(0.3), codes_on_circles(2.0)
    ae, vae = Autoencoder(D, [], 2, seed=1), VAE(D, [], 2, seed=2)
    ae.params["enc.z.W"][...], ae.params["enc.z.b"][...] = np.vstack([ae_codes, np.zeros((2, 2))]), 0
    vae.params["enc.mu.W"][...], vae.params["enc.mu.b"][...] = np.vstack([vae_codes, np.zeros((2, 2))]), 0
    vae.params["enc.logvar.W"][...], vae.params["enc.logvar.b"][...] = 0, 0          # sigma = 1
    codes, samples, numbers = compare_with_vae(ae, vae, images, labels, np.random.default_rng(0), n_samples=9)
    decoders = {"autoencoder": (ae.params["dec.logits.W"], ae.params["dec.logits.b"]),
                "VAE": (vae.params["dec.logits.W"], vae.params["dec.logits.b"])}
    x = images.astype(np.float64)
    for name, known in (("autoencoder", ae_codes), ("VAE", vae_codes)):
        np.testing.assert_allclose(codes[name], known, rtol=1e-6, atol=1e-6)
        n = numbers[name]
        W, b = (a.astype(np.float64) for a in decoders[name])
        assert n["rec"] == pytest.approx(minus_log_bernoulli(x, known @ W + b).mean(), rel=1e-5)
        np.testing.assert_allclose(n["code_mean"], known.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(n["code_std"], known.std(axis=0), rtol=1e-5)
        assert n["inside"] == np.mean(np.hypot(*known.T) < R95)
        # the empty fraction, by brute force with prior samples of this test's own
        prior = np.random.default_rng(5).standard_normal((200_000, 2))
        spacing = np.sort(np.hypot(*(known[:, None] - known[None]).transpose(2, 0, 1)), axis=1)[:, 1]
        far = np.min(np.hypot(*(prior[:, None] - known[None]).transpose(2, 0, 1)), axis=1) > np.quantile(spacing, 0.99)
        assert abs(n["empty"] - far.mean()) < 0.02, (name, n["empty"], far.mean())
    assert numbers["autoencoder"]["inside"] == numbers["VAE"]["inside"] == 0.5     # 4 offsets below R95, and 0.3
    # the two decoders are given the same z: solve the autoencoder's samples for it, decode with the VAE's
    W, b = (a.astype(np.float64) for a in decoders["autoencoder"])
    s = samples["autoencoder"].astype(np.float64)
    z, *_ = np.linalg.lstsq(W.T, (np.log(s) - np.log1p(-s) - b).T, rcond=None)
    W, b = (a.astype(np.float64) for a in decoders["VAE"])
    np.testing.assert_allclose(samples["VAE"], 1 / (1 + np.exp(-(z.T @ W + b))), rtol=1e-4, atol=1e-6)
    text = comparison_text(numbers)
    assert "codes inside N(0, I)'s 95 % circle: 50.0 %" in text["autoencoder"]
    assert f"test -log p(x|z) {numbers['VAE']['rec']:.2f}" in text["VAE"] and "50.0 %" in text["VAE"]


def test_the_command_trains_the_autoencoder_through_the_trainer_beside_a_2d_vae(tmp_path, capsys):
    """python -m scratchvae.chapters.autoencoder_run VAE_CHECKPOINT --out DIR: the VAE's configuration with
    model "autoencoder", a checkpoint in DIR/autoencoder2d, figure 10; run again, it trains nothing."""
    from scratchvae.chapters.autoencoder_run import main
    from scratchvae.machinery.checkpoint import load_checkpoint
    from scratchvae.machinery.runner import TrainConfig, train
    from helpers import write_dataset
    write_dataset(tmp_path / "data", n_test=60)
    vae_config = TrainConfig(data_dir=str(tmp_path / "data"), train_split="test[:40]", test_split="test[40:]",
                             hidden=[8], latent=2, epochs=1, batch_size=10, download=False, out=str(tmp_path / "vae"))
    train(vae_config, log=False)
    argv = [str(tmp_path / "vae" / "checkpoint.npz"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    saved = tmp_path / "out" / "autoencoder2d" / "checkpoint.npz"
    checkpoint = load_checkpoint(saved)
    assert checkpoint["model"]["type"] == "autoencoder"
    assert ({k: v for k, v in checkpoint["config"].items() if k not in ("model", "out")}
            == {k: v for k, v in vae_config.to_dict().items() if k not in ("model", "out")})
    assert (tmp_path / "out" / "10_autoencoder_vs_vae.png").stat().st_size > 1000
    before = saved.read_bytes()
    assert main(argv) == 0 and saved.read_bytes() == before
    assert "autoencoder: test -log p(x|z)" in capsys.readouterr().out


def test_compare_with_vae_draws_its_z_then_10000_prior_samples_and_says_every_number():
    """The generator gives the n_samples z first, then the 10,000 prior samples of the empty
    fraction, nothing more; the samples are in the models' dtype; the caption has every number."""
    ae, vae = Autoencoder(16, [8], 2, seed=1), VAE(16, [8], 2, seed=2)
    images = np.random.default_rng(0).random((30, 16)).astype(np.float32)
    rng = np.random.default_rng(3)
    _, samples, numbers = compare_with_vae(ae, vae, images, np.arange(30) % 10, rng, n_samples=9)
    replay = np.random.default_rng(3)
    z = replay.standard_normal((9, 2)).astype(np.float32)
    replay.standard_normal((10_000, 2))
    assert rng.standard_normal() == replay.standard_normal()
    assert samples["autoencoder"].dtype == samples["VAE"].dtype == np.float32
    np.testing.assert_array_equal(samples["VAE"], vae.decode_mean(z))
    for name, n in numbers.items():
        text = comparison_text(numbers)[name]
        assert text == (f"test -log p(x|z) {n['rec']:.2f};  codes' mean ({n['code_mean'][0]:.2f}, "
                        f"{n['code_mean'][1]:.2f}), s.d. ({n['code_std'][0]:.2f}, {n['code_std'][1]:.2f});\n"
                        f"codes inside N(0, I)'s 95 % circle: {100 * n['inside']:.1f} %;\n"
                        f"prior samples where no code is: {100 * n['empty']:.1f} %")
    made_up = {"m": dict(rec=1.234, code_mean=np.array([0.5, -0.25]), code_std=np.array([1.5, 0.75]), inside=0.125,
                         empty=0.5)}
    assert comparison_text(made_up)["m"] == ("test -log p(x|z) 1.23;  codes' mean (0.50, -0.25), s.d. (1.50, 0.75);\n"
                                             "codes inside N(0, I)'s 95 % circle: 12.5 %;\n"
                                             "prior samples where no code is: 50.0 %")


def gaussian_minus_log_density(x, mean, logvar):
    """-log N(x; mean, diag exp(logvar)), summed over pixels, written out."""
    return 0.5 * np.sum(np.log(2 * np.pi) + logvar + (x - mean) ** 2 / np.exp(logvar), axis=-1)


def test_the_gaussian_decoders_reconstruction_error_at_the_code():
    """Both models with a Gaussian decoder: -log N(x; mean(z), exp(logvar(z))) at z = encoder(x)
    for the autoencoder and at z = mu for the VAE, against the decoders computed here."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6))
    ae = Autoencoder(6, [], 2, likelihood="gaussian", dtype=np.float64, seed=1)
    vae = VAE(6, [], 2, likelihood="gaussian", dtype=np.float64, seed=2)
    z_ae = x @ ae.params["enc.z.W"] + ae.params["enc.z.b"]
    z_vae = x @ vae.params["enc.mu.W"] + vae.params["enc.mu.b"]
    for model, z, got in ((ae, z_ae, ae.reconstruction_error(x)), (vae, z_vae, vae_reconstruction_error(vae, x))):
        p = model.params
        mean, logvar = z @ p["dec.mean.W"] + p["dec.mean.b"], z @ p["dec.logvar.W"] + p["dec.logvar.b"]
        np.testing.assert_allclose(got, gaussian_minus_log_density(x, mean, logvar), rtol=1e-12)
        np.testing.assert_allclose(model.decode_mean(z), mean, rtol=1e-12)
        out = model.decode(z)
        assert isinstance(out, tuple) and len(out) == 2
        np.testing.assert_allclose(out[1], logvar, rtol=1e-12)


def test_the_autoencoder_starts_from_the_vaes_weights_and_keeps_its_dtype():
    """Autoencoder(seed=s) draws its encoder MLP from child 0 of seed s, as VAE(seed=s) does (seed 0
    by default); it computes in its own dtype; its config names it; from_config takes every field."""
    from scratchvae.machinery.config import TrainConfig
    ae, vae = Autoencoder(6, [5], 2, seed=4), VAE(6, [5], 2, seed=4)
    np.testing.assert_array_equal(ae.params["enc.fc1.W"], vae.params["enc.fc1.W"])
    np.testing.assert_array_equal(Autoencoder(6, [5], 2).flat_params, Autoencoder(6, [5], 2, seed=0).flat_params)
    assert ae.decode(np.zeros((3, 2))).dtype == np.float32 and ae.encode(np.zeros((3, 6))).dtype == np.float32
    wide = Autoencoder(6, [5], 2, activation="tanh", likelihood="gaussian", dtype=np.float64, seed=4)
    assert wide.config() == dict(input_dim=6, hidden_dims=[5], latent_dim=2, activation="tanh",
                                 likelihood="gaussian", dtype="float64")
    built = Autoencoder.from_config(TrainConfig(model="autoencoder", hidden=(5,), latent=2, activation="tanh",
                                                likelihood="gaussian", seed=4), 6)
    assert built.config() == {**wide.config(), "dtype": "float32"}
    np.testing.assert_array_equal(built.flat_params, wide.flat_params.astype(np.float32))


def test_the_autoencoder_decodes_prior_samples_as_the_vae_does():
    ae = Autoencoder(6, [5], 2, seed=1)
    drawn = ae.sample(4, np.random.default_rng(7))
    z = np.random.default_rng(7).standard_normal((4, 2)).astype(np.float32)
    assert drawn.dtype == np.float32 and drawn.shape == (4, 6)
    np.testing.assert_array_equal(drawn, ae.decode_mean(z))


def pytorch_style_draws(seed, shapes):
    """The weights Dense draws, written out: W then b of each layer in turn, U(-1/sqrt(D_in), 1/sqrt(D_in)),
    in float64, from child 0 of ``seed`` (as VAE(seed=seed) draws its own)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    drawn = {}
    for name, (d_in, d_out) in shapes:
        bound = 1 / np.sqrt(d_in)
        drawn[f"{name}.W"] = rng.uniform(-bound, bound, size=(d_in, d_out))
        drawn[f"{name}.b"] = rng.uniform(-bound, bound, size=(d_out,))
    return drawn


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_a_float64_autoencoder_draws_every_layer_in_float64_with_a_mirrored_decoder(likelihood):
    """Autoencoder(6, [7, 5], 2) is the encoder 6 -> 7 -> 5 -> z (2) and the decoder it mirrors,
    2 -> 5 -> 7 -> 6 (hidden sizes reversed); a float64 model draws each layer in float64 (not
    float32 draws widened), so its weights are exactly the draws written out here."""
    model = Autoencoder(6, [7, 5], 2, likelihood=likelihood, dtype=np.float64, seed=3)
    heads = [("dec.logits", (7, 6))] if likelihood == "bernoulli" else [("dec.mean", (7, 6)), ("dec.logvar", (7, 6))]
    shapes = [("enc.fc1", (6, 7)), ("enc.fc2", (7, 5)), ("enc.z", (5, 2)), ("dec.fc1", (2, 5)), ("dec.fc2", (5, 7)),
              *heads]
    drawn = pytorch_style_draws(3, shapes)
    assert list(model.params) == list(drawn)
    for name, p in model.params.items():
        assert p.dtype == np.float64 and p.shape == drawn[name].shape, name
        np.testing.assert_array_equal(p, drawn[name], err_msg=name)
    assert Autoencoder.parameter_shapes(model.config()) == {k: v.shape for k, v in drawn.items()}


def test_the_autoencoders_layers_have_the_names_its_parameters_and_messages_use():
    model = Autoencoder(6, [5], 2, likelihood="gaussian", seed=0)
    assert repr(model.encoder) == "MLP('enc', [Dense('fc1'), ReLU('relu1')])"
    assert repr(model.decoder) == "MLP('dec', [Dense('fc1'), ReLU('relu1')])"
    assert [repr(d) for d in (model.enc_z, *model.dec_heads)] == ["Dense('z')", "Dense('mean')", "Dense('logvar')"]
    with pytest.raises(RuntimeError, match="^Dense 'z': backward"):
        model.enc_z.backward(np.zeros((1, 2), np.float32))


def test_a_float32_autoencoder_keeps_its_gradients_in_float32():
    """flat_grads, and every gradient view into it, are in the model's dtype (what Adam reads)."""
    model = Autoencoder(6, [5], 2, seed=0)
    model.loss_and_grads(np.random.default_rng(0).random((3, 6)).astype(np.float32))
    assert model.flat_grads.dtype == np.float32
    assert all(g.dtype == np.float32 and np.shares_memory(g, model.flat_grads) for g in model.grads.values())


def _refusal(call, message):
    with pytest.raises(ValueError) as refused:
        call()
    assert str(refused.value) == message


def test_bad_inputs_are_refused_with_the_message_that_names_them():
    """What a user meets: each entry point refuses x (the data) and z (the codes) with the one
    check of every model, which names the input, its shape letters and the data's rules."""
    ae, rng = Autoencoder(6, [5], 2, seed=0), np.random.default_rng(0)
    for method in (ae.encode, ae.loss_and_grads, ae.reconstruction_error, ae.reconstruct):
        _refusal(lambda: method(np.zeros((3, 5))),
                 "x must have shape (N, 6) (one flattened datapoint per row), got shape (3, 5)")
        _refusal(lambda: method(np.zeros((0, 6))), "x holds no datapoints (shape (0, 6)); it needs N >= 1")
        _refusal(lambda: method(np.full((2, 6), 255, np.uint8)),
                 "x holds uint8 values up to 255, like pixels 0..255: divide uint8 images by 255 "
                 "(data.iterate_batches does) to get values in [0, 1]")
        _refusal(lambda: method(np.linspace(-1, 2, 12).reshape(2, 6)),
                 "x holds values in [-1, 2], but the Bernoulli likelihood needs x in [0, 1] (grey levels or "
                 "0/1 pixels); rescale x, or use likelihood='gaussian' for real-valued data")
    for method in (ae.decode, ae.decode_mean):
        _refusal(lambda: method(np.zeros((3, 3))), "z must have shape (M, 2), got shape (3, 3)")
        _refusal(lambda: method(np.zeros((0, 2))), "z holds no codes (shape (0, 2)); it needs M >= 1")
    _refusal(lambda: ae.sample(0, rng), "n, the number of images to generate, must be an integer >= 1, got 0")
    vae = VAE(6, [5], 2, seed=0)
    _refusal(lambda: compare_with_vae(ae, vae, rng.random((4, 6)), np.arange(4), rng, n_samples=0),
             "n_samples must be an integer >= 1, got 0")


def test_empty_prior_fraction_counts_by_hand():
    """Four codes on a line, 0.25, 0.25, 0.5, 1.75 from their nearest other code: at quantile 0.5
    r = 0.375. Five prior samples: 0.35 from code 0 (inside; 0.43 from any other code), exactly r
    from code 0 (inside: empty means farther than r), 2.5 away, 0.05 away, 0.75 away -> 2 of 5.
    Every square and root here is exact in binary, so the count is exact."""
    codes = np.array([[0, 0], [0.25, 0], [0.75, 0], [2.5, 0]])
    prior = np.array([[0, 0.35], [0, 0.375], [5, 0], [0.75, 0.05], [1.5, 0]])
    assert empty_prior_fraction(codes, prior, quantile=0.5) == 2 / 5
    # the default quantile 0.99: r = 0.5 + 0.97 * 1.25 = 1.7125, only the sample 2.5 away is empty
    assert empty_prior_fraction(codes, prior) == 1 / 5
    # the same codes and samples moved and turned: the same counts
    turn = np.array([[0.6, 0.8], [-0.8, 0.6]])
    assert empty_prior_fraction(codes @ turn + [3, -1], prior @ turn + [3, -1], quantile=0.5) == 2 / 5


def test_empty_prior_fraction_of_float32_codes_far_from_the_origin_against_brute_force():
    """Float32 codes and samples packed near (100, 100), 0.005 apart: the expanded |a|^2 - 2 a.b + |b|^2
    cancels 4e4 down to 1e-5, so it must run in float64 (in float32 it is noise); the fraction is
    the one of the distances taken directly, and the one of the same points moved to the origin."""
    rng = np.random.default_rng(0)
    codes = (100 + 0.05 * rng.standard_normal((200, 2))).astype(np.float32)
    prior = (100 + 0.08 * rng.standard_normal((400, 2))).astype(np.float32)
    c, p = codes.astype(np.float64), prior.astype(np.float64)
    spacing = np.linalg.norm(c[:, None] - c[None], axis=2)
    np.fill_diagonal(spacing, np.inf)
    r = np.quantile(spacing.min(axis=1), 0.99)
    far = np.linalg.norm(p[:, None] - c[None], axis=2).min(axis=1) > r
    assert 0.05 < far.mean() < 0.95                                   # a fraction that can go wrong both ways
    assert empty_prior_fraction(codes, prior) == far.mean()
    assert empty_prior_fraction(c - 100, p - 100) == far.mean()


def test_compare_with_vae_counts_a_code_on_the_95_circle_as_outside_it():
    """inside = |code| < r, strictly, r = sqrt(-2 ln 0.05) (P(|z| < r) = 1 - exp(-r^2/2) = 0.95 in 2-D):
    three codes exactly on the circle (float64 models, so the codes are exactly r) and one inside."""
    r = np.sqrt(-2 * np.log(0.05))
    known = np.array([[r, 0], [0, -r], [-r, 0], [0.5, 0.5]])
    images = np.eye(4, 6)
    ae, vae = Autoencoder(6, [], 2, dtype=np.float64, seed=1), VAE(6, [], 2, dtype=np.float64, seed=2)
    ae.params["enc.z.W"][...], ae.params["enc.z.b"][...] = np.vstack([known, np.zeros((2, 2))]), 0
    vae.params["enc.mu.W"][...], vae.params["enc.mu.b"][...] = np.vstack([known, np.zeros((2, 2))]), 0
    codes, _, numbers = compare_with_vae(ae, vae, images, np.arange(4), np.random.default_rng(0), n_samples=4)
    for name in ("autoencoder", "VAE"):
        np.testing.assert_array_equal(np.linalg.norm(codes[name], axis=1)[:3], r)
        assert numbers[name]["inside"] == 0.25


def test_compare_with_vae_gives_both_decoders_the_same_z_when_their_dtypes_differ():
    """The same z for both models: drawn, cast once to the autoencoder's dtype (float32 here), and
    that z decoded by the float64 VAE too."""
    ae, vae = Autoencoder(16, [8], 2, seed=1), VAE(16, [8], 2, dtype=np.float64, seed=2)
    images = np.random.default_rng(0).random((30, 16)).astype(np.float32)
    _, samples, _ = compare_with_vae(ae, vae, images, np.arange(30) % 10, np.random.default_rng(3), n_samples=9)
    z = np.random.default_rng(3).standard_normal((9, 2)).astype(np.float32)
    np.testing.assert_array_equal(samples["autoencoder"], ae.decode_mean(z))
    np.testing.assert_array_equal(samples["VAE"], vae.decode_mean(z.astype(np.float64)))
    assert samples["VAE"].dtype == np.float64
