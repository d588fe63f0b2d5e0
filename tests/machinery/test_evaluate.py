"""Evaluation: the test negative ELBO, and the importance-sampled estimate of -log p(x).

The estimate is checked against a model whose log p(x) is known in closed form: a linear
decoder with Gaussian noise, p(x) = N(b, W^T W + diag(psi)) (probabilistic PCA / factor
analysis), with an encoder that outputs the true posterior mean and a wider, isotropic
variance -- so the ELBO's gap KL(q || p(z|x)) is known exactly too.
"""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.machinery.evaluate import (ESTIMATOR, active_units, evaluate, evaluate_nelbo, format_report,
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


def grey_images(n, D=16, seed=0):
    """Pixels anywhere in 0..255: their dynamic binarisation depends on the draws (binary images' does not)."""
    return np.random.default_rng(seed).integers(0, 256, (n, D), dtype=np.uint8)


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


# ------------------------------------------------------------------ the report, number by number
def test_the_report_is_its_two_measures_on_their_own_streams_with_its_defaults():
    """evaluate = evaluate_nelbo(seed) on every image + importance_sampled_nll on the first
    is_limit images (binarised from substream 2, eps from substream 3, batches of is_batch); its
    defaults are k = 1000 on the first 1,000 images, batches of 1,000 and 100."""
    model, images = small_bernoulli_model(), grey_images(12)
    report = evaluate(model, images, is_k=7, is_limit=5, seed=4, binarize="dynamic", is_batch=3)
    bound = evaluate_nelbo(model, images, seed=4, binarize="dynamic")
    x = (np.random.default_rng(substream(4, 2)).random((5, 16), dtype=np.float32) < images[:5] / np.float32(255))
    nll = importance_sampled_nll(model, x.astype(np.float32), 7, rng=np.random.default_rng(substream(4, 3)),
                                 batch_size=3)
    assert report == {"test_nelbo": bound["nelbo"], "test_rec": bound["rec"], "test_kl": bound["kl"], "n": 12,
                      "active_units": bound["active_units"], "latent_dim": 2, "is_nll": pytest.approx(nll.mean()),
                      "is_nll_sem": pytest.approx(nll.std(ddof=1) / np.sqrt(5)), "is_k": 7, "is_n": 5,
                      "estimator": f"{ESTIMATOR}, k=7", "binarize": "dynamic", "conditional": False}
    assert evaluate(model, images, is_k=0) == {**evaluate(model, images, is_k=0, seed=0), "is_n": 0}
    assert evaluate(model, images, is_k=0)["is_nll_sem"] is None and evaluate(model, images, is_k=0)["is_n"] == 0
    small = evaluate(model, images, is_k=3, is_limit=None)               # is_limit None: every image
    assert small["is_n"] == 12
    default = evaluate(model, images[:4], is_k=3)
    assert default == evaluate(model, images[:4], is_k=3, is_limit=1000, seed=0, batch_size=1000, is_chunk=10,
                               is_batch=100)
    import inspect
    defaults = {k: v.default for k, v in inspect.signature(evaluate).parameters.items()}
    assert (defaults["is_k"], defaults["is_limit"], defaults["batch_size"]) == (1000, 1000, 1000)


def test_a_conditional_models_report_is_its_bounds_given_the_labels():
    cvae, images = CVAE(16, [8], 2, n_classes=4, seed=1), binary_images(6)
    labels = np.array([0, 1, 2, 3, 0, 1])
    report = evaluate(cvae, images, labels=labels, is_k=5, is_limit=4, seed=2, is_batch=2)
    bound = evaluate_nelbo(cvae, images, labels=labels, seed=2)
    x = images[:4].astype(np.float32) / 255
    nll = importance_sampled_nll(cvae, x, 5, rng=np.random.default_rng(substream(2, 3)), batch_size=2,
                                 labels=labels[:4])
    assert report["test_nelbo"] == bound["nelbo"] and report["conditional"] is True
    assert report["is_nll"] == pytest.approx(nll.mean(), rel=1e-12)
    shuffled = evaluate(cvae, images, labels=(labels + 1) % 4, is_k=5, is_limit=4, seed=2, is_batch=2)
    assert shuffled["test_nelbo"] != report["test_nelbo"] and shuffled["is_nll"] != report["is_nll"]


def test_the_fused_evaluation_is_the_same_report_and_refuses_what_it_cannot_compute():
    model, images = small_bernoulli_model(), binary_images(6)
    plain, fused = (evaluate(model, images, is_k=6, is_limit=4, engine=e) for e in ("plain", "fused"))
    assert fused["is_nll"] == pytest.approx(plain["is_nll"], rel=1e-6) and fused["is_n"] == 4
    assert fused["is_nll_sem"] == pytest.approx(plain["is_nll_sem"], rel=1e-4)
    assert {k: v for k, v in fused.items() if not k.startswith("is_nll")} == \
        {k: v for k, v in plain.items() if not k.startswith("is_nll")}
    with pytest.raises(ValueError, match="engine must be 'plain' or 'fused'"):
        evaluate(model, images, engine="Fused")
    with pytest.raises(ValueError, match="the fused evaluation cannot evaluate this model"):
        evaluate(CVAE(16, [8], 2, n_classes=4, seed=1), images, labels=np.zeros(6, np.int64), engine="fused")
    with pytest.raises(ValueError, match="the fused evaluation cannot evaluate this model"):
        evaluate(VAE(16, [8], 2, activation="tanh", seed=0), images, engine="fused")


def test_the_report_reads_as_lines_for_each_kind_of_bound():
    report = {"test_nelbo": 101.23456, "test_rec": 90.5, "test_kl": 10.73456, "n": 12345, "active_units": 3,
              "latent_dim": 20, "is_nll": 97.0001, "is_nll_sem": 0.4567, "estimator": f"{ESTIMATOR}, k=50",
              "is_n": 1000, "conditional": False}
    assert format_report(report) == (
        "test negative ELBO     101.235 nats  (rec 90.500 + KL 10.735; 12,345 images, one z sample each)\n"
        "active latent units    3 of 20  (Var_x E_q[z_u] > 0.01, Burda et al. 2016)\n"
        "test -log p(x)        97.000 nats  (+/- 0.457 s.e.; importance-sampled (IWAE) bound, k=50; first 1,000 images)")
    assert format_report({**report, "conditional": True}, what="train").splitlines()[2].startswith(
        "train -log p(x|y)      97.000 nats")
    assert format_report({**report, "is_nll": None, "active_units": None}).count("\n") == 0


def test_progress_counts_every_datapoint_sample_and_the_estimate_is_float64():
    model = small_bernoulli_model()
    x = binary_images(5).astype(np.float32) / 255
    calls = []
    nll = importance_sampled_nll(model, x, 7, rng=np.random.default_rng(0), chunk=3, batch_size=2,
                                 progress=lambda done, total: calls.append((done, total)))
    assert nll.dtype == np.float64
    assert calls[-1] == (35, 35) and all(b[0] > a[0] for a, b in zip(calls, calls[1:]))
    assert [d for d, _ in calls[:3]] == [6, 12, 14]                      # 3 x 2, 3 x 2, 1 x 2: the first batch
    eps = np.random.default_rng(0).standard_normal((3, 2, 2), dtype=np.float32)       # the first chunk's draw
    log_w = model.log_weights(x[:2], eps)
    assert np.all(log_w.max(axis=0) <= -nll[:2] + np.log(7) + 1e-6)     # (its weights are among the 7)


def test_each_datapoint_of_a_batch_gets_its_own_running_maximum():
    """Two images 900 nats apart in one batch (more than the 707 nats below which exp underflows in
    float64): each -log p(x) is the one it gets alone."""
    model = VAE(36, [8], 2, seed=0)
    model.params["dec.logits.W"][...] *= 0.01
    model.params["dec.logits.b"][...] = -25.0
    x = np.stack([np.zeros(36), np.ones(36)]).astype(np.float32)
    both = importance_sampled_nll(model, x, 20, rng=np.random.default_rng(0), batch_size=2)
    alone = [importance_sampled_nll(model, x[i:i + 1], 20, rng=np.random.default_rng(1), batch_size=1)[0]
             for i in range(2)]
    assert both[1] - both[0] > 850
    np.testing.assert_allclose(both, alone, atol=0.5)                   # other draws, the same numbers


def test_a_conditional_models_labels_follow_their_images_through_the_batches():
    cvae = CVAE(16, [8], 2, n_classes=4, seed=1)
    x = binary_images(5).astype(np.float32) / 255
    labels = np.array([3, 0, 2, 1, 3])
    one_go = importance_sampled_nll(cvae, x, 4, rng=np.random.default_rng(0), batch_size=5, labels=labels)
    eps = np.random.default_rng(0).standard_normal((4, 5, 2), dtype=np.float32)
    direct = -(np.logaddexp.reduce(cvae.log_weights(x, labels, eps).astype(np.float64), axis=0) - np.log(4))
    np.testing.assert_allclose(one_go, direct, rtol=1e-10)
    by_two = importance_sampled_nll(cvae, x, 4, rng=np.random.default_rng(0), batch_size=2, labels=labels)
    replay = np.random.default_rng(0)
    for start in (0, 2, 4):
        xb, yb = x[start:start + 2], labels[start:start + 2]
        eps = replay.standard_normal((4, len(xb), 2), dtype=np.float32)
        expected = -(np.logaddexp.reduce(cvae.log_weights(xb, yb, eps).astype(np.float64), axis=0) - np.log(4))
        np.testing.assert_allclose(by_two[start:start + 2], expected, rtol=1e-10)


def test_the_autoencoders_loss_is_its_mean_reconstruction_error_over_every_batch():
    ae, images = Autoencoder(16, [8], 2, seed=0), grey_images(7)
    got = evaluate_reconstruction(ae, images, batch_size=3, seed=5, binarize="dynamic")
    x = (np.random.default_rng(substream(5, 0)).random((7, 16), dtype=np.float32) < images / np.float32(255))
    assert got == {"rec": pytest.approx(ae.reconstruction_error(x.astype(np.float32)).mean(), rel=1e-6), "n": 7}
    assert evaluate_losses(ae, images, batch_size=3, seed=5, binarize="dynamic") == got
    assert evaluate_reconstruction(ae, images) == evaluate_reconstruction(ae, images, batch_size=1000, seed=0,
                                                                          binarize="none")


def test_a_diverged_model_is_measured_as_inf_or_nan_without_a_numpy_warning():
    import warnings
    model, ae = small_bernoulli_model(), Autoencoder(16, [8], 2, seed=0)
    model.params["enc.logvar.b"][...] = 200.0                          # sigma = exp(100): inf in float32
    ae.params["dec.logits.W"][...] = 1e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not np.isfinite(evaluate_nelbo(model, binary_images(4))["nelbo"])
        assert not np.isfinite(evaluate_reconstruction(ae, binary_images(4))["rec"])


def test_active_units_are_measured_in_float64():
    mu = np.array([[0.0, 1.0], [0.2, 1.0], [0.4, 1.0]], np.float32)
    count, activity = active_units(mu)
    assert activity.dtype == np.float64 and count == 1
    np.testing.assert_allclose(activity, [np.var([0.0, 0.2, 0.4]), 0.0], rtol=1e-7)


# ------------------------------------------------------------------ streams, defaults and calls, exactly
def binarized(images, seed, stream):
    """The dynamic binarisation written out: x_bin = [u < pixels / 255], u ~ U[0, 1) float32 from
    substream ``stream`` of ``seed``, drawn in image order (what iterate_batches draws, batch after batch)."""
    u = np.random.default_rng(substream(seed, stream)).random(images.shape, dtype=np.float32)
    return (u < images / np.float32(255)).astype(np.float32)


def record_calls(monkeypatch, model, method):
    """Replace model.METHOD by a wrapper that records the first argument's length of every call."""
    sizes, original = [], getattr(model, method)

    def recording(*args, **kwargs):
        sizes.append(len(args[0]))
        return original(*args, **kwargs)
    monkeypatch.setattr(model, method, recording)
    return sizes


def test_the_nelbo_binarises_from_substream_0_and_draws_eps_from_substream_1_in_image_order():
    """-ELBO with dynamic binarisation = model.loss on [u < pixels/255] (u from substream 0) with eps
    from substream 1, every image in its place: batches of 10 give the numbers of one batch of 37."""
    model, images = small_bernoulli_model(), grey_images(37)
    result = evaluate_nelbo(model, images, batch_size=10, seed=4, binarize="dynamic")
    eps = np.random.default_rng(substream(4, 1)).standard_normal((37, 1, 2), dtype=np.float32)
    _, parts = model.loss(binarized(images, 4, 0), eps.transpose(1, 0, 2))
    np.testing.assert_allclose([result["rec"], result["kl"]], [parts["rec"], parts["kl"]], rtol=1e-5)
    assert evaluate_losses(model, images, batch_size=10, seed=4, binarize="dynamic") == result


def test_the_defaults_of_the_nelbo_and_of_the_autoencoders_loss(monkeypatch):
    """evaluate_nelbo, evaluate_reconstruction and evaluate_losses default to seed 0, no binarisation
    and batches of 1,000 images (1,500 images: an encoder pass of 1,000, then 500)."""
    model, ae, images = small_bernoulli_model(), Autoencoder(16, [8], 2, seed=0), grey_images(1500)
    vae_batches, ae_batches = record_calls(monkeypatch, model, "encode"), record_calls(monkeypatch, ae,
                                                                                     "reconstruction_error")
    nelbo = evaluate_nelbo(model, images)
    assert vae_batches == [1000, 500]
    assert nelbo == evaluate_nelbo(model, images, batch_size=1000, seed=0, binarize="none", n_samples=1)
    assert evaluate_losses(model, images) == nelbo and vae_batches[-2:] == [1000, 500]
    rec = evaluate_reconstruction(ae, images)
    assert ae_batches == [1000, 500]
    assert evaluate_losses(ae, images) == rec and ae_batches[-2:] == [1000, 500]
    dynamic = evaluate_reconstruction(ae, images, binarize="dynamic")
    assert dynamic == evaluate_reconstruction(ae, images, binarize="dynamic", seed=0)
    assert evaluate_losses(ae, images, binarize="dynamic") == dynamic
    assert dynamic != evaluate_reconstruction(ae, images, binarize="dynamic", seed=1)
    assert evaluate_losses(model, images[:50], binarize="dynamic") == evaluate_nelbo(model, images[:50],
                                                                                      binarize="dynamic", seed=0)


def test_the_autoencoders_loss_is_its_reconstruction_error_on_the_seeded_binarisation(monkeypatch):
    """rec = mean_i -log p(x_i|z_i) on [u < pixels/255], u from substream 0 of the seed, images in
    their order (no shuffle), whatever the batch size; evaluate_losses passes seed, batch size, binarize."""
    ae, images = Autoencoder(16, [8], 2, seed=0), grey_images(23)
    expected = float(np.mean(ae.reconstruction_error(binarized(images, 7, 0)), dtype=np.float64))
    got = evaluate_reconstruction(ae, images, batch_size=4, seed=7, binarize="dynamic")
    assert got == {"rec": pytest.approx(expected, rel=1e-6), "n": 23}
    batches = record_calls(monkeypatch, ae, "reconstruction_error")
    assert evaluate_losses(ae, images, batch_size=4, seed=7, binarize="dynamic") == got
    assert batches == [4, 4, 4, 4, 4, 3]
    assert evaluate_losses(ae, images, labels=np.arange(23), batch_size=4, seed=7, binarize="dynamic") == got


def test_evaluate_losses_gives_labels_to_a_conditional_model_only():
    """The trainer passes every kind its split's labels; a model that is not conditional is measured
    without them (as evaluate_nelbo would refuse them), a conditional one with them."""
    model, images, labels = small_bernoulli_model(), grey_images(9), np.arange(9) % 4
    assert evaluate_losses(model, images, labels=labels, seed=2) == evaluate_nelbo(model, images, seed=2)
    cvae = CVAE(16, [8], 2, n_classes=4, seed=1)
    assert evaluate_losses(cvae, images, labels=labels, seed=2) == evaluate_nelbo(cvae, images, labels=labels,
                                                                                  seed=2)


def test_each_batch_is_encoded_once(monkeypatch):
    """q(z|x) = (mu, logvar) is computed once per batch and handed to the loss and to every chunk's
    log weights: 3 batches -> 3 encoder passes for the -ELBO; 2 batches x 3 chunks -> 2 passes."""
    model = small_bernoulli_model()
    calls = record_calls(monkeypatch, model, "encode")
    evaluate_nelbo(model, grey_images(25), batch_size=10)
    assert calls == [10, 10, 5]
    calls.clear()
    x = binary_images(10).astype(np.float32) / 255
    importance_sampled_nll(model, x, 30, rng=np.random.default_rng(0), chunk=10, batch_size=5)
    assert calls == [5, 5]


def test_importance_sampled_nll_defaults_to_chunks_of_10_samples_for_100_datapoints(monkeypatch):
    """150 datapoints, k = 25: batches of 100 and 50, each in chunks of 10, 10 and 5 samples."""
    model = small_bernoulli_model()
    shapes, original = [], model.log_weights
    monkeypatch.setattr(model, "log_weights", lambda xb, eps, q=None: shapes.append(eps.shape[:2])
                        or original(xb, eps, q=q))
    importance_sampled_nll(model, binary_images(150).astype(np.float32) / 255, 25, rng=np.random.default_rng(0))
    assert shapes == [(10, 100), (10, 100), (5, 100), (10, 50), (10, 50), (5, 50)]


def test_given_log_weights_are_the_ones_summed():
    """log_weights=f: the estimate is -(logsumexp_l f(x, eps_l, q) - log k), with q the encoder's
    (mu, logvar) of the batch and eps the draws, and model.log_weights is not asked."""
    model = small_bernoulli_model()
    x = binary_images(4).astype(np.float32) / 255
    seen = []

    def f(xb, eps, q):
        np.testing.assert_array_equal(q[0], model.encode(xb)[0])
        seen.append(eps)
        return -0.5 * (eps.astype(np.float64) ** 2).sum(axis=-1) + 3.0 * np.arange(len(xb))   # (c, n)
    nll = importance_sampled_nll(model, x, 12, rng=np.random.default_rng(2), chunk=5, log_weights=f)
    log_w = -0.5 * (np.concatenate(seen).astype(np.float64) ** 2).sum(axis=-1) + 3.0 * np.arange(4)   # (12, 4)
    m = log_w.max(axis=0)
    np.testing.assert_allclose(nll, -(m + np.log(np.exp(log_w - m).sum(axis=0)) - np.log(12)), rtol=1e-12)
    eps = np.random.default_rng(2).standard_normal((5, 4, 2), dtype=np.float32)
    np.testing.assert_array_equal(seen[0], eps)                    # the estimator's own draws


def test_the_reports_defaults_and_its_calls_of_the_estimator(monkeypatch):
    """Defaults: -ELBO in batches of 1,000; the estimate on the first 1,000 images, in batches of
    100 with chunks of 10 samples, k = 1000; progress counts every datapoint-sample."""
    model, images = small_bernoulli_model(), grey_images(1500)
    encoded = record_calls(monkeypatch, model, "encode")
    shapes, original = [], model.log_weights
    monkeypatch.setattr(model, "log_weights", lambda xb, eps, q=None: shapes.append(eps.shape[:2])
                        or original(xb, eps, q=q))
    progress = []
    report = evaluate(model, images, is_k=12, progress=lambda done, total: progress.append((done, total)))
    assert encoded == [1000, 500] + [100] * 10 and report["is_n"] == 1000
    assert shapes == [(10, 100), (2, 100)] * 10
    assert progress[-1] == (12_000, 12_000) and len(progress) == 20
    shapes.clear()
    evaluate(model, images[:3], is_k=7, is_chunk=3)
    assert shapes == [(3, 3), (3, 3), (1, 3)]
    shapes.clear()
    report = evaluate(model, images[:2])
    assert (report["is_k"], report["estimator"]) == (1000, f"{ESTIMATOR}, k=1000")
    assert shapes == [(10, 2)] * 100


def test_the_fused_engine_computes_every_chunks_weights(monkeypatch):
    """engine="fused": each chunk's log w comes from FastLogWeights, none from model.log_weights."""
    import scratchvae.machinery.evaluate as evaluate_module
    calls = []

    class Recording(evaluate_module.FastLogWeights):
        def __call__(self, x, eps, q):
            calls.append(eps.shape[:2])
            return super().__call__(x, eps, q)
    monkeypatch.setattr(evaluate_module, "FastLogWeights", Recording)
    model, images = small_bernoulli_model(), binary_images(6)
    monkeypatch.setattr(model, "log_weights", lambda *args, **kwargs: pytest.fail("model.log_weights was asked"))
    report = evaluate(model, images, is_k=7, is_limit=4, is_chunk=3, engine="fused")
    assert calls == [(3, 4), (3, 4), (1, 4)] and report["is_n"] == 4


def test_the_fused_engine_refuses_a_model_it_cannot_compute_before_any_work(monkeypatch):
    """An engine that cannot evaluate the model is bad input: refused before the -ELBO's pass over
    every image (no encoder call), and whether or not the estimate is asked for (is_k = 0)."""
    tanh = VAE(16, [8], 2, activation="tanh", seed=0)
    cvae = CVAE(16, [8], 2, n_classes=4, seed=1)
    for model, labels in ((tanh, None), (cvae, np.zeros(6, np.int64))):
        calls = record_calls(monkeypatch, model, "encode")
        for is_k in (0, 5):
            with pytest.raises(ValueError, match="the fused evaluation cannot evaluate this model"):
                evaluate(model, binary_images(6), labels=labels, is_k=is_k, engine="fused")
        assert calls == []


def test_images_that_are_not_a_uint8_matrix_are_refused_saying_what_they_are():
    model = small_bernoulli_model()
    cases = [(np.zeros((3, 16), np.float32), "got float32 (3, 16)"), (np.zeros(16, np.uint8), "got uint8 (16,)"),
             (np.zeros((2, 3, 16), np.uint8), "got uint8 (2, 3, 16)"), ([[0] * 16] * 3, "got list $")]
    for images, says in cases:
        for call in (evaluate_nelbo, evaluate, evaluate_losses):
            with pytest.raises(ValueError, match=r"^images_u8 must be a uint8 array \(N, D\) of pixels 0\.\.255, "
                                                 + says.replace("(", r"\(").replace(")", r"\)")):
                call(model, images)
        with pytest.raises(ValueError, match="^images_u8 must be a uint8 array"):
            evaluate_reconstruction(Autoencoder(16, [8], 2, seed=0), images)


def test_the_autoencoders_batch_size_is_a_count_refused_by_name():
    ae = Autoencoder(16, [8], 2, seed=0)
    for value in (0, 2.5, True, None):
        with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got"):
            evaluate_reconstruction(ae, binary_images(3), batch_size=value)


def test_a_diverged_autoencoders_nan_is_reported_without_a_numpy_warning():
    """Infinite decoder weights: 0 * inf in the matmul is nan (an 'invalid' operation), reported as is."""
    import warnings
    ae = Autoencoder(16, [8], 2, seed=0)
    ae.params["dec.logits.W"][...] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(evaluate_reconstruction(ae, binary_images(4))["rec"])


def test_a_unit_exactly_at_the_threshold_is_not_active():
    """Active means Var_x(mu_u) > threshold, strictly (Burda et al. 2016: A_u > 0.01): mu_u in {0, 1}
    has variance 1/4 exactly, not above a threshold of 1/4."""
    mu = np.array([[0.0, 0.0], [1.0, 2.0]])
    assert active_units(mu, threshold=0.25) == (1, pytest.approx([0.25, 1.0]))
    assert active_units(mu, threshold=0.2499)[0] == 2


def test_substream_is_the_spawned_child_for_any_seed_sequence():
    """substream(seed, i) = SeedSequence(seed).spawn(i + 1)[i], pool size and all, every time."""
    for seed in (3, np.random.SeedSequence(11, pool_size=8), np.random.SeedSequence(5, spawn_key=(2,))):
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        child = np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key, pool_size=ss.pool_size).spawn(3)[2]
        for _ in range(2):
            np.testing.assert_array_equal(substream(seed, 2).generate_state(8), child.generate_state(8))
        assert substream(seed, 2).pool_size == ss.pool_size
