"""The importance-sampled evaluation on two cores: the numbers of VAE.log_weights, faster.

Chosen with ``scratchvae evaluate --engine fused`` (or ``evaluate(..., engine="fused")``).
Read ``VAE.log_weights`` (vae.py) and ``importance_sampled_nll`` (machinery/evaluate.py) first. The
estimator stays theirs -- the same draws of eps, the same running log-sum-exp; this file
only replaces the one call that computes, for a chunk of samples,

    log w = log p(x|z) + log p(z) - log q(z|x),   z = mu + sigma * eps
    log p(x|z) = sum_d [ x_d l_d - softplus(l_d) ],   l = relu(z W3 + b3) W4 + b4

for the architecture the fused training step handles (one hidden layer, ReLU, Bernoulli
decoder). tests/fast/test_fused_eval.py checks that it gives the read-along numbers. Nothing here
is new mathematics; it is how to feed a 2-core CPU.

Where the read-along evaluation spends its time is not the decoder's two matrix products
but the elementwise work on the (samples x images, D) logits: about ten NumPy passes per
pixel, an exp and a log among them, all on one core. Here:

* the biases ride inside the products, a W + b = [a, 1] [W; b] (as in fused_step.py);
* sum_d x_d l_d is one pass that reads the logits and writes nothing (np.einsum);
* sum_d max(l_d, 0) = 1/2 (sum_d l_d + sum_d |l_d|), and sum_d l_d = [h, 1] . (the row sums
  of [W4; b4]), a matrix-vector product: no np.maximum over the logits;
* sum_d log(1 + e^{-|l_d|}) = sum of log prod (1 + e^{-|l_d|}) over groups of 16 pixels.
  Every factor is in (1, 2], so a product of 16 is at most 2^16, far from overflow, and
  the log is taken once per 16 pixels instead of once per pixel;
* log p(z) - log q(z|x) = 1/2 sum_k (logvar_k + eps_k^2 - z_k^2): (z - mu) / sigma is eps;
* each chunk's images are split between two workers, each with a one-thread BLAS, so the
  elementwise work runs on both cores, not only the products. The second worker is a forked
  process that shares the chunk's arrays (workers.ForkedHelper): two threads would take
  turns at Python's lock before and after every NumPy call, which on a virtual machine can
  cost tens of microseconds a turn (benchmarks/README.md, "Intel Xeon (family 6, model 207)");
* every array is allocated once and written with ``out=``.

Derivation:  docs/derivations.md, section 11 (the fused evaluation)
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .fused_step import architecture_reason
from ..vae import VAE
from .workers import ForkedHelper, SharedArena, set_blas_threads

GROUP = 16           # factors of (1 + e^{-|l|}) multiplied before one log; each is in (1, 2]


def unsupported_reason(model):
    """None if this file computes the model's log w, otherwise why not (a sentence)."""
    log_weights = getattr(type(model), "log_weights", None)          # what it computes, not its name
    if log_weights is not VAE.log_weights:
        what = f"this model's is {log_weights.__qualname__}" if log_weights else "this model has none (no q(z|x))"
        return f"the fused evaluation computes VAE.log_weights, {what}"
    return architecture_reason(model, "the fused evaluation")


