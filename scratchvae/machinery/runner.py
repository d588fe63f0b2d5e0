"""The training runner: train.py's loop, with what a long run needs around it.

``train(config)`` runs the loop of train.py, ``gradient_steps`` (batches -> loss_and_grads ->
Adam.step), for any kind of model of models.py: the class of ``config.model`` (and, for a
VAE, ``config.objective``) builds itself and trains its own ``loss_and_grads``. Around the
loop this file adds what the lecture does not need and a real run does:

    for each epoch:
        gradient_steps(model, optimizer, shuffled batches)     # train.py; the KL warm-up between steps
        evaluate the test loss (evaluate.py); save a checkpoint and the history (run_dir.py)
    and at every step: progress lines (progress.py), and on Ctrl-C a checkpoint, then stop

with ``TrainConfig`` (config.py: every knob, one comment each) beside it.

Randomness: ONE master seed (``config.seed``) gives every random stream of a run, as
children of ``numpy.random.SeedSequence(seed)``:
    child 0  initial weights          (made inside VAE(seed=seed))
    child 1  eps of the reparameterisation, model.rng  (also inside VAE)
    child 2  the data: each epoch's shuffle and the dynamic binarisation draws
             (``data.iterate_batches`` draws both from one generator; a conditional
             model's labels follow their images, drawing nothing)
    child 3  evaluation: the noise of the test negative ELBO, the same every epoch
So ``VAE(..., seed=s)`` starts from exactly the weights of ``train`` with ``seed=s`` (and
``Autoencoder(..., seed=s)``, ``CVAE(..., seed=s)`` likewise; the autoencoder draws no eps).

Resuming is exact. A checkpoint is written at the end of every epoch and, on Ctrl-C (or
SIGTERM, SIGHUP), at the step boundary where training stopped. It holds the parameters, Adam's moments, the
eps generator, the data generator's state *at the start of the epoch*, the step within
the epoch and the running sums of the epoch's losses. Resuming mid-epoch replays the
epoch's batches from that state without training on them (cheap: no forward pass), so the
remaining batches, eps draws and updates are the very ones of the uninterrupted run:
same losses, same parameters, bit for bit (tests/machinery/test_runner.py checks this).
"""
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from ..fast.fused_step import FusedStep, unsupported_reason
from ..optim import Adam
from ..train import NonFiniteStep, beta_at, gradient_steps
from .checkpoint import load_checkpoint
from .config import ENGINES, OBJECTIVES, RESUMABLE_CHANGES, ConfigError, TrainConfig, check_resumable
from .data import DataError, iterate_batches, load
from .evaluate import evaluate_losses, substream
from .models import model_class
from .progress import Log, describe_run
from .stops import at_step_boundary
from .run_dir import (CHECKPOINT_NAME, HISTORY_NAMES, check_writable, exclusive, file_identity, fingerprint,
                      remove_stale_temporaries, restore, save, write_history)

