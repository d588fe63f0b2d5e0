"""Adam against steps worked out by hand; state round trips; training lowers the loss."""
import os
import signal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchvae import SGD, VAE, Adam, optim


def test_adam_matches_two_steps_worked_out_by_hand():
    theta, grad = np.array([1.0, -2.0]), np.zeros(2)
    adam = Adam(theta, grad, lr=0.1)
    # step 1, g = (0.5, -1):  m = 0.1 g = (0.05, -0.1), v = 0.001 g^2 = (0.00025, 0.001)
    #   m_hat = m / 0.1 = g, v_hat = v / 0.001 = g^2, so theta -= 0.1 * g / (|g| + 1e-8)
    grad[...] = [0.5, -1.0]
    adam.step()
    np.testing.assert_allclose(adam.m, [0.05, -0.1], rtol=1e-15)
    np.testing.assert_allclose(adam.v, [0.00025, 0.001], rtol=1e-15)
    np.testing.assert_allclose(theta, [1 - 0.1 * 0.5 / (0.5 + 1e-8), -2 + 0.1 / (1 + 1e-8)], rtol=1e-15)
    # step 2, g = (0.1, 0.2):  m = 0.9 m + 0.1 g = (0.055, -0.07)
    #   v = 0.999 v + 0.001 g^2 = (0.00025975, 0.001039)
    #   m_hat = m / (1 - 0.9^2) = m / 0.19 ;  v_hat = v / (1 - 0.999^2) = v / 0.001999
    #   theta_1 = 0.9 - 0.1 * (0.055 / 0.19) / (sqrt(0.00025975 / 0.001999) + 1e-8) = 0.8196959063846512...
    grad[...] = [0.1, 0.2]
    adam.step()
    np.testing.assert_allclose(adam.m, [0.055, -0.07], rtol=1e-14)
    np.testing.assert_allclose(adam.v, [0.00025975, 0.001039], rtol=1e-14)
    np.testing.assert_allclose(theta, [0.81969590638465120977, -1.8488973939904942021], rtol=1e-14)
    assert adam.t == 2


def test_adam_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((6, 5))
    a_theta, a_grad = np.ones(5), np.zeros(5)
    a = Adam(a_theta, a_grad, lr=0.01)
    for g in grads[:3]:
        a_grad[...] = g
        a.step()
    b_theta, b_grad = a_theta.copy(), np.zeros(5)
    b = Adam(b_theta, b_grad)
    b.load_state_dict(a.state_dict())
    for g in grads[3:]:
        a_grad[...] = b_grad[...] = g
        a.step()
        b.step()
    np.testing.assert_array_equal(a_theta, b_theta)


def test_adam_float32_stays_float32():
    theta, grad = np.ones(4, dtype=np.float32), np.full(4, 0.5, dtype=np.float32)
    adam = Adam(theta, grad)
    adam.step()
    assert theta.dtype == adam.m.dtype == adam.v.dtype == np.float32
    np.testing.assert_allclose(theta, 1 - 1e-3, rtol=1e-6)


def test_sgd_with_and_without_momentum():
    theta, grad = np.array([1.0]), np.array([2.0])
    sgd = SGD(theta, grad, lr=0.1)
    sgd.step()
    assert theta[0] == pytest.approx(0.8)
    theta[...] = 1.0
    sgd = SGD(theta, grad, lr=0.1, momentum=0.5)
    sgd.step()                   # b = 2, theta = 1 - 0.2
    sgd.step()                   # b = 0.5 * 2 + 2 = 3, theta = 0.8 - 0.3
    assert theta[0] == pytest.approx(0.5)


@pytest.mark.parametrize("make, message", [
    (lambda: Adam(np.zeros(3), np.zeros(4)), "flat vectors of one shape"),
    (lambda: Adam(np.zeros(3), np.zeros(3), lr=-1), "lr > 0"),
    (lambda: Adam([0.0], [0.0]), "NumPy arrays"),
    (lambda: SGD(np.zeros(3), np.zeros(3), momentum=1.5), "momentum < 1"),
])
def test_bad_optimiser_arguments_are_clear_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def _train(model, x, steps, make_optimizer):
    opt = make_optimizer(model)
    first = model.loss(x, np.zeros((x.shape[0], model.latent_dim)))[0]
    for _ in range(steps):
        model.loss_and_grads(x)
        opt.step()
    return first, model.loss(x, np.zeros((x.shape[0], model.latent_dim)))[0]


