"""Adam against steps worked out by hand; state round trips; training lowers the loss."""
import numpy as np
import pytest

from scratchvae import SGD, VAE, Adam


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
    from scratchvae.data import load
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
