"""The fused training step: the numbers of vae.py and optim.py, computed faster on two cores.

Chosen with ``--engine fused``. Over the whole 10-epoch reference run it trains at 1.3-2.2 times
PyTorch 2.13's speed where the read-along step trains at 0.95-1.5 times, depending on the CPU; on a
2-core AMD EPYC (family 26, model 2) it took 13.6 s where the read-along step took 23.0 s with
OpenBLAS's AVX-512 kernels (benchmarks/README.md, "Measured").

Read vae.py first: this file computes exactly what ``VAE.loss_and_grads`` followed by
``Adam.step`` compute, for the PyTorch example's architecture (one hidden layer, ReLU,
Bernoulli decoder, one z per datapoint; any sizes D, H, K, any beta), and
tests/fast/test_fused_step.py checks that the two agree and that its gradients pass the finite-
difference check. Nothing here is new mathematics; it is how to feed a 2-core CPU.

    encoder   h1 = relu(x W1 + b1) ;  mu = h1 Wmu + bmu ;  logvar = h1 Wlv + blv
    sample    sigma = exp(logvar / 2) ;  z = mu + sigma * eps
    decoder   h3 = relu(z W3 + b3) ;  logits l = h3 W4 + b4
    loss      mean_n [ sum_d (softplus(l) - x l) + beta * 1/2 sum_j (mu^2 + sigma^2 - 1 - logvar) ]
    backward  dl = (sigmoid(l) - x) / B ;  dh3 = dl W4^T ;  da3 = dh3 [h3 > 0] ;  dz = da3 W3^T
              dmu = dz + beta mu / B ;  dlogvar = 1/2 (dz sigma eps + beta (sigma^2 - 1) / B)
              da1 = (dmu Wmu^T + dlogvar Wlv^T) [h1 > 0]
              dW = a^T d and db = sum_n d for each layer (a its input, d its output gradient)

How it is fast (benchmarks/bench_reference_run.py measures it; benchmarks/README.md, "Measured",
has the numbers and where the time goes):

* Two workers, each with a single-threaded BLAS, instead of one worker with a 2-thread
  BLAS. Phase 1: each worker runs forward and backward for its half of the batch rows
  (everything that is per datapoint). Phase 2: each worker computes the full-batch
  gradients of the layers it owns -- worker 0 the encoder, worker 1 the decoder, the two
  halves of the flat vector model.flat_params -- and runs Adam on that half. Nothing is summed
  across workers, and no two workers write the same memory.
* Worker 1 is, by default on Linux, a forked process sharing every array through
  anonymous shared memory, and the two hand work over by spinning on shared counters
  (about a microsecond); a helper thread works too, a little slower. How two workers
  run and hand over is workers.py's business; this file is what they compute.
* Every array is allocated once; every ufunc and product writes into it with ``out=``.
* Each bias sits right after its weight in model.flat_params, so [W; b] is one (D_in + 1, D_out)
  matrix, and a @ W + b is [a, 1] @ [W; b]: bias additions and bias gradients become
  part of the matrix products.
* The loss needs only sums: sum_d x l is a BLAS dot product, and
  sum softplus(l) = sum max(l, 0) - sum log max(s, 1 - s) with s = sigmoid(l) (already
  needed for dl), the log taken once per product of 64 numbers in [0.5, 1].
"""
import math
import sys
import weakref
from contextlib import contextmanager

import numpy as np

from ..train import NonFiniteStep
from ..vae import VAE
from .workers import PrivateArena, ProcessPair, SharedArena, ThreadPair, set_blas_threads

# ---------------------------------------------------------------------------------------
# What can be fused
# ---------------------------------------------------------------------------------------


def architecture_reason(model, who="the fused step"):
    """None for the PyTorch example's architecture (one hidden layer, relu, bernoulli),
    otherwise why ``who`` cannot compute this model (a sentence). fused_eval.py uses it too."""
    if len(model.hidden_dims) != 1:
        return f"it has {len(model.hidden_dims)} hidden layers ({who} handles one)"
    if model.activation != "relu":
        return f"its activation is {model.activation} ({who} handles relu)"
    if model.likelihood != "bernoulli":
        return f"its likelihood is {model.likelihood} ({who} handles bernoulli)"
    return None