def test_adam_lowers_the_loss_on_a_small_real_batch(shared_mnist_dir):
    from scratchvae.machinery.data import load
    x = load("mnist", "test[:64]", data_dir=shared_mnist_dir, download=False).images / np.float32(255)
    model = VAE(784, [64], 8, seed=0)
    first, last = _train(model, x, 300, lambda m: Adam(m.flat_params, m.flat_grads, lr=1e-3))
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("make_optimizer", [lambda m: Adam(m.flat_params, m.flat_grads, lr=3e-3),
                                            lambda m: SGD(m.flat_params, m.flat_grads, lr=0.01, momentum=0.9)])
def test_optimisers_lower_the_loss_on_synthetic_patterns(make_optimizer):
    rng = np.random.default_rng(0)
    prototypes = (rng.random((4, 30)) < 0.3).astype(np.float32)    # four binary "digits"
    x = prototypes[rng.integers(0, 4, 64)]
    model = VAE(30, [16], 2, seed=0)
    first, last = _train(model, x, 300, make_optimizer)
    assert last < 0.5 * first, (first, last)


# ------------------------------------------------------------------ no subnormal numbers
def _subnormal(a):
    """Entries that are neither 0 nor normal: 0 < |a| < tiny (the slow numbers on Intel CPUs)."""
    return (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)


def _run_with_gradients_that_stop(dtype, beta1, beta2, scale, stop_at, n, steps, seed, flush=True,
                                  after_flush_only=False):
    """Adam on a gradient that is random until step ``stop_at`` for some entries, then exactly 0
    for all of them at once (the worst case: a whole block of moments starts decaying together).
    Gradient entries have magnitude >= scale. Returns the largest count of subnormal moment
    entries seen after any step (or only after the steps that flush)."""
    rng = np.random.default_rng(seed)
    w, g = np.zeros(n, dtype), np.zeros(n, dtype)
    adam = Adam(w, g, beta1=beta1, beta2=beta2)
    if not flush:
        adam.flush_every = 10 ** 9
    stops = rng.random(n) < 0.7                                    # these entries' gradient turns 0
    worst = 0
    for t in range(1, steps + 1):
        g[...] = (scale * (1 + np.abs(rng.standard_normal(n))) * rng.choice([-1, 1], n)).astype(dtype)
        if t >= stop_at:
            g[stops] = 0
        adam.step()
        if not after_flush_only or t % adam.flush_every == 0:
            worst = max(worst, int(_subnormal(adam.m_sum).sum() + _subnormal(adam.v_sum).sum()))
    return worst


@pytest.mark.parametrize("dtype, scale, steps", [(np.float32, 1e-3, 1500), (np.float32, 4e-18, 800),
                                                 (np.float64, 1e-3, 7500), (np.float64, 5e-153, 4000)])
def test_adams_moments_never_hold_a_subnormal_number(dtype, scale, steps):
    # Without the flush the same run does produce subnormals (so this test can fail) ...
    assert _run_with_gradients_that_stop(dtype, 0.9, 0.999, scale, 20, 200, steps, 0, flush=False) > 0
    # ... and with it none, at any step.
    assert _run_with_gradients_that_stop(dtype, 0.9, 0.999, scale, 20, 200, steps, 0) == 0


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), beta1=st.floats(0.0, 0.99),
       beta2=st.floats(0.5, 0.9999), exponent=st.floats(-17.4, 2), stop_at=st.integers(1, 100),
       seed=st.integers(0, 2 ** 16))
def test_no_subnormal_moments_for_any_betas_and_gradient_scale(dtype, beta1, beta2, exponent, stop_at, seed):
    steps = stop_at + 900 if dtype == np.float32 else stop_at + 300   # float32: m decays into the range
    assert _run_with_gradients_that_stop(dtype, beta1, beta2, 10.0 ** exponent, stop_at, 64, steps, seed) == 0


def test_gradients_below_the_limit_leave_subnormals_only_until_the_next_flush():
    """Below the documented limit (|g| >= 4e-18 in float32) g^2 can be subnormal: a flush clears them."""
    assert _run_with_gradients_that_stop(np.float32, 0.9, 0.999, 1e-21, 20, 200, 800, 0) > 0
    assert _run_with_gradients_that_stop(np.float32, 0.9, 0.999, 1e-21, 20, 200, 800, 0,
                                         after_flush_only=True) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_flush_changes_no_parameter_beyond_rounding(dtype):
    """The same 2,000 steps with and without the flush: the parameters come out bit for bit equal."""
    runs = []
    for flush in (True, False):
        w, g = np.random.default_rng(1).standard_normal(500).astype(dtype), np.zeros(500, dtype)
        w_start = w.copy()
        rng_g = np.random.default_rng(2)
        adam = Adam(w, g)
        if not flush:
            adam.flush_every = 10 ** 9
        for t in range(2000):
            g[...] = (1e-3 * rng_g.standard_normal(500)).astype(dtype) * (t < 50 + np.arange(500) % 7)
            adam.step()
        runs.append((w_start, w.copy(), _subnormal(adam.m_sum).sum()))
    (start, flushed, none), (_, unflushed, some) = runs
    assert none == 0 and (dtype is np.float64 or some > 0)         # float32 decayed into the range
    assert not np.array_equal(flushed, start)
    np.testing.assert_array_equal(flushed, unflushed)


