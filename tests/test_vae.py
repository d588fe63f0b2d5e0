"""The whole model: every parameter gradient against finite differences, the reparameterised
path, the two views of the objective, and the public contract."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchvae import VAE
from scratchvae.gradcheck import check_model_gradients, numerical_gradient, rel_error
from scratchvae.losses import kl_standard_normal

WHOLE_MODEL_TOL = 1e-7     # float64 central differences give ~1e-9; a wrong term gives ~1e-1 or more


def tiny_problem(likelihood, L, N=5, D=6, K=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((N, D))                          # grayscale targets in [0, 1]
    if likelihood == "bernoulli":
        x[:, :2] = np.round(x[:, :2])               # and some binary pixels
    return x, rng.standard_normal((L, N, K))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("hidden", [[7], [7, 5]])
@pytest.mark.parametrize("L, beta", [(1, 1.0), (3, 0.5)])
def test_whole_model_gradient_matches_finite_differences(likelihood, activation, hidden, L, beta):
    model = VAE(6, hidden, 3, activation=activation, likelihood=likelihood, beta=beta,
                dtype=np.float64, seed=1)
    x, eps = tiny_problem(likelihood, L)
    errors = check_model_gradients(model, x, eps)
    assert set(errors) == set(model.params)                            # every tensor, biases included
    worst = max(errors, key=errors.get)
    assert errors[worst] < WHOLE_MODEL_TOL, f"{worst} rel_error={errors[worst]:.1e}"


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.5])
def test_reparameterised_path_with_frozen_eps(beta):
    """With one datapoint, d loss / d b_mu = d loss / d mu and d loss / d b_logvar = d loss / d logvar:
    the gradient that flows through z = mu + sigma * eps (beta = 0 isolates it from the KL)."""
    model = VAE(6, [7], 3, activation="tanh", beta=beta, dtype=np.float64, seed=2)
    x, eps = tiny_problem("bernoulli", L=4, N=1)
    model.loss_and_grads(x, eps)
    for name in ("enc.mu.b", "enc.logvar.b"):
        num = numerical_gradient(lambda _: model.loss(x, eps)[0], model.params[name])
        assert rel_error(num, model.grads[name]) < 1e-8, name


def test_kl_gradient_reaches_the_encoder_alone():
    """With the decoder cut off (zero weights into the logits), only the KL depends on mu and logvar:
    then d loss / d mu = beta mu / N and d loss / d logvar = beta (sigma^2 - 1) / (2 N)."""
    model = VAE(6, [7], 3, beta=0.7, dtype=np.float64, seed=3)
    model.params["dec.logits.W"][...] = 0
    x, eps = tiny_problem("bernoulli", L=1, N=1)
    model.loss_and_grads(x, eps)
    mu, logvar = model.encode(x)
    np.testing.assert_allclose(model.grads["enc.mu.b"], 0.7 * mu[0], rtol=1e-12)
    np.testing.assert_allclose(model.grads["enc.logvar.b"], 0.7 * 0.5 * np.expm1(logvar[0]), rtol=1e-12)


def test_loss_parts_add_up_and_match_the_definitions():
    model = VAE(6, [7], 3, beta=0.25, dtype=np.float64, seed=4)
    x, eps = tiny_problem("bernoulli", L=2)
    loss, parts = model.loss_and_grads(x, eps)
    assert isinstance(loss, float) and all(isinstance(v, float) for v in parts.values())
    assert parts["nelbo"] == pytest.approx(parts["rec"] + parts["kl"], rel=1e-15)
    assert parts["elbo"] == -parts["nelbo"]
    assert loss == pytest.approx(parts["rec"] + 0.25 * parts["kl"], rel=1e-14)
    mu, logvar = model.encode(x)
    assert parts["kl"] == pytest.approx(np.mean(kl_standard_normal(mu, logvar)), rel=1e-14)
    assert model.loss(x, eps) == (loss, parts)                 # the forward-only path agrees
    assert model.loss(x, eps, q=(mu, logvar)) == (loss, parts)  # and given lambda, not encoding again
    assert model.loss(x, eps, q=(mu + 1, logvar)) != (loss, parts)


def test_sampling_decodes_standard_normal_noise():
    """Slide 6: generate by z ~ N(0, I) through the decoder -- the sample is exactly the decoder's
    mean at the noise the generator gives, and that noise is standard normal."""
    from scratchvae.layers import sigmoid
    model = VAE(6, [5], 2, seed=0)
    images = model.sample(4000, np.random.default_rng(3))
    z = np.random.default_rng(3).standard_normal((4000, 2), dtype=np.float32)
    np.testing.assert_array_equal(images, model.decode_mean(z))
    np.testing.assert_array_equal(images, sigmoid(model.decode(z)))
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05            # 8,000 draws: sd of the mean 0.011
    assert not np.array_equal(images[:10], model.sample(10, np.random.default_rng(4)))


def test_the_decoder_outputs_the_bernoulli_logits_of_the_likelihood():
    """Slide 8: the decoder outputs logits l, one per pixel; p(x|z) = prod_d sigmoid(l_d)^x_d (1 - sigmoid(l_d))^(1 - x_d),
    and the decoder's mean image is sigmoid(l)."""
    from scratchvae.layers import sigmoid
    from scratchvae.losses import bernoulli_log_likelihood
    model = VAE(6, [5], 2, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    x, eps = rng.random((3, 6)).round(), rng.standard_normal((3, 2))
    logits = model.decode(rng.standard_normal((3, 2)))
    s = sigmoid(logits)
    assert logits.shape == (3, 6) and np.any(logits < 0) and np.any(logits > 0)      # logits, not probabilities
    np.testing.assert_allclose(np.exp(bernoulli_log_likelihood(x, logits)),
                               np.prod(s ** x * (1 - s) ** (1 - x), axis=1), rtol=1e-12)
    mu, logvar = model.encode(x)
    z = mu + np.exp(0.5 * logvar) * eps
    _, parts = model.loss(x, eps[None])
    assert parts["rec"] == pytest.approx(-bernoulli_log_likelihood(x, model.decode(z)).mean(), rel=1e-12)
    np.testing.assert_allclose(model.decode_mean(z), sigmoid(model.decode(z)), rtol=1e-12)


def test_lambda_is_the_encoders_output_for_each_x():
    """Slide 24: amortised inference -- one network maps each x to its own lambda = (mu, log sigma^2),
    and the q of the loss is N(mu, diag sigma^2) with exactly that lambda."""
    model = VAE(6, [5], 2, dtype=np.float64, seed=2)
    x = np.random.default_rng(3).random((4, 6))
    mu, logvar = model.encode(x)
    for i in range(4):                                       # each row's lambda depends on its x alone
        one = model.encode(x[i:i + 1])
        np.testing.assert_allclose(one[0][0], mu[i], rtol=1e-12)
        np.testing.assert_allclose(one[1][0], logvar[i], rtol=1e-12)
    assert len({tuple(np.round(m, 9)) for m in mu}) == 4     # different x, different lambda
    eps = np.random.default_rng(4).standard_normal((1, 4, 2))
    _, parts = model.loss(x, eps)
    assert parts["kl"] == pytest.approx(kl_standard_normal(mu, logvar).mean(), rel=1e-12)
    model.params["enc.fc1.W"][...] *= 2                      # change the network: every lambda moves
    assert np.all(np.abs(model.encode(x)[0] - mu).sum(axis=1) > 0)


def test_the_two_views_are_the_same_number():
    """Slide 25, "They are equivalent!": the deep-learning loss (analytic KL) equals minus the
    probabilistic ELBO E_q[log p(x, z) - log q(z|x)] (no closed-form KL), within Monte Carlo error."""
    rng = np.random.default_rng(5)
    model = VAE(6, [7], 3, dtype=np.float64, seed=5)
    model.params["enc.logvar.b"][...] = 0.5     # make q wide, so the KL's Monte Carlo estimate is noisy
    x, S = rng.random((8, 6)), 20_000

    # independent estimates: the DL form with S samples of z, the probabilistic form with S others
    elbo_prob, stderr_prob = model.elbo_probabilistic(x, S, rng)
    eps = rng.standard_normal((S, 8, 3))
    mu, logvar = model.encode(x)
    log_px_z = model._log_px_z(x, mu, logvar, eps)[0]                    # (S, N)
    elbo_dl = log_px_z.mean(axis=0) - kl_standard_normal(mu, logvar)   # E_q[log p(x|z)] - KL
    stderr_dl = log_px_z.std(axis=0) / np.sqrt(S)
    assert np.all(np.abs(elbo_prob - elbo_dl) < 4 * np.hypot(stderr_prob, stderr_dl))
    assert np.all(stderr_prob < 0.05)                     # the comparison is not vacuous

    # with the same samples, the difference is only (KL estimate - analytic KL), zero on average
    log_pz_minus_log_q = model.log_weights(x, eps) - log_px_z
    diff = log_pz_minus_log_q.mean(axis=0) + kl_standard_normal(mu, logvar)
    assert np.all(np.abs(diff) < 4 * log_pz_minus_log_q.std(axis=0) / np.sqrt(S))


def test_eps_of_shape_n_k_means_one_sample():
    model = VAE(6, [7], 3, dtype=np.float64, seed=6)
    x, eps = tiny_problem("bernoulli", L=1)
    assert model.loss(x, eps[0]) == model.loss(x, eps)


def test_eps_is_drawn_from_the_models_own_generator():
    x, _ = tiny_problem("bernoulli", L=1)
    a, b = VAE(6, [7], 3, seed=7, n_samples=2), VAE(6, [7], 3, seed=7, n_samples=2)
    assert a.loss_and_grads(x) == b.loss_and_grads(x)                  # same seed, same draws
    assert a.loss_and_grads(x) != a.loss_and_grads(x)                  # the generator moves on


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**32 - 1), likelihood=st.sampled_from(["bernoulli", "gaussian"]))
def test_loss_and_gradients_do_not_depend_on_batch_order(n, seed, likelihood):
    rng = np.random.default_rng(seed)
    model = VAE(5, [4], 2, likelihood=likelihood, dtype=np.float64, seed=seed % 1000)
    x, eps = rng.random((n, 5)), rng.standard_normal((2, n, 2))
    loss, parts = model.loss_and_grads(x, eps)
    grads = model.flat_grads.copy()
    perm = rng.permutation(n)
    loss_p, parts_p = model.loss_and_grads(x[perm], eps[:, perm])
    assert loss_p == pytest.approx(loss, rel=1e-12)
    assert parts_p["kl"] == pytest.approx(parts["kl"], rel=1e-12)
    np.testing.assert_allclose(model.flat_grads, grads, rtol=1e-10, atol=1e-13)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 7), d=st.integers(1, 9), k=st.integers(1, 4),
       hidden=st.lists(st.integers(1, 6), max_size=2), L=st.integers(1, 3),
       likelihood=st.sampled_from(["bernoulli", "gaussian"]),
       x_dtype=st.sampled_from([np.float32, np.float64, np.uint8]))
