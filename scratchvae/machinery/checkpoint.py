"""Checkpoints: one ``.npz`` file holding everything needed to continue a run exactly.

What is inside (every entry a plain array; nothing is pickled):

    "format"                 "scratchvae-checkpoint-1"
    "param.<name>"           each model parameter, e.g. "param.enc.fc1.W" (784, 400) float32
    "optimizer.m_sum", ".v_sum"  Adam's moment vectors, laid out like the model's flat_params
    "model.json"             the model's kind ("type": its class's ``kind``, models.py; absent in
                             checkpoints written before the kinds: a VAE) and its constructor
                             arguments (its ``config()``)
    "optimizer.json"         the optimiser's name, step count and hyper-parameters
    "config.json"            the training configuration (``TrainConfig`` as a dict)
    "history.json"           the per-epoch records so far
    "rng.json"               the states of the run's random generators
    "progress.json"          where in the run it stopped (epochs done, step within the epoch, ...)

The JSON entries are 0-d NumPy string arrays. A generator state holds 128-bit integers;
JSON writes Python ints in full, so ``json.loads(json.dumps(state)) == state`` exactly.

Safety and robustness:

- A checkpoint is data, never code: nothing is ever unpickled. Loading reads the zip
  archive member by member (not ``np.load``): only the members the format defines, each
  stored uncompressed, each .npy header checked against model.json's architecture before
  its data is read -- so memory stays about the file's size, whatever the file claims --
  and every field of every document is checked in one place (``load_checkpoint``) before
  any work starts. Anything else is one ``CheckpointError`` naming the member and field.
- The JSON documents are strict JSON: NaN and Infinity are neither written nor accepted.
- Saving is atomic: the bytes go to a temporary file in the same directory, are flushed
  and fsync'ed, then ``os.replace`` puts the file in place. A crash mid-save leaves the
  previous checkpoint untouched.
- ``load_parameters`` refuses a checkpoint whose architecture differs from the model's,
  naming the field ("checkpoint has latent_dim=20, model has latent_dim=2") or the parameter.
"""
import inspect
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..layers import ACTIVATIONS
from ..vae import LIKELIHOODS
from .config import ConfigError, TrainConfig
from .files import write_atomic
from .models import UNTYPED, kinds, model_class

