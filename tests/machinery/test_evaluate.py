"""Evaluation: the test negative ELBO, and the importance-sampled estimate of -log p(x).

The estimate is checked against a model whose log p(x) is known in closed form: a linear
decoder with Gaussian noise, p(x) = N(b, W^T W + diag(psi)) (probabilistic PCA / factor
analysis), with an encoder that outputs the true posterior mean and a wider, isotropic
variance -- so the ELBO's gap KL(q || p(z|x)) is known exactly too.
"""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.machinery.evaluate import (ESTIMATOR, evaluate, evaluate_nelbo, format_report,
                                 importance_sampled_nll, substream)


def linear_gaussian(N=200, inflate=1.5, D=5, K=2, seed=0):
    """(model, x, log p(x) per datapoint, exact ELBO per datapoint) for a linear-Gaussian VAE.

    Decoder:  x | z ~ N(z W + b, diag(psi))   -> p(x) = N(b, W^T W + diag(psi))
    Posterior p(z|x) = N((x - b) A, Sigma),  Sigma = (I + W diag(1/psi) W^T)^-1,  A = diag(1/psi) W^T Sigma
    Encoder:  q(z|x) = N((x - b) A, s^2 I),   s^2 = inflate * largest eigenvalue of Sigma
    """
    rng = np.random.default_rng(seed)
    model = VAE(D, [], K, likelihood="gaussian", dtype=np.float64, seed=seed)
    p = model.params
    W, b, psi = rng.standard_normal((K, D)), rng.standard_normal(D), rng.uniform(0.3, 1.0, D)
    Sigma = np.linalg.inv(np.eye(K) + W @ np.diag(1 / psi) @ W.T)
    A = np.diag(1 / psi) @ W.T @ Sigma
    s2 = inflate * np.linalg.eigvalsh(Sigma).max()
    p["dec.mean.W"][...], p["dec.mean.b"][...] = W, b
    p["dec.logvar.W"][...], p["dec.logvar.b"][...] = 0.0, np.log(psi)    # zeroed: logvar_x = log psi
    p["enc.mu.W"][...], p["enc.mu.b"][...] = A, -b @ A
    p["enc.logvar.W"][...], p["enc.logvar.b"][...] = 0.0, np.log(s2)

    C = W.T @ W + np.diag(psi)
    x = b + rng.standard_normal((N, K)) @ W + rng.standard_normal((N, D)) * np.sqrt(psi)
    d = x - b
    log_px = -0.5 * (D * np.log(2 * np.pi) + np.linalg.slogdet(C)[1]
                     + np.einsum("nd,de,ne->n", d, np.linalg.inv(C), d))
    # KL(N(m, s2 I) || N(m, Sigma)) = 1/2 (tr(Sigma^-1) s2 - K + log det Sigma - K log s2)
    gap = 0.5 * (np.trace(np.linalg.inv(Sigma)) * s2 - K + np.linalg.slogdet(Sigma)[1] - K * np.log(s2))
    return model, x, log_px, log_px - gap


def small_bernoulli_model(seed=0):
    return VAE(16, [8], 2, seed=seed)


def binary_images(n, D=16, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.random((n, D)) < 0.3) * 255).astype(np.uint8)


# ------------------------------------------------------------------ importance sampling
def test_estimate_approaches_the_exact_log_px():
    model, x, log_px, _ = linear_gaussian(N=8)
    nll = importance_sampled_nll(model, x, 50_000, rng=np.random.default_rng(1), chunk=5000)
    error = nll - (-log_px)
    assert np.all(np.abs(error) < 0.05), error
    assert abs(error.mean()) < 0.02, error