def test_float32_model_keeps_float32_and_shapes(n, d, k, hidden, L, likelihood, x_dtype):
    model = VAE(d, hidden, k, likelihood=likelihood, n_samples=L, seed=0)
    x = np.random.default_rng(0).random((n, d)).round().astype(x_dtype)
    loss, _ = model.loss_and_grads(x)
    assert np.isfinite(loss)
    assert model.flat_params.dtype == model.flat_grads.dtype == np.float32
    assert all(model.grads[name].shape == p.shape for name, p in model.params.items())
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (n, k) and mu.dtype == np.float32
    assert model.sample(3, np.random.default_rng(1)).shape == (3, d)
    recon = model.reconstruct(x)
    assert recon.shape == (n, d) and recon.dtype == np.float32
    out = model.decode(mu)
    assert (out.shape if likelihood == "bernoulli" else out[0].shape) == (n, d)


def test_params_and_grads_share_keys_shapes_and_the_flat_buffers():
    model = VAE(784, [400], 20)
    assert list(model.params) == list(model.grads)
    assert list(model.params) == ["enc.fc1.W", "enc.fc1.b", "enc.mu.W", "enc.mu.b", "enc.logvar.W",
                                  "enc.logvar.b", "dec.fc1.W", "dec.fc1.b", "dec.logits.W", "dec.logits.b"]
    assert model.params["enc.fc1.W"].shape == (784, 400) and model.params["dec.logits.W"].shape == (400, 784)
    assert model.flat_params.size == sum(p.size for p in model.params.values()) == 652_824
    for name in model.params:
        assert np.shares_memory(model.params[name], model.flat_params)
        assert np.shares_memory(model.grads[name], model.flat_grads)


