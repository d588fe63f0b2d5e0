"""Two workers on two cores: shared memory, the BLAS thread count, and the hand-overs.

fused_step.py's fused step splits each training step between two workers, each running its
matrix products on one core: the calling thread (worker 0) and a helper (worker 1).
This module holds everything about *running* two workers and nothing about the VAE:

- ``SharedArena``: arrays in anonymous shared memory, which a forked child sees too;
- ``set_blas_threads``: OpenBLAS's (process-wide) thread count, set to one per worker;
- ``ThreadPair`` and ``ProcessPair``: the helper as a thread or as a forked process, and
  the hand-overs of one step between the two workers;
- ``ForkedHelper``: the same kind of forked helper for a job of one phase, the fused
  evaluation's second worker (fused_eval.py).

One step, for either pair (worker w runs rows of the batch in phase 1, its own layers in
phase 2; fused_step.py's ``_Worker`` has the code):

    main:   publish the job -> GO -> phase 1 (my rows) -> "my rows done" -> wait for helper's
            -> if the loss is finite: phase 2 (my layers, Adam on my half) -> wait for DONE
    helper: wait for GO -> phase 1 (its rows) -> "its rows done" -> wait for main's
            -> if the loss is finite: phase 2 (its layers, Adam on its half) -> DONE

Both publish their loss sums before the mid-step hand-over, so each sees the whole batch's
loss and skips its Adam half when it is not finite.

Why a process: on a virtual machine whose idle cores sleep, each lock hand-over between
threads costs tens of microseconds, and two threads also queue for the GIL; two processes
spinning on counters in shared memory hand over in about a microsecond.
"""
import ctypes
import glob
import math
import mmap
import os
import signal
import threading
import time

import numpy as np

# ---------------------------------------------------------------------------------------
# Memory both workers see, and the BLAS thread count
# ---------------------------------------------------------------------------------------


class SharedArena:
    """Arrays carved out of one anonymous shared mmap: a forked child sees the same memory."""

    def __init__(self, nbytes):
        self.buffer = mmap.mmap(-1, max(int(nbytes), 1))
        self.used = 0

    def empty(self, shape, dtype=np.float32):
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        start = (self.used + 63) // 64 * 64                      # cache-line aligned
        count = math.prod(shape)
        if start + count * dtype.itemsize > len(self.buffer):
            raise MemoryError("SharedArena is full (a sizing bug in the caller)")
        self.used = start + count * dtype.itemsize
        return np.frombuffer(self.buffer, dtype, count, start).reshape(shape)


class PrivateArena:
    """The same interface over ordinary memory, for a single process."""

    @staticmethod
    def empty(shape, dtype=np.float32):
        return np.empty(shape, dtype)


_PREFIXES = (("scipy_", "64_"), ("scipy_", "_64_"), ("", "64_"), ("", ""))


def _openblas_functions():
    """(set threads, get threads, get core name) of NumPy's bundled OpenBLAS, or Nones.

    NumPy's wheels ship OpenBLAS with prefixed symbols (scipy_openblas_set_num_threads64_);
    other builds export openblas_set_num_threads. The thread count is process-global.
    """
    root = os.path.dirname(os.path.dirname(np.__file__))
    candidates = sorted(glob.glob(os.path.join(root, "numpy.libs", "*openblas*.so*")))
    candidates += sorted(glob.glob(os.path.join(root, "numpy", ".dylibs", "*openblas*")))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)                              # already loaded by NumPy
        except OSError:
            continue
        for p, s in _PREFIXES:
            set_name, get_name = f"{p}openblas_set_num_threads{s}", f"{p}openblas_get_num_threads{s}"
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                corename = getattr(lib, f"{p}openblas_get_corename{s}", None)
                if corename is not None:
                    corename.argtypes, corename.restype = [], ctypes.c_char_p
                return setter, getter, corename
    return None, None, None


_SET_BLAS_THREADS, _GET_BLAS_THREADS, _BLAS_CORENAME = _openblas_functions()


