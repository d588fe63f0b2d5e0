"""Finite-difference gradient checking: the proof that a hand-written backward is right.

Use it yourself:

>>> import numpy as np
>>> from scratchvae.gradcheck import numerical_gradient, rel_error
>>> x = np.array([1.0, -2.0, 3.0])
>>> f = lambda x: np.sum(x ** 3)                 # df/dx = 3 x^2
>>> rel_error(numerical_gradient(f, x), 3 * x ** 2) < 1e-8
True

Central differences are accurate to O(h^2), but only in float64: in float32 the
rounding error of f (about 1e-7 relative) divided by h swamps the derivative.
"""
import numpy as np


def _check_float64(x):
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("finite differences need a float64 NumPy array (in float32 the rounding "
                        f"error swamps the derivative); got {type(x).__name__} "
                        f"of dtype {getattr(x, 'dtype', None)}")


def numerical_gradient(f, x, h=1e-5):
    """d f / d x by central differences, one element at a time.

    Implements:  df/dx_i ~ ( f(x + h e_i) - f(x - h e_i) ) / (2 h)      (error O(h^2))
    ``f(x)`` must return a scalar and read ``x`` (which is changed in place and restored
    after each element, so ``x`` may be a view into a model's parameters).
    Shapes:      x any float64 array -> same shape as x
    """
    _check_float64(x)
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat_x, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        f_plus = float(f(x))
        flat_x[i] = old - h
        f_minus = float(f(x))
        flat_x[i] = old                                   # restore
        flat_grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_gradient_array(f, x, dout, h=1e-5):
    """Gradient of sum(f(x) * dout) with respect to x, for an array-valued f.

    This is what a layer's backward(dout) returns: the vector-Jacobian product
    dout^T (df/dx). A random ``dout`` checks every output at once.
    Implements:  d/dx_i ~ sum( (f(x + h e_i) - f(x - h e_i)) * dout ) / (2 h)
    """
    return numerical_gradient(lambda x_: np.sum(np.asarray(f(x_)) * dout), x, h)


def rel_error(a, b):
    """Relative error of two gradients: the largest element difference over their scale.

    Implements:  rel_error = max_i |a_i - b_i| / max(1e-8, max_i (|a_i| + |b_i|))
    0 means identical; 1e-7 or less is what a correct float64 backward gives against
    central differences. (Dividing each element by its own size instead would flag
    elements that are nearly zero, where the finite difference has no correct digits.)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare gradients of shapes {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def check_model_gradients(model, x, eps=None, h=1e-5, *, y=None):
    """Compare every analytic gradient of ``model.loss_and_grads`` with finite differences.

    Works for every kind of model: the VAE and the IWAE take ``eps``; the conditional VAE
    also its labels ``y`` (N,); the autoencoder draws no eps and takes x alone. The model
    must be float64. The finite differences are of the loss ``loss_and_grads`` itself
    returns, so the gradient is checked against the very function it claims to
    differentiate (the IWAE's -L_k, not the ELBO of its ``loss``). ``eps`` is frozen so
    that loss is a deterministic function of the parameters; ``eps=None`` draws it once
    (``model.draw_eps``: as many samples as ``loss_and_grads`` would draw) and keeps it for
    every evaluation (a fresh eps per evaluation would make every difference noise).
    Returns {parameter name: rel_error}.
    """
    if model.conditional and y is None:
        raise ValueError(f"{model.article} is given the labels: check_model_gradients(model, x, y=labels)")
    if y is not None and not model.conditional:
        raise ValueError(f"y: {model.article} is not given labels; leave y out")
    inputs = (x,) if y is None else (x, y)
    if "eps" in model.random_streams:                     # the VAE's kinds sample z = mu + sigma * eps
        inputs += (model.draw_eps(len(x)) if eps is None else eps,)
    elif eps is not None:
        raise ValueError(f"{model.article} draws no eps (its z = encoder(x)); leave eps out")
    model.loss_and_grads(*inputs)
    analytic = {name: g.copy() for name, g in model.grads.items()}
    loss = lambda _: model.loss_and_grads(*inputs)[0]
    return {name: rel_error(numerical_gradient(loss, p, h), analytic[name])
            for name, p in model.params.items()}