def class_reason(Model):
    """None if the fused step computes the loss of models of class ``Model``, otherwise why not.

    It computes ``VAE.loss_and_grads``, the ELBO of vae.py: a model that trains another
    loss (the autoencoder's, the conditional VAE's, the IWAE's L_k) is refused by what it
    trains, not by its name."""
    if Model.loss_and_grads is not VAE.loss_and_grads:
        return (f"the fused step computes VAE.loss_and_grads, this model trains "
                f"{Model.loss_and_grads.__qualname__}")
    return None


def unsupported_reason(model):
    """None if the fused step computes this model's loss, otherwise why not (a sentence)."""
    reason = class_reason(type(model)) or architecture_reason(model)
    if reason is not None:
        return reason
    if model.n_samples != 1:
        return f"it draws L = {model.n_samples} samples of z (the fused step draws one)"
    return None


# ---------------------------------------------------------------------------------------
# One worker: its rows of the batch in phase 1, its layers in phase 2
# ---------------------------------------------------------------------------------------

class _Worker:
    def __init__(self, step, index, rows, span):
        D, H, K, dt = step.D, step.H, step.K, step.dtype
        self.step = weakref.proxy(step)                          # no reference cycle: FusedStep frees promptly
        self.index, self.span = index, span
        self.e, self.s, self.t = (np.empty((rows, D), dt) for _ in range(3))   # sigmoid scratch
        self.zeros_h, self.zeros_d = np.zeros((rows, H), dt), np.zeros((rows, D), dt)
        self.mask = np.empty((rows, H), bool)
        self.noise, self.sq, self.dz = (np.empty((rows, K), dt) for _ in range(3))
        self.partial = (0.0, 0.0)                                # (rec sum, kl sum) of my rows

    def forward_backward(self, r0, r1):
        """Phase 1 for batch rows [r0, r1): forward, loss sums, backward down to da1."""
        st, P, A = self.step, self.step.P, self.step.A
        n, H, K = r1 - r0, st.H, st.K
        if n <= 0:
            self.partial = (0.0, 0.0)
            return
        dt, inv_b, beta = st.dtype.type, st.inv_b, st.beta
        x, eps = st.x[r0:r1], st.eps[r0:r1]                      # (n, D), (n, K)
        zeros, mask = self.zeros_h[:n], self.mask[:n]

        # encoder: h1 = relu(x W1 + b1);  mu = [h1, 1] [Wmu; bmu];  logvar = [h1, 1] [Wlv; blv]
        h1a = st.h1a[r0:r1]
        h1 = h1a[:, :H]
        np.matmul(x, P["enc.fc1.W"], out=h1)
        np.add(h1, P["enc.fc1.b"], out=h1)
        np.maximum(h1, zeros, out=h1)
        mu, logvar = st.mu[r0:r1], st.logvar[r0:r1]
        np.matmul(h1a, A["enc.mu"], out=mu)
        np.matmul(h1a, A["enc.logvar"], out=logvar)
        # reparameterisation: sigma = exp(logvar / 2);  z = mu + sigma * eps
        sigma, za = st.sigma[r0:r1], st.za[r0:r1]
        np.multiply(logvar, dt(0.5), out=sigma)
        np.exp(sigma, out=sigma)
        noise = self.noise[:n]
        np.multiply(sigma, eps, out=noise)                       # sigma * eps, kept for the backward
        np.add(mu, noise, out=za[:, :K])
        # KL of these rows: 1/2 sum (mu^2 + sigma^2 - 1 - logvar)
        sq = self.sq[:n]
        np.multiply(sigma, sigma, out=sq)
        kl = 0.5 * (float(np.vdot(mu, mu)) + float(sq.sum()) - float(logvar.sum()) - n * K)

        # decoder: h3 = relu([z, 1] [W3; b3]);  l = [h3, 1] [W4; b4]
        h3a = st.h3a[r0:r1]
        h3 = h3a[:, :H]
        np.matmul(za, A["dec.fc1"], out=h3)
        np.maximum(h3, zeros, out=h3)
        logits = st.logits[r0:r1]
        np.matmul(h3a, A["dec.logits"], out=logits)

        # sigmoid s = 1 - r with r = 1 / (1 + exp(l)); exp overflowing to inf gives r = 0: right
        e, s, t = self.e[:n], self.s[:n], self.t[:n]
        with np.errstate(over="ignore"):
            np.exp(logits, out=e)
        np.add(e, dt(1), out=e)
        r = np.divide(dt(1), e, out=e)
        np.subtract(dt(1), r, out=s)
        dl = st.dl[r0:r1]
        np.subtract(s, x, out=dl)
        np.multiply(dl, inv_b, out=dl)                           # dl = (sigmoid(l) - x) / B
        # rec = sum softplus(l) - sum x l, with softplus(l) = max(l, 0) - log max(s, 1 - s);
        # max(s, 1 - s) is in [0.5, 1], so a product of 64 of them stays above 0.5^64 = 5e-20
        np.maximum(s, r, out=t)
        flat = t.reshape(-1)
        k = flat.size // 64
        log_max = float(np.log(np.multiply.reduce(flat[:64 * k].reshape(64, k), axis=0)).sum())
        log_max += float(np.log(flat[64 * k:]).sum())
        np.maximum(logits, self.zeros_d[:n], out=t)
        rec = float(t.sum()) - log_max - float(np.vdot(x, logits))
        self.partial = (rec, kl)

        # backward through the decoder: da3 = (dl W4^T) [h3 > 0];  dz = da3 W3^T
        da3 = st.da3[r0:r1]
        np.matmul(dl, P["dec.logits.W"].T, out=da3)
        np.greater(h3, 0, out=mask)
        np.multiply(da3, mask, out=da3)
        dz = self.dz[:n]
        np.matmul(da3, P["dec.fc1.W"].T, out=dz)
        # through z = mu + sigma * eps and the KL: dmu, dlogvar
        dmu, dlogvar = st.dmu[r0:r1], st.dlogvar[r0:r1]
        np.multiply(mu, dt(beta) * inv_b, out=dmu)
        np.add(dmu, dz, out=dmu)                                 # dmu = dz + beta mu / B
        np.multiply(dz, noise, out=dlogvar)                      # dz sigma eps
        np.subtract(sq, dt(1), out=sq)
        np.multiply(sq, dt(beta) * inv_b, out=sq)
        np.add(dlogvar, sq, out=dlogvar)
        np.multiply(dlogvar, dt(0.5), out=dlogvar)               # dlogvar = (dz sigma eps + beta (sigma^2 - 1) / B) / 2
        # through both heads into the hidden layer: da1 = (dmu Wmu^T + dlogvar Wlv^T) [h1 > 0]
        da1 = st.da1[r0:r1]
        np.matmul(dmu, P["enc.mu.W"].T, out=da1)
        da1 += np.matmul(dlogvar, P["enc.logvar.W"].T, out=self.e[:n, :H])
        np.greater(h1, 0, out=mask)
        np.multiply(da1, mask, out=da1)

    def gradients_and_update(self, b, update, alpha_t, eps_hat_t):
        """Phase 2: this worker's layers' gradients over the whole batch, then Adam on its span.

        Returns False (and leaves its parameters alone) when its gradient is not finite.
        """
        st, G = self.step, self.step.G
        if self.index == 0:                                      # encoder: dW = a^T d, with [a, 1] for bias
            np.matmul(st.x[:b].T, st.da1[:b], out=G["enc.fc1.W"])
            np.matmul(st.ones[:b], st.da1[:b], out=G["enc.fc1.b"])
            np.matmul(st.h1a[:b].T, st.dmu[:b], out=G["enc.mu"])
            np.matmul(st.h1a[:b].T, st.dlogvar[:b], out=G["enc.logvar"])
        else:                                                    # decoder
            np.matmul(st.za[:b].T, st.da3[:b], out=G["dec.fc1"])
            np.matmul(st.h3a[:b].T, st.dl[:b], out=G["dec.logits"])
        with np.errstate(over="ignore", invalid="ignore"):
            finite = bool(np.isfinite(np.dot(st.flat_grads[self.span], st.flat_grads[self.span])))
        if finite and update:
            st.optimizer.update(self.span, alpha_t, eps_hat_t)
        return finite


