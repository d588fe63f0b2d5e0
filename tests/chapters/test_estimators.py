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


def test_difference_stderr_and_variance_ratio_of_hand_made_estimates():
    """Three repeats written out: the unbiased (n - 1) variances, worked by hand."""
    from scratchvae.chapters.estimators import EstimatorComparison
    r = np.array([[1.0, 0.0], [2.0, 0.0], [4.0, 3.0]]).reshape(3, 1, 2)  # reparam: var (ddof 1) 7/3 and 3
    s = np.array([[0.0, 1.0], [3.0, 1.0], [9.0, 4.0]]).reshape(3, 1, 2)  # score: var (ddof 1) 21 and 3
    c = EstimatorComparison(n_samples=5, n_reference=100, reparam_mu=r, reparam_sigma=2 * r, score_mu=s,
                            score_sigma=s, reference_mu=np.zeros((1, 2)), reference_sigma=np.zeros((1, 2)))
    reference_var = 5 * (7 / 3) / 100                                  # S Var_r(reparam) / n_reference
    assert c.difference_stderr("reparam", "mu")[0, 0] == pytest.approx(np.sqrt((7 / 3) / 3 + reference_var))
    assert c.difference_stderr("score", "mu")[0, 0] == pytest.approx(np.sqrt(21 / 3 + reference_var))
    assert c.difference_stderr("score", "sigma")[0, 0] == pytest.approx(np.sqrt(21 / 3 + 4 * reference_var))
    assert c.difference_stderr("reparam", "mu")[0, 1] == pytest.approx(np.sqrt(3 / 3 + 5 * 3 / 100))
    ratio_mu, ratio_sigma = c.variance_ratio()                          # per coordinate: Var(score) / Var(reparam)
    np.testing.assert_allclose(ratio_mu, [[21 / (7 / 3), 1.0]])
    np.testing.assert_allclose(ratio_sigma, [[21 / (4 * 7 / 3), 1 / 4]])


def test_the_score_function_terms_written_out_for_given_noise():
    """For the eps it is given: z = mu + sigma eps, and the terms f(z) eps / sigma and
    f(z) (eps^2 - 1) / sigma (the module docstring's d log q / dmu and d log q / dsigma)."""
    from scratchvae.chapters.estimators import score_function_terms
    rng = np.random.default_rng(0)
    mu, sigma, eps = rng.standard_normal((2, 3)), rng.uniform(0.5, 2, (2, 3)), rng.standard_normal((4, 2, 3))
    f = lambda z: np.sum(np.sin(z), axis=-1) + 0.3 * z[..., 0]          # not symmetric in z - mu
    terms_mu, terms_sigma = score_function_terms(f, mu, sigma, eps)
    f_z = f(mu + sigma * eps)[..., None]
    np.testing.assert_allclose(terms_mu, f_z * eps / sigma, rtol=1e-12)
    np.testing.assert_allclose(terms_sigma, f_z * (eps ** 2 - 1) / sigma, rtol=1e-12)


def test_compare_estimators_takes_one_sample_and_two_repeats_and_counts_its_reference():
    """n_samples 1 and n_repeats 2 are the smallest it takes; for a linear f the reference is the
    constant gradient c exactly, averaged over exactly n_reference draws made chunk at a time."""
    c = np.array([0.5, -2.0])
    f, grad_f = (lambda z: z @ c), (lambda z: np.broadcast_to(c, z.shape).copy())
    mu, sigma = np.zeros((1, 2)), np.ones((1, 2))
    result = compare_estimators(f, grad_f, mu, sigma, 1, 2, np.random.default_rng(0), n_reference=50, chunk=20)
    assert result.n_reference == 50 and result.reparam_mu.shape == (2, 1, 2)
    np.testing.assert_allclose(result.reference_mu, [c], rtol=1e-15)
    for S, R, message in ((0, 2, "n_samples must be an integer >= 1"), (1, 1, "n_repeats must be an integer >= 2")):
        with pytest.raises(ValueError, match=message):
            compare_estimators(f, grad_f, mu, sigma, S, R, np.random.default_rng(0))
    for name in ("n_reference", "chunk"):
        with pytest.raises(ValueError, match=f"^{name} must be an integer >= 1, got 0$"):
            compare_estimators(f, grad_f, mu, sigma, 1, 2, np.random.default_rng(0), **{name: 0})
    # the reference is 20,000 draws unless told otherwise
    assert compare_estimators(f, grad_f, mu, sigma, 1, 2, np.random.default_rng(0)).n_reference == 20_000


def test_the_decoders_gradient_stays_in_the_models_dtype():
    model = VAE(6, [7], 2, seed=0)                                      # float32
    x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    f, grad_f = decoder_log_likelihood(model, x)
    z = np.random.default_rng(1).standard_normal((4, 3, 2))            # float64 samples
    assert f(z).dtype == np.float32 and grad_f(z).dtype == np.float32
