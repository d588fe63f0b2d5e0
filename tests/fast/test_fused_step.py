"""The fused step (fast.py) computes the numbers of the read-along step (vae.py + optim.py)."""
import os
import signal

import numpy as np
import pytest

from scratchvae import VAE, Adam
from scratchvae.fast.fused_step import FusedStep, NonFiniteStep, set_blas_threads, unsupported_reason
from scratchvae.gradcheck import numerical_gradient, rel_error
from scratchvae.machinery.runner import ConfigError, TrainConfig, train

BACKENDS = [(1, "thread"), (2, "thread"), (2, "process")]


def problem(b, D=30, K=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((b, D)).astype(dtype), rng.standard_normal((b, K)).astype(dtype)


@pytest.mark.parametrize("workers, backend", BACKENDS)
@pytest.mark.parametrize("b", [16, 7, 1])
def test_fused_gradients_equal_the_read_along_ones(workers, backend, b):
    """float64: the same loss, parts and every parameter gradient, to rounding."""
    plain = VAE(30, [9], 3, beta=0.7, dtype=np.float64, seed=1)
    fused_model = VAE(30, [9], 3, beta=0.7, dtype=np.float64, seed=1)
    x, eps = problem(b)
    loss, parts = plain.loss_and_grads(x, eps)
    with FusedStep(fused_model, Adam(fused_model.flat_params, fused_model.flat_grads), 16, workers, backend) as fused:
        f_loss, f_parts = fused.loss_and_grads(x, eps)
    assert f_loss == pytest.approx(loss, rel=1e-12)
    for key in parts:
        assert f_parts[key] == pytest.approx(parts[key], rel=1e-10, abs=1e-12), key
    for name, g in plain.grads.items():
        assert rel_error(fused_model.grads[name], g) < 1e-12, name


@pytest.mark.parametrize("workers, backend", BACKENDS)
def test_fused_steps_equal_the_read_along_steps(workers, backend):
    """Five steps of loss_and_grads + Adam.step against five fused steps (float64)."""
    plain = VAE(30, [9], 3, dtype=np.float64, seed=2)
    plain_adam = Adam(plain.flat_params, plain.flat_grads, lr=1e-2)
    fused_model = VAE(30, [9], 3, dtype=np.float64, seed=2)
    adam = Adam(fused_model.flat_params, fused_model.flat_grads, lr=1e-2)
    with FusedStep(fused_model, adam, 16, workers, backend) as fused:
        for step in range(5):
            x, eps = problem(16, seed=step)
            loss, _ = plain.loss_and_grads(x, eps)
            plain_adam.step()
            assert fused.step(x, eps)[0] == pytest.approx(loss, rel=1e-12)
    assert adam.t == plain_adam.t == 5
    np.testing.assert_allclose(fused_model.flat_params, plain.flat_params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(adam.v, plain_adam.v, rtol=1e-12, atol=1e-20)


@pytest.mark.parametrize("workers, backend", BACKENDS)
def test_fused_float32_matches_a_float64_reference(workers, backend):
    """The training configuration: 784-400-20, float32, batch 128, against float64."""
    reference = VAE(784, [400], 20, seed=3, dtype=np.float64)
    model = VAE(784, [400], 20, seed=3)
    x, eps = problem(128, D=784, K=20, dtype=np.float32)
    loss, parts = reference.loss_and_grads(x, eps)
    with FusedStep(model, Adam(model.flat_params, model.flat_grads), 128, workers, backend) as fused:
        f_loss, f_parts = fused.loss_and_grads(x, eps)
    assert model.flat_grads.dtype == np.float32
    assert f_loss == pytest.approx(loss, rel=1e-6) and f_parts["kl"] == pytest.approx(parts["kl"], rel=1e-4)
    for name, g in reference.grads.items():
        assert rel_error(model.grads[name], g) < 1e-5, name


@pytest.mark.parametrize("workers, backend", [(1, "thread"), (2, "process")])
def test_fused_gradient_passes_the_finite_difference_check(workers, backend):
    model = VAE(8, [5], 2, beta=1.3, dtype=np.float64, seed=4)
    x, eps = problem(6, D=8, K=2, seed=4)
    with FusedStep(model, Adam(model.flat_params, model.flat_grads), 8, workers, backend) as fused:
        fused.loss_and_grads(x, eps)
        analytic = {name: g.copy() for name, g in model.grads.items()}
        for name, p in model.params.items():
            numeric = numerical_gradient(lambda _: fused.loss_and_grads(x, eps)[0], p)
            assert rel_error(numeric, analytic[name]) < 1e-7, f"{name} rel_error={rel_error(numeric, analytic[name]):.1e}"


def test_a_non_finite_loss_stops_before_adam():
    model = VAE(30, [9], 3, seed=5)
    adam = Adam(model.flat_params, model.flat_grads)
    x, eps = problem(16, dtype=np.float32)
    x[0, 0] = np.inf
    with FusedStep(model, adam, 16) as fused:
        theta = model.flat_params.copy()
        with pytest.raises(NonFiniteStep, match="loss is"):
            fused.step(x, eps)
        assert np.array_equal(model.flat_params, theta) and adam.t == 0
        x[0, 0] = 0.5
        fused.step(x, eps)                                   # and it carries on afterwards
        assert adam.t == 1


@pytest.mark.parametrize("changes, reason", [
    (dict(hidden_dims=[9, 5]), "2 hidden layers"), (dict(activation="tanh"), "activation is tanh"),
    (dict(likelihood="gaussian"), "likelihood is gaussian"), (dict(n_samples=2), "L = 2"),
])
def test_what_cannot_be_fused_is_said(changes, reason):
    model = VAE(**{"input_dim": 30, "hidden_dims": [9], "latent_dim": 3, **changes})
    assert reason in unsupported_reason(model)
    with pytest.raises(ValueError, match=reason):
        FusedStep(model, Adam(model.flat_params, model.flat_grads), 16)
    images = np.zeros((20, 30), np.uint8)
    with pytest.raises(ConfigError, match="engine 'fused' cannot train this model"):
        config = TrainConfig(hidden=changes.get("hidden_dims", [9]), latent=3, engine="fused",
                             activation=changes.get("activation", "relu"),
                             likelihood=changes.get("likelihood", "bernoulli"),
                             n_samples=changes.get("n_samples", 1), epochs=1)
        train(config, train_images=images, test_images=images, log=False)


def test_close_reaps_the_helper_restores_blas_and_leaves_a_working_model():
    previous = set_blas_threads(2)
    model = VAE(30, [9], 3, seed=6)
    x, eps = problem(16, dtype=np.float32)
    fused = FusedStep(model, Adam(model.flat_params, model.flat_grads), 16, 2, "process")
    pid = fused.pair.pid
    assert set_blas_threads(1) == 1                           # one BLAS thread per worker while open
    loss, _ = fused.loss_and_grads(x, eps)
    fused.close()
    assert set_blas_threads(2) == 2                           # restored
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)                           # no zombie left
    assert model.loss_and_grads(x, eps[None])[0] == pytest.approx(loss, rel=1e-5)
    set_blas_threads(previous) if previous is not None else None


def test_a_dead_helper_process_is_a_clear_error():
    model = VAE(30, [9], 3, seed=7)
    x, eps = problem(16, dtype=np.float32)
    with FusedStep(model, Adam(model.flat_params, model.flat_grads), 16, 2, "process") as fused:
        fused.step(x, eps)
        os.kill(fused.pair.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="helper process stopped"):
            fused.step(x, eps)


def test_training_with_either_engine_gives_the_same_run():
    rng = np.random.default_rng(0)
    images = (rng.random((100, 30)) < 0.3).astype(np.uint8) * 255
    config = dict(hidden=[9], latent=3, batch_size=16, epochs=2, seed=3)
    plain_model, plain = train(TrainConfig(engine="plain", **config), train_images=images,
                               test_images=images[:20], log=False)
    fused_model, fused = train(TrainConfig(engine="fused", **config), train_images=images,
                               test_images=images[:20], log=False)
    np.testing.assert_allclose(fused_model.flat_params, plain_model.flat_params, rtol=1e-4, atol=1e-6)
    assert fused[-1]["test_nelbo"] == pytest.approx(plain[-1]["test_nelbo"], rel=1e-5)


@pytest.mark.parametrize("t0", [0, 10])
@pytest.mark.parametrize("workers, backend", BACKENDS)
def test_the_helper_flushes_adams_moments_on_the_read_along_steps(workers, backend, t0):
    """Adam sets moments below FLUSH_MARGIN * tiny to 0 on steps t = 65, 130, ... (optim.py).

    The decoder's half of Adam runs in worker 1, for the process backend a forked copy of the
    optimiser: it must flush on the same steps as the read-along Adam, whatever t was at the
    fork (0 for a new run, anything on resume). Here the decoder's hidden units are dead (a
    very negative bias), so most of its weights get exactly zero gradient and their moments
    only decay, from values just below the flush threshold. A helper that flushed on every
    step, or never, leaves different moments after some step.
    """
    def setup():
        model = VAE(30, [9], 3, seed=4)
        model.params["dec.fc1.b"][...] = -1e3                   # relu(z W3 + b3) = 0: dead decoder units
        adam = Adam(model.flat_params, model.flat_grads, lr=1e-3)
        adam.t = t0
        adam.m_sum[decoder], adam.v_sum[decoder] = 1e-35, 1e-35  # below 1024 * tiny = 1.2e-35
        return model, adam

    decoder = slice(sum(p.size for p in VAE(30, [9], 3).theta.values()), None)   # phi, after theta
    plain, plain_adam = setup()
    fused_model, adam = setup()
    with FusedStep(fused_model, adam, 16, workers, backend) as fused:
        for step in range(65 - t0 + 1):                         # up to t = 66, across the flush at 65
            x, eps = problem(16, dtype=np.float32, seed=step)
            plain.loss_and_grads(x, eps)
            plain_adam.step()
            fused.step(x, eps)
            dead = plain.flat_grads[decoder] == 0                 # all but dec.logits.b
            assert dead.sum() > 0.9 * dead.size
            for name in ("m_sum", "v_sum"):
                np.testing.assert_array_equal(getattr(adam, name)[decoder][dead],
                                              getattr(plain_adam, name)[decoder][dead],
                                              err_msg=f"{name} after step t = {plain_adam.t}")
    assert adam.t == 66 and (plain_adam.m_sum[decoder][dead] == 0).all()      # flushed at t = 65
