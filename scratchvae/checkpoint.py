"""Checkpoints: one ``.npz`` file holding everything needed to continue a run exactly.

What is inside (every entry a plain array; nothing is pickled):

    "format"                 "scratchvae-checkpoint-1"
    "param.<name>"           each model parameter, e.g. "param.enc.fc1.W" (784, 400) float32
    "optimizer.m_sum", ".v_sum"  Adam's moment vectors, laid out like the model's flat_params
    "model.json"             the VAE constructor arguments (``VAE.config()``)
    "optimizer.json"         the optimiser's name, step count and hyper-parameters
    "config.json"            the training configuration (``TrainConfig`` as a dict)
    "history.json"           the per-epoch records so far
    "rng.json"               the states of the run's random generators
    "progress.json"          where in the run it stopped (epochs done, step within the epoch, ...)

The JSON entries are 0-d NumPy string arrays. A generator state holds 128-bit integers;
JSON writes Python ints in full, so ``json.loads(json.dumps(state)) == state`` exactly.

Safety and robustness:

- Loading uses ``np.load(..., allow_pickle=False)``: a checkpoint is data, never code. A file
  holding pickled objects (an object array) is refused with ``CheckpointError``.
- Saving is atomic: the bytes go to a temporary file in the same directory, are flushed
  and fsync'ed, then ``os.replace`` puts the file in place. A crash mid-save leaves the
  previous checkpoint untouched.
- ``load_parameters`` refuses a checkpoint whose architecture differs from the model's,
  naming the field ("checkpoint has latent_dim=20, model has latent_dim=2") or the parameter.
"""
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .vae import VAE

