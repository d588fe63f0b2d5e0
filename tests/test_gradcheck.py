"""The gradient checker itself: it must be right, and it must catch a wrong backward."""
import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.gradcheck import (check_model_gradients, numerical_gradient,
                                  numerical_gradient_array, rel_error)


def test_numerical_gradient_of_known_functions():
    x = np.array([[0.3, -1.2], [2.0, 0.7]])
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(np.sin(v)), x), np.cos(x), rtol=1e-9)
    dout = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(numerical_gradient_array(np.exp, x, dout), dout * np.exp(x), rtol=1e-9)


def test_numerical_gradient_restores_x():
    x = np.random.default_rng(0).standard_normal(5)
    before = x.copy()
    numerical_gradient(lambda v: np.sum(v ** 2), x)
    np.testing.assert_array_equal(x, before)


def test_float32_is_refused_with_a_reason():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(np.sum, np.ones(3, dtype=np.float32))


def test_rel_error():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0, -1.0], [1.0, -1.1]) == pytest.approx(0.1 / 2.1)
    assert rel_error([0.0], [0.0]) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        rel_error(np.ones(2), np.ones(3))


def test_the_checker_catches_a_wrong_backward(monkeypatch):
    """A classic slip: dKL/dlogvar written as exp(logvar) - 1, the factor 1/2 forgotten.
    The whole-model check must flag the parameters of the encoder's logvar head."""
    import scratchvae.vae
    model = VAE(6, [5], 2, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, eps = rng.random((4, 6)), rng.standard_normal((1, 4, 2))
    assert max(check_model_gradients(model, x, eps).values()) < 1e-7
    monkeypatch.setattr(scratchvae.vae, "kl_standard_normal_grads",
                        lambda mu, logvar: (mu, np.expm1(logvar)))
    errors = check_model_gradients(model, x, eps)
    assert errors["enc.logvar.b"] > 1e-3 and errors["enc.logvar.W"] > 1e-3
    assert errors["dec.logits.W"] < 1e-7                 # the decoder's gradients are still right


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eps_none_is_frozen_once_not_redrawn(seed):
    """eps=None must not redraw eps on every evaluation (that made every gradient look wrong)."""
    model = VAE(5, [4], 2, n_samples=2, dtype=np.float64, seed=seed)
    x = np.random.default_rng(seed).random((3, 5))
    errors = check_model_gradients(model, x, None)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < 1e-6, errors


# ------------------------------------------------------------------ every kind of model
# check_model_gradients failed on the autoencoder (it has no rng), passed a conditional VAE's
# eps as its labels, and compared the IWAE's gradient of -L_k with differences of the ELBO.
from scratchvae.chapters.autoencoder import Autoencoder
from scratchvae.chapters.cvae import CVAE
from scratchvae.chapters.iwae import IWAE

KINDS = {"vae": lambda: VAE(6, [5], 2, n_samples=2, dtype=np.float64, seed=0),
         "iwae": lambda: IWAE(6, [5], 2, k=3, dtype=np.float64, seed=0),
         "cvae": lambda: CVAE(6, [5], 2, n_classes=3, dtype=np.float64, seed=0),
         "autoencoder": lambda: Autoencoder(6, [5], 2, dtype=np.float64, seed=0)}
# a slip in each kind's own backward (its forward untouched), and the parameters it must show
SLIPS = {"vae": ("scratchvae.vae.kl_standard_normal_grads", lambda mu, logvar: (mu, np.expm1(logvar)),
                 "enc.logvar.b"),
         "iwae": ("scratchvae.chapters.iwae.gaussian_log_density_grads",       # q's dlogvar without its 1/2
                  lambda z, m, lv: (lambda g: (g[0], 2 * g[1]))(_gaussian_grads(z, m, lv)), "enc.logvar.b"),
         "cvae": ("scratchvae.chapters.cvae.kl_standard_normal_grads", lambda mu, logvar: (2 * mu, logvar),
                  "enc.mu.b"),
         "autoencoder": ("scratchvae.chapters.autoencoder.sigmoid", lambda l: 1 / (1 + np.exp(-1.1 * l)),
                         "dec.logits.W")}


def _gaussian_grads(*args):
    from scratchvae.losses import gaussian_log_density_grads
    return gaussian_log_density_grads(*args)


def _inputs(model, rng):
    x = rng.random((4, 6))
    y = {"y": np.array([0, 2, 1, 2])} if model.conditional else {}
    return x, y


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_is_checked_against_its_own_loss_and_a_slip_in_its_backward_shows(kind, monkeypatch):
    model, rng = KINDS[kind](), np.random.default_rng(1)
    x, y = _inputs(model, rng)
    errors = check_model_gradients(model, x, **y)                       # eps drawn once, as loss_and_grads draws it
    assert set(errors) == set(model.params) and max(errors.values()) < 1e-6, errors
    if "eps" in model.random_streams:                                   # a given eps: the same function of it
        eps = rng.standard_normal((3, 4, 2))
        assert max(check_model_gradients(model, x, eps, **y).values()) < 1e-6
    where, slip, shows = SLIPS[kind]
    monkeypatch.setattr(where, slip)
    errors = check_model_gradients(model, x, **y)
    assert errors[shows] > 1e-3, errors


def test_a_misused_checker_says_what_each_kind_takes():
    x = np.random.default_rng(0).random((4, 6))
    with pytest.raises(ValueError, match=r"a conditional VAE is given the labels: .*y=labels"):
        check_model_gradients(KINDS["cvae"](), x)
    with pytest.raises(ValueError, match="a VAE is not given labels"):
        check_model_gradients(KINDS["vae"](), x, y=np.zeros(4, int))
    with pytest.raises(ValueError, match="an autoencoder draws no eps"):
        check_model_gradients(KINDS["autoencoder"](), x, np.zeros((1, 4, 2)))
    with pytest.raises(TypeError, match="float64"):
        check_model_gradients(VAE(6, [5], 2), x)


def test_the_step_h_is_the_one_asked_for():
    """Central differences of x^3 with a large h: ((x + h)^3 - (x - h)^3) / 2h = 3 x^2 + h^2 exactly,
    so the h actually used shows in the result (for the array version and the model check too)."""
    x = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(v ** 3), x, h=0.5), 3 * x ** 2 + 0.25, rtol=1e-12)
    dout = np.array([1.0, 2.0, -1.0])
    np.testing.assert_allclose(numerical_gradient_array(lambda v: v ** 3, x, dout, h=0.5), dout * (3 * x ** 2 + 0.25),
                               rtol=1e-12)
    model = VAE(4, [3], 2, dtype=np.float64, seed=0)
    data = np.random.default_rng(0).random((3, 4))
    fine, coarse = check_model_gradients(model, data, h=1e-5), check_model_gradients(model, data, h=0.3)
    assert max(fine.values()) < 1e-7 < max(coarse.values())              # a step of 0.3 is visibly worse


def test_rel_error_of_empty_single_and_tiny_gradients():
    assert rel_error([], []) == 0.0
    assert rel_error([1.0], [2.0]) == pytest.approx(1 / 3)                # |1 - 2| / (1 + 2)
    assert rel_error([1e-9], [0.0]) == pytest.approx(0.1)                 # the scale is at least 1e-8
    assert rel_error([[3.0, -1.0]], [[3.0, 1.0]]) == pytest.approx(2 / 6)


def test_the_eps_given_is_the_eps_checked():
    """check_model_gradients(model, x, eps) differentiates the loss at that eps, not at a draw."""
    model = VAE(6, [5], 2, dtype=np.float64, seed=0)
    rng = np.random.default_rng(3)
    x, eps = rng.random((4, 6)), rng.standard_normal((1, 4, 2))
    seen = []
    loss_and_grads = model.loss_and_grads
    model.loss_and_grads = lambda x, eps: seen.append(eps) or loss_and_grads(x, eps)
    check_model_gradients(model, x, eps=eps)
    assert seen and all(e is eps for e in seen)