FORMAT = "scratchvae-checkpoint-1"
ARCHITECTURE = ("input_dim", "hidden_dims", "latent_dim", "activation", "likelihood")
JSON_ENTRIES = ("model", "optimizer", "config", "history", "rng", "progress")
SAFETY = "a checkpoint is data, never code: scratchvae never unpickles anything"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe, or does not fit the model."""


def model_type(model):
    """What model.json records as the model's "type": its class's kind (an IWAE is saved as a
    VAE: the same parameters; the objective is how they were trained, not what they are)."""
    kind = getattr(type(model), "kind", None)
    if model_class(kind) is None:
        raise TypeError(f"cannot checkpoint a {type(model).__name__}: not one of the kinds of "
                        f"models.py ({', '.join(kinds())})")
    return kind


# ---------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------

def save_checkpoint(path, model, optimizer, config, history, rng_states, progress=None):
    """Write a checkpoint to ``path`` atomically (temporary file, flush, fsync, rename).

    Parameters
    ----------
    path : str or Path        where to write, e.g. "run/checkpoint.npz" (directories are created)
    model : a model of models.py      its kind, parameters and constructor arguments are saved
    optimizer : Adam          its ``state_dict()`` (moments, step count, hyper-parameters)
    config : dict             the training configuration, JSON-serialisable
    history : list[dict]      per-epoch records
    rng_states : dict         name -> ``generator.bit_generator.state``
    progress : dict, optional where the run is (see machinery/runner.py), JSON-serialisable
    """
    path = Path(path)
    state = optimizer.state_dict()
    arrays = {"format": np.array(FORMAT)}
    arrays.update({f"param.{name}": value for name, value in model.params.items()})
    state["arrays"] = sorted(k for k, v in state.items() if isinstance(v, np.ndarray))
    for key in state["arrays"]:                             # Adam: m_sum, v_sum; SGD: buf
        arrays[f"optimizer.{key}"] = state.pop(key)
    state["name"] = type(optimizer).__name__.lower()
    documents = {"model": {"type": model_type(model), **model.config()}, "optimizer": state, "config": config,
                 "history": history, "rng": rng_states, "progress": progress or {}}
    for key, document in documents.items():
        arrays[f"{key}.json"] = np.array(json.dumps(document, allow_nan=False))   # strict JSON

    write_atomic(path, "wb", lambda f: _write_npz(f, arrays))
    return path


def _write_npz(f, arrays):
    """The one place the bytes are written (tests interrupt it to simulate a crash)."""
    np.savez(f, **arrays)


# ---------------------------------------------------------------------------------------
# Loading: every member read by hand, checked before its data is read
# ---------------------------------------------------------------------------------------
#
# A checkpoint may come from anywhere (a download, a shared drive, a damaged disk), so
# ``load_checkpoint`` trusts nothing in it, and checks everything in one place, before any
# work starts:
#   1. the zip directory: only the members the format defines, each stored uncompressed
#      (as np.savez writes them) and inside the file -- so no member can inflate beyond the
#      file's own size, and nothing unknown is read at all;
#   2. the JSON documents: strict JSON (no NaN), bounded in size, then every field of each
#      against what the trainer (runner.py) writes (types, ranges, consistency with each other);
#   3. each array's .npy header against the architecture of model.json, BEFORE its data is
#      read; then its values (finite parameters and moments).
# Whatever is wrong becomes one ``CheckpointError`` naming the member and the field.

MAX_JSON_CHARS = 1 << 22          # 4 Mi characters per document (1,000 epochs of history: ~0.3 Mi)
MAX_DIM = 1 << 24                 # the largest layer size accepted in model.json
MAX_HIDDEN_LAYERS = 64
MAX_HEADER = 10_000               # bytes of a .npy header (NumPy's own limit)
PROGRESS_FIELDS = ("epochs_done", "step_in_epoch", "global_step", "sums", "seconds", "train_seconds")
# progress.json's "sums" add up the epoch's losses image by image. A training step computes
# them from float32 arrays (float32's largest number is 3.4e38), and train.py refuses a step
# whose loss or parts are not finite, so a sum over n images stays below n x 1e40 (n x 1e40
# x (1 + beta) for the loss, rec + beta KL): far below float64's 1.8e308, so the rest of
# the epoch can always add to it. A larger sum (1e308) was not written by a training run and
# would overflow to inf as the epoch goes on.
MAX_LOSS_PER_IMAGE = 1e40
OPTIMIZERS = {"adam": {"t", "lr", "beta1", "beta2", "eps"}, "sgd": {"t", "lr", "momentum"}}
OPTIMIZER_ARRAYS = {"adam": ["m_sum", "v_sum"], "sgd": ["buf"]}


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint`` into a dict, refusing anything unsafe.

    Returns
    -------
    dict with keys
        "params"     name -> array (copies, independent of the file)
        "optimizer"  the optimiser state dict ("t", "m_sum", "v_sum", "lr", ... and "name")
        "model"      "type" and the constructor arguments (defaults filled in);
                     "config", "history", "rng", "progress": as saved
        "path"       the path it was read from
    Raises ``CheckpointError`` with one message naming the file, the member and the problem;
    memory used is at most about the file's size (nothing is decompressed).
    """
    path = Path(path)
    if path.is_dir():
        hint = (f"; did you mean {path / 'checkpoint.npz'}?" if (path / "checkpoint.npz").is_file()
                else "")
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if magic.startswith(b"\x80"):                                  # pickle protocol 2 and later
        raise CheckpointError(f"{path}: the file is a Python pickle (pickled objects); refusing to load it ({SAFETY})")
    if magic.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{path}: a single .npy array, not a scratchvae checkpoint (.npz)")
    if not magic.startswith(b"PK"):                                 # .npz files are zip archives
        raise CheckpointError(f"{path}: not a readable .npz checkpoint (not a zip archive; "
                              f"it starts with {magic!r})")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(archive, path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError, struct.error, OverflowError) as e:
        reason = " ".join(str(e).split())                # zipfile may quote raw bytes: one short line
        raise CheckpointError(f"{path}: corrupt .npz checkpoint "
                              f"({reason[:200] + ('...' if len(reason) > 200 else '')})") from None