def cpu_model():
    """The CPU's name with its family and model numbers, as /proc/cpuinfo gives them (benchmarks
    print it beside every figure; "Intel(R) Xeon(R) Processor" alone does not say which Xeon)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return "unknown CPU"
    return f"{info.get('model name', '?')} (family {info.get('cpu family')}, model {info.get('model')})"


def blas_core():
    """The kernel set OpenBLAS chose at NumPy's import ("Haswell", "SkylakeX", ...), or None.

    OpenBLAS picks it from the CPU, unless the environment variable OPENBLAS_CORETYPE says
    otherwise; it decides how fast the matrix products are (benchmarks/README.md, "Which
    OpenBLAS kernels"). The benchmarks report it.
    """
    return _BLAS_CORENAME().decode() if _BLAS_CORENAME is not None else None


def set_blas_threads(n):
    """Set OpenBLAS's thread count; return the previous one (None if it cannot be set)."""
    if _SET_BLAS_THREADS is None:
        return None
    previous = _GET_BLAS_THREADS()
    _SET_BLAS_THREADS(int(n))
    return previous


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3                  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(heap_arrays=16 << 20, keep=256 << 20):
    """Ask glibc's malloc to reuse freed memory instead of handing it back to the kernel.

    NumPy gives every intermediate result a new array -- an evaluation chunk's softplus makes
    several of 3 MB -- and frees it a moment later. Left to itself, glibc returns large freed
    blocks to the kernel, so the next chunk's arrays arrive as fresh pages: a page fault and a
    zero-fill for every 4 KiB. Here arrays below ``heap_arrays`` bytes come from malloc's heap,
    and up to ``keep`` bytes of freed heap stay with the process. What is computed does not
    change; peak memory barely does (freed memory is reused, not added to). Measured on a
    2-core AMD EPYC (family 26, model 2): the importance-sampled evaluation with k = 1000 on
    1,000 images took 9.7-9.8 s without it, 6.8-7.2 s with it (benchmarks/README.md,
    "AMD EPYC (family 26, model 2)").
    scratchvae calls this once, when it is imported. Returns True where it took effect (Linux
    with glibc), False elsewhere.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(heap_arrays)) and mallopt(_M_TRIM_THRESHOLD, int(keep)))


# ---------------------------------------------------------------------------------------
# The helper as a thread: hand-overs through locks
# ---------------------------------------------------------------------------------------

class ThreadPair:
    """Worker 1 in a helper thread (NumPy releases the GIL in its loops and products)."""

    def __init__(self, step):
        self.step = step
        # plain locks used as binary semaphores, each created held
        self._go, self._phase1_0, self._phase1_1, self._done = (threading.Lock() for _ in range(4))
        for lock in (self._go, self._phase1_0, self._phase1_1, self._done):
            lock.acquire()
        self._stop, self._error, self._finite_1 = False, None, True
        self._thread = threading.Thread(target=self._loop, name="scratchvae-fused-step", daemon=True)
        self._thread.start()

    def run(self, b, half, update, alpha_t, eps_t):
        """One step; returns [finite_0, finite_1] (gradients), or None if the loss was not finite."""
        w0 = self.step.workers[0]
        self._job = (b, half, update, alpha_t, eps_t)
        self._go.release()
        w0.forward_backward(0, half)
        self._phase1_0.release()                                 # my rows are done ...
        self._phase1_1.acquire()                                 # ... and so are the helper's
        proceed = self._error is None and self.step.loss_is_finite()
        finite_0 = w0.gradients_and_update(b, update, alpha_t, eps_t) if proceed else None
        self._done.acquire()
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("the fused step's helper thread failed") from error
        return [finite_0, self._finite_1] if proceed else None

    def _loop(self):
        w1 = self.step.workers[1]
        with np.errstate(all="ignore"):                          # the calling thread reports inf / nan
            while True:
                self._go.acquire()
                if self._stop:
                    return
                b, half, update, alpha_t, eps_t = self._job
                try:
                    w1.forward_backward(half, b)
                except BaseException as error:                   # re-raised in the calling thread
                    self._error, w1.partial = error, (math.nan, math.nan)
                self._phase1_1.release()
                self._phase1_0.acquire()
                if self._error is None and self.step.loss_is_finite():
                    try:
                        self._finite_1 = w1.gradients_and_update(b, update, alpha_t, eps_t)
                    except BaseException as error:
                        self._error = error
                self._done.release()

    def close(self):
        if self._thread is not None:
            self._stop = True
            self._go.release()
            self._thread.join(timeout=5)
            self._thread = None


# ---------------------------------------------------------------------------------------
# The helper as a forked process: hand-overs by counters in shared memory
# ---------------------------------------------------------------------------------------

# slots of the shared counters (int64) and scalars (float64)
_GO, _PHASE1_0, _PHASE1_1, _DONE, _STOP, _B, _UPDATE, _FINITE1, _FAILED, _T = range(10)
_INV_B, _BETA, _ALPHA, _EPS_T, _REC0, _KL0, _REC1, _KL1 = range(8)


class ProcessPair:
    """Worker 1 in a forked child process that shares every array through ``arena``.

    A worker announces "step s has reached point k" by storing s in ctl[k]; the other
    spins until it reads s there. Scalars travel in fl. Adam's step count t travels with
    every job: the child's optimiser is a copy made at the fork, and t decides on which steps
    Adam flushes its moments (optim.py). Linux only (fork). The child ignores Ctrl-C (the
    trainer handles it) and leaves when the parent is gone.
    """

    def __init__(self, step, arena):
        self.step = step
        self.ctl = arena.empty(16, np.int64)                     # counters
        self.fl = arena.empty(16, np.float64)                    # scalars
        self.ctl[:], self.fl[:] = 0, 0.0
        self.message = arena.empty(2048, np.uint8)               # the helper's error, if any
        self._parent = os.getpid()
        self.pid = _fork(self._quiet_loop, self.ctl, self.message)

    def _quiet_loop(self):
        with np.errstate(all="ignore"):                          # the parent reports inf / nan
            self._loop()

    @staticmethod
    def shared_bytes(B, D, H, K, n_params, itemsize):
        """Bytes the fused step puts in the arena: 5 parameter-sized vectors and the batch arrays."""
        per_row = 4 * D + 3 * (H + 1) + 7 * (K + 1)
        return (5 * n_params + B * per_row) * itemsize + 64 * 64 + 2 * 4096

    def run(self, b, half, update, alpha_t, eps_t):
        """One step; returns [finite_0, finite_1] (gradients), or None if the loss was not finite."""
        ctl, fl, st = self.ctl, self.fl, self.step
        w0, w1 = st.workers
        s = int(ctl[_GO]) + 1
        ctl[_B], ctl[_UPDATE], ctl[_T] = b, int(update), st.optimizer.t
        fl[_INV_B], fl[_BETA], fl[_ALPHA], fl[_EPS_T] = st.inv_b, st.beta, alpha_t, eps_t
        ctl[_GO] = s                                             # go
        w0.forward_backward(0, half)
        fl[_REC0], fl[_KL0] = w0.partial
        ctl[_PHASE1_0] = s
        self._wait(_PHASE1_1, s)
        w1.partial = (fl[_REC1], fl[_KL1])
        proceed = st.loss_is_finite()
        finite_0 = w0.gradients_and_update(b, update, alpha_t, eps_t) if proceed else None
        self._wait(_DONE, s)
        return [finite_0, bool(ctl[_FINITE1])] if proceed else None

    def _loop(self):
        ctl, fl, st = self.ctl, self.fl, self.step
        w0, w1 = st.workers
        s = 0
        while True:
            s += 1
            self._wait(_GO, s)
            if ctl[_STOP]:
                return
            b, update = int(ctl[_B]), bool(ctl[_UPDATE])
            st.inv_b, st.beta = st.dtype.type(fl[_INV_B]), float(fl[_BETA])
            st.optimizer.t = int(ctl[_T])                        # my Adam is a forked copy: t from the job
            w1.forward_backward((b + 1) // 2, b)
            fl[_REC1], fl[_KL1] = w1.partial
            ctl[_PHASE1_1] = s
            self._wait(_PHASE1_0, s)
            w0.partial = (fl[_REC0], fl[_KL0])
            if st.loss_is_finite():
                ctl[_FINITE1] = w1.gradients_and_update(b, update, fl[_ALPHA], fl[_EPS_T])
            ctl[_DONE] = s

    def _wait(self, k, s):
        _spin_until(self.ctl, k, s, self._check_other)

    def _check_other(self):
        if os.getpid() != self._parent:                          # in the helper: is the parent alive?
            if os.getppid() != self._parent:
                raise SystemExit("the training process is gone")
            if self.ctl[_STOP]:                                  # closed while mid-step
                raise SystemExit(0)
            return
        _raise_if_stopped(self, "the fused step's helper process", "train with --engine plain")

    def close(self):
        """Stop the helper, even one left mid-step by an exception in the parent."""
        if self.pid:
            _stop_child(self.pid, self.ctl)
        self.pid = None


class ForkedHelper:
    """``work()`` run in a forked child each time the parent calls ``start()``; ``wait()``
    returns when it is done. The fused evaluation's helper (fused_eval.py): ProcessPair's
    hand-over for a job of one phase. ``work`` reads its inputs from, and writes its results
    into, arrays of ``arena`` allocated before this (so that the child shares them). Errors in
    the child (a FloatingPointError under the caller's np.errstate included) are raised in the
    parent by ``wait``. Linux only (fork); the child ignores Ctrl-C and leaves when the
    parent is gone.
    """

    def __init__(self, arena, work):
        self.ctl = arena.empty(16, np.int64)
        self.ctl[:] = 0
        self.message = arena.empty(2048, np.uint8)
        self._parent = os.getpid()
        self.pid = _fork(lambda: self._serve(work), self.ctl, self.message)

    def _serve(self, work):
        """The helper's life: each GO, one ``work()``, then DONE; until STOP."""
        s = 0
        while True:
            s += 1
            _spin_until(self.ctl, _GO, s, self._parent_alive)
            if self.ctl[_STOP]:
                return
            work()
            self.ctl[_DONE] = s

    def start(self):
        self.ctl[_GO] += 1

    def wait(self):
        _spin_until(self.ctl, _DONE, self.ctl[_GO], self._child_alive)

    def _parent_alive(self):
        if os.getppid() != self._parent:
            raise SystemExit("the evaluating process is gone")

    def _child_alive(self):
        _raise_if_stopped(self, "the fused evaluation's helper process", "evaluate with --engine plain")

    def close(self):
        if self.pid:
            _stop_child(self.pid, self.ctl)
        self.pid = None


def _fork(run, ctl, message):
    """Fork a helper process that runs ``run()``, then exits; returns its pid to the parent.
    The child ignores Ctrl-C (the parent's business); an exception it raises is written into
    ``message``, with ctl[_FAILED] = 1, for the parent to report."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run()
    except BaseException as error:                               # tell the parent, then leave
        text = f"{type(error).__name__}: {error}".encode()[:2047]
        message[:len(text)] = np.frombuffer(text, np.uint8)
        ctl[_FAILED] = 1
        code = 1
    finally:
        os._exit(code)


def _raise_if_stopped(pair, what, instead):
    """In the parent: if the helper failed or exited, reap it and raise with its message."""
    failed = bool(pair.ctl[_FAILED])
    if failed or os.waitpid(pair.pid, os.WNOHANG)[0] != 0:
        if failed:
            os.waitpid(pair.pid, 0)                              # it is leaving: reap it
        text = bytes(pair.message).rstrip(b"\0").decode(errors="replace")
        pair.pid = None
        raise RuntimeError(f"{what} stopped ({text or 'no message'}); {instead} to avoid it")


def _spin_until(ctl, k, s, check, spins=3000):
    """Until ctl[k] == s: spin (~0.2 ms), then yield the core, then nap, calling check() now and then."""
    n = 0
    while ctl[k] != s:
        n += 1
        if n <= spins:
            continue
        if n <= 2 * spins:
            os.sched_yield()
            continue
        time.sleep(min(1e-3, 1e-6 * (n - 2 * spins)))
        if n % 64 == 0:
            check()


def _stop_child(pid, ctl):
    """Ask a helper to leave (STOP, then GO); kill it if it has not left within 2 s."""
    ctl[_STOP] = 1
    ctl[_GO] += 1
    deadline = time.monotonic() + 2.0
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        if time.monotonic() > deadline:                          # stuck: it was left mid-step
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.001)