def test_theta_and_phi_are_the_encoders_and_the_decoders_parameters():
    """The lecture's q_theta(z|x) and p_phi(x|z): theta moves only what encodes, phi only what decodes."""
    model = VAE(12, [6], 2, dtype=np.float64, seed=0)
    assert set(model.theta) | set(model.phi) == set(model.params) and not set(model.theta) & set(model.phi)
    assert all(model.theta[k] is model.params[k] for k in model.theta)
    x = np.random.default_rng(0).random((5, 12))
    mu = model.encode(x)[0]
    for p in model.phi.values():                      # the decoder's weights do not change q(z|x)
        p += 1.0
    np.testing.assert_array_equal(model.encode(x)[0], mu)
    next(iter(model.theta.values()))[...] += 1.0      # the encoder's do
    assert not np.array_equal(model.encode(x)[0], mu)


def test_gaussian_decoder_has_mean_and_logvar_heads():
    model = VAE(10, [8, 6], 2, likelihood="gaussian")
    assert {"dec.mean.W", "dec.logvar.W", "dec.fc2.W"} <= set(model.params)
    assert model.params["dec.fc1.W"].shape == (2, 6) and model.params["dec.fc2.W"].shape == (6, 8)


def test_same_seed_same_initial_weights():
    a, b, c = VAE(20, [8], 3, seed=1), VAE(20, [8], 3, seed=1), VAE(20, [8], 3, seed=2)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)


@pytest.mark.parametrize("kwargs, message", [
    (dict(likelihood="poisson"), "unknown likelihood 'poisson'"),
    (dict(activation="gelu"), "unknown activation 'gelu'"),
    (dict(latent_dim=0), "latent_dim must be a positive integer"),
    (dict(hidden_dims=[4, -1]), "hidden size must be a positive integer"),
    (dict(dtype=np.int32), "dtype must be float32 or float64"),
])
def test_bad_constructor_arguments_are_clear_errors(kwargs, message):
    args = dict(input_dim=6, hidden_dims=[4], latent_dim=2) | kwargs
    with pytest.raises(ValueError, match=message):
        VAE(**args)


