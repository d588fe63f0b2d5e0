"""Dense layers, activations and a small MLP container, each with a hand-written backward.

Read with the lecture's slides 7-8 ("Encoder" q_theta(z|x) and "Decoder" p_phi(x|z)):
both are neural networks, and here a neural network is nothing more than a list of
these layers applied in turn.

The contract every layer keeps (cs231n style):

- ``forward(x)`` returns the output and stores only what ``backward`` needs
  (the input for Dense and Softplus, the output for ReLU, Tanh and Sigmoid);
- ``backward(dout)`` takes d(loss)/d(output), returns d(loss)/d(input), and writes
  d(loss)/d(param) into ``grads`` under the same key as in ``params``;
- ``backward`` without a matching ``forward`` raises ``RuntimeError``: the stored
  input is consumed by the backward pass, so a stale gradient can never be returned.

Shapes are batch first: ``x (N, D_in)``, ``W (D_in, D_out)``, ``b (D_out,)``.
"""
import numpy as np


class Layer:
    """Base class: a named piece of the network with ``params`` and ``grads`` dicts."""

    def __init__(self, name=""):
        self.name = name
        self.params = {}
        self.grads = {}
        self._cache = None

    def _take_cache(self):
        """Return what forward stored, and forget it (one backward per forward)."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__} '{self.name}': backward() called without a matching "
                "forward() (each forward stores what exactly one backward needs)")
        cache, self._cache = self._cache, None
        return cache

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class Dense(Layer):
    """Affine layer  y = x W + b.

    Implements:  y = x @ W + b
    Gradients:   dW = x^T @ dy ;  db = sum_n dy_n ;  dx = dy @ W^T
    Shapes:      x (N, D_in), W (D_in, D_out), b (D_out,) -> y (N, D_out)
    Init:        W, b ~ U(-1/sqrt(D_in), 1/sqrt(D_in)), the default of PyTorch's nn.Linear,
                 so that scratchvae and the PyTorch example start from the same distribution.
    Derivation:  docs/derivations.md, section 1
    """

    def __init__(self, in_dim, out_dim, rng, dtype=np.float32, name="dense"):
        super().__init__(name)
        bound = 1.0 / np.sqrt(in_dim)
        self.params["W"] = rng.uniform(-bound, bound, size=(in_dim, out_dim)).astype(dtype)
        self.params["b"] = rng.uniform(-bound, bound, size=(out_dim,)).astype(dtype)
        self.grads["W"] = np.zeros_like(self.params["W"])
        self.grads["b"] = np.zeros_like(self.params["b"])

    def forward(self, x):
        self._cache = x
        return x @ self.params["W"] + self.params["b"]            # y = x W + b

    def backward(self, dout, need_dx=True):
        """Fill grads["W"], grads["b"]; return dx (or None when ``need_dx`` is False,
        as for the first layer of the encoder, whose input is the data)."""
        x = self._take_cache()
        np.matmul(x.T, dout, out=self.grads["W"])                 # dW = x^T dy
        np.sum(dout, axis=0, out=self.grads["b"])                 # db = sum_n dy_n
        return dout @ self.params["W"].T if need_dx else None     # dx = dy W^T


class ReLU(Layer):
    """Rectified linear unit.

    Implements:  y = max(x, 0)
    Gradient:    dx = dy * [y > 0]      (the kink at 0 gets derivative 0)
    Derivation:  docs/derivations.md, section 2
    Shapes:      any -> same
    """

    def forward(self, x):
        y = np.maximum(x, 0)
        self._cache = y
        return y

    def backward(self, dout):
        y = self._take_cache()
        return dout * (y > 0)                                     # dx = dy [y > 0]


class Tanh(Layer):
    """Hyperbolic tangent, the hidden activation of Kingma & Welling's experiments.

    Implements:  y = tanh(x)
    Gradient:    dx = dy * (1 - y^2)
    Derivation:  docs/derivations.md, section 2
    """

    def forward(self, x):
        y = np.tanh(x)
        self._cache = y
        return y

    def backward(self, dout):
        y = self._take_cache()
        return dout * (1 - y * y)                                 # dx = dy (1 - y^2)


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), computed as 0.5 * tanh(0.5 x) + 0.5.

    The two are equal in exact arithmetic; the tanh form never overflows (exp(-x) does for
    x < -88 in float32). In float32 it is accurate in absolute terms, within 6e-8 of the
    exact value everywhere (5.98e-8 at most, about half a float32 step at 1/2), but not in relative terms for very
    negative x, where the result is a tiny number computed as 0.5 minus nearly 0.5: 2e-4
    relative error at x = -10, 3 % at -15, 44 % at -17, and 0 instead of 2.06e-9 from
    x = -20 on. That is harmless where scratchvae uses it, the gradient sigmoid(l) - x of
    the Bernoulli term: an error of 6e-8 beside pixel values of order 1, and the loss itself
    is computed from softplus, never from log(sigmoid) (tests/test_layers.py,
    test_the_tanh_sigmoid_is_absolutely_but_not_relatively_exact). Whether it is also faster depends on the CPU and the NumPy build: with
    NumPy 2.4's AVX-512 loops it took 0.37 ns a number against 0.57 ns for
    1 / (1 + exp(-x)) ((128, 784) float32), with AVX-512 disabled 1.1 ns against 0.8 ns.
    Keeps the dtype of x.
    Derivation:  docs/derivations.md, section 2
    """
    return 0.5 * np.tanh(0.5 * x) + 0.5


