"""The training loop of train.py: one gradient step per batch, never a step on inf or nan."""
import numpy as np
import pytest

from scratchvae import VAE, Adam
from scratchvae.chapters.cvae import CVAE
from scratchvae.train import NonFiniteStep, beta_at, check_finite, gradient_steps


def batches(n_batches=3, B=4, D=6, seed=0):
    return list(np.random.default_rng(seed).random((n_batches, B, D), dtype=np.float32))


def test_gradient_steps_are_loss_and_grads_then_adam_for_each_batch():
    """The loop, against the same two calls written out by hand, eps drawn from the same stream."""
    looped, by_hand = VAE(6, [5], 2, seed=3), VAE(6, [5], 2, seed=3)
    opt_looped = Adam(looped.flat_params, looped.flat_grads, lr=1e-2)
    opt_hand = Adam(by_hand.flat_params, by_hand.flat_grads, lr=1e-2)
    data = batches(B=4) + [batches(1, B=2, seed=1)[0]]               # a short last batch
    steps = list(gradient_steps(looped, opt_looped, data))
    for (B, loss, parts), x in zip(steps, data):
        expected_loss, expected_parts = by_hand.loss_and_grads(x)
        opt_hand.step()
        assert (B, loss, parts) == (len(x), expected_loss, expected_parts)
    assert [B for B, _, _ in steps] == [4, 4, 4, 2]
    assert np.array_equal(looped.flat_params, by_hand.flat_params) and opt_looped.t == 4


def test_a_conditional_model_takes_its_batches_as_image_label_pairs():
    model = CVAE(6, [5], 2, n_classes=3, seed=0)
    optimizer = Adam(model.flat_params, model.flat_grads)
    x, y = batches(1)[0], np.array([0, 1, 2, 1])
    (B, loss, parts), = gradient_steps(model, optimizer, [(x, y)])
    reference = CVAE(6, [5], 2, n_classes=3, seed=0)
    assert B == 4 and loss == reference.loss_and_grads(x, y)[0]


def test_the_step_is_not_taken_when_the_loss_or_the_gradient_is_not_finite():
    model = VAE(6, [5], 2, seed=0)
    optimizer = Adam(model.flat_params, model.flat_grads)
    model.params["dec.logits.b"][2] = np.nan                         # every image's loss is nan
    before = model.flat_params.copy()
    with pytest.raises(NonFiniteStep, match="loss is nan"):
        list(gradient_steps(model, optimizer, batches()))
    assert np.array_equal(model.flat_params, before, equal_nan=True) and optimizer.t == 0

    model = VAE(6, [5], 2, seed=0)
    model.flat_grads[:] = 0.0
    model.grads["enc.mu.W"][0, 1] = np.inf
    with pytest.raises(NonFiniteStep, match=r"first in parameter enc\.mu\.W"):
        check_finite(model, 1.0, {"rec": 1.0, "kl": 0.0})
    model.grads["enc.mu.W"][0, 1] = 3e19                             # finite, but its square is not (float32)
    with pytest.raises(NonFiniteStep, match="squared norm is inf"):
        check_finite(model, 1.0, {"rec": 1.0, "kl": 0.0})
    model.grads["enc.mu.W"][0, 1] = 1e18
    check_finite(model, 1.0, {"rec": 1.0, "kl": 0.0})               # large and finite: fine


def test_beta_at_is_a_linear_warm_up_to_beta():
    assert [beta_at(t, 2.0, 8) for t in (0, 2, 4, 8, 100)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert beta_at(5, 0.5, 0) == 0.5 and beta_at(5, 0.5, -1) == 0.5
