"""The reconstruction log-likelihoods and the KL: values, gradients, stability, properties."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from scratchvae.gradcheck import numerical_gradient, rel_error
from scratchvae.losses import (LOG_2PI, bernoulli_log_likelihood, bernoulli_log_likelihood_grads,
                               gaussian_log_density, gaussian_log_density_grads,
                               kl_standard_normal, kl_standard_normal_grads)

TOL = 1e-8


def fd_check(f, arrays, analytic):
    """Finite-difference gradient of sum(f(*arrays)) w.r.t. each array, against analytic."""
    for i, (a, g) in enumerate(zip(arrays, analytic)):
        num = numerical_gradient(lambda _: np.sum(f(*arrays)), a)
        assert rel_error(num, g) < TOL, f"argument {i}: rel_error={rel_error(num, g):.1e}"


@pytest.mark.parametrize("targets", ["binary", "grayscale"])
def test_bernoulli_gradient(targets):
    rng = np.random.default_rng(0)
    x = rng.random((3, 5))
    x = (x > 0.5).astype(np.float64) if targets == "binary" else x
    logits = rng.standard_normal((3, 5)) * 4
    fd_check(lambda l: bernoulli_log_likelihood(x, l), [logits], [bernoulli_log_likelihood_grads(x, logits)])


def test_bernoulli_equals_the_textbook_form():
    rng = np.random.default_rng(1)
    x, logits = rng.random((4, 6)), rng.standard_normal((4, 6))
    s = 1 / (1 + np.exp(-logits))
    expected = np.sum(x * np.log(s) + (1 - x) * np.log(1 - s), axis=-1)
    np.testing.assert_allclose(bernoulli_log_likelihood(x, logits), expected, rtol=1e-13)


def _reference_bernoulli(x, logits):
    """x log s + (1 - x) log(1 - s) in float64 with log s = -logaddexp(0, -l), an independent route."""
    x, logits = x.astype(np.float64), logits.astype(np.float64)
    return np.sum(-x * np.logaddexp(0, -logits) - (1 - x) * np.logaddexp(0, logits), axis=-1)


@settings(max_examples=60, deadline=None)
@given(logits=arrays(np.float64, (3, 4), elements=st.floats(-1e4, 1e4)),
       x=arrays(np.float64, (3, 4), elements=st.floats(0, 1)),
       binary=st.booleans())
def test_bernoulli_is_finite_and_correct_for_huge_logits(logits, x, binary):
    if binary:
        x = np.round(x)
    got = bernoulli_log_likelihood(x, logits)
    ref = _reference_bernoulli(x, logits)
    scale = np.sum(np.abs(x * logits) + np.abs(logits) + 1, axis=-1)     # size of the summed terms
    assert np.all(np.isfinite(got))
    assert np.all(np.abs(got - ref) <= 1e-14 * scale)
    assert np.all(got <= 1e-12 * scale) if binary else True                # a probability's log is <= 0
    # float32 in -> float32 out, within float32 rounding of the same terms
    got32 = bernoulli_log_likelihood(x.astype(np.float32), logits.astype(np.float32))
    assert got32.dtype == np.float32 and np.all(np.isfinite(got32))
    assert np.all(np.abs(got32 - _reference_bernoulli(x.astype(np.float32), logits.astype(np.float32)))
                  <= 1e-6 * scale)
    grad = bernoulli_log_likelihood_grads(x, logits)
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad) <= 1)


def test_gaussian_gradients():
    rng = np.random.default_rng(2)
    x, mean, logvar = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    dmean, dlogvar = gaussian_log_density_grads(x, mean, logvar)
    fd_check(lambda m, v: gaussian_log_density(x, m, v), [mean, logvar], [dmean, dlogvar])


def test_gaussian_density_matches_the_univariate_formula():
    x, m, s = 0.3, -1.2, 0.7
    expected = np.log(1 / (s * np.sqrt(2 * np.pi))) - (x - m) ** 2 / (2 * s ** 2)
    got = gaussian_log_density(np.array([x]), np.array([m]), np.array([np.log(s ** 2)]))
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert gaussian_log_density(np.zeros(3), 0.0, 0.0) == pytest.approx(-1.5 * LOG_2PI, rel=1e-15)


def test_kl_gradients():
    rng = np.random.default_rng(3)
    mu, logvar = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    fd_check(kl_standard_normal, [mu, logvar], kl_standard_normal_grads(mu, logvar))


def test_kl_matches_the_textbook_univariate_formula():
    mu, sigma = np.array([[0.5, -2.0]]), np.array([[0.3, 1.7]])
    expected = np.sum(np.log(1 / sigma) + (sigma ** 2 + mu ** 2) / 2 - 0.5, axis=-1)
    np.testing.assert_allclose(kl_standard_normal(mu, np.log(sigma ** 2)), expected, rtol=1e-14)


def test_kl_matches_a_monte_carlo_estimate():
    """KL = E_q[log q(z) - log p(z)] (slide 12's definition), estimated by sampling."""
    rng = np.random.default_rng(4)
    mu, logvar = np.array([0.8, -0.3]), np.array([-1.0, 0.5])
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((400_000, 2))
    samples = gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, 0.0, 0.0)
    stderr = samples.std() / np.sqrt(samples.size)
    assert abs(samples.mean() - kl_standard_normal(mu, logvar)) < 4 * stderr


finite = dict(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(mu=arrays(np.float64, (2, 3), elements=st.floats(-50, 50, **finite)),
       logvar=arrays(np.float64, (2, 3), elements=st.floats(-30, 30, **finite)),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_kl_is_nonnegative_and_zero_only_at_the_prior(mu, logvar, dtype):
    mu, logvar = mu.astype(dtype), logvar.astype(dtype)
    kl = kl_standard_normal(mu, logvar)
    assert kl.dtype == dtype
    assert np.all(kl >= 0)
    away = (np.abs(mu) > 1e-4) | (np.abs(logvar) > 1e-4)      # below this, mu^2 underflows the sum
    assert np.all(kl[np.any(away, axis=-1)] > 0)
    assert np.all(kl_standard_normal(np.zeros_like(mu), np.zeros_like(logvar)) == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_are_preserved(dtype):
    rng = np.random.default_rng(5)
    a, b, c = (rng.standard_normal((2, 3)).astype(dtype) for _ in range(3))
    outs = [bernoulli_log_likelihood(a, b), bernoulli_log_likelihood_grads(a, b),
            gaussian_log_density(a, b, c), *gaussian_log_density_grads(a, b, c),
            kl_standard_normal(a, b), *kl_standard_normal_grads(a, b)]
    assert all(o.dtype == dtype for o in outs)
