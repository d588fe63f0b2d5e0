"""Every layer's backward against central finite differences (float64), and the layer contract."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchvae import layers
from scratchvae.gradcheck import numerical_gradient_array, rel_error
from scratchvae.layers import (ACTIVATIONS, MLP, Dense, ReLU, Sigmoid, Softplus, Tanh, exp_no_subnormal,
                              log1p, share_one_buffer, sigmoid, softplus)

SMOOTH_TOL = 1e-8          # float64 central differences on smooth pieces reach ~1e-10


def away_from_zero(x, margin=0.1):
    """Push values away from 0 so h = 1e-5 never crosses the kink of ReLU."""
    return np.sign(x) * (np.abs(x) + margin)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), d_in=st.integers(1, 6), d_out=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_dense_backward_matches_finite_differences(n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    layer = Dense(d_in, d_out, rng, dtype=np.float64)
    x, dout = rng.standard_normal((n, d_in)), rng.standard_normal((n, d_out))
    layer.forward(x)
    dx = layer.backward(dout)
    for name, param in [("x", x), ("W", layer.params["W"]), ("b", layer.params["b"])]:
        num = numerical_gradient_array(layer.forward, x, dout) if name == "x" else \
            numerical_gradient_array(lambda _: layer.forward(x), param, dout)
        ana = dx if name == "x" else layer.grads[name]
        assert rel_error(num, ana) < SMOOTH_TOL, f"Dense.{name} rel_error={rel_error(num, ana):.1e}"


@pytest.mark.parametrize("cls", [ReLU, Tanh, Sigmoid, Softplus])
def test_activation_backward_matches_finite_differences(cls):
    rng = np.random.default_rng(0)
    x = away_from_zero(rng.standard_normal((4, 7)) * 3)
    dout = rng.standard_normal(x.shape)
    layer = cls(name="act")
    layer.forward(x)
    dx = layer.backward(dout)
    num = numerical_gradient_array(layer.forward, x.copy(), dout)
    assert rel_error(num, dx) < SMOOTH_TOL, f"{cls.__name__} rel_error={rel_error(num, dx):.1e}"


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("hidden", [[5], [6, 4]])
def test_mlp_backward_matches_finite_differences(activation, hidden):
    rng = np.random.default_rng(1)
    mlp = MLP(3, hidden, activation, rng, dtype=np.float64)
    x, dout = rng.standard_normal((4, 3)), rng.standard_normal((4, hidden[-1]))
    mlp.forward(x)
    dx = mlp.backward(dout)
    analytic = {name: g.copy() for name, g in mlp.grads.items()}
    assert rel_error(numerical_gradient_array(mlp.forward, x.copy(), dout), dx) < 1e-7
    for name, p in mlp.params.items():
        num = numerical_gradient_array(lambda _: mlp.forward(x), p, dout)
        assert rel_error(num, analytic[name]) < 1e-7, f"mlp.{name} rel_error={rel_error(num, analytic[name]):.1e}"


def test_dense_skips_dx_for_the_data():
    rng = np.random.default_rng(0)
    layer = Dense(3, 2, rng, dtype=np.float64)
    layer.forward(rng.standard_normal((4, 3)))
    assert layer.backward(np.ones((4, 2)), need_dx=False) is None
    np.testing.assert_array_equal(layer.grads["b"], [4.0, 4.0])


@pytest.mark.parametrize("make", [lambda rng: Dense(3, 2, rng), lambda rng: ReLU(), lambda rng: Tanh(),
                                  lambda rng: Sigmoid(), lambda rng: Softplus(),
                                  lambda rng: MLP(3, [2], "relu", rng)])
def test_backward_without_forward_is_an_error(make):
    layer = make(np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="without a matching forward"):
        layer.backward(np.ones((1, 2), dtype=np.float32))


def test_backward_twice_after_one_forward_is_an_error():
    layer = Dense(3, 2, np.random.default_rng(0))
    layer.forward(np.ones((1, 3), dtype=np.float32))
    layer.backward(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(RuntimeError, match="without a matching forward"):
        layer.backward(np.ones((1, 2), dtype=np.float32))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_float32_stays_float32(activation):
    rng = np.random.default_rng(0)
    mlp = MLP(5, [4, 3], activation, rng, dtype=np.float32)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    y = mlp.forward(x)
    dx = mlp.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in mlp.grads.values())


def test_softplus_and_sigmoid_are_stable_in_both_tails():
    x = np.array([-1e4, -50.0, 0.0, 100.0, 1e4], dtype=np.float32)
    y = Softplus().forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [0.0, np.exp(-50.0), np.log(2), 100.0, 1e4], rtol=1e-6,
                               atol=4 * np.finfo(np.float32).tiny)   # softplus(-1e4) = e * tiny, not 0
    np.testing.assert_allclose(Sigmoid().forward(x), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        MLP(3, [2], "gelu", np.random.default_rng(0))


def test_share_one_buffer_gives_views_into_one_vector():
    a, b = np.arange(6.0).reshape(2, 3), np.array([7.0, 8.0])
    flat, views = share_one_buffer({"a": a, "b": b}, np.float64)
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, 4, 5, 7, 8])
    flat += 1
    np.testing.assert_array_equal(views["a"], a + 1)
    views["b"][0] = -1
    assert flat[6] == -1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_is_accurate_to_a_few_ulps_everywhere(dtype):
    """Against float64 logaddexp(0, x): also where exp(-|x|) is far below the rounding of 1."""
    x = np.concatenate([np.random.default_rng(0).standard_normal(100_000) * 12,
                        [-80.0, -30.0, -16.0, -1e-6, 0.0, 1e-6, 16.0, 30.0, 80.0]]).astype(dtype)
    exact = np.logaddexp(0, x.astype(np.float64))
    got = softplus(x)
    assert got.dtype == dtype
    tol = 4 * np.finfo(dtype).eps
    assert np.all(np.abs(got - exact) <= tol * exact + np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("vectorised_np_log1p", [False, True], ids=["from-np-log", "np-log1p"])
def test_log1p_keeps_the_digits_that_1_plus_t_rounds_away(dtype, vectorised_np_log1p, monkeypatch):
    """layers.log1p, either route (np.log with the rounding error added back, or np.log1p as
    on AVX-512 CPUs), against np.log1p in float64 (float32 inputs) or long double (float64):
    within 3 eps relative, for t from 1 down to 1e-30, where 1 + t is 1 and log(1 + t)
    computed naively is 0."""
    monkeypatch.setattr(layers, "NUMPY_LOG1P_IS_VECTORISED", vectorised_np_log1p)
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.random(200_000), 10.0 ** rng.uniform(-30, 0, 200_000),
                        [0.0, 1e-30, 1e-9, 6e-8, 1.2e-7, 0.5, 1.0]]).astype(dtype)
    exact = np.log1p(t.astype(np.float64 if dtype == np.float32 else np.longdouble))
    got = log1p(t)
    assert got.dtype == dtype
    assert np.all(np.abs(got - exact) <= 3 * np.finfo(dtype).eps * exact)
    tiny_t = t[(t > 0) & (t < np.finfo(dtype).eps / 4)]
    assert tiny_t.size > 1000 and np.array_equal(log1p(tiny_t), tiny_t)    # log(1 + t) = t there
    assert np.all(np.log(1 + tiny_t) == 0)                                  # what the naive form gives


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]),
       a=st.lists(st.floats(-1e6, 0.0).filter(lambda v: v == 0 or v < -1e-30) | st.just(-np.inf),
                  min_size=1, max_size=50))                 # (a subnormal exponent is no input)
def test_exp_no_subnormal_is_exp_except_below_the_normal_range(dtype, a):
    a = np.array(a, dtype=dtype)
    tiny = np.finfo(dtype).tiny
    with np.errstate(under="raise"):                  # a subnormal result or an underflow would raise
        got = exp_no_subnormal(a)
    assert got.dtype == dtype and np.all(got >= tiny)
    with np.errstate(under="ignore"):
        exact = np.exp(a.astype(np.float64))
    normal = exact >= np.e * tiny
    np.testing.assert_array_equal(got[normal], np.exp(a[normal]))
    assert np.all(np.abs(got[~normal] - exact[~normal]) < 4 * tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_makes_no_subnormal_in_its_far_negative_tail(dtype):
    x = -np.geomspace(1, 1e5, 2000).astype(dtype)
    tiny = np.finfo(dtype).tiny
    with np.errstate(under="raise"):
        y = softplus(x)
    exact = np.logaddexp(0, x.astype(np.float64))
    assert np.all(y > 0) and np.all(np.abs(y - exact) <= 4 * np.finfo(dtype).eps * exact + 4 * tiny)


def test_the_tanh_sigmoid_is_absolutely_but_not_relatively_exact():
    """sigmoid's docstring: in float32 within 6e-8 of 1/(1 + e^-x) everywhere, but relative
    precision is lost in the far negative tail (0 from x = -20 on); and why it does not matter
    where it is used: the gradient sigmoid(l) - x, and dW = h^T (sigmoid(l) - x) from it."""
    x = np.linspace(-30, 30, 600_001).astype(np.float32)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    got = sigmoid(x)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - exact)) < 6.1e-8                            # 5.98e-8 measured: ~half a step at 1/2
    assert sigmoid(np.float32(-20)) == 0 and exact[x == -20][0] == pytest.approx(2.0612e-9, rel=1e-4)
    relative = np.abs(got - exact) / exact
    assert relative[x == -17][0] > 0.3 and np.max(relative[x > 0]) < 1.2e-7
    # where it is used: sigmoid(l) - x, logits over the tails, binary and grey targets
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((64, 300)) * 12).astype(np.float32)       # many beyond -17
    target = rng.choice(np.float32([0, 1, 0.3]), size=logits.shape)
    exact_grad = 1 / (1 + np.exp(-logits.astype(np.float64))) - target
    grad = sigmoid(logits) - target
    assert np.mean(logits < -17) > 0.05
    assert np.max(np.abs(grad - exact_grad)) < 1.2e-7                      # a float32 step near 1
    h = rng.random((64, 50)).astype(np.float32)                            # a layer's input
    dW, exact_dW = h.T @ grad, h.T.astype(np.float64) @ exact_grad
    assert np.max(np.abs(dW - exact_dW)) / np.max(np.abs(exact_dW)) < 1e-5  # float32 matmul rounding


def test_exp_no_subnormal_keeps_float32_and_takes_integers_as_float64():
    got = exp_no_subnormal(np.array([0.0, -1.0, -200.0], np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [1.0, np.exp(-1.0), np.e * np.finfo(np.float32).tiny], rtol=1e-5)   # e tiny: 3e-6 off (exp of a rounded log)
    got = exp_no_subnormal(np.array([0, -1, -1000]))                      # integers: float64
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [1.0, np.exp(-1.0), np.e * np.finfo(np.float64).tiny], rtol=1e-13)   # e tiny: 3e-14 off


def test_an_mlp_asked_for_no_dx_returns_none_with_or_without_layers():
    rng = np.random.default_rng(0)
    for hidden in ([], [4], [4, 3]):
        mlp = MLP(5, hidden, "relu", rng, np.float64)
        out = mlp.forward(rng.standard_normal((2, 5)))
        assert mlp.backward(np.ones_like(out), need_dx=False) is None
        mlp.forward(rng.standard_normal((2, 5)))
        assert mlp.backward(np.ones_like(out)).shape == (2, 5)


def test_a_layer_says_its_kind_and_name():
    assert repr(Dense(3, 2, np.random.default_rng(0), name="fc1")) == "Dense('fc1')"
    assert repr(ReLU(name="relu1")) == "ReLU('relu1')"
    assert repr(MLP(3, [2], "tanh", np.random.default_rng(0), name="enc")) == "MLP('enc', [Dense('fc1'), Tanh('tanh1')])"


def test_dense_draws_w_then_b_from_u_minus_bound_bound():
    """Dense's initial W and b are rng.uniform(-1/sqrt(D_in), 1/sqrt(D_in)) draws, W first: the
    same draws from the same generator, in float64 for a float64 layer."""
    layer = Dense(9, 4, np.random.default_rng(3), dtype=np.float64)
    rng, bound = np.random.default_rng(3), 1 / 3
    np.testing.assert_array_equal(layer.params["W"], rng.uniform(-bound, bound, size=(9, 4)))
    np.testing.assert_array_equal(layer.params["b"], rng.uniform(-bound, bound, size=(4,)))
    assert repr(layer) == "Dense('dense')" and MLP(3, [2], "relu", rng).name == "mlp"


def test_an_unnamed_layer_has_the_empty_name():
    assert repr(ReLU()) == "ReLU('')" and repr(Tanh()) == "Tanh('')"