@pytest.mark.parametrize("x, eps, message", [
    (np.zeros((3, 5)), None, r"x must have shape \(N, 6\).*got shape \(3, 5\)"),
    (np.zeros(6), None, r"x must have shape \(N, 6\)"),
    (np.zeros((0, 6)), None, "no datapoints"),
    (np.zeros((3, 6)), np.zeros((2, 4, 2)), r"eps must have shape \(L, 3, 2\)"),
    (np.array([["a"] * 6]), None, "real numbers"),
])
def test_bad_inputs_are_clear_errors(x, eps, message):
    with pytest.raises(ValueError, match=message):
        VAE(6, [4], 2).loss_and_grads(x, eps)


# ------------------------------------------------------------------ the learner's own mistakes
# Generated, not listed: each kind of mistake over random shapes, positions and values.

@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), d=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.int64, np.uint16]))
def test_integer_pixels_above_1_are_refused_with_what_to_do(n, d, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, d)).astype(dtype)
    x.flat[rng.integers(x.size)] = rng.integers(2, 256)          # at least one pixel above 1
    model = VAE(d, [3], 2)
    for call in (model.loss_and_grads, model.loss, model.encode, model.log_weights, model.reconstruct):
        with pytest.raises(ValueError, match="divide uint8 images by 255"):
            call(x)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), d=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       bad=st.one_of(st.floats(-1e30, -1e-6), st.floats(1 + 1e-6, 1e30)))
def test_bernoulli_data_outside_0_1_is_refused_gaussian_data_is_not(n, d, seed, bad):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    x.flat[rng.integers(x.size)] = bad
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs x in \[0, 1\]"):
        VAE(d, [3], 2, dtype=np.float64).loss_and_grads(x)
    VAE(d, [3], 2, likelihood="gaussian", dtype=np.float64).loss_and_grads(x)   # real-valued data: fine


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), d=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]), likelihood=st.sampled_from(["bernoulli", "gaussian"]))
def test_nan_or_inf_in_x_is_refused(n, d, seed, bad, likelihood):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)).astype(np.float32)
    x.flat[rng.integers(x.size)] = bad
    with pytest.raises(ValueError, match="nan or inf"):
        VAE(d, [3], 2, likelihood=likelihood).loss_and_grads(x)


NOT_A_SIZE = st.one_of(st.booleans(), st.integers(max_value=0), st.floats(allow_nan=True).filter(
    lambda v: not float(v).is_integer() if np.isfinite(v) else True), st.text(max_size=3),
    st.none(), st.floats(1, 1e6).map(lambda v: float(int(v)) + 0.5))


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(["input_dim", "latent_dim", "n_samples", "hidden"]), value=NOT_A_SIZE)
def test_every_size_argument_must_be_a_positive_integer(field, value):
    args = dict(input_dim=6, hidden_dims=[4], latent_dim=2, n_samples=1)
    if field == "hidden":
        args["hidden_dims"] = [4, value]
    else:
        args[field] = value
    with pytest.raises(ValueError, match="must be a positive integer"):
        VAE(**args)


@settings(max_examples=20, deadline=None)
@given(hidden=st.one_of(st.integers(-5, 1000), st.floats(), st.text(max_size=4), st.none()))
def test_hidden_dims_must_be_a_list(hidden):
    with pytest.raises(ValueError, match="hidden_dims must be a list of layer sizes"):
        VAE(6, hidden, 2)


@settings(max_examples=30, deadline=None)
@given(beta=st.one_of(st.floats(max_value=-1e-300), st.sampled_from([np.nan, np.inf, -np.inf]),
                      st.booleans(), st.text(max_size=3), st.none()))
def test_beta_must_be_a_finite_number_at_least_0(beta):
    with pytest.raises(ValueError, match="beta"):
        VAE(6, [4], 2, beta=beta)


@settings(max_examples=20, deadline=None)
@given(n=st.one_of(st.integers(max_value=0), st.floats(), st.booleans()))
def test_sample_and_sample_counts_must_be_positive(n):
    model = VAE(6, [4], 2)
    x = np.random.default_rng(0).random((3, 6))
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        model.sample(n)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        model.elbo_probabilistic(x, n if not (isinstance(n, int) and n > 1) else 1)
    with pytest.raises(ValueError, match="L >= 1"):
        model.loss_and_grads(x, np.zeros((0, 3, 2)))


# ------------------------------------------------------------------ every kind checks its inputs alike
# vae.py's check_input is the one check of x, eps and z for the VAE, the IWAE, the conditional
# VAE and the autoencoder. Generated: a kind, a likelihood, a method, an input and a mistake.
from scratchvae.chapters.autoencoder import Autoencoder
from scratchvae.chapters.cvae import CVAE
from scratchvae.chapters.iwae import IWAE
from scratchvae.vae import check_input

KINDS = {"vae": VAE, "iwae": lambda *a, **kw: IWAE(*a, k=2, **kw), "cvae": CVAE, "autoencoder": Autoencoder}


