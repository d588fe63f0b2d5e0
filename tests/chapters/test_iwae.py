"""The importance-weighted bound L_k (iwae.py): its gradient, k = 1, stability, L_k rising with k, training."""
import io

import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.machinery.checkpoint import load_checkpoint, load_model
from scratchvae.machinery.cli import main
from scratchvae.gradcheck import numerical_gradient, rel_error
from scratchvae.chapters.iwae import IWAE
from scratchvae.machinery.runner import ConfigError, TrainConfig, train

from helpers import run_main, write_dataset
from helpers import synthetic_images          # four binary prototypes, 5 % of pixels flipped

TOL = 1e-7     # float64 central differences give ~1e-9 here; a wrong term gives ~1e-2 or more


def tiny_problem(likelihood, k, N=4, D=6, K=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((N, D))
    if likelihood == "bernoulli":
        x[:, :2] = np.round(x[:, :2])
    return x, rng.standard_normal((k, N, K))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [1, 2, 7])
def test_every_gradient_of_L_k_matches_finite_differences(likelihood, k):
    model = IWAE(6, [5], 3, activation="tanh", likelihood=likelihood, dtype=np.float64, seed=1, k=k)
    x, eps = tiny_problem(likelihood, k)
    loss, _ = model.loss_and_grads(x, eps)
    analytic = {name: g.copy() for name, g in model.grads.items()}
    minus_L_k = lambda _: -np.mean(model.bound(x, eps))        # the forward of vae.py's log_weights
    assert loss == pytest.approx(minus_L_k(None), rel=1e-14)
    errors = {name: rel_error(numerical_gradient(minus_L_k, p), analytic[name])
              for name, p in model.params.items()}
    assert set(errors) == set(model.params) and len(errors) == 10 + 2 * (likelihood == "gaussian")
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst} rel_error={errors[worst]:.1e}"


def test_relu_nets_too():
    model = IWAE(6, [7, 5], 3, activation="relu", dtype=np.float64, seed=3, k=4)
    x, eps = tiny_problem("bernoulli", 4, seed=3)
    model.loss_and_grads(x, eps)
    analytic = {name: g.copy() for name, g in model.grads.items()}
    for name, p in model.params.items():
        err = rel_error(numerical_gradient(lambda _: -np.mean(model.bound(x, eps)), p), analytic[name])
        assert err < TOL, f"{name} rel_error={err:.1e}"


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_L_1_is_the_monte_carlo_kl_vae_objective_exactly(likelihood, dtype):
    """k = 1: log-mean-exp of one log-weight is that log-weight, so -L_1 = -mean(log p(x, z) - log q(z|x))."""
    model = IWAE(6, [5], 3, likelihood=likelihood, dtype=dtype, seed=2, k=1)
    x, eps = tiny_problem(likelihood, 1, N=9)
    x, eps = x.astype(dtype), eps.astype(dtype)
    loss, parts = model.loss_and_grads(x, eps)
    vae = VAE(6, [5], 3, likelihood=likelihood, dtype=dtype, seed=2)      # the same weights
    assert loss == -np.mean(vae.log_weights(x, eps))                      # bit for bit
    assert loss == pytest.approx(parts["nelbo"], rel=1e-5) and parts["iwae"] == -loss
    _, analytic_kl = vae.loss(x, eps)                                     # same rec, closed-form KL
    assert parts["rec"] == pytest.approx(analytic_kl["rec"], rel=1e-5)
    assert model.grads["enc.mu.W"].dtype == dtype
    vae.loss_and_grads(x, eps)               # the KL touches only the encoder: the decoder's gradients agree
    for name in vae.phi:
        err = rel_error(model.grads[name], vae.grads[name])
        assert err < 100 * np.finfo(dtype).eps, f"{name} rel_error={err:.1e}"


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_k_copies_of_one_sample_give_L_1_and_its_gradient(likelihood):
    """k equal samples have k equal weights: log 1/k sum_i w_i = log w_1 and w~_i = 1/k, so L_7
    and its gradient are L_1's. Fails if the -log k is lost (in the loss or in ``bound``), or if
    the weights are not normalised (unnormalised, the gradient would be 7 times L_1's)."""
    x, eps = tiny_problem(likelihood, 1)
    one = IWAE(6, [5], 3, activation="tanh", likelihood=likelihood, dtype=np.float64, seed=5, k=1)
    seven = IWAE(6, [5], 3, activation="tanh", likelihood=likelihood, dtype=np.float64, seed=5, k=7)
    copies = np.repeat(eps, 7, axis=0)                                    # (7, N, K), all eps_i equal
    loss1, _ = one.loss_and_grads(x, eps)
    loss7, _ = seven.loss_and_grads(x, copies)
    assert loss7 == pytest.approx(loss1, rel=1e-14)
    np.testing.assert_allclose(seven.bound(x, copies), one.bound(x, eps), rtol=1e-14)
    assert rel_error(seven.flat_grads, one.flat_grads) < 1e-14