FORMAT = "scratchvae-checkpoint-1"
ARCHITECTURE = ("input_dim", "hidden_dims", "latent_dim", "activation", "likelihood")
JSON_ENTRIES = ("model", "optimizer", "config", "history", "rng", "progress")
SAFETY = "a checkpoint is data, never code: scratchvae loads it with allow_pickle=False"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe, or does not fit the model."""


# ---------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------

def save_checkpoint(path, model, optimizer, config, history, rng_states, progress=None):
    """Write a checkpoint to ``path`` atomically (temporary file, flush, fsync, rename).

    Parameters
    ----------
    path : str or Path        where to write, e.g. "run/checkpoint.npz" (directories are created)
    model : VAE               its parameters and constructor arguments are saved
    optimizer : Adam          its ``state_dict()`` (moments, step count, hyper-parameters)
    config : dict             the training configuration, JSON-serialisable
    history : list[dict]      per-epoch records
    rng_states : dict         name -> ``generator.bit_generator.state``
    progress : dict, optional where the run is (see train.py), JSON-serialisable
    """
    path = Path(path)
    state = optimizer.state_dict()
    arrays = {"format": np.array(FORMAT)}
    arrays.update({f"param.{name}": value for name, value in model.params.items()})
    state["arrays"] = sorted(k for k, v in state.items() if isinstance(v, np.ndarray))
    for key in state["arrays"]:                             # Adam: m_sum, v_sum; SGD: buf
        arrays[f"optimizer.{key}"] = state.pop(key)
    state["name"] = type(optimizer).__name__.lower()
    documents = {"model": model.config(), "optimizer": state, "config": config,
                 "history": history, "rng": rng_states, "progress": progress or {}}
    for key, document in documents.items():
        arrays[f"{key}.json"] = np.array(json.dumps(document))

    _write_atomic(path, "wb", lambda f: _write_npz(f, arrays))
    return path


def _write_npz(f, arrays):
    """The one place the bytes are written (tests interrupt it to simulate a crash)."""
    np.savez(f, **arrays)


def write_text_atomic(path, text):
    """Write a small text file (history.json, history.csv) with the same temp-and-rename care."""
    _write_atomic(Path(path), "w", lambda f: f.write(text))


def _write_atomic(path, mode, write):
    """write(f) into a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: readers (and a crash) see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())                 # the bytes are on disk before the rename
        os.replace(tmp, path)                    # atomic: readers see the old file or the new one
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint`` into a dict, refusing anything unsafe.

    Returns
    -------
    dict with keys
        "params"     name -> array (copies, independent of the file)
        "optimizer"  the optimiser state dict ("t", "m_sum", "v_sum", "lr", ... and "name")
        "model"      VAE constructor arguments;  "config", "history", "rng", "progress": as saved
        "path"       the path it was read from
    Raises ``CheckpointError`` with one message naming the file and the problem.
    """
    path = Path(path)
    if path.is_dir():
        hint = (f"; did you mean {path / 'checkpoint.npz'}?" if (path / "checkpoint.npz").is_file()
                else "")
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x80"):                                  # pickle protocol 2 and later
        raise CheckpointError(f"{path}: the file is a Python pickle (pickled objects); refusing to load it ({SAFETY})")
    if magic.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{path}: a single .npy array, not a scratchvae checkpoint (.npz)")
    if not magic.startswith(b"PK"):                                 # .npz files are zip archives
        raise CheckpointError(f"{path}: not a readable .npz checkpoint (not a zip archive; "
                              f"it starts with {magic!r})")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({e})") from None

    try:
        with npz:
            entries = {key: _read_entry(npz, key, path) for key in npz.files}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt .npz checkpoint ({e})") from None

    fmt = entries.get("format")
    if fmt is None or str(fmt) != FORMAT:
        raise CheckpointError(f"{path}: not a scratchvae checkpoint (format entry is "
                              f"{None if fmt is None else str(fmt)!r}, expected {FORMAT!r})")
    missing = [f"{k}.json" for k in JSON_ENTRIES if f"{k}.json" not in entries]
    if not missing:
        try:
            optimizer_arrays = json.loads(str(entries["optimizer.json"])).get("arrays", [])
        except (json.JSONDecodeError, AttributeError):
            optimizer_arrays = []                           # reported as invalid JSON just below
        missing += [f"optimizer.{k}" for k in optimizer_arrays if f"optimizer.{k}" not in entries]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    checkpoint = {"path": path}
    for key in JSON_ENTRIES:
        try:
            checkpoint[key] = json.loads(str(entries[f"{key}.json"]))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: entry {key}.json is not valid JSON ({e})") from None
    _check_documents(checkpoint, path)
    checkpoint["params"] = {k[len("param."):]: v for k, v in entries.items() if k.startswith("param.")}
    for key in checkpoint["optimizer"].pop("arrays", []):
        checkpoint["optimizer"][key] = entries[f"optimizer.{key}"]
    return checkpoint


def _check_documents(checkpoint, path):
    """The JSON entries have the shapes save_checkpoint writes; else one CheckpointError."""
    for key in JSON_ENTRIES:
        kind = list if key == "history" else dict
        if not isinstance(checkpoint[key], kind):
            raise CheckpointError(f"{path}: entry {key}.json holds a {type(checkpoint[key]).__name__}, "
                                  f"expected a JSON {'list' if kind is list else 'object'}")
    if not all(isinstance(record, dict) for record in checkpoint["history"]):
        raise CheckpointError(f"{path}: entry history.json must be a list of per-epoch records")
    for name, state in checkpoint["rng"].items():
        try:                                            # the generators are PCG64 (default_rng)
            np.random.PCG64().state = state
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: rng.json: {name!r} is not a valid PCG64 generator "
                                  f"state ({e})") from None


def _read_entry(npz, key, path):
    """One array from the archive; an object (pickled) array is refused, never unpickled."""
    try:
        return npz[key]
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise CheckpointError(f"{path}: entry {key!r} holds pickled Python objects; "
                                  f"refusing to load it ({SAFETY})") from None
        raise


def check_architecture(model_config, checkpoint):
    """Raise ``CheckpointError`` naming the first architecture field that differs."""
    saved = checkpoint["model"]
    for field in ARCHITECTURE:
        ours, theirs = model_config.get(field), saved.get(field)
        if field == "hidden_dims":
            ours, theirs = list(ours or []), list(theirs or [])
        if ours != theirs:
            raise CheckpointError(f"{checkpoint['path']}: architecture mismatch: checkpoint has "
                                  f"{field}={theirs!r}, model has {field}={ours!r}")


def load_parameters(model, checkpoint):
    """Copy a checkpoint's parameters into ``model`` after checking they fit.

    ``checkpoint`` is a path or a dict from ``load_checkpoint``. The architecture fields
    (``ARCHITECTURE``) must agree, then every parameter name and shape; the message names
    the first difference, e.g. "parameter enc.fc1.W: checkpoint has shape (784, 400),
    model has (784, 512)". Values are cast to the model's dtype.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)
    check_architecture(model.config(), checkpoint)
    saved, where = checkpoint["params"], checkpoint["path"]
    for name in model.params:
        if name not in saved:
            raise CheckpointError(f"{where}: architecture mismatch: the model has parameter "
                                  f"{name}, the checkpoint does not")
    for name, value in saved.items():
        if name not in model.params:
            raise CheckpointError(f"{where}: architecture mismatch: the checkpoint has parameter "
                                  f"{name}, the model does not")
        if value.shape != model.params[name].shape:
            raise CheckpointError(f"{where}: architecture mismatch: parameter {name}: checkpoint "
                                  f"has shape {value.shape}, model has {model.params[name].shape}")
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(f"{where}: parameter {name} has dtype {value.dtype}, expected floats")
    for name, value in saved.items():
        model.params[name][...] = value          # writes into the model's flat_params
    return model


def load_model(path):
    """Rebuild the trained VAE stored in a checkpoint (for sampling, evaluation, plots).

    The model's own generator (``model.rng``, which draws eps) is restored to its saved
    state, so the model is exactly as it was when the checkpoint was written.
    """
    checkpoint = path if isinstance(path, dict) else load_checkpoint(path)
    try:
        model = VAE(**checkpoint["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint['path']}: cannot rebuild the model from "
                              f"model.json ({e})") from None
    load_parameters(model, checkpoint)
    eps_state = checkpoint["rng"].get("eps")
    if eps_state is not None:
        model.rng.bit_generator.state = eps_state
    return model
