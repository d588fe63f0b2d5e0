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