def _read_archive(archive, path):
    """Steps 1-3 above; ``archive`` is the open zipfile.ZipFile."""
    def fail(text):
        raise CheckpointError(f"{path}: {text}")

    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        fail("the archive holds a member twice (crafted or damaged); refusing it")
    members = {name[:-len(".npy")] if name.endswith(".npy") else name: info
               for name, info in zip(names, infos)}
    disk_bytes = path.stat().st_size
    for key, info in members.items():
        if info.compress_type != zipfile.ZIP_STORED:
            fail(f"member {key!r} is compressed; checkpoints are stored uncompressed (np.savez), "
                 f"so that no member can inflate beyond the file's own size")
        if info.file_size != info.compress_size or info.header_offset + info.file_size > disk_bytes:
            fail(f"member {key!r} claims {info.file_size:,} bytes, more than the file holds")

    if "format" not in members:
        fail(f"not a scratchvae checkpoint (format entry is None, expected {FORMAT!r})")
    fmt = _read_text(archive, members["format"], "format", path, limit=64)
    if fmt != FORMAT:
        fail(f"not a scratchvae checkpoint (format entry is {fmt[:64]!r}, expected {FORMAT!r})")
    missing = [f"{k}.json" for k in JSON_ENTRIES if f"{k}.json" not in members]
    if missing:
        fail(f"incomplete checkpoint, missing {', '.join(missing)}")
    checkpoint = {"path": path}
    for key in JSON_ENTRIES:
        checkpoint[key] = _parse_json(_read_text(archive, members[f"{key}.json"], f"{key}.json", path),
                                      f"{key}.json", path)
    shapes, dtype, arrays = _check_documents(checkpoint, path)     # member name -> expected shape

    unknown = sorted(set(members) - {"format", *(f"{k}.json" for k in JSON_ENTRIES), *shapes})
    if unknown:
        fail(f"member {unknown[0]!r} is not part of the checkpoint format "
             f"(for this model: format, the .json documents, {len(shapes)} arrays); refusing the file")
    absent = [name for name in shapes if name not in members]
    if absent:
        fail(f"incomplete checkpoint, missing {', '.join(absent)}")
    values = {name: _read_array(archive, members[name], name, shape, dtype, path)
              for name, shape in shapes.items()}
    for name, value in values.items():
        bad = value.size - np.count_nonzero(np.isfinite(value))
        if bad:
            fail(f"member {name!r} holds {bad:,} non-finite values (nan or inf) of {value.size:,}; "
                 f"a checkpoint holds only finite numbers")
    if "optimizer.v_sum" in values and (values["optimizer.v_sum"] < 0).any():
        fail("member 'optimizer.v_sum' holds negative values; Adam's second moments are sums of squares")
    checkpoint["params"] = {k[len("param."):]: v for k, v in values.items() if k.startswith("param.")}
    for key in arrays:
        checkpoint["optimizer"][key] = values[f"optimizer.{key}"]
    return checkpoint


def _read_header(f, key, path):
    """The .npy header of one member: (shape, fortran_order, dtype), or CheckpointError."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER)
        else:
            raise ValueError(f".npy format version {version} (checkpoints use 1.0)")
    except (ValueError, TypeError, SyntaxError, EOFError, OverflowError, MemoryError, RecursionError) as e:
        raise CheckpointError(f"{path}: member {key!r} is not a valid .npy array "
                              f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None
    if header[2].hasobject:                      # its data would be a pickle: never read it
        raise CheckpointError(f"{path}: member {key!r} holds pickled Python objects; "
                              f"refusing to load it ({SAFETY})")
    return header


def _read_body(f, info, key, shape, dtype, path):
    """Check the member's size against its header, then read exactly its bytes (no more)."""
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size != f.tell() + nbytes:
        raise CheckpointError(f"{path}: member {key!r} has {info.file_size - f.tell():,} bytes of "
                              f"data, its header declares {nbytes:,} (truncated or crafted)")
    value = np.empty(shape, dtype=dtype)
    view, filled = memoryview(value.reshape(-1).view(np.uint8)), 0
    while filled < nbytes:
        n = f.readinto(view[filled:])
        if not n:
            raise CheckpointError(f"{path}: member {key!r} is truncated")
        filled += n
    if f.read(1):                              # reading to the end also checks the CRC-32
        raise CheckpointError(f"{path}: member {key!r} is longer than its header says")
    return value