def test_weights_hundreds_of_nats_apart_give_the_dominant_samples_gradient():
    """Sample 2 sits 100 standard deviations out: its log-weight is thousands of nats below
    sample 1's (exp of the difference underflows even in float64), so w~ = (1, 0) and L_2 is
    sample 1's log-weight minus log 2, with sample 1's gradient -- no inf or nan."""
    x, eps = tiny_problem("bernoulli", 1)
    far = np.concatenate([eps, eps + 100.0])                               # (2, N, K)
    one = IWAE(6, [5], 3, activation="tanh", dtype=np.float64, seed=4, k=1)
    two = IWAE(6, [5], 3, activation="tanh", dtype=np.float64, seed=4, k=2)
    log_w = two.log_weights(x, far)
    assert np.all(log_w[0] - log_w[1] > 2000)
    loss1, _ = one.loss_and_grads(x, eps)
    loss2, _ = two.loss_and_grads(x, far)
    assert loss2 == pytest.approx(loss1 + np.log(2), rel=1e-12)
    assert np.isfinite(two.flat_grads).all()
    np.testing.assert_allclose(two.flat_grads, one.flat_grads, rtol=1e-10, atol=1e-300)


def far_apart_problem(likelihood, dtype=np.float64):
    """Log-weights of about -700 to -4000 nats, hundreds of nats apart within a datapoint, with
    three samples close together (eps steps of 0.001): a model as badly fitted as at the start
    of training. Bernoulli: a decoder whose logits are 1000 times too confident; Gaussian: a
    decoder whose means sit 30 below every pixel."""
    rng = np.random.default_rng(0)
    x = rng.random((4, 6))
    x[:, :2] = np.round(x[:, :2])
    model = IWAE(6, [5], 3, activation="tanh", likelihood=likelihood, dtype=np.float64, seed=4, k=7)
    if likelihood == "bernoulli":
        model.params["dec.logits.W"][...] *= 1000
        model.params["dec.logits.b"][...] *= 1000
    else:
        model.params["dec.mean.b"][...] -= 30
    steps = np.array([0, 1e-3, 2e-3, 0.05, 0.2, 0.5, 1.0])[:, None, None]
    eps = rng.standard_normal((4, 3)) + steps * rng.standard_normal((7, 4, 3))   # (7, N, K)
    if dtype != np.float64:
        same = IWAE(6, [5], 3, activation="tanh", likelihood=likelihood, dtype=dtype, k=7)
        same.flat_params[...] = model.flat_params
        model, x, eps = same, x.astype(dtype), eps.astype(dtype)
    return model, x, eps


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_log_weights_hundreds_of_nats_apart_keep_the_gradient_exact(likelihood):
    """Where exp(log w) underflows for every sample and the weights are hundreds of nats apart,
    L_k is still finite and its gradient still passes the finite-difference check -- with several
    samples sharing the weight, so the softmax's shift by the largest log-weight is what is
    tested, not only the limit w~ = (1, 0, ...) of the test above. float32 computes the same."""
    model, x, eps = far_apart_problem(likelihood)
    log_w = model.log_weights(x, eps)                                     # (7, N)
    assert np.max(log_w.max(axis=0) - log_w.min(axis=0)) > 500           # hundreds of nats apart
    with np.errstate(under="ignore"):
        assert np.any(np.all(np.exp(log_w) == 0, axis=0))                # log mean exp(log w) would be -inf
    w_tilde = np.exp(log_w - log_w.max(axis=0))
    w_tilde /= w_tilde.sum(axis=0)
    assert np.any(np.sum(w_tilde > 0.01, axis=0) >= 3)                   # a mixture, not one sample
    loss, _ = model.loss_and_grads(x, eps)
    assert np.isfinite(loss) and np.isfinite(model.flat_grads).all()
    analytic = {name: g.copy() for name, g in model.grads.items()}
    minus_L_k = lambda _: -np.mean(model.bound(x, eps))
    assert loss == pytest.approx(minus_L_k(None), rel=1e-14)
    for name, p in model.params.items():
        err = rel_error(numerical_gradient(minus_L_k, p), analytic[name])
        assert err < TOL, f"{name} rel_error={err:.1e}"
    single, x32, eps32 = far_apart_problem(likelihood, np.float32)
    loss32, _ = single.loss_and_grads(x32, eps32)
    assert np.isfinite(single.flat_grads).all() and single.flat_grads.dtype == np.float32
    assert loss32 == pytest.approx(loss, rel=1e-6)
    assert rel_error(single.flat_grads, model.flat_grads) < 1e-5


