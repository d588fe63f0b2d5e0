"""Training: stochastic gradient descent on the model's loss, one batch at a time (slide 15).

Slide 15 sums the loss over the data, L(theta, phi) = sum_i l_i, and says: use gradient
descent to learn theta and phi. With mini-batches that is

    for each epoch:
        for each batch x of shuffled training images:
            loss, parts = model.loss_and_grads(x)     # forward and backward (vae.py)
            optimizer.step()                          # Adam moves theta and phi (optim.py)

``gradient_steps`` below is that inner loop, and it is the very loop ``scratchvae train``
runs: machinery/runner.py feeds it the batches and, between its steps, does what a long run
needs (the KL warm-up ``beta_at``, progress lines, saving on Ctrl-C, a checkpoint and the
test loss after every epoch).

One line more than the recipe: a loss or gradient that turned inf or nan stops training
*before* the optimiser's step, so the parameters never take a non-finite value.

    >>> import numpy as np
    >>> from scratchvae import VAE, Adam
    >>> model = VAE(6, [5], 2, seed=0)
    >>> optimizer = Adam(model.flat_params, model.flat_grads, lr=1e-2)
    >>> batches = np.random.default_rng(0).random((3, 4, 6), dtype=np.float32)   # 3 batches of 4
    >>> [n for n, loss, parts in gradient_steps(model, optimizer, batches)]
    [4, 4, 4]
"""
import math

import numpy as np


def gradient_steps(model, optimizer, batches):
    """One gradient step per batch; yields (batch size, loss, parts) after each.

    Implements:  theta, phi <- Adam step on d loss(x_batch) / d(theta, phi)      (slide 15)
    ``batches``: arrays x (B, D) with values in [0, 1]; for the conditional VAE, pairs (x, y).
    ``model.loss_and_grads`` fills ``model.flat_grads``, which ``optimizer`` (built on
    ``model.flat_params`` and ``model.flat_grads``) turns into a step. Raises NonFiniteStep,
    before the step, when the loss or the gradient is inf or nan.
    """
    for batch in batches:
        inputs = batch if isinstance(batch, tuple) else (batch,)          # x, or (x, y)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the check reports these
            loss, parts = model.loss_and_grads(*inputs)                  # forward + backward, slide 15
            check_finite(model, loss, parts)                             # never step on inf or nan
        optimizer.step()                                                 # theta (encoder) and phi (decoder) move
        yield len(inputs[0]), loss, parts


def beta_at(step, beta, warmup_steps):
    """The KL weight at global step ``step`` (0-based): a linear warm-up from 0 to ``beta``.

    Implements:  beta_t = beta * min(1, t / warmup_steps)     (no warm-up: warmup_steps <= 0)
    Some runs weight the KL term by beta_t < 1 in their first epochs, so that the decoder
    learns to use z before the KL pulls q(z|x) to the prior; beta_t = 1 is slide 15's loss.
    """
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


class NonFiniteStep(Exception):
    """The loss or a gradient of a training step was inf or nan; ``what`` says which."""

    def __init__(self, what):
        super().__init__(what)
        self.what = what

    @classmethod
    def in_gradient(cls, grads, loss):
        """The error for a gradient whose squared norm is not finite (the fused step raises it too).

        Names the first parameter with an inf or nan entry; if every entry is finite, the
        squared norm overflowed.
        """
        bad = next((name for name, g in grads.items() if not np.isfinite(g).all()), None)
        return cls(f"gradient is not finite (first in parameter {bad}) while the loss was {loss:.6g}"
                   if bad else f"gradient overflows (its squared norm is inf) while the loss was {loss:.6g}")


def check_finite(model, loss, parts):
    """Raise NonFiniteStep describing the first non-finite quantity (the loss or one of its
    parts, then the gradient).

    The parts count too: the trainer sums them over the epoch, and a finite loss can hide an
    infinite part (a KL whose batch mean overflows float32, weighted by a tiny beta); the fused
    step refuses the same. The gradient test is the fused step's (fast/fused_step.py): its
    squared norm g . g must be finite, which also refuses a finite gradient so large that
    g . g overflows (|g| above 1.8e19 in float32), so that both steps stop at the same step
    with the same message.
    """
    if not (math.isfinite(loss) and all(math.isfinite(v) for v in parts.values())):
        kl = f", KL {parts['kl']}" if "kl" in parts else ""
        raise NonFiniteStep(f"loss is {loss} (rec {parts['rec']}{kl})")
    flat = model.flat_grads
    if not np.isfinite(np.dot(flat, flat)):                   # |g|^2, one BLAS pass: inf/nan propagate
        raise NonFiniteStep.in_gradient(model.grads, loss)