class Sigmoid(Layer):
    """Logistic sigmoid.

    Implements:  y = 1 / (1 + exp(-x))
    Gradient:    dx = dy * y * (1 - y)
    Derivation:  docs/derivations.md, section 2
    """

    def forward(self, x):
        y = sigmoid(x)
        self._cache = y
        return y

    def backward(self, dout):
        y = self._take_cache()
        return dout * y * (1 - y)                                 # dx = dy y (1 - y)


def exp_no_subnormal(a):
    """exp(a) for exponents a <= 0, never a subnormal number.

    Implements:  exp(max(a, log(tiny) + 1)),  tiny = the smallest normal float
                 (1.2e-38 in float32, 2.2e-308 in float64)
    Where exp(a) would be subnormal or underflow to 0 (a below -86.3 in float32, -707.4
    in float64) this returns e * tiny instead: off by less than 4e-38 (float32) or 7e-308
    (float64). Every caller adds the result to a number of 1 or more, or to max(x, 0)
    where that is not 0 (softplus below), where the difference does not exist in floating
    point. Why bother: on Intel CPUs, NumPy's exp is 10-15 times slower for
    elements whose result is subnormal or underflows (docs/derivations.md, section 12).
    Keeps the dtype of a (float64 for integers).
    """
    a = np.asarray(a)
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    floor = dtype.type(np.log(np.finfo(dtype).tiny) + 1)
    floored = np.maximum(a, floor)                    # a new array: exp can work in place
    return np.exp(floored, out=floored)


def log1p(t):
    """log(1 + t) for 0 <= t <= 1 (what softplus gives it), to a few ulps, with np.log.

    Implements:  u = 1 + t (rounded) ;  log(1 + t) = log(u) + (t - (u - 1)) / u
    The sum 1 + t loses the digits of t below the rounding of 1 (all of them when
    t < 6e-8 in float32), and log(u) alone would lose them too. But t - (u - 1) is
    exactly what the rounding dropped, and log(1 + t) = log(u) + log(1 + (t - (u - 1)) / u),
    whose last term is its argument to within 2e-15. So for t = 1e-9, u = 1, log(u) = 0
    and the result is t, as it should be. Within 3 eps of the exact value in float32 and
    float64 (tests/test_layers.py).
    Why not always np.log1p: NumPy has vectorised code for np.log at every SIMD level, for
    np.log1p only on AVX-512 CPUs (Intel's SVML). On an AVX2 CPU (AMD EPYC family 25)
    np.log1p took 18-23 ns a float32, this 6 ns. On an AVX-512 CPU it is the other way
    round (Intel Xeon, family 6 model 207: 49 us against 152 us for 128 x 784 float32s,
    within 1.6 eps), so there this function is np.log1p (``NUMPY_LOG1P_IS_VECTORISED``).
    Derivation:  docs/derivations.md, section 2
    """
    if NUMPY_LOG1P_IS_VECTORISED:
        return np.log1p(t)
    u = 1 + t
    return np.log(u) + (t - (u - 1)) / u