def test_k1_is_the_elbo_and_larger_k_tightens_towards_log_px():
    model, x, log_px, elbo = linear_gaussian(N=2000)
    nll = {k: importance_sampled_nll(model, x, k, rng=np.random.default_rng(k)) for k in (1, 10, 100)}
    # k = 1: log w averaged is an unbiased estimate of the ELBO (slide 21)
    sem = (nll[1] + elbo).std() / np.sqrt(len(x))
    assert abs(nll[1].mean() - (-elbo.mean())) < 4 * sem
    # the gap of this model is 2.4 nats; IWAE: ELBO <= L_10 <= L_100 <= log p(x), in expectation
    assert (-elbo - (-log_px)).mean() > 2.0
    assert nll[1].mean() > nll[10].mean() + 1.5
    assert nll[10].mean() > nll[100].mean()
    assert nll[100].mean() >= -log_px.mean() - 0.01          # never (noticeably) below -log p(x)
    assert nll[100].mean() - (-log_px.mean()) < 0.05


def test_importance_sampled_nll_is_below_the_nelbo_of_a_vae():
    """For any VAE: on average over datapoints, IS-NLL (k = 100) <= the negative ELBO."""
    model = small_bernoulli_model()
    images = binary_images(300)
    report = evaluate(model, images, is_k=100, is_limit=None, seed=3, batch_size=64)
    assert report["is_n"] == report["n"] == 300
    assert report["is_nll"] < report["test_nelbo"]


def test_log_weights_with_the_encoders_q_given_equal_those_it_computes():
    model = small_bernoulli_model()
    x = binary_images(6).astype(np.float32) / 255
    eps = np.random.default_rng(3).standard_normal((4, 6, model.latent_dim)).astype(np.float32)
    np.testing.assert_array_equal(model.log_weights(x, eps, q=model.encode(x)), model.log_weights(x, eps))


def test_chunking_does_not_change_the_result():
    model, x, _, _ = linear_gaussian(N=10)
    whole = importance_sampled_nll(model, x, 60, rng=np.random.default_rng(5), chunk=60)
    for chunk in (1, 7, 59):
        chunked = importance_sampled_nll(model, x, 60, rng=np.random.default_rng(5), chunk=chunk)
        np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=0)


def test_chunked_estimate_equals_the_one_shot_log_mean_exp():
    """Running log-sum-exp == log-mean-exp of all k log weights at once, for the same eps."""
    model, x, _, _ = linear_gaussian(N=6)
    k = 40
    eps = np.random.default_rng(9).standard_normal((k, 6, 2))            # what the estimator draws
    log_w = model.log_weights(x, eps)                                    # (k, N)
    m = log_w.max(axis=0)
    direct = -(m + np.log(np.mean(np.exp(log_w - m), axis=0)))
    chunked = importance_sampled_nll(model, x, k, rng=np.random.default_rng(9), chunk=6, batch_size=6)
    np.testing.assert_allclose(chunked, direct, rtol=1e-12)


def test_memory_is_bounded_by_chunk_times_batch(monkeypatch):
    model = small_bernoulli_model()
    x = binary_images(50).astype(np.float32) / 255
    shapes = []
    original = model.log_weights

    def recording(xb, eps, q=None):
        shapes.append(eps.shape)
        return original(xb, eps, q=q)

    monkeypatch.setattr(model, "log_weights", recording)
    importance_sampled_nll(model, x, 1000, rng=np.random.default_rng(0), chunk=64, batch_size=20)
    assert max(c * n for c, n, _ in shapes) <= 64 * 20
    assert sum(c for c, n, _ in shapes if n == 20) == 2 * 1000                 # all k, for each batch


def test_log_sum_exp_is_stable_for_tiny_weights(monkeypatch):
    """log w around -1e5: exp underflows to 0 in any float, the running log-sum-exp does not."""
    model = small_bernoulli_model()
    x = binary_images(5).astype(np.float32) / 255
    reference = importance_sampled_nll(model, x, 50, rng=np.random.default_rng(0), chunk=8)
    original = model.log_weights
    monkeypatch.setattr(model, "log_weights", lambda xb, eps, q=None: original(xb, eps, q=q).astype(np.float64) - 1e5)
    shifted = importance_sampled_nll(model, x, 50, rng=np.random.default_rng(0), chunk=8)
    assert np.all(np.isfinite(shifted))
    np.testing.assert_allclose(shifted - 1e5, reference, rtol=0, atol=1e-6)


