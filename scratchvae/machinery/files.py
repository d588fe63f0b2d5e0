"""Files that are whole or not there: every file scratchvae writes goes through ``write_atomic``.

The bytes go to a temporary file beside the target (``.NAME.XXXX.tmp``), are flushed and
fsync'ed, then ``os.replace`` puts the file in place. Readers, a crash, a kill -9 or a full
disk see the old file or the new one, never half of one; a failed write removes its
temporary file and leaves the previous file as it was. A failed write raises ``WriteError``,
an OSError whose message names the file (``cannot write out/figure.png: No space left on
device``). While a write is under way its temporary file is listed in ``TEMPORARIES``, so
that a command stopped by a signal removes it (``remove_temporaries``, entry.py) even when
the signal lands between the file's creation and the ``try`` that would remove it.
"""
import os
import tempfile
from pathlib import Path

from .stops import held

TEMPORARIES = set()              # paths of the temporary files being written now, in this process


class WriteError(OSError):
    """``path`` could not be written (``errno`` and ``strerror`` say why); the previous file is kept."""

    def __str__(self):
        return f"cannot write {self.filename}: {self.strerror}"


def write_atomic(path, mode, write):
    """write(f) into a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    ``mode`` is "w" (text, UTF-8) or "wb"; the parent directories are created. Raises
    WriteError (an OSError) naming ``path`` when the disk is full or the directory not writable.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with held():                             # a stop signal waits until the name is written down
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            TEMPORARIES.add(tmp)
        os.fchmod(fd, file_mode())               # mkstemp makes it 0600; a new file follows the umask
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())                 # the bytes are on disk before the rename
        os.replace(tmp, path)                    # atomic: readers see the old file or the new one
        TEMPORARIES.discard(tmp)
    except BaseException as e:
        if tmp is not None:
            _remove(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def write_text_atomic(path, text):
    """A small text file (history.json, history.csv, a page) with the same temp-and-rename care."""
    write_atomic(path, "w", lambda f: f.write(text))


def write_bytes_atomic(path, write):
    """write(f) into a binary file at ``path`` with the same temp-and-rename care (PNG grids)."""
    write_atomic(path, "wb", write)


def remove_temporaries():
    """Delete the temporary files of writes that have not finished (a command that is stopping)."""
    for tmp in list(TEMPORARIES):
        _remove(tmp)


def _remove(tmp):
    try:
        os.remove(tmp)
    except OSError:
        pass
    TEMPORARIES.discard(tmp)


def file_mode():
    """The mode open() gives a new file: 0666 minus the process's umask (mkstemp uses 0600)."""
    umask = os.umask(0o022)                      # reading the umask means setting it: put it back
    os.umask(umask)
    return 0o666 & ~umask