# ------------------------------------------------------------------ two threads, the same numbers
def _twins(dtype, n, seed=3):
    w = np.random.default_rng(seed).standard_normal(n).astype(dtype)
    return [(w.copy(), np.zeros(n, dtype)) for _ in range(2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_two_threaded_step_is_bit_for_bit_the_one_threaded_update(dtype, monkeypatch):
    """step() cuts a long vector in two halves for two threads; every entry comes out as if one
    thread had updated the whole vector, flush steps included (flush_every = 65)."""
    n = 2 * optim.STEP_BLOCK + 12_345                               # long enough to be split
    (w1, g1), (w2, g2) = _twins(dtype, n)
    split, whole = Adam(w1, g1), Adam(w2, g2)
    monkeypatch.setattr(optim, "_helper_pid", None)                 # no helper yet in this process
    rng = np.random.default_rng(4)
    stops = rng.random(n) < 0.5
    for t in range(1, 140):
        g1[...] = (1e-3 * rng.standard_normal(n)).astype(dtype) * ~(stops & (t > 30))
        g2[...] = g1
        split.step()
        alpha_t, eps_t = whole.advance()
        whole.update(slice(None), alpha_t, eps_t)
    assert optim._helper_pid == os.getpid()                          # the helper thread did run
    for a, b in ((w1, w2), (split.m_sum, whole.m_sum), (split.v_sum, whole.v_sum)):
        assert np.array_equal(a, b)
    assert not np.array_equal(w1, _twins(dtype, n)[0][0])          # and the parameters moved


def test_a_forked_child_steps_with_its_own_helper_thread():
    n = 2 * optim.STEP_BLOCK + 1
    (w1, g1), (w2, g2) = _twins(np.float32, n)
    g1[...] = g2[...] = 1e-3
    Adam(w1, g1).step()                                             # the parent's helper exists now
    pid = os.fork()
    if pid == 0:                                                    # the child: a fresh helper, or a hang
        signal.alarm(20)
        try:
            adam = Adam(w2, g2)
            adam.step()
            os._exit(0 if np.array_equal(w2, w1) and optim._helper_pid == os.getpid() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("first, preset, expected", [("scratchvae", None, "20"), ("scratchvae", "7", "7"),
                                                     ("numpy", None, None)])
def test_importing_scratchvae_first_lets_openblas_threads_sleep_soon(first, preset, expected):
    """scratchvae asks OpenBLAS (through its environment variable, read when NumPy loads it) to
    let idle threads sleep after 2^20 cycles; a value already set wins, and after NumPy nothing changes."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    other = "numpy" if first == "scratchvae" else "scratchvae"
    code = f"import os, {first}, {other}; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(expected)


def test_adam_refuses_a_state_that_lacks_a_field_or_is_for_other_parameters():
    adam = Adam(np.zeros(4), np.zeros(4))
    state = adam.state_dict()
    with pytest.raises(ValueError, match="Adam state lacks t, eps"):
        adam.load_state_dict({k: v for k, v in state.items() if k not in ("t", "eps")})
    for key in ("m_sum", "v_sum"):                                         # either moment alone
        with pytest.raises(ValueError, match="optimiser state is for .* parameters, this model has 4"):
            adam.load_state_dict({**state, key: np.zeros(5)})


def test_sgd_starts_at_step_0_with_lr_0_01_and_refuses_lr_0_and_momentum_1():
    w, g = np.ones(3), np.full(3, 2.0)
    sgd = SGD(w, g)
    assert sgd.t == 0 and sgd.lr == 0.01 and sgd.momentum == 0.0
    sgd.step()
    np.testing.assert_allclose(w, 1 - 0.01 * 2.0, rtol=1e-15)
    assert sgd.t == 1
    for kwargs in (dict(lr=0.0), dict(momentum=1.0), dict(momentum=-0.1)):
        with pytest.raises(ValueError, match="need lr > 0 and 0 <= momentum < 1"):
            SGD(np.zeros(3), np.zeros(3), **kwargs)


def test_sgd_state_dict_round_trip_continues_identically():
    """Three steps, save, two more; against a twin loaded from the saved state: the same numbers."""
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(5), np.zeros(5)
    sgd = SGD(w, g, lr=0.05, momentum=0.7)
    for _ in range(3):
        g[...] = rng.standard_normal(5)
        sgd.step()
    state = sgd.state_dict()
    w_twin, g_twin = w.copy(), np.zeros(5)
    twin = SGD(w_twin, g_twin, lr=0.9, momentum=0.1)                       # hyper-parameters come from the state
    twin.load_state_dict(state)
    assert (twin.t, twin.lr, twin.momentum) == (3, 0.05, 0.7) and np.array_equal(twin.buf, sgd.buf)
    for _ in range(2):
        g[...] = g_twin[...] = rng.standard_normal(5)
        sgd.step()
        twin.step()
    assert np.array_equal(w, w_twin)
    with pytest.raises(ValueError, match="optimiser state is for 4 parameters, this model has 5"):
        twin.load_state_dict({**state, "buf": np.zeros(4)})


@pytest.mark.parametrize("kwargs", [dict(lr=0.0), dict(beta1=1.0), dict(beta1=1.5), dict(beta2=1.0),
                                    dict(beta2=1.5), dict(eps=-1e-8)])
def test_adam_refuses_each_value_outside_its_range(kwargs):
    with pytest.raises(ValueError, match="need lr > 0, 0 <= beta1, beta2 < 1, eps >= 0"):
        Adam(np.zeros(3), np.zeros(3), **kwargs)


def test_adam_takes_beta2_0_and_eps_0_at_their_edges():
    """beta2 = 0 (v_t = g_t^2) and eps = 0 are allowed: one step is then lr * g / |g| = lr sign(g)."""
    w, g = np.zeros(3), np.array([0.5, -2.0, 3.0])
    adam = Adam(w, g, lr=0.1, beta1=0.0, beta2=0.0, eps=0.0)
    adam.step()
    np.testing.assert_allclose(w, -0.1 * np.sign(g), rtol=1e-15)


def test_optimisers_refuse_what_is_not_a_numpy_array():
    for make in (Adam, SGD):
        for params, grads in ((np.zeros(3), [0.0, 0.0, 0.0]), ([0.0, 0.0, 0.0], np.zeros(3))):
            with pytest.raises(TypeError, match="must be NumPy arrays"):
                make(params, grads)


@pytest.mark.parametrize("beta1, beta2", [(0.9, 0.999), (0.01, 0.0), (0.5, 0.6), (0.999, 0.9999), (0.0, 0.3)])
def test_the_flush_interval_is_the_longest_in_which_decay_cannot_reach_tiny(beta1, beta2):
    """An entry at FLUSH_MARGIN * tiny, multiplied by beta each step, stays >= tiny for
    ``interval`` steps and not for one more (the faster-decaying beta sets it); 1 if no beta decays."""
    interval = optim._flush_interval(beta1, beta2)
    beta = min(b for b in (beta1, beta2) if b > 0)
    assert beta ** (interval + 1) * optim.FLUSH_MARGIN < 1                 # one step more reaches below tiny
    assert beta ** interval * optim.FLUSH_MARGIN >= 1 or interval == 1     # and it is the longest such interval
    assert optim._flush_interval(0.0, 0.0) == 1


@pytest.mark.parametrize("dtype, below", [(np.float32, 1.2e-35), (np.float64, 2.3e-305)])
def test_the_flush_clears_moments_below_its_documented_threshold_every_65_steps(dtype, below):
    """Adam's docstring: every flush_every steps (65 for beta1 = 0.9: 0.9^65 > 2^-10) entries
    below 2^10 * tiny (1.2e-35 in float32, 2.3e-305 in float64) are set to 0, nothing larger."""
    from scratchvae.optim import Adam
    tiny = np.finfo(dtype).tiny
    params, grads = np.zeros(4, dtype), np.zeros(4, dtype)
    adam = Adam(params, grads)
    assert adam.flush_every == 65 and 0.9 ** 65 > 2.0 ** -10 > 0.9 ** 66
    assert 2 ** 10 * tiny == pytest.approx(below, rel=0.03)
    kept, cleared = 1.5 * 2 ** 10 * tiny, 0.5 * 2 ** 10 * tiny            # after step 65's decay
    adam.t = 64
    adam.m_sum[...] = np.array([kept, cleared, 1.0, 0.0], dtype) / dtype(0.9)
    adam.v_sum[...] = np.array([1.0, 1.0, kept, cleared], dtype) / dtype(0.999)
    adam.step()                                                            # t = 65: a flush step
    np.testing.assert_array_equal(adam.m_sum != 0, [True, False, True, False])
    np.testing.assert_array_equal(adam.v_sum != 0, [True, True, True, False])
    assert adam.m_sum[0] == pytest.approx(kept, rel=1e-6)