IMAGES = synthetic_images(190)
TRAIN, TEST = IMAGES[:150], IMAGES[150:]


def test_L_k_rises_with_k_in_expectation_on_a_trained_model():
    """ELBO = L_1 <= L_5 <= L_50 in expectation (Burda et al. 2016, Theorem 1), measured with
    ``IWAE.bound`` on a VAE trained for 300 steps, where the rises are a fraction of a nat (0.46
    and 0.18). The means of the paired differences over 40 images x 200 draws must exceed zero by
    ten standard errors of that mean; they do by about 34 and 27, so Monte Carlo noise cannot pass
    this test for a bound that does not rise (the ELBO averaged over k samples, say)."""
    model, _ = train(TrainConfig(hidden=[16], latent=4, batch_size=16, epochs=30, lr=3e-3, seed=3,
                                 binarize="threshold"), train_images=TRAIN, test_images=TEST, log=False)
    iwae = IWAE(**model.config(), k=50)                                   # the trained weights, and L_k
    iwae.flat_params[...] = model.flat_params
    x = np.tile((TEST >= 128).astype(np.float32), (200, 1))              # (8000, 36): 200 draws of 40 images
    eps = np.random.default_rng(0).standard_normal((50, len(x), model.latent_dim), dtype=np.float32)
    L = {k: iwae.bound(x, eps[:k]).astype(np.float64) for k in (1, 5, 50)}   # nested draws: paired, less noise
    for lo, hi in ((1, 5), (5, 50)):
        diff = L[hi] - L[lo]                                              # (8000,)
        stderr = diff.std(ddof=1) / np.sqrt(diff.size)
        assert diff.mean() > 10 * stderr > 0, f"L_{hi} - L_{lo} = {diff.mean():.4f} +/- {stderr:.4f}"
    assert np.mean(L[50]) < 0                                            # a bound on log p(x) of binary images


def iwae_config(**changes):
    base = dict(hidden=[12], latent=3, batch_size=16, epochs=2, lr=3e-3, binarize="dynamic",
                eval_batch=25, seed=7, objective="iwae", iwae_k=3)
    return TrainConfig(**{**base, **changes})


def test_training_on_L_k_lowers_it_and_the_checkpoint_keeps_the_objective(tmp_path):
    log = io.StringIO()
    model, history = train(iwae_config(epochs=3, out=str(tmp_path / "run")), train_images=TRAIN,
                           test_images=TEST, log=log)
    assert "IWAE.loss_and_grads in scratchvae/chapters/iwae.py (the bound L_k, k = 3)" in log.getvalue()
    assert isinstance(model, IWAE) and model.k == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    saved = TrainConfig.from_dict(checkpoint["config"])
    assert (saved.objective, saved.iwae_k) == ("iwae", 3)
    loaded = load_model(checkpoint)                                       # the weights, as a VAE
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    resumed, again = train(iwae_config(epochs=4, out=str(tmp_path / "run")),
                           resume=tmp_path / "run" / "checkpoint.npz", log=False,
                           train_images=TRAIN, test_images=TEST)
    assert isinstance(resumed, IWAE) and len(again) == 4


