"""Optimisers over one flat parameter vector: Adam (Kingma & Ba 2015) and SGD with momentum.

Both take the model's ``flat_params`` and ``flat_grads`` (see ``VAE``): every parameter is a
view into ``flat_params``, so one vector update moves all of them, the encoder's theta and
the decoder's phi alike. Updates are in place. Below, w stands for that whole vector.
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Adam's moments decay geometrically wherever the gradient is 0; below the smallest normal
# float they would become subnormal, which is slow on many CPUs (docs/derivations.md,
# section 12). Every few steps, entries smaller than FLUSH_MARGIN * tiny are set to 0.
FLUSH_MARGIN = 2.0 ** 10
# Adam updates the vector in blocks of this many entries (256 KB of float32 per array), so
# that the ten passes over a block run in the CPU's cache rather than from main memory.
BLOCK = 65536
# Adam.step's two threads use blocks twice as long. They take turns at Python's lock before
# and after every NumPy call, and on a virtual machine each turn can cost tens of
# microseconds: with blocks of 65,536 the two-thread update of the reference model took about
# as long as one thread's on an Intel Xeon (family 6, model 207), with 131,072 a fifth less
# (docs/derivations.md, section 10).
STEP_BLOCK = 2 * BLOCK


def _check_flat(params, grads):
    if not (isinstance(params, np.ndarray) and isinstance(grads, np.ndarray)):
        raise TypeError("params and grads must be NumPy arrays (the model's flat_params and flat_grads)")
    if params.shape != grads.shape or params.ndim != 1:
        raise ValueError(f"params and grads must be flat vectors of one shape, got {params.shape} "
                         f"and {grads.shape}")


class Adam:
    """Adam, exactly as Algorithm 1 of Kingma & Ba (2015), bias correction included.

    Implements, at step t = 1, 2, ... with gradient g_t:
        m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t          (first-moment estimate)
        v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2        (second raw-moment estimate)
        m_hat_t = m_t / (1 - beta1^t)                          (bias corrections: m_0 = v_0 = 0)
        v_hat_t = v_t / (1 - beta2^t)
        w_t     = w_{t-1} - lr * m_hat_t / (sqrt(v_hat_t) + eps)
    (the paper writes the parameters theta; here theta is the encoder's, as in the lecture.)
    Computed with every constant factor moved onto two scalars, so a step is ten in-place
    passes over the flat vector. It keeps the moments without their (1 - beta) factors,
        m_sum_t = beta1 * m_sum_{t-1} + g_t        (= m_t / (1 - beta1))
        v_sum_t = beta2 * v_sum_{t-1} + g_t^2      (= v_t / (1 - beta2))
        w_t     = w_{t-1} - alpha_t * m_sum_t / (sqrt(v_sum_t) + eps_t)
    with c_t = sqrt((1 - beta2) / (1 - beta2^t)), alpha_t = lr (1 - beta1) / ((1 - beta1^t) c_t)
    and eps_t = eps / c_t: the same number as Algorithm 1's last line, not an approximation.
    ``adam.m`` and ``adam.v`` give the paper's m_t and v_t.
    No subnormals: where g is 0 for a while, m_sum shrinks by beta1 each step and would
    sink below the smallest normal float (about 1e-38 in float32) within a few hundred
    steps; arithmetic on such subnormal numbers is many times slower on Intel CPUs. So
    every ``flush_every`` steps, moment entries below FLUSH_MARGIN * tiny (1.2e-35 in
    float32, 2.3e-305 in float64) are set to 0, and ``flush_every`` is short enough that
    nothing larger can decay below tiny in between. (This holds when every gradient entry is
    0 or at least 4e-18 in size, 5e-153 in float64: a smaller one can put a value below the
    threshold just after a flush -- g^2 itself, or m_sum + g cancelling -- which may then
    sink into the subnormal range until the next flush.) What the flush changes is far below
    float32 rounding: an m_sum that small moves its parameter by at most
    lr * 1.2e-35 / eps = 1.2e-30 a step (defaults, float32), and a v_sum that small
    changes sqrt(v_sum) + eps_t by under 4e-10 of it (docs/derivations.md, section 12).
    Source:  D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Alg. 1.
    Derivation: docs/derivations.md, section 10 (why the bias correction; how step() computes it).
    Defaults are the paper's (and PyTorch's): lr 1e-3, betas (0.9, 0.999), eps 1e-8.
    """

    def __init__(self, params, grads, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        _check_flat(params, grads)
        if not (lr > 0 and 0 <= beta1 < 1 and 0 <= beta2 < 1 and eps >= 0):
            raise ValueError(f"need lr > 0, 0 <= beta1, beta2 < 1, eps >= 0; got lr={lr}, "
                             f"beta1={beta1}, beta2={beta2}, eps={eps}")
        self.params, self.grads = params, grads
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.t = 0
        self.m_sum = np.zeros_like(params)
        self.v_sum = np.zeros_like(params)
        self._tmp = np.empty_like(params)             # scratch space: no allocation per step
        self._small = np.empty(params.shape, dtype=bool)
        self.flush_every = _flush_interval(self.beta1, self.beta2)
        self._flush_below = params.dtype.type(FLUSH_MARGIN * np.finfo(params.dtype).tiny)

    @property
    def m(self):
        """The paper's first-moment estimate m_t = (1 - beta1) m_sum_t (a copy)."""
        return (1 - self.beta1) * self.m_sum

    @property
    def v(self):
        """The paper's second-moment estimate v_t = (1 - beta2) v_sum_t (a copy)."""
        return (1 - self.beta2) * self.v_sum

    def step(self):
        """One update of ``params`` in place from the current ``grads``, on two cores.

        Every entry's update is independent of the others', so a helper thread updates the
        second half of the vector while this thread updates the first (NumPy lets go of
        Python's lock inside each pass over a block): the same numbers, in less time. A
        vector shorter than two blocks is updated by this thread alone.
        """
        alpha_t, eps_t = self.advance()
        n = self.params.size
        if n < 2 * STEP_BLOCK:
            self.update(slice(None), alpha_t, eps_t)
            return
        half = -(-n // (2 * STEP_BLOCK)) * STEP_BLOCK             # a whole number of blocks
        second = _helper_thread().submit(self.update, slice(half, n), alpha_t, eps_t, STEP_BLOCK)
        try:
            self.update(slice(0, half), alpha_t, eps_t, STEP_BLOCK)
        finally:
            second.result()

    def advance(self):
        """Count the step (t += 1) and return its scalars (alpha_t, eps_t)."""
        self.t += 1
        c_t = np.sqrt((1 - self.beta2) / (1 - self.beta2 ** self.t))     # sqrt(v_hat) = c_t * sqrt(v_sum)
        alpha_t = self.lr * (1 - self.beta1) / ((1 - self.beta1 ** self.t) * c_t)
        return alpha_t, self.eps / c_t

    def update(self, span, alpha_t, eps_t, block=BLOCK):
        """Apply step t to ``params[span]``: the moments and the parameter move of Algorithm 1.

        Separate from ``advance`` so that two workers can each update their part of the
        vector (fast/fused_step.py); ``step`` is ``advance`` then ``update`` of everything. Every
        entry is independent of the others, so the span is done in blocks of ``block``
        entries: the ten passes over one block find it still in the CPU's cache.
        """
        start, stop, _ = span.indices(self.params.size)
        for begin in range(start, stop, block):
            self._update_block(slice(begin, min(begin + block, stop)), alpha_t, eps_t)

    def _update_block(self, span, alpha_t, eps_t):
        dtype = self.params.dtype.type
        g, m_sum, v_sum, tmp, small, w = (a[span] for a in (self.grads, self.m_sum, self.v_sum,
                                                            self._tmp, self._small, self.params))
        m_sum *= dtype(self.beta1)                               # m_sum = beta1 m_sum + g
        m_sum += g
        np.multiply(g, g, out=tmp)                               # v_sum = beta2 v_sum + g^2
        v_sum *= dtype(self.beta2)
        v_sum += tmp
        np.sqrt(v_sum, out=tmp)                                  # sqrt(v_sum) + eps_t
        tmp += dtype(eps_t)
        np.divide(m_sum, tmp, out=tmp)                           # m_sum / (sqrt(v_sum) + eps_t)
        tmp *= dtype(alpha_t)
        w -= tmp                                                 # w_t = w - alpha_t m_sum / (...)
        if self.t % self.flush_every == 0:                       # no subnormal moments (see above)
            for moment in (m_sum, v_sum):
                np.less(np.abs(moment, out=tmp), self._flush_below, out=small)
                np.putmask(moment, small, 0)

    def state_dict(self):
        """Everything needed to continue exactly: step count, moment sums, hyper-parameters."""
        return {"t": self.t, "m_sum": self.m_sum.copy(), "v_sum": self.v_sum.copy(), "lr": self.lr,
                "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def load_state_dict(self, state):
        missing = [k for k in ("t", "m_sum", "v_sum", "lr", "beta1", "beta2", "eps") if k not in state]
        if missing:
            raise ValueError(f"Adam state lacks {', '.join(missing)}")
        m_sum, v_sum = np.asarray(state["m_sum"]), np.asarray(state["v_sum"])
        if m_sum.shape != self.m_sum.shape or v_sum.shape != self.v_sum.shape:
            raise ValueError(f"optimiser state is for {m_sum.size} parameters, this model has {self.m_sum.size}")
        self.t = int(state["t"])
        self.m_sum[...], self.v_sum[...] = m_sum, v_sum
        self.lr, self.beta1, self.beta2, self.eps = (float(state[k]) for k in ("lr", "beta1", "beta2", "eps"))
        self.flush_every = _flush_interval(self.beta1, self.beta2)


_helper, _helper_pid = None, None


def _helper_thread():
    """The one thread that updates the second half in ``Adam.step`` (a forked child makes its own)."""
    global _helper, _helper_pid
    if _helper_pid != os.getpid():
        _helper, _helper_pid = ThreadPoolExecutor(1, thread_name_prefix="adam-half"), os.getpid()
    return _helper


def _flush_interval(beta1, beta2):
    """Steps in which a moment entry can shrink by at most FLUSH_MARGIN through decay alone.

    With g = 0 an entry is multiplied by beta each step, so from FLUSH_MARGIN * tiny it
    needs log(FLUSH_MARGIN) / -log(beta) steps to reach tiny (65 for beta1 = 0.9, 6,928
    for beta2 = 0.999); the faster-decaying moment sets the interval. beta = 0 never decays.
    """
    decaying = [b for b in (beta1, beta2) if b > 0]
    if not decaying:
        return 1
    return max(1, math.floor(math.log(FLUSH_MARGIN) / -math.log(min(decaying))))


class SGD:
    """Stochastic gradient descent with optional (heavy-ball) momentum; the baseline.

    Implements:  b_t = momentum * b_{t-1} + g_t ;  w_t = w_{t-1} - lr * b_t
                 (momentum = 0 gives plain SGD: w_t = w_{t-1} - lr * g_t)
    """

    def __init__(self, params, grads, lr=1e-2, momentum=0.0):
        _check_flat(params, grads)
        if not (lr > 0 and 0 <= momentum < 1):
            raise ValueError(f"need lr > 0 and 0 <= momentum < 1; got lr={lr}, momentum={momentum}")
        self.params, self.grads = params, grads
        self.lr, self.momentum = float(lr), float(momentum)
        self.t = 0
        self.buf = np.zeros_like(params)

    def step(self):
        self.t += 1
        self.buf *= self.momentum                                # b_t = momentum b_{t-1} + g_t
        self.buf += self.grads
        self.params -= self.lr * self.buf                        # w_t = w_{t-1} - lr b_t

    def state_dict(self):
        return {"t": self.t, "buf": self.buf.copy(), "lr": self.lr, "momentum": self.momentum}

    def load_state_dict(self, state):
        buf = np.asarray(state["buf"])
        if buf.shape != self.buf.shape:
            raise ValueError(f"optimiser state is for {buf.size} parameters, this model has {self.buf.size}")
        self.t, self.buf[...] = int(state["t"]), buf
        self.lr, self.momentum = float(state["lr"]), float(state["momentum"])