# ---------------------------------------------------------------------------------------
# The fused step
# ---------------------------------------------------------------------------------------

class FusedStep:
    """Forward, backward and Adam for a batch, in place on ``model.flat_params``.

    Derivation: docs/derivations.md, sections 1-8 and 10 (what is computed), 11 (two rewrites).

    ``step(x, eps)`` does what ``model.loss_and_grads(x, eps)`` then ``optimizer.step()`` do
    and returns the same ``(loss, parts)``; ``loss_and_grads(x, eps)`` stops before Adam.
    x (b, D) float in [0, 1] with b <= batch_size, eps (b, K) standard normal. A caller
    may write them straight into ``x_buffer[:b]`` and ``eps_buffer[:b]`` to save a copy.
    A non-finite loss or gradient raises ``NonFiniteStep`` before Adam touches the
    parameters (of the half whose gradient is not finite: each worker checks its own).

    workers : 1 runs everything in the calling thread; 2 (default) adds a second worker.
              Either way BLAS is set to one thread (one core per worker) until close(),
              except inside ``between_steps()``.
    backend : "process" (a forked helper, Linux), "thread", or "auto" (process on Linux).
    Use it as a context manager, or call close(): it stops the helper and restores BLAS.
    While a process backend is open, model.flat_params / flat_grads and Adam's moments live in
    shared memory (their values are copied there; the model keeps working after close).
    """

    def __init__(self, model, optimizer, batch_size, workers=2, backend="auto"):
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"the fused step cannot train this model: {reason}")
        if workers not in (1, 2):
            raise ValueError(f"workers must be 1 or 2, got {workers!r}")
        if backend == "auto":
            backend = "process" if sys.platform.startswith("linux") else "thread"
        if backend not in ("process", "thread"):
            raise ValueError(f"backend must be 'auto', 'process' or 'thread', got {backend!r}")
        if optimizer.params is not model.flat_params or optimizer.grads is not model.flat_grads:
            raise ValueError("the optimiser must update model.flat_params from model.flat_grads")
        self.model, self.optimizer = model, optimizer
        self.D, self.H, self.K = model.input_dim, model.hidden_dims[0], model.latent_dim
        self.dtype, self.batch_size = model.dtype, int(batch_size)
        self.beta = model.beta
        self.process = workers == 2 and backend == "process"
        B, D, H, K, dt = self.batch_size, self.D, self.H, self.K, self.dtype
        arena = (SharedArena(ProcessPair.shared_bytes(B, D, H, K, model.flat_params.size, dt.itemsize))
                 if self.process else PrivateArena())
        if self.process:                                         # parameters, gradients, moments
            model.use_buffers(arena.empty(model.flat_params.size, dt), arena.empty(model.flat_params.size, dt))
            optimizer.params, optimizer.grads = model.flat_params, model.flat_grads
            for name in ("m_sum", "v_sum", "_tmp"):
                moved = arena.empty(model.flat_params.size, dt)
                moved[...] = getattr(optimizer, name)
                setattr(optimizer, name, moved)
        self.flat_grads = model.flat_grads
        self.P = model.params                                    # named views: W (D_in, D_out), b (D_out,)
        self.A = _augmented(model.flat_params, model.params)           # [W; b] views, (D_in + 1, D_out)
        self.G = {**model.grads, **_augmented(model.flat_grads, model.grads)}
        # the batch and every per-row array both workers touch
        self.x, self.eps = arena.empty((B, D), dt), arena.empty((B, K), dt)
        self.x_buffer, self.eps_buffer = self.x, self.eps        # public names for callers
        self.h1a, self.za, self.h3a = arena.empty((B, H + 1), dt), arena.empty((B, K + 1), dt), arena.empty((B, H + 1), dt)
        for a in (self.h1a, self.za, self.h3a):                  # [h1, 1], [z, 1], [h3, 1]
            a[:, -1] = 1
        self.mu, self.logvar, self.sigma = (arena.empty((B, K), dt) for _ in range(3))
        self.dmu, self.dlogvar = arena.empty((B, K), dt), arena.empty((B, K), dt)
        self.logits, self.dl = arena.empty((B, D), dt), arena.empty((B, D), dt)
        self.da1, self.da3 = arena.empty((B, H), dt), arena.empty((B, H), dt)
        self.ones = np.ones(B, dt)
        split = _offset(model.params["dec.fc1.W"], model.flat_params)  # encoder theta = [:split], decoder phi = the rest
        rows = (B + 1) // 2 if workers == 2 else B
        self.workers = [_Worker(self, 0, rows, slice(0, split)),
                        _Worker(self, 1, rows, slice(split, model.flat_params.size))]
        self.n_workers = workers
        self._previous_blas = set_blas_threads(1)                # each worker uses one core
        self.pair = None                                         # worker 1, when there is one
        if workers == 2:
            me = weakref.proxy(self)
            self.pair = ProcessPair(me, arena) if self.process else ThreadPair(me)

    # ------------------------------------------------------------------ public
    def loss_and_grads(self, x, eps):
        """Forward and backward only: fills model.flat_grads, returns (loss, parts); no Adam."""
        return self._run(x, eps, update=False)

    def step(self, x, eps):
        """Forward, backward, divergence check and Adam: returns (loss, parts)."""
        return self._run(x, eps, update=True)

    def gradient_steps(self, batches):
        """``train.gradient_steps`` with this step: the same eps stream (model.rng), the same numbers.

        Yields (batch size, loss, parts) after each step; raises NonFiniteStep before a step
        whose loss or gradient is not finite."""
        for x in batches:
            eps = self.model.rng.standard_normal(dtype=self.dtype, out=self.eps_buffer[:len(x)])
            loss, parts = self.step(x, eps)
            yield len(x), loss, parts

    def close(self):
        """Stop the helper (even one left mid-step by an exception) and restore BLAS threads."""
        if self.pair is not None:
            self.pair.close()
            self.pair = None
        if self._previous_blas is not None:
            set_blas_threads(self._previous_blas)
            self._previous_blas = None

    @contextmanager
    def between_steps(self):
        """For work between steps (the evaluation after each epoch): NumPy's BLAS threads back.

        The step runs OpenBLAS with one thread, each worker's products on its own core; the
        read-along code that evaluates the model meanwhile runs best with OpenBLAS's usual threads.
        """
        set_blas_threads(self._previous_blas)
        try:
            yield
        finally:
            set_blas_threads(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ one step
    def _run(self, x, eps, update):
        b = len(x)
        if not (0 < b <= self.batch_size and np.shape(x) == (b, self.D) and np.shape(eps) == (b, self.K)):
            raise ValueError(f"x must be (b, {self.D}) and eps (b, {self.K}) with 0 < b <= "
                             f"{self.batch_size}, got {np.shape(x)} and {np.shape(eps)}")
        for given, buffer in ((x, self.x[:b]), (eps, self.eps[:b])):   # into the (shared) batch buffers,
            if not _same_memory(given, buffer):                          # unless the caller wrote them there
                np.copyto(buffer, given)
        self.beta = self.model.beta                              # the trainer may ramp it (KL warm-up)
        self.inv_b = self.dtype.type(1.0 / b)
        if update:
            alpha_t, eps_hat_t = self.optimizer.advance()
        else:
            alpha_t = eps_hat_t = 0.0
        half = (b + 1) // 2 if self.n_workers == 2 else b
        with np.errstate(all="ignore"):                          # inf / nan are reported below
            if self.pair is None:
                finite = self._one_worker(b, update, alpha_t, eps_hat_t)
            else:
                finite = self.pair.run(b, half, update, alpha_t, eps_hat_t)
        rec = sum(w.partial[0] for w in self.workers) / b
        kl = sum(w.partial[1] for w in self.workers) / b
        loss = rec + self.beta * kl
        if finite is None:                                       # phase 1 gave a non-finite loss
            if update:
                self.optimizer.t -= 1                            # the step was not taken
            raise NonFiniteStep(f"loss is {loss} (rec {rec}, KL {kl})")
        if not all(finite):
            if update:
                self.optimizer.t -= 1
            raise NonFiniteStep.in_gradient(self.model.grads, loss)
        parts = {"rec": rec, "kl": kl, "nelbo": rec + kl, "elbo": -(rec + kl)}
        return float(loss), parts

    def loss_is_finite(self):
        """Are both workers' loss sums finite? (Each worker asks before its Adam half.)"""
        return all(math.isfinite(w.partial[0]) and math.isfinite(w.partial[1]) for w in self.workers)

    def _one_worker(self, b, update, alpha_t, eps_hat_t):
        w0, w1 = self.workers
        w0.forward_backward(0, b)
        w1.partial = (0.0, 0.0)
        if not self.loss_is_finite():
            return None
        return [w.gradients_and_update(b, update, alpha_t, eps_hat_t) for w in self.workers]

def _same_memory(a, b):
    """True if arrays a and b are the very same memory (same start, shape and strides)."""
    return (isinstance(a, np.ndarray) and a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _offset(view, flat):
    """Index in ``flat`` where the view ``view`` starts."""
    return (view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // flat.itemsize


def _augmented(flat, views):
    """[W; b] as one (D_in + 1, D_out) view of ``flat`` for each Dense layer of the model.

    Possible because the model lays out each bias right after its weight (vae.py).
    """
    out = {}
    for name in views:
        if not name.endswith(".W"):
            continue
        layer, W = name[:-2], views[name]
        start = _offset(W, flat)
        if _offset(views[layer + ".b"], flat) != start + W.size:
            raise ValueError(f"{layer}: the bias does not follow the weight in the flat vector")
        out[layer] = flat[start:start + W.size + W.shape[1]].reshape(W.shape[0] + 1, W.shape[1])
    return out