# what ``from scratchvae.machinery.runner import ...`` offers (the configuration and the run
# directory's names live in config.py and run_dir.py)
__all__ = ["train", "TrainConfig", "ConfigError", "TrainingDiverged", "TrainingInterrupted", "build_model",
           "derive_streams", "fingerprint", "CHECKPOINT_NAME", "HISTORY_NAMES", "ENGINES", "OBJECTIVES",
           "RESUMABLE_CHANGES"]


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became inf or nan; the parameters were not updated with it."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a step boundary; ``checkpoint`` is where the state was saved.

    Also raised for SIGTERM and SIGHUP. Attributes: checkpoint (Path or None when
    ``config.out`` is None), epoch, step (within the epoch), model, history, signum (the
    signal that stopped it; a shell reports 128 + signum).
    """

    def __init__(self, message, *, checkpoint, epoch, step, model, history, signum=signal.SIGINT):
        super().__init__(message)
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step
        self.model, self.history, self.signum = model, history, signum


def derive_streams(seed):
    """The run's random streams from its master seed (see the module docstring).

    Returns a dict of SeedSequences: "init" and "eps" (what VAE(seed=seed) uses
    internally; Autoencoder(seed=seed) uses "init" only), "data", "eval".
    """
    return {name: substream(seed, i) for i, name in enumerate(("init", "eps", "data", "eval"))}


# ---------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------

def train(config=None, *, resume=None, log=None, train_images=None, test_images=None, overwrite=False,
          train_labels=None, test_labels=None):
    """Train the model ``config`` describes (any kind of models.py); return ``(model, history)``.

    Parameters
    ----------
    config : TrainConfig, optional when resuming (the checkpoint's configuration is used;
        if given, only the fields in RESUMABLE_CHANGES may differ from it).
    resume : path of a checkpoint to continue from. ``config.epochs`` is the total to reach.
    log : text stream for progress (default sys.stderr; False = silent). On a terminal an
        in-place progress line is updated within each epoch; otherwise one line per epoch.
    train_images, test_images : (N, D) uint8 arrays used instead of loading the splits
        (tests and demos on small or synthetic data).
    train_labels, test_labels : (N,) labels 0..9 of those images; a conditional model needs
        them (loaded from the split's IDX label file otherwise), the others ignore them.
    overwrite : allow a fresh run to replace an existing ``out/checkpoint.npz``.

    Returns
    -------
    model : the trained model, of the class models.model_class(config.model, config.objective)
    history : list[dict]     one record per epoch: epoch, step, beta, train_loss, train_nelbo,
                             train_rec, train_kl (running means during the epoch),
                             train_eval_nelbo, train_eval_rec, train_eval_kl (the first
                             train_eval_n training images, as many as the test images, evaluated
                             after the epoch like the test), test_nelbo, test_rec, test_kl,
                             test_active_units (latent units in use, evaluate.active_units),
                             img_per_s, seconds (all losses in nats per image): the model's
                             history_fields. The autoencoder's: epoch, step, train_loss, train_rec, train_eval_rec,
                             train_eval_n, test_rec (-log p(x|z) at z = encoder(x)), img_per_s, seconds
    Writes (when ``config.out`` is set) out/checkpoint.npz, out/history.json, out/history.csv
    after every epoch. Raises TrainingDiverged (last good checkpoint kept) and
    TrainingInterrupted (on Ctrl-C, SIGTERM or SIGHUP, after saving), and ConfigError when
    another training holds ``config.out`` (one run at a time per directory).
    """
    checkpoint = None
    if resume is not None:
        resume_stat = file_identity(resume)             # to see whether it changes before we hold the lock
        checkpoint = load_checkpoint(resume)
        saved = TrainConfig.from_dict(checkpoint["config"])
        config = saved if config is None else config
        check_resumable(saved, config, checkpoint["path"])
    if not isinstance(config, TrainConfig):
        raise TypeError("train() needs a TrainConfig (or resume=<checkpoint path>)")
    config.validate()
    out = Path(config.out) if config.out is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    log = Log(log)
    given = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    if out is None:
        return _train(config, checkpoint, None, log, given)
    check_writable(out)                                # before any data is loaded or trained on
    with exclusive(out):                               # one run at a time writes into a run directory
        if ckpt_path.exists() and not overwrite and (
                checkpoint is None or ckpt_path.resolve() != checkpoint["path"].resolve()):
            raise ConfigError(
                f"{ckpt_path} already exists and is not the checkpoint being resumed: choose "
                f"another output directory (--out)" if checkpoint is not None else
                f"{ckpt_path} already exists: resume it (scratchvae resume {ckpt_path}), "
                f"choose another output directory, or overwrite it (--overwrite)")
        if checkpoint is not None and file_identity(resume) != resume_stat:
            raise ConfigError(f"{resume} was rewritten while this run started (by another "
                              f"training?); start the resume again")
        remove_stale_temporaries(out, log)
        if checkpoint is not None and ckpt_path.resolve() == checkpoint["path"].resolve():
            write_history(out, checkpoint["history"])  # the checkpoint's history is the true one
        return _train(config, checkpoint, ckpt_path, log, given)


def _train(config, checkpoint, ckpt_path, log, given):
    """The body of ``train``: data, model, the loop; ckpt_path None = write nothing.

    ``given``: {"train": (images, labels), "test": (...)}, None where the split is loaded.
    Runs while ``train`` holds the run directory's lock.
    """
    resuming = checkpoint is not None
    # ---- data, model, optimiser, random streams ----------------------------------------
    train_x, train_y = _data(*given["train"], config, config.train_split, "train")  # (N, D) uint8; (N,) or None
    test_x, test_y = _data(*given["test"], config, config.test_split, "test")       # (M, D) uint8; (M,) or None
    N, D = train_x.shape
    if test_x.shape[1] != D:
        raise ValueError(f"train and test images differ in size: {D} vs {test_x.shape[1]} pixels")
    data = {"train": fingerprint(train_x, train_y), "test": fingerprint(test_x, test_y)}   # resuming checks it
    model = build_model(config, D)
    if train_y is not None:
        _check_labels(train_y, test_y, model.n_classes)
    variational = model.variational                    # an ELBO to log: rec and KL (else -log p(x|z) alone)
    if config.engine == "fused":
        fused_refuses = unsupported_reason(model)
        if fused_refuses:
            raise ConfigError(f"engine 'fused' cannot train this model: {fused_refuses}; "
                              f"use engine 'plain' (the default)")
    optimizer = Adam(model.flat_params, model.flat_grads, lr=config.lr)
    streams = derive_streams(config.seed)
    data_rng = np.random.default_rng(streams["data"])
    steps_per_epoch = math.ceil(N / config.batch_size)
    history, position = [], {"epochs_done": 0, "step_in_epoch": 0, "global_step": 0,
                             "sums": _zero_sums(), "seconds": 0.0, "train_seconds": 0.0}
    last_saved = None                                  # what the checkpoint on disk holds, for messages
    if checkpoint is not None:
        history, position = restore(checkpoint, model, optimizer, data_rng, config, data, log)
        last_saved = _where(position["epochs_done"], position["step_in_epoch"])
    if position["epochs_done"] >= config.epochs:
        if config.epochs < position["epochs_done"]:
            raise ConfigError(f"epochs={config.epochs} but the checkpoint has already completed "
                              f"{position['epochs_done']}; ask for more epochs to train further")
        log.line(f"nothing to train: {position['epochs_done']} of {config.epochs} epochs done")
        return model, history
    log.line(describe_run(model, config, N, len(test_x), steps_per_epoch, ckpt_path, position))

    x_buffer = np.empty((min(config.batch_size, N), D), dtype=np.float32)   # every batch lands here
    session_epoch_seconds = []
    with at_step_boundary() as interrupt, _engine(config, model, optimizer, min(config.batch_size, N)) as fused:
        for epoch in range(position["epochs_done"] + 1, config.epochs + 1):
            data_state_at_epoch_start = data_rng.bit_generator.state
            batches = iterate_batches(train_x, config.batch_size, data_rng, binarize=config.binarize,
                                      shuffle=True, out=x_buffer if fused is None else fused.x_buffer,
                                      labels=train_y)        # with labels: (x, y) pairs
            for _ in range(position["step_in_epoch"]):       # resuming mid-epoch: replay, don't train
                next(batches)
            sums, first_step = position["sums"], position["step_in_epoch"] + 1
            step, global_step = position["step_in_epoch"], position["global_step"]
            t_start, seconds_before = time.perf_counter(), position["seconds"]
            train_seconds_before = position["train_seconds"]
            steps = gradient_steps(model, optimizer, batches) if fused is None else fused.gradient_steps(batches)
            warmup_steps = config.warmup_epochs * steps_per_epoch
            if variational:
                model.beta = beta_at(global_step, config.beta, warmup_steps)    # the KL weight of the next step
            try:
                for step, (B, loss, parts) in enumerate(steps, start=first_step):   # train.py: the loop
                    global_step += 1
                    sums["n"] += B
                    sums["loss"] += loss * B
                    sums["rec"] += parts["rec"] * B
                    sums["kl"] += parts.get("kl", 0.0) * B          # the autoencoder's stays 0: no KL
                    elapsed = time.perf_counter() - t_start
                    log.progress(epoch, config.epochs, step, steps_per_epoch, sums, elapsed,
                                 train_seconds_before, step - first_step + 1, kl=variational)
                    if interrupt.requested and step < steps_per_epoch:
                        position = {"epochs_done": epoch - 1, "step_in_epoch": step,
                                    "global_step": global_step, "sums": sums,
                                    "seconds": seconds_before + elapsed,
                                    "train_seconds": train_seconds_before + elapsed}
                        rng_states = _rng_states(model, data_state_at_epoch_start)
                        save(ckpt_path, model, optimizer, config, history, rng_states, position, data)
                        raise _interrupted(ckpt_path, epoch, step, steps_per_epoch, model, history, log,
                                           interrupt.signum)
                    if variational:
                        model.beta = beta_at(global_step, config.beta, warmup_steps)
            except NonFiniteStep as e:                       # raised before the step: nothing was updated
                raise TrainingDiverged(_diverged_message(e.what, epoch, step + 1, steps_per_epoch,
                                                         global_step + 1, config, ckpt_path, last_saved,
                                                         resuming, variational)) from None
            train_seconds = train_seconds_before + time.perf_counter() - t_start

            # ---- end of epoch: evaluate, record, save --------------------------------------
            # the test number, and the same on training images, after the epoch as the test's: the
            # train_* sums above are running means *during* the epoch, taken while the model still changed
            n_seen = min(N, len(test_x))
            with nullcontext() if fused is None else fused.between_steps():   # BLAS on both cores
                test = _evaluate(model, config, test_x, test_y, streams["eval"])
                seen = _evaluate(model, config, train_x[:n_seen], None if train_y is None else train_y[:n_seen],
                                 streams["eval"])
            loss_name = "test negative ELBO" if variational else "test reconstruction -log p(x|z)"
            test_loss, seen_loss = (test["nelbo"], seen["nelbo"]) if variational else (test["rec"], seen["rec"])
            if not math.isfinite(test_loss + seen_loss):    # the guard covers the evaluation too:
                kl = f", KL {test['kl']}" if variational else ""
                raise TrainingDiverged(                      # this epoch's parameters are not saved
                    f"training diverged in epoch {epoch}: every step's loss was finite, but the "
                    f"{loss_name} after it is {test_loss} (rec {test['rec']}{kl}; on training "
                    f"images {seen_loss}); {_kept(ckpt_path, last_saved)}. "
                    f"{_advice(config, resuming, variational)}")
            n = sums["n"]
            if not variational:                              # the autoencoder: -log p(x|z) is its whole loss
                record = {"epoch": epoch, "step": global_step, "train_loss": sums["loss"] / n,
                          "train_rec": sums["rec"] / n, "train_eval_rec": seen["rec"],
                          "train_eval_n": seen["n"], "test_rec": test["rec"]}
            else:
                record = {"epoch": epoch, "step": global_step, "beta": model.beta,
                          "train_loss": sums["loss"] / n, "train_nelbo": (sums["rec"] + sums["kl"]) / n,
                          "train_rec": sums["rec"] / n, "train_kl": sums["kl"] / n,
                          "train_eval_nelbo": seen["nelbo"], "train_eval_rec": seen["rec"],
                          "train_eval_kl": seen["kl"], "train_eval_n": seen["n"],
                          "test_nelbo": test["nelbo"], "test_rec": test["rec"], "test_kl": test["kl"],
                          "test_active_units": test["active_units"]}     # Var_x E_q[z_u] > 0.01 (evaluate.py)
            record.update(img_per_s=n / train_seconds if train_seconds > 0 else None,   # JSON has no NaN
                          seconds=seconds_before + time.perf_counter() - t_start)
            history.append(record)
            position = {"epochs_done": epoch, "step_in_epoch": 0, "global_step": global_step,
                        "sums": _zero_sums(), "seconds": 0.0, "train_seconds": 0.0}
            rng_states = _rng_states(model, data_rng.bit_generator.state)
            save(ckpt_path, model, optimizer, config, history, rng_states, position, data)
            last_saved = _where(epoch, 0)
            session_epoch_seconds.append(time.perf_counter() - t_start)
            left = (config.epochs - epoch) * float(np.mean(session_epoch_seconds))
            log.epoch(record, config.epochs, left)
            if interrupt.requested:                      # (after the last epoch too: a stop is never lost)
                raise _interrupted(ckpt_path, epoch + 1, 0, steps_per_epoch, model, history, log,
                                   interrupt.signum, complete=epoch == config.epochs)
    return model, history


def build_model(config, D):
    """The untrained model of ``config`` for D-pixel images: the class of its kind and objective
    (models.py) builds itself. Each draws its initial weights from child 0 of ``config.seed``."""
    return model_class(config.model, config.objective).from_config(config, D)


def _evaluate(model, config, images, labels, seed):
    """After an epoch: the model's loss as its class measures it (the negative ELBO, or -log p(x|z))."""
    return evaluate_losses(model, images, labels=labels, batch_size=config.eval_batch, seed=seed,
                           binarize=config.binarize)


def _rng_states(model, data_state):
    """What rng.json holds: the model's own generators (its random_streams: the eps generator,
    or none for the autoencoder) and the data's."""
    eps = {"eps": model.rng.bit_generator.state} if "eps" in model.random_streams else {}
    return {**eps, "data": data_state}


def _zero_sums():
    return {"n": 0, "loss": 0.0, "rec": 0.0, "kl": 0.0}


def _data(images, labels, config, split, part):
    """The given uint8 images (N, D) and labels (N,), or the split loaded from disk.

    Returns (images, labels); labels are None unless the model is conditional (only a
    conditional model sees them), and then required.
    """
    wants_labels = model_class(config.model, config.objective).conditional
    if images is None:
        loaded = load(config.dataset, split, config.data_dir, config.download)   # images and labels
        return loaded.images, loaded.labels if wants_labels else None
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 2 or len(images) == 0:
        raise ValueError(f"{part}_images must be a non-empty uint8 array (N, D) of pixels 0..255, "
                         f"got {images.dtype} {images.shape}")
    if not wants_labels:
        return images, None
    if labels is None:
        raise DataError(f"model '{config.model}' is conditioned on the labels: pass {part}_labels, one "
                        f"label per image, with {part}_images")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{part}_labels must hold one integer label per image ({len(images)}), "
                        f"got {labels.dtype} {labels.shape}")
    return images, labels