class FastLogWeights:
    """``model.log_weights(x, eps, q=q)`` for a chunk, on ``threads`` cores (1 or 2).

    Use it as a context manager: inside, OpenBLAS runs one thread per worker (the previous
    count is restored on exit) and the second worker, ``helper="process"`` (the default
    where the system can fork) or ``"thread"``, lives.

        with FastLogWeights(model) as log_weights:
            log_w = log_weights(x, eps, q)           # (L, N), like model.log_weights

    Derivation:  docs/derivations.md, section 11 (the fused evaluation)
    """

    def __init__(self, model, threads=2, helper="process"):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the fused evaluation cannot evaluate this model: {reason}")
        if threads not in (1, 2):
            raise ValueError(f"threads must be 1 or 2, got {threads!r}")
        if helper not in ("process", "thread"):
            raise ValueError(f"helper must be 'process' or 'thread', got {helper!r}")
        self.helper = helper if hasattr(os, "fork") else "thread"
        P = model.params
        self.model = model
        self.A3 = np.vstack([P["dec.fc1.W"], P["dec.fc1.b"]])         # [W3; b3]  (K + 1, H)
        self.A4 = np.vstack([P["dec.logits.W"], P["dec.logits.b"]])   # [W4; b4]  (H + 1, D)
        self.A4_row_sums = self.A4.sum(axis=1)                        # (H + 1,): sum_d l_d = [h, 1] . this
        self.threads = threads
        self.floor = model.dtype.type(np.log(np.finfo(model.dtype).tiny) + 1)  # as exp_no_subnormal
        self._buffers = [{}, {}]                    # per worker: arrays reused from chunk to chunk
        self._helper = None                         # a thread pool, or a ForkedHelper and ...
        self._shared = None                         # ... the arrays it shares with this process
        self._blas_before = None

    def __enter__(self):
        self._blas_before = set_blas_threads(1)
        if self.threads == 2 and self.helper == "thread":
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="scratchvae-eval")
        return self

    def __exit__(self, *exc):
        if self._helper is not None:
            (self._helper.shutdown if self.helper == "thread" else self._helper.close)()
            self._helper, self._shared = None, None
        if self._blas_before is not None:
            set_blas_threads(self._blas_before)

    def __call__(self, x, eps, q):
        """x (N, D), eps (L, N, K), q = (mu, logvar) each (N, K) -> log w (L, N)."""
        L, N, _ = eps.shape
        log_w = np.empty((L, N), dtype=self.model.dtype)
        half = N // 2                                        # worker 1 the second half of the images
        if self.threads == 1 or N < 2:
            self._part(0, x, eps, q, log_w, 0, N)
        elif self.helper == "thread":
            other = self._helper.submit(self._part, 1, x, eps, q, log_w, half, N)
            self._part(0, x, eps, q, log_w, 0, half)
            other.result()
        else:
            shared = self._share(x, eps, q)                  # the chunk, where the helper sees it
            self._helper.start()
            self._part(0, x, eps, q, log_w, 0, half)
            self._helper.wait()
            log_w[:, half:] = shared["log_w"][:L, half:N]
        return log_w

    def _share(self, x, eps, q):
        """Copy the chunk into the arrays shared with the helper process, which is forked
        (again) when the chunk is larger than any before: its arrays are made to fit."""
        L, N, K = eps.shape
        if self._shared is None or L > len(self._shared["eps"]) or N > len(self._shared["x"]):
            if self._helper is not None:
                self._helper.close()
            dtype, D = self.model.dtype, x.shape[1]
            arena = SharedArena((N * D + L * N * K + 2 * N * K + L * N) * dtype.itemsize + 8 * 64 + 4096)
            self._shared = {"x": arena.empty((N, D), dtype), "eps": arena.empty((L, N, K), dtype),
                            "mu": arena.empty((N, K), dtype), "logvar": arena.empty((N, K), dtype),
                            "log_w": arena.empty((L, N), dtype), "shape": arena.empty(2, np.int64)}
            self._helper = ForkedHelper(arena, self._helper_part)
        shared = self._shared
        shared["x"][:N], shared["eps"][:L, :N], shared["mu"][:N], shared["logvar"][:N] = x, eps, q[0], q[1]
        shared["shape"][:] = L, N
        return shared

    def _helper_part(self):
        """In the helper process: worker 1's half of the chunk in the shared arrays."""
        shared = self._shared
        L, N = (int(v) for v in shared["shape"])
        self._part(1, shared["x"][:N], shared["eps"][:L, :N], (shared["mu"][:N], shared["logvar"][:N]),
                   shared["log_w"][:L, :N], N // 2, N)

    def _buffer(self, worker, name, shape, last_column_ones=False):
        """An array of this worker's of this shape, reallocated only when the shape changes.
        ``last_column_ones``: an [a, 1] array, whose last column stays 1."""
        have = self._buffers[worker].get(name)
        if have is None or have.shape != shape:
            have = self._buffers[worker][name] = np.empty(shape, dtype=self.model.dtype)
            if last_column_ones:
                have[:, -1] = 1
        return have

    def _part(self, worker, x, eps, q, log_w, i0, i1):
        """log_w[:, i0:i1]: the images i0 ... i1 - 1 of the chunk, every sample of them."""
        mu, logvar = q[0][i0:i1], q[1][i0:i1]
        x, eps = x[i0:i1], eps[:, i0:i1]
        L, n, K = eps.shape
        (H, D), rows = (self.A4.shape[0] - 1, self.A4.shape[1]), L * n
        za = self._buffer(worker, "za", (rows, K + 1), last_column_ones=True)   # [z, 1]
        z = za[:, :K].reshape(L, n, K)
        np.multiply(np.exp(0.5 * logvar), eps, out=z)          # z = mu + sigma * eps, as the
        z += mu                                                # read-along computes it

        ha = self._buffer(worker, "ha", (rows, H + 1), last_column_ones=True)   # [h, 1]
        h = ha[:, :H]                                          # decoder: h = relu([z, 1] [W3; b3])
        np.matmul(za, self.A3, out=h)
        np.maximum(h, 0, out=h)
        logits = self._buffer(worker, "logits", (rows, D))     # l = [h, 1] [W4; b4]
        np.matmul(ha, self.A4, out=logits)
        l = logits.reshape(L, n, D)

        x_dot_l = np.einsum("lnd,nd->ln", l, x)                # sum_d x_d l_d
        sum_l = (ha @ self.A4_row_sums).reshape(L, n)          # sum_d l_d, a matrix-vector product
        t = self._buffer(worker, "t", (rows, D))
        np.abs(logits, out=t)                                  # |l|
        sum_max = 0.5 * (sum_l + t.reshape(L, n, D).sum(axis=-1))   # sum_d max(l_d, 0)
        np.negative(t, out=t)
        np.maximum(t, self.floor, out=t)                       # (no subnormal: exp_no_subnormal)
        np.exp(t, out=t)
        t += 1                                                 # 1 + e^{-|l|}, in (1, 2]
        width, factors = D, 1
        while width % 2 == 0 and 2 * factors <= GROUP:         # halve: multiply the right half
            width //= 2                                        # into the left, twice as many
            np.multiply(t[:, :width], t[:, width:2 * width], out=t[:, :width])   # factors each
            factors *= 2
        logs = np.log(t[:, :width], out=t[:, :width])
        sum_log1p = logs.reshape(L, n, width).sum(axis=-1)     # sum_d log(1 + e^{-|l_d|})

        log_px_z = x_dot_l - (sum_max + sum_log1p)             # sum_d [x_d l_d - softplus(l_d)]
        # log p(z) - log q(z|x) = 1/2 sum_k [logvar_k + (z_k - mu_k)^2 / sigma_k^2 - z_k^2], and
        # (z - mu) / sigma is eps: the log(2 pi) terms cancel, nothing is divided
        log_pz_minus_log_qz = 0.5 * (np.einsum("lnk,lnk->ln", eps, eps) - np.einsum("lnk,lnk->ln", z, z)
                                     + logvar.sum(axis=-1))
        log_w[:, i0:i1] = log_px_z + log_pz_minus_log_qz
