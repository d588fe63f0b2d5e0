"""Train with your own code: the demo's VAE, once with the learner's functions, once with scratchvae's.

``scratchvae workbook train WORKBOOK`` trains the same model from the same initial weights,
on the same batches with the same noise eps, twice:

    reference:  scratchvae's own step, VAE.loss_and_grads (vae.py) and Adam (optim.py), in
                train.py's loop: the very run of `scratchvae train` with the same flags
    yours:      the same loop with the learner's vae_forward and vae_backward (exercise 5,
                which call their pieces of exercises 1-4) and adam_step (exercise 6);
                a function not written yet is scratchvae's own (said before training)

After every epoch both models are measured the same way, by scratchvae's own evaluation of
the test negative ELBO (machinery/evaluate.py), so a slip that makes the learner's *reported*
loss look better (a KL with the wrong sign) still shows as a worse model. The two curves are
drawn side by side; a subtle slip, such as a gradient off by a factor 1/2 that still trains,
shows as a curve above the reference's.
"""
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..machinery.data import iterate_batches
from ..machinery.evaluate import evaluate_losses
from ..machinery.files import write_bytes_atomic
from ..machinery.runner import build_model, derive_streams
from ..optim import Adam
from ..train import NonFiniteStep, gradient_steps
from .checks import PARAM_NAMES


@dataclass
class Own:
    """The learner's functions to train with; None where scratchvae's own are used."""
    vae_forward: Optional[Callable] = None
    vae_backward: Optional[Callable] = None
    adam_step: Optional[Callable] = None


@dataclass
class Run:
    """One training run: the loss of every step, and each epoch's record (epoch 0: before training)."""
    label: str
    step_losses: list = field(default_factory=list)
    epochs: list = field(default_factory=list)        # dicts: epoch, step, train_loss, test_nelbo, test_rec, test_kl
    failure: Optional[str] = None                     # why it stopped early (the learner's exception, a nan)


class OwnAdam:
    """The learner's adam_step behind the optimiser's interface (step()): t counts from 1."""

    def __init__(self, model, adam_step, lr):
        self.model, self.adam_step, self.lr, self.t = model, adam_step, lr, 0
        self.m = np.zeros_like(model.flat_params)
        self.v = np.zeros_like(model.flat_params)

    def step(self):
        self.t += 1
        w, self.m, self.v = self.adam_step(self.model.flat_params, self.model.flat_grads, self.m, self.v,
                                           self.t, self.lr)
        self.model.flat_params[...] = w               # (a no-op when adam_step updated w in place)


def own_gradient_steps(model, optimizer, batches, own):
    """train.py's gradient_steps with the learner's forward and backward in place of loss_and_grads.

    eps is drawn from the model's generator exactly as VAE.loss_and_grads draws it, so that
    the same code gives the same run.
    """
    for x in batches:
        eps = model.rng.standard_normal((model.n_samples, len(x), model.latent_dim), dtype=model.dtype)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, cache = own.vae_forward(model.params, x, eps)
            grads = own.vae_backward(model.params, x, eps, cache)
            for name in PARAM_NAMES:
                if name not in grads:
                    raise ValueError(f"vae_backward returned no gradient for {name}")
                model.grads[name][...] = grads[name]
            loss = float(loss)
            if not math.isfinite(loss):
                raise NonFiniteStep(f"loss your vae_forward returned is {loss}")
            flat = model.flat_grads
            if not np.isfinite(np.dot(flat, flat)):           # as train.py's check_finite
                raise NonFiniteStep.in_gradient(model.grads, loss)
        optimizer.step()
        yield len(x), loss, {}