def _read_array(archive, info, key, shape, dtype, path):
    """One parameter or moment array, of exactly ``shape`` and ``dtype`` (either byte order)."""
    with archive.open(info) as f:
        got_shape, fortran, got_dtype = _read_header(f, key, path)
        if got_shape != shape or got_dtype not in (dtype, dtype.newbyteorder()) or fortran:
            raise CheckpointError(f"{path}: member {key!r} is a {got_dtype} array of shape "
                                  f"{got_shape}{' (Fortran order)' if fortran else ''}; model.json's "
                                  f"architecture needs {dtype} {shape}")
        value = _read_body(f, info, key, got_shape, got_dtype, path)
    return value.astype(dtype.newbyteorder("="), copy=False)


def _read_text(archive, info, key, path, limit=MAX_JSON_CHARS):
    """A 0-d string member (the format tag and the JSON documents), at most ``limit`` characters."""
    with archive.open(info) as f:
        shape, _, dtype = _read_header(f, key, path)
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * limit:
            raise CheckpointError(f"{path}: member {key!r} must be a text string of at most "
                                  f"{limit:,} characters, found {dtype} of shape {shape}")
        value = _read_body(f, info, key, shape, dtype, path)
    return str(value)


def _parse_json(text, key, path):
    """Strict JSON: NaN, Infinity and numbers that overflow a float are refused."""
    def no_constant(name):
        raise ValueError(f"{name} is not a JSON number")

    def finite_float(s):
        value = float(s)
        if not math.isfinite(value):
            raise ValueError(f"number {s[:30]} overflows a float")
        return value
    try:
        return json.loads(text, parse_constant=no_constant, parse_float=finite_float)
    except RecursionError:
        raise CheckpointError(f"{path}: {key} is nested too deeply to be a checkpoint document") from None
    except ValueError as e:                                  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: entry {key} is not valid JSON ({str(e)[:200]})") from None


def _show(value):
    """A short description of a JSON value for a message (never a megabyte of it)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if isinstance(value, (list, tuple)):
        return repr(list(value)) if len(repr(value)) < 60 else f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object with {len(value)} fields"
    return repr(value)


def _is_int(v, low=0, high=1 << 62):
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_number(v, low=-math.inf, high=math.inf):
    """A finite JSON number (not a bool) in [low, high]."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, int) and v.bit_length() > 1000:
        return False
    return math.isfinite(v) and low <= v <= high


class _Checker:
    """need(ok, member, field, what): one place that words every document error."""

    def __init__(self, path):
        self.path = path

    def need(self, ok, member, field, what, value):
        if not ok:
            where = f"{member}: field {field!r}" if field else member
            raise CheckpointError(f"{self.path}: {where} must be {what}, got {_show(value)}")

    def fields(self, doc, member, required, optional=()):
        """``doc`` is an object whose fields are all in required + optional, with every required one."""
        self.need(isinstance(doc, dict), member, None, "a JSON object", doc)
        unknown = [k for k in doc if k not in required and k not in optional]
        if unknown:
            known = ", ".join(dict.fromkeys([*required, *optional]))
            raise CheckpointError(f"{self.path}: {member}: unknown field {_show(unknown[0])} "
                                  f"(known: {known})")
        missing = [k for k in required if k not in doc]
        if missing:
            raise CheckpointError(f"{self.path}: {member}: field {missing[0]!r} is missing")


