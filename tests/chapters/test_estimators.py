"""Reparameterisation and score-function gradients: both unbiased, against a closed form and
against a high-sample reference through a real decoder; the decoder adapter against finite
differences and against the model's own backward pass."""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.chapters.estimators import (compare_estimators, decoder_log_likelihood,
                                   reparameterisation_terms, score_function_terms)
from scratchvae.gradcheck import numerical_gradient, rel_error

Z_BOUND = 4.5      # |estimate - truth| < 4.5 standard errors: a false alarm has probability < 1e-4 per test


def mean_and_stderr(terms):
    """Mean over samples (axis 0) and its standard error."""
    return terms.mean(axis=0), terms.std(axis=0, ddof=1) / np.sqrt(len(terms))


def quadratic(a):
    """f(z) = -||z - a||^2 / 2, where E_q[f] = -1/2 sum_j ((mu_j - a_j)^2 + sigma_j^2) is known:
    dF/dmu = -(mu - a), dF/dsigma = -sigma."""
    f = lambda z: -0.5 * np.sum((z - a) ** 2, axis=-1)
    grad_f = lambda z: -(z - a)
    return f, grad_f


@pytest.mark.parametrize("estimator", ["reparam", "score"])
def test_both_estimators_are_unbiased_for_a_known_expectation(estimator):
    rng = np.random.default_rng(0)
    mu, sigma, a = rng.standard_normal((3, 4)), rng.uniform(0.3, 2.0, (3, 4)), rng.standard_normal(4)
    f, grad_f = quadratic(a)
    eps = rng.standard_normal((200_000, 3, 4))
    terms = (reparameterisation_terms(grad_f, mu, sigma, eps) if estimator == "reparam"
             else score_function_terms(f, mu, sigma, eps))
    for (mean, stderr), exact in zip(map(mean_and_stderr, terms), (-(mu - a), -sigma)):
        assert np.all(np.abs(mean - exact) < Z_BOUND * stderr + 1e-12)
        assert np.all(stderr < 0.1)                                   # the test has power


def test_reparameterisation_is_exact_for_a_linear_f_and_score_function_is_not():
    """For f(z) = c . z, df/dz = c for every sample: the pathwise estimate of dF/dmu has zero
    variance; the score function's does not (it multiplies f by random noise)."""
    rng = np.random.default_rng(1)
    mu, sigma, c = rng.standard_normal((2, 3)), rng.uniform(0.5, 1.5, (2, 3)), rng.standard_normal(3)
    eps = rng.standard_normal((50, 2, 3))
    reparam_mu, _ = reparameterisation_terms(lambda z: np.broadcast_to(c, z.shape), mu, sigma, eps)
    score_mu, _ = score_function_terms(lambda z: z @ c, mu, sigma, eps)
    np.testing.assert_array_equal(reparam_mu, np.broadcast_to(c, reparam_mu.shape))
    assert np.all(score_mu.std(axis=0) > 0.1)


def tiny_decoder_problem(likelihood, seed=2, N=3, D=6, K=2, decoder_scale=1.0):
    """A tiny float64 VAE, data x, and its encoder's mu, sigma for x; ``decoder_scale``
    multiplies the decoder's weights (a sharper log p(x|z), larger gradients in z)."""
    rng = np.random.default_rng(seed)
    model = VAE(D, [7], K, activation="tanh", likelihood=likelihood, dtype=np.float64, seed=seed)
    for name, value in model.params.items():
        if name.startswith("dec.") and name.endswith(".W"):
            value *= decoder_scale
    x = rng.random((N, D))
    mu, logvar = model.encode(x)
    return model, x, mu, np.exp(0.5 * logvar)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_decoder_gradient_matches_finite_differences(likelihood):
    model, x, mu, sigma = tiny_decoder_problem(likelihood)
    f, grad_f = decoder_log_likelihood(model, x)
    z = np.random.default_rng(3).standard_normal((2, 3, 2))
    numeric = numerical_gradient(lambda z: f(z).sum(), z)             # each f(z_sn) depends on z_sn only
    assert rel_error(numeric, grad_f(z)) < 1e-8