def _check_labels(train_y, test_y, n_classes):
    """Every label one of the model's classes 0..n_classes-1."""
    for part, labels in (("train", train_y), ("test", test_y)):
        if labels.min() < 0 or labels.max() >= n_classes:
            raise DataError(f"{part}_labels must hold labels 0..{n_classes - 1}, got values "
                            f"{labels.min()}..{labels.max()}")


def _where(epochs_done, step_in_epoch):
    """'end of epoch 3' or 'epoch 4, step 100': where a checkpoint stands."""
    return f"epoch {epochs_done + 1}, step {step_in_epoch}" if step_in_epoch else f"end of epoch {epochs_done}"


def _kept(ckpt_path, last_saved):
    """What is on disk after a divergence."""
    return ("no checkpoint is written (no output directory)" if ckpt_path is None else
            f"the last good checkpoint {ckpt_path} ({last_saved}) is kept" if last_saved else
            "no epoch had finished, so no checkpoint was written")


def _diverged_message(what, epoch, step, steps_per_epoch, global_step, config, ckpt_path, last_saved,
                      resuming, variational):
    return (f"training diverged at epoch {epoch}, step {step}/{steps_per_epoch} (global step "
            f"{global_step}): the {what}. The parameters were not updated with it; "
            f"{_kept(ckpt_path, last_saved)}. {_advice(config, resuming, variational)}")