def _methods(model):
    """name -> (the inputs it reads, call(x, eps, z)): every method that takes x, eps or z."""
    y = (lambda a: (np.arange(len(a)) % 10,)) if model.conditional else (lambda a: ())
    m = {"encode": ("x", lambda x, e, z: model.encode(x, *y(x))),
         "reconstruct": ("x", lambda x, e, z: model.reconstruct(x, *y(x))),
         "decode": ("z", lambda x, e, z: model.decode(z, *y(z))),
         "decode_mean": ("z", lambda x, e, z: model.decode_mean(z, *y(z)))}
    if model.variational:
        m.update({name: ("x eps", lambda x, e, z, f=getattr(model, name): f(x, *y(x), e))
                  for name in ("loss_and_grads", "loss", "log_weights")})
        if not model.conditional:
            m["elbo_probabilistic"] = ("x", lambda x, e, z: model.elbo_probabilistic(x, 3))
        if hasattr(model, "bound"):
            m["bound"] = ("x eps", lambda x, e, z: model.bound(x, e))
    else:
        m.update(loss_and_grads=("x", lambda x, e, z: model.loss_and_grads(x)),
                 reconstruction_error=("x", lambda x, e, z: model.reconstruction_error(x)))
    return m


def _mistake(name, good, what, rng):
    """(bad value, the message it must give) for the input ``name`` of good value ``good``."""
    bad = good.copy()
    if what == "nan or inf":
        bad.flat[rng.integers(bad.size)] = rng.choice([np.nan, np.inf, -np.inf])
        return bad, rf"{name} holds 1 value that is nan or inf"
    if what == "beyond float32":
        bad = bad.astype(np.float64)
        bad.flat[rng.integers(bad.size)] = rng.choice([1e39, -1e300])
        return bad, rf"{name} holds 1 value that is nan or inf \(as float32\)"
    if what == "empty":
        return bad[:0], rf"{name} holds no \w+ \(shape \(0,"
    if what == "wrong shape":
        return bad[..., :-1], rf"{name} must have shape \("
    if what == "not numbers":
        return bad.astype(rng.choice(["U3", "complex64", "bool", "O"])), rf"{name} must hold real numbers"
    if what == "uint8 pixels":
        return (bad * 255).astype(np.uint8) | np.uint8(2), "divide uint8 images by 255"
    return bad * 255 + 2, r"Bernoulli likelihood needs x in \[0, 1\]"          # "0..255 floats"


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(list(KINDS)), likelihood=st.sampled_from(["bernoulli", "gaussian"]),
       data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_every_kind_refuses_bad_x_eps_and_z_as_the_vae_does(kind, likelihood, data, seed):
    """Autoencoder.loss_and_grads took uint8, 0..255 floats (loss -1134.7), nan and empty batches;
    nan eps and z went through everywhere (VAE.loss_and_grads, decode_mean, IWAE.bound)."""
    rng = np.random.default_rng(seed)
    model = KINDS[kind](6, [4], 2, likelihood=likelihood, seed=0)
    method = data.draw(st.sampled_from(sorted(_methods(model))), label="method")
    reads, call = _methods(model)[method]
    name = data.draw(st.sampled_from(reads.split()), label="input")
    mistakes = ["nan or inf", "beyond float32", "empty", "wrong shape", "not numbers"]
    if name == "x":
        mistakes += ["uint8 pixels"] + (["0..255 floats"] if likelihood == "bernoulli" else [])
    what = data.draw(st.sampled_from(mistakes), label="mistake")
    n = int(rng.integers(1, 5))
    good = {"x": rng.random((n, 6)).astype(np.float32), "z": rng.standard_normal((n, 2)).astype(np.float32),
            "eps": rng.standard_normal((int(rng.integers(1, 3)), n, 2)).astype(np.float32)}
    call(good["x"], good["eps"], good["z"])                             # the good inputs work
    bad, message = _mistake(name, good[name], what, rng)
    with pytest.raises(ValueError, match=message):
        call(**{"x": good["x"], "e": good["eps"], "z": good["z"], {"eps": "e"}.get(name, name): bad})
    shape = {"x": ("N", 6), "z": ("M", 2), "eps": ("L", n, 2)}[name]     # the method's refusal is the check's
    with pytest.raises(ValueError, match=message):
        check_input(model, name, bad, shape, data=name == "x")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_samples_only_a_count_of_images_from_a_generator(kind):
    model = KINDS[kind](6, [4], 2, seed=0)
    sample = ((lambda n, rng=None: model.sample(n, 3, rng)) if model.conditional else
              (lambda n, rng=None: model.sample(n, rng if rng is not None else np.random.default_rng(0)))
              if not model.variational else model.sample)
    assert sample(np.int64(3)).shape == (3, 6)
    for n in (1.5, 2.0, True, 0, "3", None):
        with pytest.raises(ValueError, match="n, the number of images to generate, must be an integer >= 1"):
            sample(n)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        sample(2, 7)