def test_resuming_an_iwae_run_continues_it_exactly(tmp_path):
    _, whole = train(iwae_config(epochs=2, out=str(tmp_path / "a")), train_images=TRAIN,
                     test_images=TEST, log=False)
    train(iwae_config(epochs=1, out=str(tmp_path / "b")), train_images=TRAIN, test_images=TEST, log=False)
    _, resumed = train(iwae_config(epochs=2, out=str(tmp_path / "b")), resume=tmp_path / "b" / "checkpoint.npz",
                       train_images=TRAIN, test_images=TEST, log=False)
    timing = ("img_per_s", "seconds")
    strip = lambda h: [{k: v for k, v in r.items() if k not in timing} for r in h]
    assert strip(resumed) == strip(whole)


def test_configurations_L_k_cannot_train_are_refused():
    assert (TrainConfig().objective, TrainConfig().iwae_k) == ("elbo", 5)
    with pytest.raises(ConfigError, match="engine must be 'plain' with objective 'iwae' .the fused step computes VAE.loss_and_grads, "
                                              "this model trains IWAE.loss_and_grads"):
        train(iwae_config(engine="fused"), train_images=TRAIN, test_images=TEST, log=False)
    for changes, field in ((dict(beta=0.5), "beta"), (dict(warmup_epochs=1.0), "warmup_epochs"),
                           (dict(n_samples=2), "n_samples"), (dict(iwae_k=0), "iwae_k"),
                           (dict(objective="tight"), "objective")):
        with pytest.raises(ConfigError, match=field):
            iwae_config(**changes)
    with pytest.raises(ValueError, match="beta must be 1"):
        IWAE(6, [5], 3, beta=2.0)
    with pytest.raises(ValueError, match="k, the number of importance samples"):
        IWAE(6, [5], 3, k=0)
    old = TrainConfig().to_dict()
    del old["objective"], old["iwae_k"]                                   # written before the fields existed
    assert TrainConfig.from_dict(old).objective == "elbo"


def test_the_cli_refuses_the_fused_engine_for_iwae_in_one_line(tmp_path, capsys):
    write_dataset(tmp_path / "data", n_train=20, n_test=10)
    code, err = run_main(main, ["train", "--objective", "iwae", "--iwae-k", "5", "--engine", "fused",
                                "--epochs", "1", "--data-dir", str(tmp_path / "data"), "--no-download",
                                "--out", str(tmp_path / "r")], capsys)
    err = err.strip()
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 0 and "this model trains IWAE.loss_and_grads" in err


def test_datapoints_far_apart_in_log_p_each_get_their_own_bound():
    """L_k is per datapoint: a batch of one image that is likely and one thousands of nats less
    likely gives each the bound it gets alone (the log-sum-exp is shifted by each one's own largest
    log-weight, not the batch's), in float32 too."""
    model = IWAE(36, [8], 2, k=5, seed=0)
    model.params["dec.logits.b"][...] = -6.0                          # x = 0 likely, x = 1 very unlikely
    x = np.stack([np.zeros(36), np.ones(36)]).astype(np.float32)
    eps = np.random.default_rng(0).standard_normal((5, 2, 2)).astype(np.float32)
    both = model.bound(x, eps)
    alone = np.array([model.bound(x[i:i + 1], eps[:, i:i + 1])[0] for i in range(2)])
    assert both[0] - both[1] > 150                                     # far apart
    np.testing.assert_allclose(both, alone, rtol=1e-6)
    _, parts = model.loss_and_grads(x, eps)
    assert parts["iwae"] == pytest.approx(alone.mean(), rel=1e-6)


