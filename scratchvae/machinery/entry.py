"""One way in: how every command of scratchvae starts and ends.

The ``scratchvae`` command (cli.py), ``python demo.py`` and each chapter's ``python -m
scratchvae.chapters.NAME`` build their flags with arguments.py's ``Parser`` and types, and
run their work through ``run(parser, argv, work)``, which turns every way a command can end
into one exit code and at most one line on stderr (``PROGRAM: error: ...``):

    0                 done
    2                 bad input: a bad option (one line, no usage block), a data set, checkpoint
                      or configuration that cannot be used, an output path where no file can be
                      written (a directory that is a file, or not this user's), sizes whose arrays
                      do not fit in memory
    1                 the work failed: training diverged, or the disk is full (the line names the
                      file: ``cannot write out/11_beta_sweep.png: No space left on device``)
    128 + signum      stopped by Ctrl-C (130), SIGTERM (143) or SIGHUP (129), in any phase

A stop signal raises where the program is (stops.at_once), except in training, which first
saves a checkpoint at the next step boundary (stops.at_step_boundary; a second signal stops
at once). Either way the command's unfinished temporary files are removed (files.py), its
locks released, and its last line says which signal stopped it and what is kept.
"""
import errno
import os
import signal
import sys

from .arguments import EXIT_USAGE
from .checkpoint import CheckpointError
from .config import ConfigError
from .data import DataError
from .files import WriteError, remove_temporaries
from .runner import TrainingDiverged
from .stops import at_once, ending, signal_name

EXIT_FAILED = 1
DISK_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)   # a write failed: exit 1, not bad input
_when_stopped = []               # what the running command keeps if a signal stops it now


def say_when_stopped(text):
    """From now on, a stop signal's last line adds ``text`` (e.g. where the trained models are)."""
    _when_stopped[:] = [text]


def run(parser, argv, work):
    """Parse ``argv`` with ``parser`` and return ``work(args)``'s exit code, or the code of how it ended.

    The program's name and memory advice are those of ``args.command_parser`` when the
    parser has sub-commands (cli.py sets it), else the parser's own. A bad option raises
    SystemExit(2) after its one line, as argparse does.
    """
    _when_stopped.clear()
    with at_once():
        args = parser.parse_args(argv)
        command = getattr(args, "command_parser", parser)
        try:
            return work(args)
        except BaseException as e:
            ending()                                 # the last words: a second signal cannot cut them
            code, line = _ending(e, command)
            if code is None:
                raise                                # SystemExit (argparse), or a bug: its traceback
            if line:
                print(f"{command.prog}: {line}", file=sys.stderr, flush=True)
            return code
        finally:
            remove_temporaries()                     # of the writes a stop or an error cut short


def _ending(e, command):
    """(exit code, the line to print) for the exception ``e`` that ended ``command``; (None, None): re-raise."""
    if isinstance(e, KeyboardInterrupt):             # Stopped, TrainingInterrupted, or Python's own Ctrl-C
        signum = getattr(e, "signum", signal.SIGINT)
        saved = getattr(e, "checkpoint", None)              # TrainingInterrupted: where training saved
        kept = [f"the training state is saved in {saved}"] * (saved is not None) + _when_stopped
        return 128 + int(signum), "; ".join([f"stopped by {signal_name(signum)}", *kept])
    if isinstance(e, (DataError, CheckpointError, ConfigError)):
        return EXIT_USAGE, f"error: {e}"
    if _out_of_memory(e):
        detail = (f"not enough memory ({e})" if isinstance(e, MemoryError) and str(e) else
                  "not enough memory" if isinstance(e, MemoryError) else
                  "not enough memory: arrays of these sizes cannot exist")
        advice = f"; {command.memory_advice}" if command.memory_advice else ""
        return EXIT_USAGE, f"error: {detail}{advice}"
    if isinstance(e, TrainingDiverged):
        return EXIT_FAILED, f"error: {e}"
    if isinstance(e, WriteError) and e.errno not in DISK_FAILURES:     # the path given cannot hold a file
        return EXIT_USAGE, f"error: {e}"
    if isinstance(e, OSError):
        return EXIT_FAILED, f"error: {describe_os_error(e)}"
    return None, None


def _out_of_memory(e):
    """MemoryError, or NumPy's refusal of a shape whose size overflows: an array that cannot exist."""
    return isinstance(e, MemoryError) or (isinstance(e, ValueError) and any(
        words in str(e) for words in ("array is too big", "Maximum allowed dimension exceeded")))


def describe_os_error(e):
    """'cannot write PATH: REASON' (files.WriteError), 'PATH: REASON', or the reason alone."""
    if isinstance(e, WriteError):
        return str(e)
    if e.filename is None:
        return e.strerror or str(e)
    where = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes)) else str(e.filename)
    return f"{where}: {e.strerror or e}"
