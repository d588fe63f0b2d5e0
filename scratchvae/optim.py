"""Optimisers over one flat parameter vector: Adam (Kingma & Ba 2015) and SGD with momentum.

Both take the model's flat ``theta`` and ``dtheta`` (see ``VAE``): every parameter is a
view into ``theta``, so one vector update moves all of them. Updates are in place.
"""
import numpy as np


def _check_flat(params, grads):
    if not (isinstance(params, np.ndarray) and isinstance(grads, np.ndarray)):
        raise TypeError("params and grads must be NumPy arrays (the model's flat theta and dtheta)")
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
        theta_t = theta_{t-1} - lr * m_hat_t / (sqrt(v_hat_t) + eps)
    Computed as the same expression with both corrections moved onto two scalars
    (the paper's Section 2, last paragraph), so a step is a few in-place vector passes:
        alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t) ,  eps_hat_t = eps * sqrt(1 - beta2^t)
        theta_t = theta_{t-1} - alpha_t * m_t / (sqrt(v_t) + eps_hat_t)
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
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self._tmp = np.empty_like(params)             # scratch space: no allocation per step

    def step(self):
        """One update of ``params`` in place from the current ``grads``."""
        alpha_t, eps_hat_t = self.advance()
        self.update(slice(None), alpha_t, eps_hat_t)

    def advance(self):
        """Count the step (t += 1) and return its scalars (alpha_t, eps_hat_t)."""
        self.t += 1
        correction2 = np.sqrt(1 - self.beta2 ** self.t)          # sqrt(1 - beta2^t)
        return self.lr * correction2 / (1 - self.beta1 ** self.t), self.eps * correction2

    def update(self, span, alpha_t, eps_hat_t):
        """Apply step t to ``params[span]``: the moments and the parameter move of Algorithm 1.

        Separate from ``advance`` so that two threads can each update half of the vector
        (fast.py); ``step`` is ``advance`` then ``update`` of everything.
        """
        dtype = self.params.dtype.type
        b1, b2 = dtype(self.beta1), dtype(self.beta2)
        g, m, v, tmp, theta = (a[span] for a in (self.grads, self.m, self.v, self._tmp, self.params))
        m -= g                                                   # m_t = b1 m + (1 - b1) g = g + b1 (m - g)
        m *= b1
        m += g
        np.multiply(g, g, out=tmp)                               # v_t = b2 v + (1 - b2) g^2
        v -= tmp
        v *= b2
        v += tmp
        np.sqrt(v, out=tmp)                                      # sqrt(v_t) + eps_hat
        tmp += dtype(eps_hat_t)
        np.divide(m, tmp, out=tmp)                               # m_t / (sqrt(v_t) + eps_hat)
        tmp *= dtype(alpha_t)
        theta -= tmp                                             # theta_t = theta - alpha_t m / (...)

    def state_dict(self):
        """Everything needed to continue exactly: step count, moments, hyper-parameters."""
        return {"t": self.t, "m": self.m.copy(), "v": self.v.copy(), "lr": self.lr,
                "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def load_state_dict(self, state):
        m, v = np.asarray(state["m"]), np.asarray(state["v"])
        if m.shape != self.m.shape or v.shape != self.v.shape:
            raise ValueError(f"optimiser state is for {m.size} parameters, this model has {self.m.size}")
        self.t = int(state["t"])
        self.m[...], self.v[...] = m, v
        self.lr, self.beta1, self.beta2, self.eps = (float(state[k]) for k in ("lr", "beta1", "beta2", "eps"))


class SGD:
    """Stochastic gradient descent with optional (heavy-ball) momentum; the baseline.

    Implements:  b_t = momentum * b_{t-1} + g_t ;  theta_t = theta_{t-1} - lr * b_t
                 (momentum = 0 gives plain SGD: theta_t = theta_{t-1} - lr * g_t)
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
        self.params -= self.lr * self.buf                        # theta_t = theta_{t-1} - lr b_t

    def state_dict(self):
        return {"t": self.t, "buf": self.buf.copy(), "lr": self.lr, "momentum": self.momentum}

    def load_state_dict(self, state):
        buf = np.asarray(state["buf"])
        if buf.shape != self.buf.shape:
            raise ValueError(f"optimiser state is for {buf.size} parameters, this model has {self.buf.size}")
        self.t, self.buf[...] = int(state["t"]), buf
        self.lr, self.momentum = float(state["lr"]), float(state["momentum"])