def test_without_eps_it_draws_k_samples_from_its_own_generator_in_its_dtype():
    model, twin = IWAE(6, [5], 3, k=4, seed=2), IWAE(6, [5], 3, k=4, seed=2)
    x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    eps = twin.rng.standard_normal((4, 3, 3), dtype=np.float32)
    assert model.loss_and_grads(x) == twin.loss_and_grads(x, eps)
    eps = twin.rng.standard_normal((4, 3, 3), dtype=np.float32)
    np.testing.assert_array_equal(model.bound(x), twin.bound(x, eps))


def test_its_parts_are_the_monte_carlo_elbo_of_its_k_samples():
    """rec = mean -log p(x|z), kl = mean log q(z|x) - log p(z) over the k samples and the batch,
    nelbo = rec + kl, elbo = -(rec + kl): the log-weights' mean, -ELBO estimated with k samples."""
    model = IWAE(6, [5], 3, k=6, dtype=np.float64, seed=3)
    x, eps = tiny_problem("bernoulli", 6)
    _, parts = model.loss_and_grads(x, eps)
    mu, logvar = model.encode(x)
    z = mu + np.exp(0.5 * logvar) * eps
    log_px_z = model._log_likelihood(x, model.decode(z.reshape(-1, 3)).reshape(6, 4, 6))
    log_pz = -0.5 * np.sum(z ** 2, axis=2) - 1.5 * np.log(2 * np.pi)
    log_q = -0.5 * np.sum(eps ** 2 + logvar, axis=2) - 1.5 * np.log(2 * np.pi)
    assert parts["rec"] == pytest.approx(-log_px_z.mean(), rel=1e-12)
    assert parts["kl"] == pytest.approx((log_q - log_pz).mean(), rel=1e-12)
    assert parts["nelbo"] == pytest.approx(parts["rec"] + parts["kl"], rel=1e-12)
    assert parts["elbo"] == pytest.approx(model.log_weights(x, eps).mean(), rel=1e-12)
    assert parts["elbo"] == -parts["nelbo"] and parts["kl"] > 0.1


def test_k_is_5_by_default_and_a_bad_k_is_refused_by_name():
    model = IWAE(6, [5], 3, seed=0)
    assert model.k == 5 and model.draw_eps(4).shape == (5, 4, 3) and model.loss_name == "the bound L_k, k = 5"
    for bad in (0, 2.5, "3"):
        with pytest.raises(ValueError) as refused:
            IWAE(6, [5], 3, k=bad)
        assert str(refused.value) == f"k, the number of importance samples, must be an integer >= 1, got {bad!r}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_datapoints_thousands_of_nats_apart_each_get_their_own_bound_and_gradient(dtype):
    """A batch of one likely image (x = 0 under logits -600) and one about 20,000 nats less likely
    (x = 1): beyond what exp can span even in float64, so each datapoint's log-sum-exp must be
    shifted by its own largest log-weight. The batch's L_k is each one's alone, its loss their mean,
    its gradient the mean of their gradients."""
    model = IWAE(36, [8], 2, k=5, dtype=np.float64, seed=0)
    model.params["dec.logits.b"][...] = -600.0
    if dtype != np.float64:
        same = IWAE(36, [8], 2, k=5, dtype=dtype, seed=0)
        same.flat_params[...] = model.flat_params
        model = same
    x = np.stack([np.zeros(36), np.ones(36)]).astype(dtype)
    eps = np.random.default_rng(0).standard_normal((5, 2, 2)).astype(dtype)
    both = model.bound(x, eps)
    alone = np.array([model.bound(x[i:i + 1], eps[:, i:i + 1])[0] for i in range(2)])
    assert both[0] - both[1] > 10_000                                  # far beyond exp's range
    np.testing.assert_allclose(both, alone, rtol=1e-12 if dtype == np.float64 else 1e-6)
    grads = []
    for i in range(2):
        loss_i, _ = model.loss_and_grads(x[i:i + 1], eps[:, i:i + 1])
        assert loss_i == pytest.approx(-alone[i], rel=1e-12 if dtype == np.float64 else 1e-6)
        grads.append(model.flat_grads.astype(np.float64))
    loss, parts = model.loss_and_grads(x, eps)
    assert loss == pytest.approx(-alone.mean(), rel=1e-12 if dtype == np.float64 else 1e-6)
    assert rel_error(model.flat_grads, (grads[0] + grads[1]) / 2) < (1e-12 if dtype == np.float64 else 1e-5)