def run(config, train_images, test_images, own=None, label="reference", progress=None):
    """Train ``config``'s VAE for config.epochs epochs; return a Run.

    ``own``: the learner's functions (None: all of scratchvae's). Exceptions from them end
    the run early (``Run.failure``) and are re-raised as LearnerFailed with the run so far.
    """
    D = train_images.shape[1]
    model = build_model(config, D)                     # the initial weights of `scratchvae train --seed`
    streams = derive_streams(config.seed)
    data_rng = np.random.default_rng(streams["data"])
    mine = own if own is not None else Own()
    optimizer = (OwnAdam(model, mine.adam_step, config.lr) if mine.adam_step is not None
                 else Adam(model.flat_params, model.flat_grads, lr=config.lr))
    x_buffer = np.empty((min(config.batch_size, len(train_images)), D), dtype=np.float32)
    result = Run(label)
    result.epochs.append(_measure(model, config, test_images, streams, epoch=0, step=0, train_loss=None))
    step = 0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        batches = iterate_batches(train_images, config.batch_size, data_rng, binarize=config.binarize,
                                  shuffle=True, out=x_buffer)
        steps = (own_gradient_steps(model, optimizer, batches, mine) if mine.vae_backward is not None
                 else gradient_steps(model, optimizer, batches))
        n = total = 0.0
        try:
            for B, loss, _ in steps:
                step += 1
                result.step_losses.append(loss)
                n, total = n + B, total + loss * B
        except NonFiniteStep as e:
            result.failure = f"epoch {epoch}, step {step + 1}: the {e.what}; training stopped before that step"
            return result
        except Exception as e:                          # noqa: BLE001 (the learner's code: reported, with its line)
            raise LearnerFailed(result, e, epoch, step + 1) from e
        result.epochs.append(_measure(model, config, test_images, streams, epoch, step, total / n))
        if progress is not None:
            progress(result, time.perf_counter() - start)
    return result


class LearnerFailed(Exception):
    """The learner's code raised during training: ``run`` holds what was trained before."""

    def __init__(self, run_so_far, exc, epoch, step):
        super().__init__(str(exc))
        self.run, self.exc, self.epoch, self.step = run_so_far, exc, epoch, step


def _measure(model, config, test_images, streams, epoch, step, train_loss):
    """The test negative ELBO by scratchvae's own evaluation, as the trainer records it."""
    test = evaluate_losses(model, test_images, batch_size=config.eval_batch, seed=streams["eval"],
                           binarize=config.binarize)
    return {"epoch": epoch, "step": step, "train_loss": train_loss, "test_nelbo": test["nelbo"],
            "test_rec": test["rec"], "test_kl": test["kl"]}


def plot_runs(yours, reference, path, title="", dpi=100):
    """The two runs side by side: the loss of every training step, and the test negative ELBO per epoch.

    Left: each step's loss as that run's own code computed it (the learner's vae_forward for
    theirs), with a running mean over an epoch's tenth; right: scratchvae's evaluation of
    both models after every epoch (epoch 0: the common starting point). Written atomically.
    Returns the numbers drawn: {label: (steps, running mean)} for the left panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    drawn = {}
    for run_, colour, style, width in ((reference, "tab:blue", "-", 2.6), (yours, "tab:red", "--", 1.6)):
        losses = np.asarray(run_.step_losses, dtype=np.float64)
        steps = np.arange(1, len(losses) + 1)
        window = max(1, len(losses) // (10 * max(1, len(run_.epochs) - 1)))
        smooth = running_mean(losses, window)
        drawn[run_.label] = (steps, smooth)
        if len(losses):
            left.plot(steps, losses, color=colour, alpha=0.2, linewidth=0.8)
            left.plot(steps, smooth, style, color=colour, linewidth=width,
                      label=f"{run_.label} (mean of {window} steps)")
        epochs = [e["epoch"] for e in run_.epochs]
        nelbo = [e["test_nelbo"] for e in run_.epochs]
        right.plot(epochs, nelbo, style, marker="o", color=colour, linewidth=width,
                   label=f"{run_.label}: {nelbo[-1]:.2f}")
    finite = [v for r in (yours, reference) for v in r.step_losses if math.isfinite(v)]
    if finite:                                          # the first steps' losses would flatten the rest
        lo, hi = np.percentile(finite, [0, 98])
        left.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    later = [e["test_nelbo"] for r in (yours, reference) for e in r.epochs[1:] if math.isfinite(e["test_nelbo"])]
    if later:                                           # epoch 0 (untrained) would flatten the rest
        lo, hi = min(later), max(later)
        right.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.6 * (hi - lo + 1e-3))
    left.set(xlabel="training step", ylabel="loss (nats per image)",
             title="training loss, as each run's code computes it")
    right.set(xlabel="epoch (0: before training)", ylabel="test negative ELBO (nats per image)",
              title="test -ELBO, measured by scratchvae")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    write_bytes_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return drawn


def running_mean(values, window):
    """Mean of the last ``window`` values at each position (fewer at the start).  (n,) -> (n,)"""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts
