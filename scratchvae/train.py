"""Training: the loop that turns the loss of vae.py into a trained model.

Three model types train here (``TrainConfig.model``): "vae" (vae.py; iwae.py with objective
"iwae"), "autoencoder" (autoencoder.py: the lecture's starting point, loss -log p(x|z), no
KL) and "cvae" (cvae.py: the conditional VAE, given each image's label). Each has its own
``loss_and_grads``; everything else -- batches, seeds, Adam, checkpoints, resume -- is shared.

Read ``train``, whose inner loop is the lecture's recipe for stochastic gradient descent on
the negative ELBO, with ``TrainConfig`` (config.py: every knob, one comment each) beside it:

    for each epoch:  for each batch x:
        loss, parts = model.loss_and_grads(x)     # forward + backward, slide 15 (vae.py)
        optimizer.step()                          # Adam (optim.py)
        log(parts["rec"], parts["kl"])            # both terms: a KL near 0 = posterior collapse
    evaluate the test negative ELBO (evaluate.py); save a checkpoint (checkpoint.py)

Randomness: ONE master seed (``config.seed``) gives every random stream of a run, as
children of ``numpy.random.SeedSequence(seed)``:
    child 0  initial weights          (made inside VAE(seed=seed))
    child 1  eps of the reparameterisation, model.rng  (also inside VAE)
    child 2  the data: each epoch's shuffle and the dynamic binarisation draws
             (``data.iterate_batches`` draws both from one generator; a cvae's labels
             follow their images, drawing nothing)
    child 3  evaluation: the noise of the test negative ELBO, the same every epoch
So ``VAE(..., seed=s)`` starts from exactly the weights of ``train`` with ``seed=s`` (and
``Autoencoder(..., seed=s)``, ``CVAE(..., seed=s)`` likewise; the autoencoder draws no eps).

Resuming is exact. A checkpoint is written at the end of every epoch and, on Ctrl-C (or
SIGTERM, SIGHUP), at the step boundary where training stopped. It holds the parameters, Adam's moments, the
eps generator, the data generator's state *at the start of the epoch*, the step within
the epoch and the running sums of the epoch's losses. Resuming mid-epoch replays the
epoch's batches from that state without training on them (cheap: no forward pass), so the
remaining batches, eps draws and updates are the very ones of the uninterrupted run:
same losses, same parameters, bit for bit (tests/test_train.py checks this).
"""
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .autoencoder import Autoencoder
from .checkpoint import load_checkpoint
from .config import ENGINES, MODELS, OBJECTIVES, RESUMABLE_CHANGES, ConfigError, TrainConfig, check_resumable
from .cvae import CVAE, N_CLASSES
from .data import DataError, iterate_batches, load
from .evaluate import evaluate_nelbo, evaluate_reconstruction, substream
from .fast import FusedStep, NonFiniteStep, unsupported_reason
from .iwae import IWAE
from .optim import Adam
from .progress import Log, describe_run
from .run_dir import (CHECKPOINT_NAME, HISTORY_NAMES, check_writable, exclusive, file_identity, fingerprint,
                      remove_stale_temporaries, restore, save, write_history)
from .vae import VAE

# what ``from scratchvae.train import ...`` offers (the configuration and the run directory's
# names live in config.py and run_dir.py; they are importable from here as before)
__all__ = ["train", "TrainConfig", "ConfigError", "TrainingDiverged", "TrainingInterrupted", "build_model",
           "derive_streams", "beta_at", "fingerprint", "CHECKPOINT_NAME", "HISTORY_NAMES", "ENGINES",
           "MODELS", "OBJECTIVES", "RESUMABLE_CHANGES"]


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


def beta_at(step, config, steps_per_epoch):
    """KL weight at global step ``step`` (0-based): linear warm-up from 0 to config.beta.

    Implements:  beta_t = beta * min(1, t / (warmup_epochs * steps_per_epoch))
    """
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if warmup_steps <= 0:
        return config.beta
    return config.beta * min(1.0, step / warmup_steps)


# ---------------------------------------------------------------------------------------
# One step: the place a faster fused implementation can be swapped in
# ---------------------------------------------------------------------------------------

