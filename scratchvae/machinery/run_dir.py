"""The run directory: what a training run writes there, and how a run comes back from it.

    out/checkpoint.npz     parameters, Adam's state, the random generators, the position in
                           the epoch, the history (checkpoint.py writes and checks it)
    out/history.json, .csv one record per epoch, written just before the checkpoint
    out/.scratchvae.lock   held while a run writes here: one run per directory

Nothing here is part of the lecture's story; runner.py calls it at the start of a run and at
the end of every epoch. Every file is replaced atomically (written beside, then renamed), so
a crash or kill -9 leaves the previous complete file.
"""
import csv
import io
import json
import os
import tempfile
import zlib
from contextlib import ExitStack, contextmanager

import numpy as np

from .checkpoint import CheckpointError, load_parameters, save_checkpoint
from .config import ConfigError
from .files import WriteError, write_text_atomic

try:
    import fcntl                                          # the run directory's lock (POSIX)
except ImportError:                                       # pragma: no cover  (Windows)
    fcntl = None

CHECKPOINT_NAME = "checkpoint.npz"
HISTORY_NAMES = ("history.json", "history.csv")


def check_writable(out):
    """Create the run directory and make sure a file can be written there, or raise ConfigError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"cannot write to the output directory {out}: {e.strerror or e}") from None


def fingerprint(images, labels=None):
    """What identifies a data set cheaply: its size and a CRC-32 of its pixels (about 10 ms for 47 MB
    here), and of its labels when a model sees them (a conditional one)."""
    found = {"images": int(images.shape[0]), "pixels": int(images.shape[1]),
             "crc32": zlib.crc32(np.ascontiguousarray(images))}
    if labels is not None:
        found["labels_crc32"] = zlib.crc32(np.ascontiguousarray(labels, dtype=np.uint8))
    return found


def restore(checkpoint, model, optimizer, data_rng, config, data, log):
    """Put the saved state back: parameters, Adam, generators; return (history, position).

    Refuses (CheckpointError) a checkpoint that train() did not write, and (ConfigError)
    data other than the run's: the same batches must be replayable.
    """
    where = checkpoint["path"]
    load_parameters(model, checkpoint)
    state, position = checkpoint["optimizer"], checkpoint["progress"]
    missing = [f"progress.json: {k}" for k in ("epochs_done", "step_in_epoch", "global_step", "sums",
                                               "seconds", "train_seconds") if k not in position]
    streams = (*model.random_streams, "data")                             # the autoencoder draws no eps
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
                              f"{describe_data(saved_data.get(part))}; now: {describe_data(data[part])}); "
                              f"resume with the data the run was trained on")
    if optimizer.lr != config.lr:
        log.line(f"note: lr changed from {optimizer.lr:g} to {config.lr:g}; the continuation "
                 f"differs from the uninterrupted run")
        optimizer.lr = config.lr
    if "eps" in model.random_streams:
        model.rng.bit_generator.state = checkpoint["rng"]["eps"]
    data_rng.bit_generator.state = checkpoint["rng"]["data"]
    history = checkpoint["history"]
    if len(history) != position["epochs_done"]:
        raise ConfigError(f"{checkpoint['path']}: inconsistent checkpoint: {len(history)} history "
                          f"records for {position['epochs_done']} completed epochs")
    return history, position


def describe_data(fingerprint):
    if not isinstance(fingerprint, dict):
        return "unknown"
    return (f"{fingerprint.get('images')} images of {fingerprint.get('pixels')} pixels, "
            f"CRC-32 {fingerprint.get('crc32')}")


def save(ckpt_path, model, optimizer, config, history, rng_states, position, data):
    """Checkpoint plus history.json / history.csv next to it (nothing when out is None).

    ``data`` (the fingerprints of the train and test images) goes into progress.json.
    """
    if ckpt_path is None:
        return
    write_history(ckpt_path.parent, history)          # first: the files are never behind the checkpoint
    save_checkpoint(ckpt_path, model, optimizer, config.to_dict(), history, rng_states,
                    {**position, "data": data})


def write_history(out, history):
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


def file_identity(path):
    """What tells whether a file was replaced: (inode, size, mtime), None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


LOCK_NAME = ".scratchvae.lock"
LOCK_TEXT_BYTES = 64             # "process 1234", padded: written in place, in one write, never truncated
_HELD = {}                       # the run directories this process holds: (st_dev, st_ino) -> depth


@contextmanager
def exclusive(out):
    """Hold an exclusive lock on the run directory ``out`` (flock on out/.scratchvae.lock).

    A second training into the same directory is refused at once (ConfigError naming the
    process holding it) instead of both writing, the later silently replacing the other's
    checkpoint. The kernel releases the lock when its process ends, however it ends: after a
    kill -9 there is no stale lock to clean up. (Without fcntl, as on Windows: no lock.)
    The process that holds ``out`` may enter again (the demo holds its run directories from
    its check to the end, around the trainings that lock them too).

    The lock file says who holds it. Its text is written in place, never renamed over (a
    second run would lock the new file while the first held the old one) and never truncated:
    one write of LOCK_TEXT_BYTES bytes, so a failed write (a full disk: WriteError naming the
    file) leaves the previous text whole.
    """
    if fcntl is None:
        yield
        return
    path = out / LOCK_NAME
    try:
        key = (os.stat(out).st_dev, os.stat(out).st_ino)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)     # not O_APPEND: the text goes at offset 0
    except OSError as e:
        raise ConfigError(f"cannot create the lock file {path}: {e.strerror or e}") from None
    try:
        if key not in _HELD:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, LOCK_TEXT_BYTES, 0).decode("utf-8", "replace").strip()
                raise ConfigError(f"another training is writing to {out} ({holder or 'a running process'}); "
                                  f"wait for it to end, or choose another output directory (--out)") from None
            except OSError as e:
                raise ConfigError(f"cannot lock {path}: {e.strerror or e}") from None
            try:
                os.pwrite(fd, f"process {os.getpid()}".ljust(LOCK_TEXT_BYTES - 1).encode() + b"\n", 0)
            except OSError as e:
                raise WriteError(e.errno, e.strerror or str(e), str(path)) from None
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
    finally:
        os.close(fd)                                          # closing the last descriptor unlocks


def hold_run_directories(outs):
    """Create each run directory in ``outs`` (check_writable) and hold it (exclusive) until the
    returned ExitStack closes: ``with hold_run_directories([a, b]): ...``."""
    held = ExitStack()
    try:
        for out in outs:
            check_writable(out)
            held.enter_context(exclusive(out))
    except BaseException:
        held.close()
        raise
    return held


def remove_stale_temporaries(out, log):
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
