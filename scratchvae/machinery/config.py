"""The configuration of a training run: every knob of ``scratchvae train``, checked.

``TrainConfig`` holds them, one comment each; ``scratchvae train`` maps its flags onto it
and the trainer (runner.py) reads it. A bad value is a ``ConfigError`` that names the field and says what
it must be, raised when the configuration is made, before any data is loaded.
"""
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np

from ..fast.fused_step import class_reason
from ..layers import ACTIVATIONS
from ..vae import LIKELIHOODS
from .data import BINARIZE, DATASETS, DataError, parse_split
from .models import UNTYPED, kinds, model_class, objectives


class ConfigError(ValueError):
    """A training configuration value is invalid (the message names the field)."""


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
    model: str = UNTYPED                  # the kind of model: one of models.kinds() (--model)
    hidden: tuple = (400,)                # hidden sizes of the encoder; the decoder mirrors them
    latent: int = 20                      # K, the dimension of z
    activation: str = "relu"              # hidden activation: relu, tanh, sigmoid, softplus
    likelihood: str = "bernoulli"         # p(x|z): "bernoulli" (logits) or "gaussian"
    n_samples: int = 1                    # L, samples of z per image in each training step
    # --- objective
    beta: float = 1.0                     # weight of the KL term (1 = the ELBO)
    warmup_epochs: float = 0.0            # linear KL warm-up: beta ramps 0 -> beta over this many epochs, per step
    objective: str = "elbo"               # "elbo" (slide 15) or, for a VAE, "iwae": the k-sample bound L_k (chapters/iwae.py)
    iwae_k: int = 5                       # k, importance samples per image for objective "iwae"
    # --- optimisation
    batch_size: int = 128                 # images per step
    lr: float = 1e-3                      # Adam's learning rate
    epochs: int = 10                      # passes over the training split (the total, also on resume)
    seed: int = 1                         # master seed of every random stream (runner.py's docstring)
    # --- speed: neither changes what is computed, beyond float rounding
    engine: str = "plain"                 # "plain": vae.py's read-along step; "fused": fast/fused_step.py's, the same numbers
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
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "a positive integer")
        need(is_number(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        need(is_int(self.epochs) and 1 <= self.epochs <= MAX_EPOCHS, "epochs",   # (a time estimate is a float)
             f"a positive integer (at most {MAX_EPOCHS:,})")
        need(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0")
        need(is_int(self.eval_batch) and self.eval_batch >= 1, "eval_batch", "a positive integer")
        need(one_of(self.engine, ENGINES), "engine", f"one of {', '.join(ENGINES)}")
        need(is_int(self.threads) and self.threads in (1, 2), "threads", "1 or 2")
        need(one_of(self.model, kinds()), "model", f"one of {', '.join(kinds())}")
        Model = model_class(self.model, self.objective)       # the model asks for what it cannot use
        need(Model is not None, "objective", f"{' or '.join(map(repr, objectives(self.model)))} with "
             f"model '{self.model}' (the importance-weighted bound is the VAE's; leave --objective out)")
        choice = f"objective '{self.objective}'" if Model.objective != "elbo" else f"model '{self.model}'"
        for field, (value, why) in Model.fixed_fields.items():
            need(getattr(self, field) == value, field, f"{value:g} with {choice} ({why})")
        if self.engine == "fused" and class_reason(Model):
            need(False, "engine", f"'plain' with {choice} ({class_reason(Model)}; leave --engine out)")
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

        A configuration written before the kinds of model has no "model": it is a VAE's."""
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
OBJECTIVES = tuple(dict.fromkeys(o for kind in kinds() for o in objectives(kind)))   # "elbo", "iwae"
MAX_EPOCHS = 10 ** 9


def check_resumable(saved, config, path):
    """A resumed run may change only RESUMABLE_CHANGES; name the first other difference."""
    for f in fields(TrainConfig):
        old, new = getattr(saved, f.name), getattr(config, f.name)
        if f.name == "hidden":
            old, new = tuple(old), tuple(new)
        if f.name not in RESUMABLE_CHANGES and old != new:
            raise ConfigError(f"{path}: checkpoint has {f.name}={old!r}, the configuration has "
                              f"{f.name}={new!r}; a resumed run may change only "
                              f"{', '.join(RESUMABLE_CHANGES)}")