def _check_documents(checkpoint, path):
    """Check every field of the six documents; return what the arrays must be.

    Returns (shapes, dtype, optimizer_arrays): member name -> shape for every array member
    the architecture of model.json implies, their dtype, and the optimiser's array names.
    """
    c = _Checker(path)
    model = _check_model(checkpoint["model"], c)
    kind = model["type"]
    shapes = {f"param.{k}": v for k, v in parameter_shapes(model).items()}
    n_params = sum(math.prod(s) for s in shapes.values())

    opt = checkpoint["optimizer"]
    c.need(isinstance(opt, dict), "optimizer.json", None, "a JSON object", opt)
    c.need(opt.get("name", "adam") in OPTIMIZERS if isinstance(opt.get("name", "adam"), str) else False,
           "optimizer.json", "name", f"one of {', '.join(OPTIMIZERS)}", opt.get("name"))
    name = opt.setdefault("name", "adam")
    c.fields(opt, "optimizer.json", ["name", "arrays", *sorted(OPTIMIZERS[name])])
    c.need(opt["arrays"] == OPTIMIZER_ARRAYS[name], "optimizer.json", "arrays",
           f"{OPTIMIZER_ARRAYS[name]} for {name}", opt["arrays"])
    c.need(_is_int(opt["t"]), "optimizer.json", "t", "an integer >= 0 (the step count)", opt["t"])
    c.need(_is_number(opt["lr"]) and opt["lr"] > 0, "optimizer.json", "lr", "a finite number > 0", opt["lr"])
    for key in ("beta1", "beta2", "momentum"):
        if key in opt:
            c.need(_is_number(opt[key], 0) and opt[key] < 1, "optimizer.json", key, "a number in [0, 1)", opt[key])
    if "eps" in opt:
        c.need(_is_number(opt["eps"], 0), "optimizer.json", "eps", "a finite number >= 0", opt["eps"])
    arrays = opt.pop("arrays")
    shapes.update({f"optimizer.{k}": (n_params,) for k in arrays})

    config = _check_config(checkpoint["config"], model, c)
    progress = checkpoint["progress"]
    training = isinstance(progress, dict) and bool(progress)       # written by train(), not by hand
    _check_history(checkpoint["history"], training, kind, c)
    _check_rng(checkpoint["rng"], training, kind, c)
    if training:
        _check_progress(progress, checkpoint, config, model, c)
    else:
        c.need(progress == {}, "progress.json", None, "a JSON object", progress)
    return shapes, np.dtype(model["dtype"]), arrays


def model_defaults(Model):
    """The optional fields of model.json for a class: its constructor's defaults (seed aside,
    which a checkpoint does not need: the weights are saved). The autoencoder samples nothing
    and has no KL, so it has no n_samples or beta; the conditional VAE adds n_classes."""
    parameters = inspect.signature(Model.__init__).parameters.values()
    defaults = {p.name: p.default for p in parameters
                if p.default is not inspect.Parameter.empty and p.name != "seed"}
    if "dtype" in defaults:
        defaults["dtype"] = np.dtype(defaults["dtype"]).name
    return defaults


def _check_model(doc, c):
    """model.json: a kind and its constructor arguments that build a model (sizes bounded, names known)."""
    c.need(isinstance(doc, dict), "model.json", None, "a JSON object", doc)
    kind = doc.get("type", UNTYPED)               # written before the kinds: a VAE
    c.need(isinstance(kind, str) and model_class(kind) is not None, "model.json", "type",
           f"one of {', '.join(kinds())}", kind)
    defaults = model_defaults(model_class(kind))
    c.fields(doc, "model.json", ["input_dim", "hidden_dims", "latent_dim"], ["type", *defaults])
    for key in ("input_dim", "latent_dim"):
        c.need(_is_int(doc[key], 1, MAX_DIM), "model.json", key, f"an integer in 1..{MAX_DIM:,}", doc[key])
    hidden = doc["hidden_dims"]
    c.need(isinstance(hidden, list) and len(hidden) <= MAX_HIDDEN_LAYERS
           and all(_is_int(h, 1, MAX_DIM) for h in hidden), "model.json", "hidden_dims",
           f"a list of at most {MAX_HIDDEN_LAYERS} layer sizes in 1..{MAX_DIM:,}", hidden)
    full = {"type": kind, **defaults, **doc}
    c.need(full["activation"] in ACTIVATIONS if isinstance(full["activation"], str) else False,
           "model.json", "activation", f"one of {', '.join(ACTIVATIONS)}", full["activation"])
    c.need(full["likelihood"] in LIKELIHOODS if isinstance(full["likelihood"], str) else False,
           "model.json", "likelihood", f"one of {', '.join(LIKELIHOODS)}", full["likelihood"])
    if "n_samples" in defaults:
        c.need(_is_int(full["n_samples"], 1, 1 << 20), "model.json", "n_samples", "a positive integer",
               full["n_samples"])
    if "beta" in defaults:
        c.need(_is_number(full["beta"], 0), "model.json", "beta", "a finite number >= 0", full["beta"])
    if "n_classes" in defaults:
        c.need(_is_int(full["n_classes"], 2, MAX_DIM), "model.json", "n_classes",
               f"an integer in 2..{MAX_DIM:,} (the number of labels)", full["n_classes"])
    c.need(full["dtype"] in ("float32", "float64"), "model.json", "dtype", "float32 or float64", full["dtype"])
    doc.update({k: v for k, v in full.items() if k not in doc})
    return doc


