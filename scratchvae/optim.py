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
    Computed with every constant factor moved onto two scalars, so a step is ten in-place
    passes over the flat vector. It keeps the moments without their (1 - beta) factors,
        m_sum_t = beta1 * m_sum_{t-1} + g_t        (= m_t / (1 - beta1))
        v_sum_t = beta2 * v_sum_{t-1} + g_t^2      (= v_t / (1 - beta2))
        theta_t = theta_{t-1} - alpha_t * m_sum_t / (sqrt(v_sum_t) + eps_t)
    with c_t = sqrt((1 - beta2) / (1 - beta2^t)), alpha_t = lr (1 - beta1) / ((1 - beta1^t) c_t)
    and eps_t = eps / c_t: the same number as Algorithm 1's last line, not an approximation.
    ``adam.m`` and ``adam.v`` give the paper's m_t and v_t.
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

    @property
    def m(self):
        """The paper's first-moment estimate m_t = (1 - beta1) m_sum_t (a copy)."""
        return (1 - self.beta1) * self.m_sum

    @property
    def v(self):
        """The paper's second-moment estimate v_t = (1 - beta2) v_sum_t (a copy)."""
        return (1 - self.beta2) * self.v_sum

    def step(self):
        """One update of ``params`` in place from the current ``grads``."""
        alpha_t, eps_t = self.advance()
        self.update(slice(None), alpha_t, eps_t)

    def advance(self):
        """Count the step (t += 1) and return its scalars (alpha_t, eps_t)."""
        self.t += 1
        c_t = np.sqrt((1 - self.beta2) / (1 - self.beta2 ** self.t))     # sqrt(v_hat) = c_t * sqrt(v_sum)
        alpha_t = self.lr * (1 - self.beta1) / ((1 - self.beta1 ** self.t) * c_t)
        return alpha_t, self.eps / c_t

    def update(self, span, alpha_t, eps_t):
        """Apply step t to ``params[span]``: the moments and the parameter move of Algorithm 1.

        Separate from ``advance`` so that two workers can each update their part of the
        vector (fast.py); ``step`` is ``advance`` then ``update`` of everything.
        """
        dtype = self.params.dtype.type
        g, m_sum, v_sum, tmp, theta = (a[span] for a in (self.grads, self.m_sum, self.v_sum,
                                                         self._tmp, self.params))
        m_sum *= dtype(self.beta1)                               # m_sum = beta1 m_sum + g
        m_sum += g
        np.multiply(g, g, out=tmp)                               # v_sum = beta2 v_sum + g^2
        v_sum *= dtype(self.beta2)
        v_sum += tmp
        np.sqrt(v_sum, out=tmp)                                  # sqrt(v_sum) + eps_t
        tmp += dtype(eps_t)
        np.divide(m_sum, tmp, out=tmp)                           # m_sum / (sqrt(v_sum) + eps_t)
        tmp *= dtype(alpha_t)
        theta -= tmp                                             # theta_t = theta - alpha_t m_sum / (...)

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