def one_tiny_weight(dtype, log_ratio, third_logit=None):
    """k = 2 samples of one datapoint x = 0 (D = 1, K = 2) on a linear model with q = p = N(0, I),
    so log w = log p(x|z) = -softplus(logit), logit = 1024 z_1. Sample 1 has logit -800 (log w = 0,
    w~ = 1); sample 2 has logit ``log_ratio`` (log w = -log_ratio, w~ = exp(-log_ratio)) and z_2 = 1,
    where sample 1 has z_2 = 0: the gradient of dec.logits.W[1, 0] is then w~_2 * (sigmoid - x) * z_2
    = w~_2 exactly (sigmoid(logit) = 1 in floating point). ``third_logit``: a third sample (z_2 = 0)
    whose weight adds to the normaliser. Returns (that gradient, w~_2 by hand without the third)."""
    model = IWAE(1, [], 2, k=2 if third_logit is None else 3, dtype=dtype, seed=0)
    model.flat_params[...] = 0
    model.params["dec.logits.W"][0, 0] = 1024.0
    eps = [[[-800 / 1024, 0.0]], [[log_ratio / 1024, 1.0]]] + ([] if third_logit is None else [[[third_logit, 0.0]]])
    eps = np.array(eps, dtype=dtype)
    model.loss_and_grads(np.zeros((1, 1), dtype), eps)
    return model.grads["dec.logits.W"][1, 0], np.exp(-np.float64(eps[1, 0, 0]) * 1024)


def test_normalised_weights_below_eps_squared_count_as_zero_and_the_others_exactly():
    """w~ < eps^2 of the model's dtype (4.9e-32 in float64, 1.4e-14 in float32) is set to 0 before
    the backward pass (it changes no sum, and would be subnormal further on); any larger w~ stays
    what it is. Checked on one weight's gradient, which here is w~ itself."""
    grad, w = one_tiny_weight(np.float64, 46.0)                       # w~ = 1e-20: above float64's eps^2
    assert grad == pytest.approx(w, rel=1e-12) and 1e-21 < w < 1e-19
    grad, w = one_tiny_weight(np.float64, 92.0)                       # w~ = 1e-40: below float64's eps^2
    assert grad == 0 and 1e-41 < w < np.finfo(np.float64).eps ** 2
    grad, w = one_tiny_weight(np.float32, 30.0)                       # w~ = 9e-14: above float32's eps^2
    assert grad == pytest.approx(w, rel=1e-5) and np.finfo(np.float32).eps ** 2 < w
    grad, w = one_tiny_weight(np.float32, 46.0)                       # w~ = 1e-20: below float32's eps^2
    assert grad == 0


def test_a_normalised_weight_of_exactly_eps_squared_is_kept():
    """The rule is w~ < eps^2 -> 0, so w~ = eps^2 = 2^-104 (float64) itself stays. A third sample of
    weight about 0.9 sets the normaliser 1 + u_3 (u_2 = 1.9 * 2^-104 adds nothing to it); as its
    logit rises, w~_2 = u_2 / (1 + u_3) rises through 2^-104 in steps finer than the floats there, so
    the first logit whose w~_2 reaches 2^-104 gives it exactly -- found by bisection on the floats."""
    target = np.finfo(np.float64).eps ** 2
    log_ratio = 104 * np.log(2) - np.log(1.9)
    grad = lambda third: one_tiny_weight(np.float64, log_ratio, third)[0]
    lo, hi = -2.5 / 1024, -1.9 / 1024                                 # u_3 from 0.92 down to 0.87
    assert grad(lo) < target < grad(hi)
    while np.nextafter(lo, hi) != hi:
        mid = lo + (hi - lo) / 2
        mid = np.nextafter(lo, hi) if mid == lo else mid
        lo, hi = (mid, hi) if grad(mid) < target else (lo, mid)
    assert grad(hi) == target and grad(lo) == 0                      # kept at eps^2; 0 just below