def parameter_shapes(model):
    """The parameters model.json's model has, name -> shape, computed without building it:
    its class's ``parameter_shapes`` (tests/machinery/test_checkpoint.py checks it against
    each class's params for random architectures)."""
    return model_class(model.get("type", UNTYPED)).parameter_shapes(model)


def _check_config(doc, model, c):
    """config.json: a TrainConfig (config.py checks each field) that agrees with model.json."""
    c.need(isinstance(doc, dict), "config.json", None, "a JSON object", doc)
    try:
        config = TrainConfig.from_dict(doc)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{c.path}: config.json: {str(e)[:300]}") from None
    if config.model != model["type"]:
        raise CheckpointError(f"{c.path}: config.json has model={_show(config.model)} but model.json "
                              f"has type={_show(model['type'])}")
    for field, arch in (("hidden", "hidden_dims"), ("latent", "latent_dim"), ("activation", "activation"),
                        ("likelihood", "likelihood"), ("n_samples", "n_samples")):
        ours = list(getattr(config, field)) if field == "hidden" else getattr(config, field)
        if field in doc and arch in model and ours != model[arch]:
            raise CheckpointError(f"{c.path}: config.json has {field}={_show(ours)} but model.json "
                                  f"has {arch}={_show(model[arch])}")
    return config


def _check_history(doc, training, kind, c):
    """history.json: per-epoch records numbered 1, 2, ...; complete when train() wrote them.

    ``kind``: model.json's type; its class names the fields of its records."""
    Model = model_class(kind)
    required, optional = Model.history_fields, Model.history_newer
    c.need(isinstance(doc, list), "history.json", None, "a JSON list of per-epoch records", doc)
    for i, record in enumerate(doc):
        member = f"history.json record {i + 1}"
        c.fields(record, member, list(required) if training else ["epoch"], required + optional)
        c.need(record["epoch"] == i + 1 and _is_int(record["epoch"]), member, "epoch", f"{i + 1}",
               record["epoch"])
        for key, value in record.items():
            if key in ("step", "train_eval_n", "test_active_units"):
                c.need(_is_int(value), member, key, "an integer >= 0", value)
            elif key != "epoch":
                c.need(_is_number(value) or (key == "img_per_s" and value is None), member, key,
                       "a finite number", value)


def _check_rng(doc, training, kind, c):
    """rng.json: PCG64 generator states under the names the trainer uses: the model's own
    (its class's random_streams: "eps", or none for the autoencoder) and "data"."""
    names = [*model_class(kind).random_streams, "data"]
    c.fields(doc, "rng.json", names if training else [], names)
    for name, state in doc.items():
        try:                                            # the generators are PCG64 (default_rng)
            c.need(isinstance(state, dict), "rng.json", name, "a PCG64 generator state", state)
            np.random.PCG64().state = state
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise CheckpointError(f"{c.path}: rng.json: {name!r} is not a valid PCG64 generator "
                                  f"state ({str(e)[:200]})") from None