def test_weights_hundreds_of_nats_apart_make_no_subnormal_and_lose_nothing(monkeypatch):
    """Spread each datapoint's log w over 0 .. -2000 nats: exp(log w - max) would be subnormal
    or underflow for most of them (slow on Intel). With underflow made an error, the estimate
    still runs, and equals the float64 log-mean-exp computed directly."""
    model = small_bernoulli_model()
    x = binary_images(4).astype(np.float32) / 255
    k, spread = 400, np.linspace(0.0, -2000.0, 400)
    drawn = []

    def log_weights(xb, eps, q=None):
        lw = spread[np.random.default_rng(len(drawn)).permutation(k)][:len(eps), None] + np.zeros(len(xb))
        drawn.append(lw)
        return lw
    monkeypatch.setattr(model, "log_weights", log_weights)
    with np.errstate(under="raise"):
        nll = importance_sampled_nll(model, x, k, rng=np.random.default_rng(0), chunk=k)
    log_w = np.concatenate(drawn)                                        # (k, N)
    exact = -(np.log(np.sum(np.exp(log_w - log_w.max(0)), axis=0)) + log_w.max(0) - np.log(k))
    np.testing.assert_array_equal(nll, exact)


def test_bad_arguments_are_refused():
    model = small_bernoulli_model()
    x = np.zeros((2, 16), np.float32)
    with pytest.raises(ValueError, match="k, the number of importance samples, must be an integer >= 1"):
        importance_sampled_nll(model, x, 0, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        importance_sampled_nll(model, x, 5, rng=0)


# ------------------------------------------------------------------ negative ELBO
def test_nelbo_is_the_mean_over_images_of_the_loss_with_the_seeded_noise():
    model = small_bernoulli_model()
    images = binary_images(37)
    result = evaluate_nelbo(model, images, batch_size=10, seed=4)
    eps = np.random.default_rng(substream(4, 1)).standard_normal((37, 1, 2), dtype=np.float32)
    _, parts = model.loss(images.astype(np.float32) / 255, eps.transpose(1, 0, 2))
    assert result["n"] == 37
    np.testing.assert_allclose([result["rec"], result["kl"]], [parts["rec"], parts["kl"]], rtol=1e-5)
    np.testing.assert_allclose(result["nelbo"], result["rec"] + result["kl"], rtol=1e-12)


@pytest.mark.parametrize("binarize", ["none", "dynamic", "threshold"])
def test_nelbo_is_reproducible_for_a_seed_and_independent_of_batch_size(binarize):
    model = small_bernoulli_model()
    images = ((np.random.default_rng(0).random((50, 16))) * 255).astype(np.uint8)
    a = evaluate_nelbo(model, images, batch_size=7, seed=1, binarize=binarize)
    b = evaluate_nelbo(model, images, batch_size=7, seed=1, binarize=binarize)
    c = evaluate_nelbo(model, images, batch_size=50, seed=1, binarize=binarize)
    d = evaluate_nelbo(model, images, batch_size=7, seed=2, binarize=binarize)
    assert a == b
    np.testing.assert_allclose(c["nelbo"], a["nelbo"], rtol=1e-5)
    assert d["nelbo"] != a["nelbo"]


def test_report_states_the_estimator_and_k():
    model = small_bernoulli_model()
    report = evaluate(model, binary_images(30), is_k=20, is_limit=10, seed=0)
    assert report["estimator"] == f"{ESTIMATOR}, k=20" and report["is_k"] == 20
    assert report["n"] == 30 and report["is_n"] == 10
    text = format_report(report)
    assert "importance-sampled (IWAE) bound, k=20" in text and "first 10 images" in text
    skipped = evaluate(model, binary_images(30), is_k=0, seed=0)
    assert skipped["is_nll"] is None and "log p(x)" not in format_report(skipped)


def test_active_units_counts_the_units_whose_mean_moves_with_x():
    from scratchvae.machinery.evaluate import active_units
    rng = np.random.default_rng(0)
    # four units with Var_x(mu_u) = 1, 0.02, 0.005, 0 by construction (scaled unit-variance columns)
    base = rng.standard_normal((1000, 4))
    base = (base - base.mean(axis=0)) / base.std(axis=0)
    mu = base * np.sqrt([1.0, 0.02, 0.005, 0.0]) + [3.0, -1.0, 0.5, 2.0]   # offsets do not count
    count, activity = active_units(mu)
    assert count == 2
    np.testing.assert_allclose(activity, [1.0, 0.02, 0.005, 0.0], atol=1e-12)
    assert active_units(mu, threshold=0.001)[0] == 3


def test_evaluate_reports_a_collapsed_unit_as_inactive():
    # a linear encoder whose mu ignores x in unit 1 (zero weights): one of two units active
    model = VAE(6, [], 2, dtype=np.float64, seed=0)
    model.params["enc.mu.W"][:, 1] = 0
    images = np.random.default_rng(1).integers(0, 256, (300, 6), dtype=np.uint8)
    assert evaluate_nelbo(model, images)["active_units"] == 1
    report = evaluate(model, images, is_k=0)
    assert (report["active_units"], report["latent_dim"]) == (1, 2)
    assert "active latent units    1 of 2" in format_report(report)
    model.params["enc.mu.W"][:, 1] = 1.0                      # now it moves with x: Var >> 0.01
    assert evaluate_nelbo(model, images)["active_units"] == 2


def test_the_training_history_records_the_active_units_of_each_epoch(tmp_path):
    from scratchvae.machinery.checkpoint import load_checkpoint
    from scratchvae.machinery.runner import TrainConfig, derive_streams, train
    rng = np.random.default_rng(0)
    prototypes = rng.random((4, 36)) < 0.3
    images = ((prototypes[rng.integers(0, 4, 120)] ^ (rng.random((120, 36)) < 0.05)) * 255).astype(np.uint8)
    config = TrainConfig(hidden=[12], latent=3, batch_size=16, epochs=2, lr=3e-3, eval_batch=20, seed=3,
                         out=str(tmp_path / "run"))
    model, history = train(config, train_images=images[:100], test_images=images[100:], log=False)
    assert [type(r["test_active_units"]) for r in history] == [int, int]
    last = evaluate_nelbo(model, images[100:], batch_size=20, seed=derive_streams(3)["eval"])
    assert history[-1]["test_active_units"] == last["active_units"]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz")["history"] == history   # it is saved, and reads back


# ------------------------------------------------------------------ what evaluate refuses
from hypothesis import given, settings, strategies as st

from scratchvae.chapters.autoencoder import Autoencoder
from scratchvae.chapters.cvae import CVAE
from scratchvae.chapters.iwae import IWAE
from scratchvae.machinery.evaluate import evaluate_losses, evaluate_reconstruction


@pytest.mark.parametrize("n, is_limit", [(1, 1000), (5, 1), (1, None), (1, 1)])
def test_one_image_for_the_importance_sampled_estimate_is_refused(n, is_limit):
    """A standard error over one image is not 0.000 but undefined (docs/reliability.md: bad input)."""
    with pytest.raises(ValueError, match="on 1 image has no standard error .*is_k=0"):
        evaluate(small_bernoulli_model(), binary_images(n), is_k=5, is_limit=is_limit)
    report = evaluate(small_bernoulli_model(), binary_images(n), is_k=0, is_limit=is_limit)   # no estimate: fine
    assert report["is_nll"] is None and report["is_nll_sem"] is None and report["n"] == n


def test_the_standard_error_is_that_of_the_mean_over_images():
    model, images = small_bernoulli_model(), binary_images(7)
    report = evaluate(model, images, is_k=5, is_limit=2, seed=3, is_batch=1)
    x = images[:2].astype(np.float32) / 255
    nll = importance_sampled_nll(model, x, 5, rng=np.random.default_rng(substream(3, 3)), batch_size=1)
    assert report["is_n"] == 2 and report["is_nll"] == pytest.approx(nll.mean(), rel=1e-12)
    assert report["is_nll_sem"] == pytest.approx(abs(nll[0] - nll[1]) / 2, rel=1e-9)   # s / sqrt(2), ddof 1


KINDS = {"vae": lambda: VAE(16, [8], 2, seed=0), "iwae": lambda: IWAE(16, [8], 2, k=3, seed=0),
         "cvae": lambda: CVAE(16, [8], 2, seed=0), "autoencoder": lambda: Autoencoder(16, [8], 2, seed=0)}


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_split_is_a_clear_error_for_every_kind(kind):
    """It was ZeroDivisionError, or 'need at least one array to concatenate'."""
    model, empty = KINDS[kind](), np.zeros((0, 16), np.uint8)
    labels = np.zeros(0, np.int64) if model.conditional else None
    with pytest.raises(ValueError, match=r"images_u8 holds no images \(shape \(0, 16\)\)"):
        evaluate_losses(model, empty, labels=labels)
    if model.variational:
        for call in (lambda: evaluate(model, empty, labels=labels),
                     lambda: evaluate_nelbo(model, empty, labels=labels)):
            with pytest.raises(ValueError, match="images_u8 holds no images"):
                call()
        with pytest.raises(ValueError, match=r"x holds no datapoints \(shape \(0, 16\)\)"):
            importance_sampled_nll(model, np.zeros((0, 16), np.float32), 3, rng=np.random.default_rng(0),
                                   labels=labels)


def test_labels_go_to_the_conditional_model_only_and_the_families_to_their_own_measure():
    images, labels = binary_images(4), np.arange(4)
    with pytest.raises(ValueError, match="a conditional VAE is given the images' labels"):
        evaluate(KINDS["cvae"](), images)
    with pytest.raises(ValueError, match="a VAE is not given labels"):
        evaluate(KINDS["vae"](), images, labels=labels)
    with pytest.raises(ValueError, match=r"labels must hold one label per image, shape \(4,\)"):
        evaluate(KINDS["cvae"](), images, labels=labels[:3])
    with pytest.raises(ValueError, match="an autoencoder has no ELBO .* evaluate_reconstruction"):
        evaluate(KINDS["autoencoder"](), images)
    with pytest.raises(ValueError, match="a VAE is measured by its ELBO: evaluate_nelbo"):
        evaluate_reconstruction(KINDS["vae"](), images)
    assert evaluate(KINDS["cvae"](), images, labels=labels, is_k=3)["conditional"] is True


NOT_A_COUNT = st.one_of(st.booleans(), st.floats(allow_nan=True), st.integers(max_value=0),
                        st.text(max_size=2), st.none(), st.sampled_from([1.5, 2.0, np.float64(3.0), "3"]))


@settings(max_examples=40, deadline=None)
@given(where=st.sampled_from(["k", "chunk", "batch_size", "is_k", "is_limit", "is_batch", "is_chunk",
                              "eval batch_size", "n_samples"]), value=NOT_A_COUNT)
def test_counts_are_integers_or_refused(where, value):
    """importance_sampled_nll(k=1.5) silently used k = 1: every count is an int (not a bool, not
    1.0) of at least 1 (is_k: 0 skips), or refused by name."""
    if (where == "is_k" and value == 0 and not isinstance(value, (bool, float))) or (
            where == "is_limit" and value is None):
        return                                            # is_k = 0 skips the estimate; is_limit None = all
    model, images = small_bernoulli_model(), binary_images(4)
    x, rng = images.astype(np.float32) / 255, np.random.default_rng(0)
    calls = {"k": lambda: importance_sampled_nll(model, x, value, rng=rng),
             "chunk": lambda: importance_sampled_nll(model, x, 3, rng=rng, chunk=value),
             "batch_size": lambda: importance_sampled_nll(model, x, 3, rng=rng, batch_size=value),
             "eval batch_size": lambda: evaluate(model, images, is_k=3, batch_size=value),
             "n_samples": lambda: evaluate_nelbo(model, images, n_samples=value)}
    call = calls.get(where, lambda: evaluate(model, images, **{"is_k": 3, where: value}))
    name = where.split()[-1]
    with pytest.raises(ValueError, match=rf"^{name}\b.* must be an integer >= {0 if name == 'is_k' else 1}"):
        call()