def _train_step(model, optimizer, x, fused=None, y=None):
    """One step of gradient descent on the model's loss of batch x (B, D): the negative ELBO
    (VAE; the cvae's given the labels y (B,)), or -log p(x|z) (the autoencoder).

    forward + backward (fills model.flat_grads)  ->  divergence guard  ->  optimizer step.
    The guard runs before the update, so parameters never take a non-finite value.
    ``fused`` (a fast.FusedStep) does the same three in one call, with the same numbers.
    Returns (loss, parts) as the model's ``loss_and_grads``; raises NonFiniteStep.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # the guard reports these
        if fused is not None:                                # the same eps stream as the plain step
            eps = model.rng.standard_normal(dtype=model.dtype, out=fused.eps_buffer[:len(x)])
            return fused.step(x, eps)
        if y is None:
            loss, parts = model.loss_and_grads(x)            # slide 15, and its gradient (or slides 3-4)
        else:
            loss, parts = model.loss_and_grads(x, y)         # the cvae: q(z|x, y), p(x|z, y)
        _check_finite(model, loss, parts)
    optimizer.step()                                         # every parameter moves: theta (encoder) and phi (decoder)
    return loss, parts


def _check_finite(model, loss, parts):
    """Raise NonFiniteStep describing the first non-finite quantity (loss, then gradient).

    The gradient test is the fused step's (fast.py): its squared norm g . g must be finite,
    which also refuses a finite gradient so large that g . g overflows (|g| above 1.8e19 in
    float32), so that both steps stop at the same step with the same message.
    """
    if not math.isfinite(loss):
        kl = f", KL {parts['kl']}" if "kl" in parts else ""
        raise NonFiniteStep(f"loss is {loss} (rec {parts['rec']}{kl})")
    flat = model.flat_grads
    if not np.isfinite(np.dot(flat, flat)):                   # |g|^2, one BLAS pass: inf/nan propagate
        raise NonFiniteStep.in_gradient(model.grads, loss)


# ---------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------

def train(config=None, *, resume=None, log=None, train_images=None, test_images=None, overwrite=False,
          train_labels=None, test_labels=None):
    """Train a VAE, autoencoder or conditional VAE as ``config`` says; return ``(model, history)``.

    Parameters
    ----------
    config : TrainConfig, optional when resuming (the checkpoint's configuration is used;
        if given, only the fields in RESUMABLE_CHANGES may differ from it).
    resume : path of a checkpoint to continue from. ``config.epochs`` is the total to reach.
    log : text stream for progress (default sys.stderr; False = silent). On a terminal an
        in-place progress line is updated within each epoch; otherwise one line per epoch.
    train_images, test_images : (N, D) uint8 arrays used instead of loading the splits
        (tests and demos on small or synthetic data).
    train_labels, test_labels : (N,) labels 0..9 of those images; model "cvae" needs them
        (loaded from the split's IDX label file otherwise), the others ignore them.
    overwrite : allow a fresh run to replace an existing ``out/checkpoint.npz``.

    Returns
    -------
    model : VAE, Autoencoder or CVAE   the trained model (``config.model``)
    history : list[dict]     one record per epoch: epoch, step, beta, train_loss, train_nelbo,
                             train_rec, train_kl (running means during the epoch),
                             train_eval_nelbo, train_eval_rec, train_eval_kl (the first
                             train_eval_n training images, as many as the test images, evaluated
                             after the epoch like the test), test_nelbo, test_rec, test_kl,
                             test_active_units (latent units in use, evaluate.active_units),
                             img_per_s, seconds (all losses in nats per image). The
                             autoencoder's: epoch, step, train_loss, train_rec, train_eval_rec,
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
    has_kl = config.model != "autoencoder"
    if config.engine == "fused":
        fused_refuses = unsupported_reason(model) or (
            config.objective != "elbo" and f"it trains objective '{config.objective}' (the fused step computes the ELBO)")
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
    with _stop_requests() as interrupt, _engine(config, model, optimizer, min(config.batch_size, N)) as fused:
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
            for step, batch in enumerate(batches, start=first_step):
                x, y = (batch, None) if train_y is None else batch
                if has_kl:
                    model.beta = beta_at(global_step, config, steps_per_epoch)
                try:
                    loss, parts = _train_step(model, optimizer, x, fused, y)
                except NonFiniteStep as e:
                    raise TrainingDiverged(_diverged_message(e.what, epoch, step, steps_per_epoch,
                                                             global_step + 1, config, ckpt_path, last_saved,
                                                             resuming)) from None
                global_step += 1
                B = len(x)
                sums["n"] += B
                sums["loss"] += loss * B
                sums["rec"] += parts["rec"] * B
                sums["kl"] += parts.get("kl", 0.0) * B              # the autoencoder's stays 0: no KL
                elapsed = time.perf_counter() - t_start
                log.progress(epoch, config.epochs, step, steps_per_epoch, sums, elapsed,
                             train_seconds_before, step - first_step + 1, kl=has_kl)
                if interrupt.requested and step < steps_per_epoch:
                    position = {"epochs_done": epoch - 1, "step_in_epoch": step,
                                "global_step": global_step, "sums": sums,
                                "seconds": seconds_before + elapsed,
                                "train_seconds": train_seconds_before + elapsed}
                    rng_states = _rng_states(model, data_state_at_epoch_start)
                    save(ckpt_path, model, optimizer, config, history, rng_states, position, data)
                    raise _interrupted(ckpt_path, epoch, step, steps_per_epoch, model, history, log,
                                       interrupt.signum)
            train_seconds = train_seconds_before + time.perf_counter() - t_start

            # ---- end of epoch: evaluate, record, save --------------------------------------
            # the test number, and the same on training images, after the epoch as the test's: the
            # train_* sums above are running means *during* the epoch, taken while the model still changed
            n_seen = min(N, len(test_x))
            with nullcontext() if fused is None else fused.between_steps():   # BLAS on both cores
                test = _evaluate(model, config, test_x, test_y, streams["eval"])
                seen = _evaluate(model, config, train_x[:n_seen], None if train_y is None else train_y[:n_seen],
                                 streams["eval"])
            loss_name = "test negative ELBO" if has_kl else "test reconstruction -log p(x|z)"
            test_loss, seen_loss = (test["nelbo"], seen["nelbo"]) if has_kl else (test["rec"], seen["rec"])
            if not math.isfinite(test_loss + seen_loss):    # the guard covers the evaluation too:
                kl = f", KL {test['kl']}" if has_kl else ""
                raise TrainingDiverged(                      # this epoch's parameters are not saved
                    f"training diverged in epoch {epoch}: every step's loss was finite, but the "
                    f"{loss_name} after it is {test_loss} (rec {test['rec']}{kl}; on training "
                    f"images {seen_loss}); {_kept(ckpt_path, last_saved)}. {_advice(config, resuming)}")
            n = sums["n"]
            if not has_kl:                                   # the autoencoder: -log p(x|z) is its whole loss
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
            if interrupt.requested and epoch < config.epochs:
                raise _interrupted(ckpt_path, epoch + 1, 0, steps_per_epoch, model, history, log,
                                   interrupt.signum)
    return model, history


def build_model(config, D):
    """The untrained model of ``config`` for D-pixel images: VAE (IWAE), Autoencoder or CVAE.

    Each draws its initial weights from child 0 of ``config.seed`` (see the module docstring).
    """
    common = dict(activation=config.activation, likelihood=config.likelihood, seed=config.seed)
    if config.model == "autoencoder":                             # slides 3-5: z = encoder(x), no KL
        return Autoencoder(D, config.hidden, config.latent, **common)
    if config.model == "cvae":                                    # q(z|x, y), p(x|z, y)
        return CVAE(D, config.hidden, config.latent, n_samples=config.n_samples, beta=config.beta,
                    n_classes=N_CLASSES, **common)
    Model, extra = (IWAE, {"k": config.iwae_k}) if config.objective == "iwae" else (VAE, {})
    return Model(D, config.hidden, config.latent, n_samples=config.n_samples, beta=config.beta,
                 **common, **extra)


def _evaluate(model, config, images, labels, seed):
    """After an epoch: the autoencoder's -log p(x|z), or the (conditional) negative ELBO."""
    if config.model == "autoencoder":
        return evaluate_reconstruction(model, images, batch_size=config.eval_batch, seed=seed,
                                       binarize=config.binarize)
    return evaluate_nelbo(model, images, batch_size=config.eval_batch, seed=seed,
                          binarize=config.binarize, labels=labels)


def _rng_states(model, data_state):
    """What rng.json holds: the eps generator (not for the autoencoder: it draws none) and the data's."""
    eps = {"eps": model.rng.bit_generator.state} if hasattr(model, "rng") else {}
    return {**eps, "data": data_state}


def _zero_sums():
    return {"n": 0, "loss": 0.0, "rec": 0.0, "kl": 0.0}


def _data(images, labels, config, split, part):
    """The given uint8 images (N, D) and labels (N,), or the split loaded from disk.

    Returns (images, labels); labels are None unless config.model is "cvae" (only the
    conditional VAE sees them), and then required.
    """
    wants_labels = config.model == "cvae"
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
        raise DataError(f"model 'cvae' is conditioned on the labels: pass {part}_labels, one label "
                        f"0..{N_CLASSES - 1} per image, with {part}_images")
    labels = np.asarray(labels)
    if (labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer)
            or labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"{part}_labels must hold one integer label 0..{N_CLASSES - 1} per image "
                        f"({len(images)}), got {labels.dtype} {labels.shape}")
    return images, labels


