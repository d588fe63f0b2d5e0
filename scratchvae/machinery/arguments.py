"""The flags' types, shared by every command: each refuses a bad value in one line.

``Parser`` is argparse whose errors are one line on stderr and exit code 2 (no usage block);
the types below say what they expected (``--seed: expected an integer >= 0, got 'x'``).
Integers stay below 2^63, what NumPy's int64 holds: a seed, a size or a count beyond it is a
typo, and would overflow the first float or array it meets. entry.py runs the commands.
"""
import argparse
import math
from pathlib import Path

EXIT_USAGE = 2
MAX_INT = 2 ** 63 - 1


class Parser(argparse.ArgumentParser):
    """argparse, but a bad value is ONE line on stderr (no usage block), exit code 2.

    ``memory_advice``: what the command's user can change when its arrays do not fit in
    memory (e.g. "use a smaller --batch-size"); a sub-command's parser has its own.
    """

    def __init__(self, *args, memory_advice="", **kwargs):
        super().__init__(*args, **kwargs)
        self.memory_advice = memory_advice

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------------------
# Argument types: each rejects a bad value with a message that says what is expected
# ---------------------------------------------------------------------------------------

def _number(text, kind, ok, what):
    try:
        value = kind(text)
    except ValueError:                   # also an integer of more than 4,300 digits
        raise argparse.ArgumentTypeError(f"expected {what}, got {_short(text)}") from None
    if kind is int and abs(value) > MAX_INT:
        raise argparse.ArgumentTypeError(f"expected {what} below 2^63, got {_short(text)}")
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {_short(text)}")
    return value


def _short(text):
    """The value as the user typed it, cut to a readable length (a 400-digit number)."""
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text):,} characters)"


def positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text):
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return _number(text, float, lambda v: v > 0, "a number > 0")


def nonnegative_float(text):
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def image_count(text):
    """--limit: a positive integer, or 'all'."""
    return None if text.strip().lower() == "all" else _number(text, int, lambda v: v >= 1,
                                                               "a positive integer or 'all'")


def path_arg(text):
    """A file or directory name; '' is refused (it would silently mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"a path cannot hold a NUL character, got {text!r}")
    return Path(text)