def _advice(config, resuming, variational):
    """What to try after a divergence: a resumed run can change only its learning rate."""
    if resuming:
        return f"Resume with a smaller learning rate (--lr; it was {config.lr:g})."
    if not variational:                                 # no KL to warm up
        return f"Try a smaller learning rate (lr={config.lr:g})."
    return f"Try a smaller learning rate (lr={config.lr:g}) or a KL warm-up (warmup_epochs)."


def _interrupted(ckpt_path, epoch, step, steps_per_epoch, model, history, log, signum, complete=False):
    """The TrainingInterrupted to raise (and its line in the log); ``complete``: after the last epoch."""
    where = (f"the end of training (all {epoch - 1} epochs done)" if complete else
             f"epoch {epoch}, after step {step}/{steps_per_epoch}" if step else f"the start of epoch {epoch}")
    saved = ("nothing saved (no output directory)" if ckpt_path is None else f"saved {ckpt_path}" if complete
             else f"saved {ckpt_path}; continue with: scratchvae resume {ckpt_path}")
    message = f"interrupted by {signal.Signals(signum).name} at {where}: {saved}"
    log.line(message)
    return TrainingInterrupted(message, checkpoint=ckpt_path, epoch=epoch, step=step,
                               model=model, history=history, signum=signum)


@contextmanager
def _engine(config, model, optimizer, batch_rows):
    """The fused step (fast/fused_step.py) when config.engine is "fused", else None (train.py's loop).

    ``batch_rows``: the largest batch it will see, min(batch size, training images).
    """
    if config.engine == "plain":
        yield None
        return
    with FusedStep(model, optimizer, batch_rows, workers=config.threads) as fused:
        yield fused