def _numpy_runs_avx512():
    """True if NumPy's loops run their AVX-512 (SVML) versions on this CPU."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:                     # a NumPy that keeps it elsewhere: take the np.log route
        return False
    return bool(__cpu_features__.get("AVX512_SKX"))


NUMPY_LOG1P_IS_VECTORISED = _numpy_runs_avx512()


def softplus(x):
    """softplus(x) = log(1 + exp(x)), stable for any x.

    Implements:  softplus(x) = max(x, 0) + log1p(exp(-|x|))
    The naive log(1 + exp(x)) overflows for large x and loses every digit for very
    negative x; the rewritten form is exact in both tails (the exponent is never
    positive, and log1p, above, keeps the digits of a tiny exp(-|x|)). One exception, on
    purpose: for x below -86.3 (float32; -707.4 in float64), where the true value is a
    subnormal number or 0, it returns e * tiny (3.2e-38 in float32) -- see exp_no_subnormal.
    Keeps the dtype of x.
    Derivation:  docs/derivations.md, section 2
    """
    return np.maximum(x, 0) + log1p(exp_no_subnormal(-np.abs(x)))


class Softplus(Layer):
    """Smooth ReLU.

    Implements:  y = log(1 + exp(x))
    Gradient:    dx = dy * sigmoid(x)
    Derivation:  docs/derivations.md, section 2
    """

    def forward(self, x):
        self._cache = x
        return softplus(x)

    def backward(self, dout):
        x = self._take_cache()
        return dout * sigmoid(x)                                  # dx = dy sigmoid(x)


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus}


class MLP:
    """A stack  x -> act(Dense) -> act(Dense) -> ... : the hidden part of encoder or decoder.

    Implements:  h_0 = x ;  h_l = act(h_{l-1} W_l + b_l)   for l = 1..len(hidden_dims)
    Gradients:   backward runs the layers in reverse, each applying its own rule.
    Shapes:      x (N, in_dim) -> h (N, hidden_dims[-1])   (or (N, in_dim) if hidden_dims is empty)
    Params:      "fc1.W", "fc1.b", "fc2.W", ... (the Dense layers, numbered from 1)
    """

    def __init__(self, in_dim, hidden_dims, activation, rng, dtype=np.float32, name="mlp"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.name = name
        self.layers = []
        dims = [in_dim, *hidden_dims]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
            self.layers += [Dense(d_in, d_out, rng, dtype, name=f"fc{i}"),
                            ACTIVATIONS[activation](name=f"{activation}{i}")]
        self.out_dim = dims[-1]

    @property
    def dense_layers(self):
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    @property
    def params(self):
        return {f"{d.name}.{k}": v for d in self.dense_layers for k, v in d.params.items()}

    @property
    def grads(self):
        return {f"{d.name}.{k}": v for d in self.dense_layers for k, v in d.grads.items()}

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, need_dx=True):
        """Run every layer's backward in reverse; return dx (None if ``need_dx`` is False)."""
        if not self.layers:
            return dout if need_dx else None
        for layer in reversed(self.layers[1:]):
            dout = layer.backward(dout)
        return self.layers[0].backward(dout, need_dx=need_dx)

    def __repr__(self):
        return f"MLP({self.name!r}, {self.layers})"


def share_one_buffer(named_arrays, dtype, out=None):
    """Copy named arrays into one flat buffer and return (flat, views).

    ``views[name]`` is a reshaped view into ``flat``: writing to either writes to both.
    Keeping all parameters (and all gradients) in one contiguous vector lets the
    optimiser update every parameter with a handful of vector operations.
    ``out``: the flat array to fill (allocated here when None).
    """
    total = sum(a.size for a in named_arrays.values())
    flat = np.empty(total, dtype=dtype) if out is None else out
    if flat.shape != (total,):
        raise ValueError(f"the flat buffer must hold {total} numbers, it has shape {flat.shape}")
    views, start = {}, 0
    for name, a in named_arrays.items():
        view = flat[start:start + a.size].reshape(a.shape)
        view[...] = a
        views[name], start = view, start + a.size
    return flat, views