def test_a_float32_autoencoder_keeps_float32_and_a_float64_one_float64():
    for dtype in (np.float32, np.float64):
        model = Autoencoder(6, [4], 2, dtype=dtype, seed=0)
        x = np.random.default_rng(0).random((3, 6))                     # float64 data
        assert model.encode(x.astype(np.float32)).dtype == dtype and model.reconstruct(x).dtype == dtype


# ------------------------------------------------------------------ numbers no other test pinned down
def test_the_probabilistic_elbo_is_the_mean_log_weight_and_its_standard_error():
    """elbo_probabilistic: per datapoint, the mean of log w over S draws of eps from the generator
    it is given (in the model's dtype), and std(log w, ddof=1) / sqrt(S); without a generator, the
    model's own."""
    model = VAE(6, [7], 3, seed=5)                                       # float32
    x = np.random.default_rng(1).random((4, 6)).astype(np.float32)
    elbo, stderr = model.elbo_probabilistic(x, 50, np.random.default_rng(9))
    eps = np.random.default_rng(9).standard_normal((50, 4, 3), dtype=np.float32)
    log_w = model.log_weights(x, eps).astype(np.float64)                  # (S, N)
    np.testing.assert_allclose(elbo, log_w.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stderr, np.sqrt(((log_w - log_w.mean(axis=0)) ** 2).sum(axis=0) / 49) / np.sqrt(50),
                               rtol=1e-5)
    assert elbo.shape == stderr.shape == (4,) and len(set(np.round(stderr, 6))) == 4
    twin = VAE(6, [7], 3, seed=5)
    own = model.elbo_probabilistic(x, 50)                                # draws from model.rng ...
    eps = twin.rng.standard_normal((50, 4, 3), dtype=np.float32)         # ... as the twin's would
    np.testing.assert_allclose(own[0], twin.log_weights(x, eps).mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 2 \(the standard error needs two\)"):
        model.elbo_probabilistic(x, 1)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("hidden", [[], [7], [7, 5, 4]])
def test_parameter_shapes_are_those_the_constructor_builds(likelihood, hidden):
    model = VAE(6, hidden, 3, likelihood=likelihood, seed=0)
    built = {name: p.shape for name, p in model.params.items()}
    assert VAE.parameter_shapes(model.config()) == built
    if likelihood == "bernoulli":                          # an arch that names no likelihood is Bernoulli
        arch = {k: v for k, v in model.config().items() if k != "likelihood"}
        assert VAE.parameter_shapes(arch) == built


def test_the_config_rebuilds_the_model_it_came_from():
    model = VAE(6, [5], 3, activation="tanh", likelihood="gaussian", n_samples=2, beta=0.25,
                dtype=np.float64, seed=0)
    config = model.config()
    assert config == dict(input_dim=6, hidden_dims=[5], latent_dim=3, activation="tanh", likelihood="gaussian",
                          n_samples=2, beta=0.25, dtype="float64")
    twin = VAE(**config, seed=0)
    assert twin.config() == config and np.array_equal(twin.flat_params, model.flat_params)


def relu_mlp(z, Ws, bs):
    for W, b in zip(Ws, bs):
        z = np.maximum(z @ W + b, 0)
    return z


def test_decode_is_the_decoder_written_out_and_keeps_the_models_dtype():
    """decode / decode_mean against the decoder computed here layer by layer, for both heads."""
    z = np.random.default_rng(0).standard_normal((4, 3))                 # float64 in ...
    for likelihood in ("bernoulli", "gaussian"):
        model = VAE(6, [7, 5], 3, likelihood=likelihood, seed=1)         # ... a float32 model
        p = {k: v.astype(np.float64) for k, v in model.params.items()}
        h = relu_mlp(z, [p["dec.fc1.W"], p["dec.fc2.W"]], [p["dec.fc1.b"], p["dec.fc2.b"]])
        if likelihood == "bernoulli":
            logits = h @ p["dec.logits.W"] + p["dec.logits.b"]
            np.testing.assert_allclose(model.decode(z), logits, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(model.decode_mean(z), 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
            assert model.decode(z).dtype == np.float32
        else:
            mean, logvar = h @ p["dec.mean.W"] + p["dec.mean.b"], h @ p["dec.logvar.W"] + p["dec.logvar.b"]
            got = model.decode(z)
            np.testing.assert_allclose(got[0], mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[1], logvar, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(model.decode_mean(z), mean, rtol=1e-5, atol=1e-6)   # the mean, not logvar
            assert got[0].dtype == got[1].dtype == np.float32
        for bad in (np.zeros((4, 2)), np.zeros((4, 4)), np.zeros(3), np.zeros((1, 4, 3))):
            with pytest.raises(ValueError, match=r"z must have shape \(M, 3\)"):
                model.decode(bad)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_the_decoders_pieces_give_d_log_p_x_given_z_dz(likelihood):
    """_decoder_forward, _log_likelihood, _log_likelihood_grads and _decoder_backward (the pieces
    chapters/inference.py, iwae.py and estimators.py put together) against finite differences:
    d/dz sum log p(x|z) in float64."""
    model = VAE(6, [7, 5], 3, likelihood=likelihood, activation="tanh", dtype=np.float64, seed=2)
    rng = np.random.default_rng(3)
    x, z = rng.random((4, 6)), rng.standard_normal((4, 3))
    log_p = lambda z_: model._log_likelihood(x, model._decoder_forward(z_)).sum()
    dz = model._decoder_backward(model._log_likelihood_grads(x, model._decoder_forward(z)))
    assert rel_error(dz, numerical_gradient(log_p, z)) < 1e-8
    direct = {"bernoulli": lambda l: (x * l - np.logaddexp(0, l)).sum(axis=1),
              "gaussian": lambda o: -0.5 * (np.log(2 * np.pi) + o[1] + (x - o[0]) ** 2 * np.exp(-o[1])).sum(axis=1)}
    np.testing.assert_allclose(model._log_likelihood(x, model.decode(z)), direct[likelihood](model.decode(z)),
                               rtol=1e-12)


def test_a_float64_model_draws_its_weights_in_float64_and_names_its_layers():
    """Every layer of a float64 model is drawn in float64 (not float32 draws widened), and each
    layer has the name its parameters and messages use."""
    model = VAE(6, [5], 3, likelihood="gaussian", dtype=np.float64, seed=0)
    for name, p in model.params.items():
        assert np.any(p != p.astype(np.float32).astype(np.float64)), name      # digits beyond float32
    bernoulli = VAE(6, [5], 3, dtype=np.float64, seed=0)
    assert np.any(bernoulli.params["dec.logits.W"] != bernoulli.params["dec.logits.W"].astype(np.float32))
    assert repr(model.encoder) == "MLP('enc', [Dense('fc1'), ReLU('relu1')])"
    assert repr(model.decoder) == "MLP('dec', [Dense('fc1'), ReLU('relu1')])"
    assert [repr(h) for h in (model.enc_mu, model.enc_logvar, *model.dec_heads)] == \
        ["Dense('mu')", "Dense('logvar')", "Dense('mean')", "Dense('logvar')"]
    assert repr(bernoulli.dec_logits) == "Dense('logits')"


def test_the_defaults_are_beta_1_and_seed_0():
    model = VAE(6, [5], 3)
    assert model.beta == 1.0 and model.n_samples == 1 and model.dtype == np.float32
    assert np.array_equal(model.flat_params, VAE(6, [5], 3, seed=0).flat_params)


def test_from_config_takes_every_field_of_the_configuration():
    from scratchvae.chapters.iwae import IWAE
    from scratchvae.machinery.config import TrainConfig
    config = TrainConfig(hidden=(5,), latent=3, activation="tanh", likelihood="gaussian", n_samples=2, beta=0.5,
                         seed=3)
    model = VAE.from_config(config, 6)
    assert model.config() == dict(input_dim=6, hidden_dims=[5], latent_dim=3, activation="tanh",
                                  likelihood="gaussian", n_samples=2, beta=0.5, dtype="float32")
    assert np.array_equal(model.flat_params, VAE(6, [5], 3, activation="tanh", likelihood="gaussian", seed=3).flat_params)
    iwae = IWAE.from_config(TrainConfig(hidden=(5,), latent=3, objective="iwae", iwae_k=7, seed=3), 6)
    assert iwae.k == 7


def test_eps_is_turned_into_the_models_dtype_and_drawn_in_it():
    """A float64 eps given to a float32 model is used as float32; an eps the model draws itself is
    rng.standard_normal(..., dtype=float32) of its own generator."""
    model, twin = VAE(6, [5], 3, n_samples=2, seed=4), VAE(6, [5], 3, n_samples=2, seed=4)
    x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    eps = np.random.default_rng(1).standard_normal((2, 3, 3))
    assert model.loss(x, eps) == model.loss(x, eps.astype(np.float32))
    drawn = twin.rng.standard_normal((2, 3, 3), dtype=np.float32)
    assert model.loss(x) == twin.loss(x, drawn)


@pytest.mark.parametrize("x, message", [
    (np.full((2, 6), 1 + 2j), "real numbers"),
    (np.array([[0, 1, 2, 0, 1, 0]], np.uint8), "values up to 2, like pixels 0..255"),
    (np.full((2, 6), 1.5), r"values in \[1.5, 1.5\], but the Bernoulli"),
])
def test_complex_pixels_and_values_just_above_1_are_refused(x, message):
    with pytest.raises(ValueError, match=message):
        VAE(6, [5], 3).loss(x)


@pytest.mark.parametrize("field, message", [("input_dim", "input_dim must be a positive integer"),
                                            ("latent_dim", "latent_dim must be a positive integer"),
                                            ("n_samples", "n_samples must be a positive integer")])
def test_each_size_argument_is_named_when_refused(field, message):
    args = dict(input_dim=6, hidden_dims=[4], latent_dim=2) | {field: 0}
    with pytest.raises(ValueError, match=message):
        VAE(**args)


def test_sample_draws_from_the_models_generator_or_the_one_given():
    model, twin = VAE(6, [5], 3, seed=2), VAE(6, [5], 3, seed=2)
    z = twin.rng.standard_normal((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(model.sample(4), twin.decode_mean(z))
    np.testing.assert_array_equal(model.sample(4, np.random.default_rng(5)),
                                  model.decode_mean(np.random.default_rng(5).standard_normal((4, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="^n, the number of images to generate, must be an integer >= 1, got 0$"):
        model.sample(0)


def test_use_buffers_moves_parameters_and_gradients_and_refuses_each_kind_of_wrong_array():
    model = VAE(6, [5], 3, seed=0)
    size = model.flat_params.size
    p, g = np.empty(size, np.float32), np.empty(size, np.float32)
    values = model.flat_params.copy()
    model.use_buffers(p, g)
    assert model.flat_params is p and model.flat_grads is g and np.array_equal(p, values)
    model.loss_and_grads(np.random.default_rng(0).random((2, 6)))
    assert np.shares_memory(model.grads["enc.mu.W"], g) and np.any(g != 0)
    good = np.zeros(size, np.float32)
    for name, bad in (("flat_params", np.zeros(size + 1, np.float32)), ("flat_params", np.zeros(size)),
                      ("flat_params", np.zeros(2 * size, np.float32)[::2])):
        with pytest.raises(ValueError, match=f"{name} must be a contiguous float32 vector of {size}"):
            model.use_buffers(bad, good)
    with pytest.raises(ValueError, match=f"flat_grads must be a contiguous float32 vector of {size}"):
        model.use_buffers(good, np.zeros(size))


def test_a_beta_beyond_the_float_range_is_refused():
    with pytest.raises(ValueError, match="beta .* must be a finite number >= 0"):
        VAE(6, [4], 2, beta=10 ** 400)


def test_encode_and_decode_leave_no_cache_for_a_backward_to_use():
    model = VAE(6, [5], 3, seed=0)
    model.encode(np.zeros((2, 6)))
    model.decode(np.zeros((2, 3)))
    for layer in (*model.encoder.layers, model.enc_mu, *model.decoder.layers, *model.dec_heads):
        with pytest.raises(RuntimeError, match="without a matching"):
            layer.backward(np.zeros((2, 5)))


def test_log_weights_use_the_q_they_are_given():
    model = VAE(6, [5], 3, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).random((2, 6))
    eps = np.random.default_rng(1).standard_normal((4, 2, 3))
    mu, logvar = model.encode(x)
    np.testing.assert_array_equal(model.log_weights(x, eps, q=(mu, logvar)), model.log_weights(x, eps))
    shifted = model.log_weights(x, eps, q=(mu + 1, logvar))
    z = mu + 1 + np.exp(0.5 * logvar) * eps                            # log w at z from N(mu + 1, sigma^2)
    expected = (model._log_likelihood(x, model.decode(z.reshape(8, 3)).reshape(4, 2, 6))
                - 0.5 * np.sum(z ** 2, axis=2) + 0.5 * np.sum(eps ** 2, axis=2) + 0.5 * logvar.sum(axis=1))
    np.testing.assert_allclose(shifted, expected, rtol=1e-12)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_the_forward_only_loss_is_the_same_number_as_loss_and_grads(likelihood):
    model = VAE(6, [5], 3, likelihood=likelihood, beta=0.7, seed=1)
    x, eps = tiny_problem(likelihood, L=3)
    before = model.flat_grads.copy()
    assert model.loss(x, eps) == model.loss(x, eps, q=model.encode(x))
    assert np.array_equal(model.flat_grads, before)                     # loss leaves the gradients
    assert model.loss(x, eps) == model.loss_and_grads(x, eps)


def test_a_wrong_shape_is_named_with_the_shapes_accepted():
    """The message says which shapes x and eps may have: x one flattened datapoint per row,
    eps (L, N, K) or (N, K) for L = 1; a non-data input (eps, z) says nothing of rows."""
    model = VAE(6, [5], 2, seed=0)
    with pytest.raises(ValueError) as e:
        model.loss(np.zeros((3, 5), np.float32))
    assert str(e.value) == "x must have shape (N, 6) (one flattened datapoint per row), got shape (3, 5)"
    with pytest.raises(ValueError) as e:
        model.loss(np.zeros((3, 6), np.float32), eps=np.zeros((3, 4)))
    assert str(e.value) == "eps must have shape (L, 3, 2) or (3, 2) for L = 1, got shape (3, 4)"
    with pytest.raises(ValueError) as e:
        model.decode(np.zeros((3, 4)))
    assert str(e.value).endswith("got shape (3, 4)") and "per row" not in str(e.value) and " or " not in str(e.value)


def test_a_float64_x_beyond_float32_is_refused_without_a_numpy_warning():
    """1e300 cast to float32 is inf: refused as not finite, silently (no 'overflow in cast')."""
    import warnings
    model = VAE(6, [5], 2, likelihood="gaussian", seed=0)
    x = np.zeros((2, 6)); x[1, 3] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="1 value that is nan or inf"):
            model.loss(x)