def _where(epochs_done, step_in_epoch):
    """'end of epoch 3' or 'epoch 4, step 100': where a checkpoint stands."""
    return f"epoch {epochs_done + 1}, step {step_in_epoch}" if step_in_epoch else f"end of epoch {epochs_done}"


def _kept(ckpt_path, last_saved):
    """What is on disk after a divergence."""
    return ("no checkpoint is written (no output directory)" if ckpt_path is None else
            f"the last good checkpoint {ckpt_path} ({last_saved}) is kept" if last_saved else
            "no epoch had finished, so no checkpoint was written")


def _diverged_message(what, epoch, step, steps_per_epoch, global_step, config, ckpt_path, last_saved,
                      resuming):
    return (f"training diverged at epoch {epoch}, step {step}/{steps_per_epoch} (global step "
            f"{global_step}): the {what}. The parameters were not updated with it; "
            f"{_kept(ckpt_path, last_saved)}. {_advice(config, resuming)}")


def _advice(config, resuming):
    """What to try after a divergence: a resumed run can change only its learning rate."""
    if resuming:
        return f"Resume with a smaller learning rate (--lr; it was {config.lr:g})."
    if config.model == "autoencoder":                   # no KL to warm up
        return f"Try a smaller learning rate (lr={config.lr:g})."
    return f"Try a smaller learning rate (lr={config.lr:g}) or a KL warm-up (warmup_epochs)."