def _check_progress(doc, checkpoint, config, model, c):
    """progress.json of a training run: where it stopped, consistent with the other documents."""
    c.fields(doc, "progress.json", PROGRESS_FIELDS, ["data"])
    for key in ("epochs_done", "step_in_epoch", "global_step"):
        c.need(_is_int(doc[key]), "progress.json", key, "an integer >= 0", doc[key])
    for key in ("seconds", "train_seconds"):
        c.need(_is_number(doc[key], 0), "progress.json", key, "a finite number >= 0", doc[key])
    sums = doc["sums"]
    c.fields(sums, "progress.json sums", ["n", "loss", "rec", "kl"])
    c.need(_is_int(sums["n"]), "progress.json sums", "n", "an integer >= 0", sums["n"])
    for key in ("loss", "rec", "kl"):
        c.need(_is_number(sums[key]), "progress.json sums", key, "a finite number", sums[key])
        bound = sums["n"] * MAX_LOSS_PER_IMAGE * (1 + config.beta if key == "loss" else 1)
        c.need(abs(sums[key]) <= bound, "progress.json sums", key, "0 (sums.n = 0: no image summed yet)"
               if not sums["n"] else f"at most {bound:.3g} in size (the sum of {sums['n']:,} images' "
               f"losses, each a float32 step's)", sums[key])
    history, epochs_done = checkpoint["history"], doc["epochs_done"]
    if len(history) != epochs_done:
        raise CheckpointError(f"{c.path}: inconsistent checkpoint: {len(history)} history records "
                              f"for {epochs_done} completed epochs (progress.json)")
    if checkpoint["optimizer"]["t"] != doc["global_step"]:
        raise CheckpointError(f"{c.path}: inconsistent checkpoint: optimizer.json has taken "
                              f"{checkpoint['optimizer']['t']} steps, progress.json says "
                              f"global_step={doc['global_step']}")
    if "data" not in doc:                              # written before the fingerprints existed
        return
    data = doc["data"]
    c.fields(data, "progress.json data", ["train", "test"])
    for part in ("train", "test"):
        member = f"progress.json data.{part}"
        c.fields(data[part], member, ["images", "pixels", "crc32"], ["labels_crc32"])
        c.need(_is_int(data[part]["images"], 1), member, "images", "a positive integer", data[part]["images"])
        c.need(data[part]["pixels"] == model["input_dim"], member, "pixels",
               f"model.json's input_dim {model['input_dim']}", data[part]["pixels"])
        for key in ("crc32", "labels_crc32"):                 # labels: a conditional VAE's run
            if key in data[part]:
                c.need(_is_int(data[part][key], 0, (1 << 32) - 1), member, key, "a CRC-32 (0..2^32-1)",
                       data[part][key])
    n, batch = data["train"]["images"], config.batch_size
    steps = -(-n // batch)                              # steps per epoch: ceil(n / batch)
    step = doc["step_in_epoch"]
    consistent = (step < steps and doc["global_step"] == epochs_done * steps + step
                  and sums["n"] == min(step * batch, n))
    if not consistent:
        raise CheckpointError(f"{c.path}: inconsistent checkpoint: progress.json has epochs_done="
                              f"{epochs_done}, step_in_epoch={step}, global_step={doc['global_step']}, "
                              f"sums.n={sums['n']}, but {n:,} images in batches of {_show(batch)} make "
                              f"{steps} steps per epoch")


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
    ours, theirs = model_type(model), checkpoint["model"].get("type", UNTYPED)
    if ours != theirs:
        raise CheckpointError(f"{checkpoint['path']}: the checkpoint holds a model of type {theirs!r}, "
                              f"the model is of type {ours!r}")
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
    """Rebuild the trained model stored in a checkpoint (for sampling, evaluation, plots).

    model.json's type says which class (models.py: ``model_class``). The model's own generator
    (``model.rng``, which draws eps, where its class has the stream "eps") is restored to its
    saved state, so the model is exactly as it was when the checkpoint was written.
    """
    checkpoint = path if isinstance(path, dict) else load_checkpoint(path)
    arguments = dict(checkpoint["model"])
    Model = model_class(arguments.pop("type", UNTYPED))
    try:
        model = Model(**arguments)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint['path']}: cannot rebuild the model from "
                              f"model.json ({e})") from None
    load_parameters(model, checkpoint)
    eps_state = checkpoint["rng"].get("eps")
    if eps_state is not None and "eps" in Model.random_streams:
        model.rng.bit_generator.state = eps_state
    return model