def test_reparameterisation_equals_the_models_backward_pass():
    """With beta = 0 and one datapoint, VAE.loss_and_grads differentiates -1/L sum_l log p(x|z_l)
    through z = mu + sigma eps: d loss/d b_mu = d loss/d mu and d loss/d b_logvar = d loss/d sigma * sigma / 2."""
    model, x, mu, sigma = tiny_decoder_problem("bernoulli", N=1)
    model.beta = 0.0
    eps = np.random.default_rng(4).standard_normal((5, 1, 2))
    model.loss_and_grads(x, eps)
    grad_mu, grad_sigma = (t.mean(axis=0) for t in
                           reparameterisation_terms(decoder_log_likelihood(model, x)[1], mu, sigma, eps))
    np.testing.assert_allclose(-model.grads["enc.mu.b"], grad_mu[0], rtol=1e-12)
    np.testing.assert_allclose(-model.grads["enc.logvar.b"], grad_sigma[0] * sigma[0] / 2, rtol=1e-12)


def test_decoder_adapter_leaves_the_models_gradients_alone():
    model, x, mu, sigma = tiny_decoder_problem("bernoulli")
    model.loss_and_grads(x)
    before = model.flat_grads.copy()
    decoder_log_likelihood(model, x)[1](np.zeros((2, 3, 2)))
    np.testing.assert_array_equal(model.flat_grads, before)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_both_estimators_agree_with_a_high_sample_reference_through_a_decoder(likelihood):
    """Unbiasedness on a real f = log p(x|z): R repeated S-sample estimates average to the
    reference within standard errors (of the average and of the reference).

    The test has power: its tolerance, 4.5 standard errors, is at most half the typical size
    of the gradient it checks, for each estimator and each of dF/dmu, dF/dsigma. The score
    function's dF/dsigma is the hard one (its noise is the largest, and dF/dsigma of a gently
    curved log p(x|z) is small), hence the decoder's weights times 3 and R = 3200 repeats."""
    model, x, mu, sigma = tiny_decoder_problem(likelihood, seed=5, decoder_scale=3.0)
    f, grad_f = decoder_log_likelihood(model, x)
    S, R, n_reference = 100, 3200, 200_000
    result = compare_estimators(f, grad_f, mu, sigma, n_samples=S, n_repeats=R,
                                rng=np.random.default_rng(6), n_reference=n_reference)
    for name in ("mu", "sigma"):
        reference = getattr(result, f"reference_{name}")
        reference_stderr = getattr(result, f"reparam_{name}").std(axis=0) / np.sqrt(n_reference / S)
        for estimator in ("reparam", "score"):
            estimates = getattr(result, f"{estimator}_{name}")            # (R, N, K)
            stderr = np.hypot(estimates.std(axis=0, ddof=1) / np.sqrt(R), reference_stderr)
            error = np.abs(estimates.mean(axis=0) - reference)
            assert np.all(error < Z_BOUND * stderr), (estimator, name, error / stderr)
            tolerance, size = np.median(Z_BOUND * stderr), np.median(np.abs(reference))
            assert tolerance < 0.5 * size, f"{estimator} d/d{name}: tolerance {tolerance:.3g} vs gradient {size:.3g}"
    ratio_mu, ratio_sigma = result.variance_ratio()
    assert np.all(ratio_mu > 1) and np.all(ratio_sigma > 1)              # the point of slide 14


def test_compare_estimators_is_reproducible_and_shaped():
    model, x, mu, sigma = tiny_decoder_problem("bernoulli")
    f, grad_f = decoder_log_likelihood(model, x)
    run = lambda: compare_estimators(f, grad_f, mu, sigma, 4, 3, np.random.default_rng(7), n_reference=50)
    a, b = run(), run()
    assert a.score_mu.shape == (3, 3, 2) and a.reference_sigma.shape == (3, 2) and a.n_samples == 4
    np.testing.assert_array_equal(a.score_sigma, b.score_sigma)
    np.testing.assert_array_equal(a.reference_mu, b.reference_mu)
    with pytest.raises(ValueError, match="n_repeats must be an integer >= 2"):
        compare_estimators(f, grad_f, mu, sigma, 4, 1, np.random.default_rng(7))


def test_difference_stderr_matches_the_known_variance():
    """For f = -||z - a||^2 / 2 the pathwise dF/dmu terms are -(z - a): single-sample variance
    sigma^2, so the average of R S-sample estimates minus an n-sample reference has variance
    sigma^2 (1 / (R S) + 1 / n)."""
    rng = np.random.default_rng(8)
    mu, sigma, a = rng.standard_normal((2, 3)), rng.uniform(0.5, 2.0, (2, 3)), rng.standard_normal(3)
    f, grad_f = quadratic(a)
    result = compare_estimators(f, grad_f, mu, sigma, n_samples=10, n_repeats=2000, rng=rng,
                                n_reference=5000)
    expected = sigma * np.sqrt(1 / (2000 * 10) + 1 / 5000)
    np.testing.assert_allclose(result.difference_stderr("reparam", "mu"), expected, rtol=0.06)