def _interrupted(ckpt_path, epoch, step, steps_per_epoch, model, history, log, signum):
    where = f"epoch {epoch}, after step {step}/{steps_per_epoch}" if step else f"the start of epoch {epoch}"
    saved = (f"saved {ckpt_path}; continue with: scratchvae resume {ckpt_path}"
             if ckpt_path is not None else "nothing saved (no output directory)")
    message = f"interrupted by {signal.Signals(signum).name} at {where}: {saved}"
    log.line(message)
    return TrainingInterrupted(message, checkpoint=ckpt_path, epoch=epoch, step=step,
                               model=model, history=history, signum=signum)


@contextmanager
def _engine(config, model, optimizer, batch_rows):
    """The fused step (fast.py) when config.engine is "fused", else None (vae.py's step).

    ``batch_rows``: the largest batch it will see, min(batch size, training images).
    """
    if config.engine == "plain":
        yield None
        return
    with FusedStep(model, optimizer, batch_rows, workers=config.threads) as fused:
        yield fused


# Ctrl-C (SIGINT), and what `kill`, `timeout`, job schedulers (SIGTERM) and a closed terminal
# (SIGHUP) send: each asks training to save and stop.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def _stop_requests():
    """While training, the first stop signal only sets ``flag.requested`` (and ``flag.signum``;
    the loop then saves at the next step boundary and stops); a second one raises
    KeyboardInterrupt at once. Only in the main thread, and only for signals whose handler
    is still Python's default (nobody else has installed one)."""
    flag = SimpleNamespace(requested=False, signum=signal.SIGINT)
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested, flag.signum = True, signum

    defaults = {signal.SIGINT: signal.default_int_handler}
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    ours = [s for s in STOP_SIGNALS if previous[s] is defaults.get(s, signal.SIG_DFL)]
    for s in ours:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s in ours:
            signal.signal(s, previous[s])
