"""How a command stops: Ctrl-C (SIGINT), ``kill`` and ``timeout`` (SIGTERM), a closed terminal (SIGHUP).

Two rules, one for each kind of work:

    at_once()             every command, from start to end (entry.py installs it): a stop
                          signal raises ``Stopped(signum)`` where the program is, so the
                          ``finally`` clauses run on the way out -- temporary files are removed,
                          locks released -- and the command exits with 128 + signum
    at_step_boundary()    training (runner.py): the first signal only asks to stop; the loop
                          finishes its step, saves a checkpoint and raises TrainingInterrupted.
                          A second signal raises ``Stopped`` at once.

A shell reports a program stopped by signal n as 128 + n: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.
Both rules take over a signal only if its handler is still Python's default (or the other
rule's): a program that installed its own (a notebook, ``nohup``'s ignored SIGHUP) keeps it.
Handlers are installed in the main thread only (Python runs them there).
"""
import signal
import threading
from contextlib import contextmanager
from types import SimpleNamespace

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_DEFAULTS = {signal.SIGINT: signal.default_int_handler}    # Python's own SIGINT handler; others: SIG_DFL


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` is its number (the exit code is 128 + signum)."""

    def __init__(self, signum):
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = int(signum)


def signal_name(signum):
    """'Ctrl-C (SIGINT)', 'SIGTERM', 'SIGHUP': what stopped a program, as its user knows it."""
    name = signal.Signals(signum).name
    return f"Ctrl-C ({name})" if signum == signal.SIGINT else name


_state = SimpleNamespace(ending=False, holding=0, pending=None)   # ending: a stop was raised or an error is reported


def _stop(signum):
    """Raise Stopped(signum) now, or as the held() block around this line ends."""
    if _state.holding:
        _state.pending = _state.pending or signum
        return
    _state.ending = True
    raise Stopped(signum)


def _stop_now(signum, frame):
    if not _state.ending:                      # once on its way out, it may say its last words
        _stop(signum)


@contextmanager
def at_once():
    """For the block: a stop signal raises ``Stopped(signum)`` at once (in the main thread);
    signals after it, while the command says its last words, are ignored."""
    _state.ending, _state.holding, _state.pending = False, 0, None
    try:
        with _handling(_stop_now, takes_over=()):
            yield
    finally:
        _state.ending = False


def ending():
    """The command is ending (an error is being reported): from now on stop signals are ignored."""
    _state.ending = True


@contextmanager
def at_step_boundary():
    """For the block: the first stop signal sets ``flag.requested`` and ``flag.signum`` (the loop
    then saves at the next step boundary and stops); a second one raises ``Stopped`` at once."""
    flag = SimpleNamespace(requested=False, signum=signal.SIGINT)

    def ask(signum, frame):
        if _state.ending:
            return
        if flag.requested:
            _stop(signum)
        else:
            flag.requested, flag.signum = True, signum

    with _handling(ask, takes_over=(_stop_now,)):
        yield flag


@contextmanager
def _handling(handler, takes_over):
    """Install ``handler`` for each stop signal whose handler is Python's default or one of
    ``takes_over``; put the previous handlers back at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    ours = [s for s in STOP_SIGNALS if previous[s] is _DEFAULTS.get(s, signal.SIG_DFL) or previous[s] in takes_over]
    for s in ours:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s in ours:
            signal.signal(s, previous[s])


@contextmanager
def held():
    """For the block: a stop that would be raised waits until the block ends -- around the few
    lines that create a temporary file and write down its name, so that no stop falls between."""
    _state.holding += 1
    try:
        yield
    finally:
        _state.holding -= 1
        if not _state.holding and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            _state.ending = True
            raise Stopped(signum)
