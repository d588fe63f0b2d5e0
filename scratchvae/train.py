"""Training: the loop that turns the loss of vae.py into a trained model.

Three model types train here (``TrainConfig.model``): "vae" (vae.py; iwae.py with objective
"iwae"), "autoencoder" (autoencoder.py: the lecture's starting point, loss -log p(x|z), no
KL) and "cvae" (cvae.py: the conditional VAE, given each image's label). Each has its own
``loss_and_grads``; everything else -- batches, seeds, Adam, checkpoints, resume -- is shared.

Read top to bottom: ``TrainConfig`` (every knob, one comment each), then ``train``, whose
inner loop is the lecture's recipe for stochastic gradient descent on the negative ELBO:

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
import csv
import io
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np

try:
    import fcntl                                          # the run directory's lock (POSIX)
except ImportError:                                       # pragma: no cover  (Windows)
    fcntl = None

from .autoencoder import Autoencoder
from .checkpoint import CheckpointError, load_checkpoint, load_parameters, save_checkpoint, write_text_atomic
from .cvae import CVAE, N_CLASSES
from .data import BINARIZE, DATASETS, DataError, iterate_batches, load, parse_split
from .evaluate import evaluate_nelbo, evaluate_reconstruction, substream
from .fast import FusedStep, NonFiniteStep, unsupported_reason
from .iwae import IWAE
from .layers import ACTIVATIONS
from .optim import Adam
from .vae import LIKELIHOODS, VAE

CHECKPOINT_NAME = "checkpoint.npz"
HISTORY_NAMES = ("history.json", "history.csv")


class ConfigError(ValueError):
    """A training configuration value is invalid (the message names the field)."""


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


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything that defines a training run. ``scratchvae train`` maps its flags onto it.

    The defaults are the PyTorch example VAE's protocol (784-400-20-400-784, ReLU,
    Bernoulli, Adam lr 1e-3, batch 128, one z per image, 10 epochs) on MNIST.
    """
    # --- data (see data.py)
    dataset: str = "mnist"                # "mnist" or "fashion-mnist"
    data_dir: Optional[str] = None        # directory with the IDX files; None: data.py's lookup order
    train_split: str = "train"            # split trained on, e.g. "train", "test[:9000]"
    test_split: str = "test"              # split evaluated after every epoch, e.g. "test[9000:]"
    binarize: str = "none"                # targets: "none" grey levels, "dynamic" or "threshold" 0/1
    download: bool = True                 # may data.py download missing files
    # --- model (see vae.py)
    model: str = "vae"                    # "vae" (vae.py), "autoencoder" (autoencoder.py: no KL) or "cvae" (cvae.py: given y)
    hidden: tuple = (400,)                # hidden sizes of the encoder; the decoder mirrors them
    latent: int = 20                      # K, the dimension of z
    activation: str = "relu"              # hidden activation: relu, tanh, sigmoid, softplus
    likelihood: str = "bernoulli"         # p(x|z): "bernoulli" (logits) or "gaussian"
    n_samples: int = 1                    # L, samples of z per image in each training step
    # --- objective
    beta: float = 1.0                     # weight of the KL term (1 = the ELBO)
    warmup_epochs: float = 0.0            # linear KL warm-up: beta ramps 0 -> beta over this many epochs, per step
    objective: str = "elbo"               # "elbo" (vae.py, slide 15) or "iwae": the k-sample bound L_k (iwae.py)
    iwae_k: int = 5                       # k, importance samples per image for objective "iwae"
    # --- optimisation
    batch_size: int = 128                 # images per step
    lr: float = 1e-3                      # Adam's learning rate
    epochs: int = 10                      # passes over the training split (the total, also on resume)
    seed: int = 1                         # master seed of every random stream (see the module docstring)
    # --- speed: neither changes what is computed, beyond float rounding
    engine: str = "plain"                 # "plain": vae.py's read-along step; "fused": fast.py's, the same numbers
    threads: int = 2                      # CPU cores for the fused step (1 or 2)
    # --- output
    out: Optional[str] = None             # run directory for checkpoint.npz and history.*; None: write nothing
    eval_batch: int = 1000                # images per forward pass when evaluating (memory, not result)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Normalise types and check every field; raise ``ConfigError`` naming the first bad one."""
        def need(ok, field, what):
            if not ok:
                raise ConfigError(f"{field} must be {what}, got {getattr(self, field)!r}")

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_number(v):                   # finite, and not a bool (huge ints count as infinite)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                return False
            return (abs(v) < 1e300 if isinstance(v, int) else math.isfinite(v))

        def one_of(v, names):               # names are strings; a list or dict is not one of them
            return isinstance(v, str) and v in names

        need(one_of(self.dataset, DATASETS), "dataset", f"one of {', '.join(DATASETS)}")
        for field in ("train_split", "test_split"):
            need(isinstance(getattr(self, field), str), field, "a split like 'train' or 'test[9000:]'")
            try:
                parse_split(getattr(self, field))
            except DataError as e:
                raise ConfigError(f"{field}: {e}") from None
        need(one_of(self.binarize, BINARIZE), "binarize", f"one of {', '.join(BINARIZE)}")
        need(isinstance(self.download, bool), "download", "True or False")
        if is_int(self.hidden):
            self.hidden = (self.hidden,)
        need(isinstance(self.hidden, (list, tuple)) and all(is_int(h) and h >= 1 for h in self.hidden),
             "hidden", "a list of positive integers (e.g. [400] or [512, 256]; [] for linear maps)")
        self.hidden = tuple(int(h) for h in self.hidden)
        need(is_int(self.latent) and self.latent >= 1, "latent", "a positive integer")
        need(one_of(self.activation, ACTIVATIONS), "activation", f"one of {', '.join(ACTIVATIONS)}")
        need(one_of(self.likelihood, LIKELIHOODS), "likelihood", f"one of {', '.join(LIKELIHOODS)}")
        need(is_int(self.n_samples) and self.n_samples >= 1, "n_samples", "a positive integer")
        need(is_number(self.beta) and self.beta >= 0, "beta", "a finite number >= 0")
        need(is_number(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup_epochs",
             "a finite number >= 0 (0 = no warm-up)")
        need(one_of(self.objective, OBJECTIVES), "objective", f"one of {', '.join(OBJECTIVES)}")
        need(is_int(self.iwae_k) and self.iwae_k >= 1, "iwae_k", "a positive integer")
        if self.objective == "iwae":
            need(self.beta == 1, "beta", "1 with objective 'iwae' (L_k has no KL weight)")
            need(self.warmup_epochs == 0, "warmup_epochs", "0 with objective 'iwae' (L_k has no KL weight)")
            need(self.n_samples == 1, "n_samples", "1 with objective 'iwae' (it draws iwae_k samples)")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "a positive integer")
        need(is_number(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        need(is_int(self.epochs) and 1 <= self.epochs <= MAX_EPOCHS, "epochs",   # (a time estimate is a float)
             f"a positive integer (at most {MAX_EPOCHS:,})")
        need(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0")
        need(is_int(self.eval_batch) and self.eval_batch >= 1, "eval_batch", "a positive integer")
        need(one_of(self.engine, ENGINES), "engine", f"one of {', '.join(ENGINES)}")
        need(is_int(self.threads) and self.threads in (1, 2), "threads", "1 or 2")
        need(one_of(self.model, MODELS), "model", f"one of {', '.join(MODELS)}")
        if self.model != "vae":
            need(self.engine == "plain", "engine", f"'plain' with model '{self.model}' (the fused "
                 f"step trains the VAE only; leave --engine out)")
            need(self.objective == "elbo", "objective", f"'elbo' with model '{self.model}' (the "
                 f"importance-weighted bound is the VAE's; leave --objective out)")
        if self.model == "autoencoder":                 # -log p(x|z) alone: nothing to weight or sample
            need(self.beta == 1, "beta", "1 with model 'autoencoder' (it has no KL term to "
                 "weight; leave --beta out)")
            need(self.warmup_epochs == 0, "warmup_epochs", "0 with model 'autoencoder' (it has no "
                 "KL term to warm up; leave --warmup-epochs out)")
            need(self.n_samples == 1, "n_samples", "1 with model 'autoencoder' (its z = encoder(x) "
                 "is not sampled; leave --samples out)")
        for field in ("data_dir", "out"):
            value = getattr(self, field)
            need(value is None or (isinstance(value, (str, os.PathLike)) and "\0" not in str(value)),
                 field, "a directory path (or None)")
        # absolute, so that a run resumed or evaluated from another directory finds its data
        self.data_dir = None if self.data_dir is None else os.path.abspath(os.path.expanduser(self.data_dir))
        self.out = None if self.out is None else str(self.out)
        return self

    def to_dict(self):
        """A JSON-ready dict (``hidden`` as a list)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of ``to_dict``; unknown fields are an error, not silently dropped.

        A configuration written before the model types has no "model": it is a "vae"."""
        if d.get("engine") == "auto":                  # written before "plain" became the default
            d = {**d, "engine": "plain"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration field(s) {', '.join(unknown)} "
                              f"(written by a newer scratchvae?)")
        return cls(**d)


# Fields that may change when a run is resumed: none of them alters what is computed
# (lr does, and resuming says so; a different engine, thread count or eval_batch changes
# the float rounding -- of the training steps, or of the logged test numbers -- so the
# continuation then equals the uninterrupted run only up to rounding).
# All others must match the checkpoint.
RESUMABLE_CHANGES = ("epochs", "lr", "out", "data_dir", "download", "eval_batch", "engine", "threads")
ENGINES = ("plain", "fused")
OBJECTIVES = ("elbo", "iwae")
MODELS = ("vae", "autoencoder", "cvae")
MAX_EPOCHS = 10 ** 9


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
    g = model.flat_grads
    if not np.isfinite(np.dot(g, g)):                         # |g|^2, one BLAS pass: inf/nan propagate
        bad = next((name for name, g in model.grads.items() if not np.isfinite(g).all()), None)
        raise NonFiniteStep(f"gradient is not finite (first in parameter {bad}) while the loss was {loss:.6g}"
                            if bad else f"gradient overflows (its squared norm is inf) while the loss was {loss:.6g}")


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
        resume_stat = _stat(resume)                     # to see whether it changes before we hold the lock
        checkpoint = load_checkpoint(resume)
        saved = TrainConfig.from_dict(checkpoint["config"])
        config = saved if config is None else config
        _check_resumable(saved, config, checkpoint["path"])
    if not isinstance(config, TrainConfig):
        raise TypeError("train() needs a TrainConfig (or resume=<checkpoint path>)")
    config.validate()
    out = Path(config.out) if config.out is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    log = _Log(log)
    given = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    if out is None:
        return _train(config, checkpoint, None, log, given)
    _check_writable(out)                               # before any data is loaded or trained on
    with _exclusive(out):                              # one run at a time writes into a run directory
        if ckpt_path.exists() and not overwrite and (
                checkpoint is None or ckpt_path.resolve() != checkpoint["path"].resolve()):
            raise ConfigError(
                f"{ckpt_path} already exists and is not the checkpoint being resumed: choose "
                f"another output directory (--out)" if checkpoint is not None else
                f"{ckpt_path} already exists: resume it (scratchvae resume {ckpt_path}), "
                f"choose another output directory, or overwrite it (--overwrite)")
        if checkpoint is not None and _stat(resume) != resume_stat:
            raise ConfigError(f"{resume} was rewritten while this run started (by another "
                              f"training?); start the resume again")
        _remove_stale_temporaries(out, log)
        if checkpoint is not None and ckpt_path.resolve() == checkpoint["path"].resolve():
            _write_history(out, checkpoint["history"])  # the checkpoint's history is the true one
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
        history, position = _restore(checkpoint, model, optimizer, data_rng, config, data, log)
        last_saved = _where(position["epochs_done"], position["step_in_epoch"])
    if position["epochs_done"] >= config.epochs:
        if config.epochs < position["epochs_done"]:
            raise ConfigError(f"epochs={config.epochs} but the checkpoint has already completed "
                              f"{position['epochs_done']}; ask for more epochs to train further")
        log.line(f"nothing to train: {position['epochs_done']} of {config.epochs} epochs done")
        return model, history
    log.line(_describe(model, config, N, len(test_x), steps_per_epoch, ckpt_path, position))

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
                    _save(ckpt_path, model, optimizer, config, history, rng_states, position, data)
                    raise _interrupted(ckpt_path, epoch, step, steps_per_epoch, model, history, log,
                                       interrupt.signum)
            train_seconds = train_seconds_before + time.perf_counter() - t_start

            # ---- end of epoch: evaluate, record, save --------------------------------------
            # the test number, and the same on training images, after the epoch as the test's: the
            # train_* sums above are running means *during* the epoch, taken while the model still changed
            n_seen = min(N, len(test_x))
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
            _save(ckpt_path, model, optimizer, config, history, rng_states, position, data)
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


def _check_writable(out):
    """Create the run directory and make sure a file can be written there, or raise ConfigError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"cannot write to the output directory {out}: {e.strerror or e}") from None


def fingerprint(images, labels=None):
    """What identifies a data set cheaply: its size and a CRC-32 of its pixels (about 10 ms for 47 MB
    here), and of its labels when a model sees them (the cvae)."""
    found = {"images": int(images.shape[0]), "pixels": int(images.shape[1]),
             "crc32": zlib.crc32(np.ascontiguousarray(images))}
    if labels is not None:
        found["labels_crc32"] = zlib.crc32(np.ascontiguousarray(labels, dtype=np.uint8))
    return found


def _check_resumable(saved, config, path):
    """A resumed run may change only RESUMABLE_CHANGES; name the first other difference."""
    for f in fields(TrainConfig):
        old, new = getattr(saved, f.name), getattr(config, f.name)
        if f.name == "hidden":
            old, new = tuple(old), tuple(new)
        if f.name not in RESUMABLE_CHANGES and old != new:
            raise ConfigError(f"{path}: checkpoint has {f.name}={old!r}, the configuration has "
                              f"{f.name}={new!r}; a resumed run may change only "
                              f"{', '.join(RESUMABLE_CHANGES)}")


def _restore(checkpoint, model, optimizer, data_rng, config, data, log):
    """Put the saved state back: parameters, Adam, generators; return (history, position).

    Refuses (CheckpointError) a checkpoint that train() did not write, and (ConfigError)
    data other than the run's: the same batches must be replayable.
    """
    where = checkpoint["path"]
    load_parameters(model, checkpoint)
    state, position = checkpoint["optimizer"], checkpoint["progress"]
    missing = [f"progress.json: {k}" for k in ("epochs_done", "step_in_epoch", "global_step", "sums",
                                               "seconds", "train_seconds") if k not in position]
    streams = ("eps", "data") if hasattr(model, "rng") else ("data",)      # the autoencoder draws no eps
    missing += [f"rng.json: {k}" for k in streams if k not in checkpoint["rng"]]
    if missing:
        raise CheckpointError(f"{where}: cannot resume: the checkpoint was not written by a "
                              f"training run (it lacks {', '.join(missing)})")
    if state.get("name", "adam") != "adam":
        raise ConfigError(f"{where}: optimiser {state['name']!r} is not Adam")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{where}: the optimiser state does not fit the model ({e})") from None
    saved_data = position.get("data")
    for part in ("train", "test"):
        if saved_data is not None and saved_data.get(part) != data[part]:
            raise ConfigError(f"{where}: the {part} images differ from the run's (checkpoint: "
                              f"{_describe_data(saved_data.get(part))}; now: {_describe_data(data[part])}); "
                              f"resume with the data the run was trained on")
    if optimizer.lr != config.lr:
        log.line(f"note: lr changed from {optimizer.lr:g} to {config.lr:g}; the continuation "
                 f"differs from the uninterrupted run")
        optimizer.lr = config.lr
    if hasattr(model, "rng"):
        model.rng.bit_generator.state = checkpoint["rng"]["eps"]
    data_rng.bit_generator.state = checkpoint["rng"]["data"]
    history = checkpoint["history"]
    if len(history) != position["epochs_done"]:
        raise ConfigError(f"{checkpoint['path']}: inconsistent checkpoint: {len(history)} history "
                          f"records for {position['epochs_done']} completed epochs")
    return history, position


def _describe_data(fingerprint):
    if not isinstance(fingerprint, dict):
        return "unknown"
    return (f"{fingerprint.get('images')} images of {fingerprint.get('pixels')} pixels, "
            f"CRC-32 {fingerprint.get('crc32')}")


def _save(ckpt_path, model, optimizer, config, history, rng_states, position, data):
    """Checkpoint plus history.json / history.csv next to it (nothing when out is None).

    ``data`` (the fingerprints of the train and test images) goes into progress.json.
    """
    if ckpt_path is None:
        return
    _write_history(ckpt_path.parent, history)          # first: the files are never behind the checkpoint
    save_checkpoint(ckpt_path, model, optimizer, config.to_dict(), history, rng_states,
                    {**position, "data": data})


def _write_history(out, history):
    """out/history.json and out/history.csv from the records (each file replaced atomically).

    Written before the checkpoint: a crash between the two leaves the files one epoch
    ahead, never behind, and the next start rewrites them from the checkpoint's history.
    """
    write_text_atomic(out / HISTORY_NAMES[0], json.dumps(history, indent=1, allow_nan=False) + "\n")
    if history:
        text = io.StringIO()
        columns = list(dict.fromkeys(key for record in history for key in record))   # older records may lack some
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(out / HISTORY_NAMES[1], text.getvalue())


def _stat(path):
    """What tells whether a file was replaced: (inode, size, mtime), None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


LOCK_NAME = ".scratchvae.lock"


@contextmanager
def _exclusive(out):
    """Hold an exclusive lock on the run directory ``out`` (flock on out/.scratchvae.lock).

    A second training into the same directory is refused at once (ConfigError naming the
    process holding it) instead of both writing, the later silently replacing the other's
    checkpoint. The kernel releases the lock when its process ends, however it ends: after a
    kill -9 there is no stale lock to clean up. (Without fcntl, as on Windows: no lock.)
    """
    if fcntl is None:
        yield
        return
    path = out / LOCK_NAME
    try:
        f = open(path, "a+", encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot create the lock file {path}: {e.strerror or e}") from None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read(100).strip()
            raise ConfigError(f"another training is writing to {out} ({holder or 'a running process'}); "
                              f"wait for it to end, or choose another output directory (--out)") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _remove_stale_temporaries(out, log):
    """Delete the temporary files of saves a crash interrupted (.checkpoint.npz.*.tmp, ...).

    Only called while holding the lock, so no other run can be writing them.
    """
    stale = [p for name in (CHECKPOINT_NAME, *HISTORY_NAMES) for p in out.glob(f".{name}.*.tmp")]
    for p in stale:
        try:
            p.unlink()
        except OSError:
            pass
    if stale:
        log.line(f"removed {len(stale)} temporary file(s) left in {out} by an interrupted save")


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


# ---------------------------------------------------------------------------------------
# Progress lines
# ---------------------------------------------------------------------------------------

MODEL_NAMES = {"vae": "VAE", "autoencoder": "autoencoder", "cvae": "conditional VAE"}


def _describe(model, config, n_train, n_test, steps_per_epoch, ckpt_path, position):
    arch = "-".join(map(str, [model.input_dim, *model.hidden_dims, model.latent_dim,
                              *model.hidden_dims[::-1], model.input_dim]))
    if config.model == "cvae":
        arch += f" with the one-hot label y ({model.n_classes} classes) into encoder and decoder"
    text = (f"{MODEL_NAMES[config.model]} {arch} ({config.activation}, {config.likelihood}); {config.dataset} "
            f"{config.train_split} ({n_train:,} images), test on {config.test_split} ({n_test:,}); "
            f"batch {config.batch_size}, Adam lr {config.lr:g}, {steps_per_epoch} steps/epoch, "
            f"seed {config.seed}\n{_engine_name(model, config)}")
    if position["epochs_done"] or position["step_in_epoch"]:
        text += (f"\nresuming after epoch {position['epochs_done']}"
                 + (f", step {position['step_in_epoch']}" if position["step_in_epoch"] else ""))
    return text + (f"\ncheckpoints: {ckpt_path}" if ckpt_path is not None else "")


def _engine_name(model, config):
    if config.model == "autoencoder":
        return ("training step: Autoencoder.loss_and_grads in scratchvae/autoencoder.py (-log p(x|z), "
                "no KL), Adam in scratchvae/optim.py")
    if config.model == "cvae":
        return ("training step: CVAE.loss_and_grads in scratchvae/cvae.py (the negative ELBO of "
                "p(x|y)), Adam in scratchvae/optim.py")
    if config.objective == "iwae":
        return (f"training step: IWAE.loss_and_grads in scratchvae/iwae.py (the bound L_k, "
                f"k = {config.iwae_k}), Adam in scratchvae/optim.py")
    if config.engine == "plain":
        return "training step: VAE.loss_and_grads in scratchvae/vae.py, Adam in scratchvae/optim.py"
    return (f"training step: the fused step of scratchvae/fast.py ({config.threads} "
            f"{'core' if config.threads == 1 else 'cores'}; the same numbers as vae.py)")


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class _Log:
    """Progress output: an in-place line within the epoch on a terminal, plain lines otherwise."""

    def __init__(self, stream):
        self.stream = None if stream is False else (sys.stderr if stream is None else stream)
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._shown, self._last = False, 0.0

    def line(self, text):
        if self.stream is None:
            return
        if self._shown:
            self._write("\r\033[K")                            # clear the in-place line
            self._shown = False
        self._write(text + "\n")

    def _write(self, text):
        """Write and flush; a stream that fails (the terminal closed: SIGHUP) is dropped, so
        that losing the log never stops the training or its final save."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    def progress(self, epoch, epochs, step, steps, sums, elapsed, seconds_before, steps_now, kl=True):
        now = time.perf_counter()
        if not self.tty or self.stream is None or (now - self._last < 0.2 and step < steps):
            return
        self._last = now
        rate = sums["n"] / (seconds_before + elapsed) if seconds_before + elapsed > 0 else 0.0
        eta = (steps - step) * elapsed / steps_now
        loss = (f"-ELBO {(sums['rec'] + sums['kl']) / sums['n']:.2f} (KL {sums['kl'] / sums['n']:.2f})"
                if kl else f"-log p(x|z) {sums['rec'] / sums['n']:.2f}")
        self._write(f"\repoch {epoch}/{epochs} {100 * step // steps:3d}% {loss}  {rate:,.0f} img/s  "
                    f"epoch ETA {_duration(eta)}\033[K")
        self._shown = self.stream is not None

    def epoch(self, r, epochs, time_left):
        if "test_nelbo" in r:
            beta = f"  beta {r['beta']:.3g}" if r["beta"] != 1.0 else ""
            losses = (f"train -ELBO {r['train_nelbo']:.3f} (rec {r['train_rec']:.3f} + KL {r['train_kl']:.3f})  "
                      f"test -ELBO {r['test_nelbo']:.3f} (rec {r['test_rec']:.3f} + KL {r['test_kl']:.3f}){beta}")
        else:                                           # the autoencoder: -log p(x|z) alone
            losses = f"train -log p(x|z) {r['train_rec']:.3f}  test -log p(x|z) {r['test_rec']:.3f}"
        self.line(f"epoch {r['epoch']:>{len(str(epochs))}}/{epochs}  {losses}  "
                  f"{r['img_per_s'] or 0:,.0f} img/s  {r['seconds']:.1f} s  "
                  f"time left {_duration(time_left)}")
