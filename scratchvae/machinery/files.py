"""Files that are whole or not there: every file scratchvae writes goes through ``write_atomic``.

The bytes go to a temporary file beside the target (``.NAME.XXXX.tmp``), are flushed and
fsync'ed, then ``os.replace`` puts the file in place. Readers, a crash, a kill -9 or a full
disk see the old file or the new one, never half of one; a failed write removes its
temporary file and leaves the previous file as it was.
"""
import os
import tempfile
from pathlib import Path


def write_atomic(path, mode, write):
    """write(f) into a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    ``mode`` is "w" (text, UTF-8) or "wb"; the parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())               # mkstemp makes it 0600; a new file follows the umask
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


def write_text_atomic(path, text):
    """A small text file (history.json, history.csv, a page) with the same temp-and-rename care."""
    write_atomic(path, "w", lambda f: f.write(text))


def write_bytes_atomic(path, write):
    """write(f) into a binary file at ``path`` with the same temp-and-rename care (PNG grids)."""
    write_atomic(path, "wb", write)


def file_mode():
    """The mode open() gives a new file: 0666 minus the process's umask (mkstemp uses 0600)."""
    umask = os.umask(0o022)                      # reading the umask means setting it: put it back
    os.umask(umask)
    return 0o666 & ~umask
