"""The workbook's eight exercises: per function, the package's own answer, the inputs it is
checked on with the right answers, and the classic mistakes, each with its hint.

The right answers are computed here in float64, independently of the package's backward
passes: a gradient by central differences (gradcheck.py) of the forward formula, a value
by the formula itself. The package's functions (``reference``) must agree with them
(tests/workbook/test_checks.py); ``scratchvae workbook train`` uses them for a blank.

A mistake is a small wrong implementation with the learner's signature (or a rule on which
inputs fail, for the numerically unstable formulas); the checker recognises it when the
learner's outputs are the mistake's. Its hint speaks the lecture's language.
"""
import math
from functools import lru_cache

import numpy as np

from ..chapters.iwae import IWAE
from ..gradcheck import numerical_gradient, numerical_gradient_array
from ..layers import Dense, ReLU, Tanh, exp_no_subnormal, sigmoid
from ..losses import (bernoulli_log_likelihood, bernoulli_log_likelihood_grads, kl_standard_normal,
                      kl_standard_normal_grads)
from ..optim import Adam
from ..vae import VAE
from .checker import Case, Exercise, Function, Mistake


def rng_for(name):
    """The same inputs every time: a generator seeded by the function's name."""
    return np.random.default_rng(sum(ord(c) * 31 ** i for i, c in enumerate(name)) % 2 ** 32)


def away_from_zero(a, margin=0.1):
    """Keep pre-activations off ReLU's kink, where finite differences straddle it."""
    return np.where(a >= 0, a + margin, a - margin)


def unstable(failed, passed):
    """Right on every moderate input, wrong on some large one: a formula that over- or underflows."""
    return "moderate" in passed and "moderate" not in failed and "large" in failed


# ====================================================================== exercise 1: layers
def ref_dense_backward(x, W, dout):
    layer = Dense(*W.shape, np.random.default_rng(0), dtype=W.dtype)
    layer.params["W"][...] = W
    layer.forward(x)
    dx = layer.backward(dout)
    return dx, layer.grads["W"].copy(), layer.grads["b"].copy()


def _backward_from_output(layer_class, y, dout):
    """ReLU and Tanh keep their output y for the backward: give it, then run their backward."""
    layer = layer_class()
    layer._cache = y
    return layer.backward(dout)


def ref_relu_backward(y, dout):
    return _backward_from_output(ReLU, y, dout)


def ref_tanh_backward(y, dout):
    return _backward_from_output(Tanh, y, dout)


def dense_cases():
    rng = rng_for("dense")
    x, W, b, dout = (rng.standard_normal(s) for s in ((4, 3), (3, 5), (5,), (4, 5)))
    truth = {"dx": numerical_gradient_array(lambda v: v @ W + b, x.copy(), dout),
             "dW": numerical_gradient_array(lambda v: x @ v + b, W.copy(), dout),
             "db": numerical_gradient_array(lambda v: x @ W + v, b.copy(), dout)}
    return [Case((x, W, dout), truth)]


def activation_cases(name, forward):
    rng = rng_for(name)
    a, dout = away_from_zero(rng.standard_normal((4, 5))), rng.standard_normal((4, 5))
    return [Case((forward(a), dout), {"dx": numerical_gradient_array(forward, a.copy(), dout)})]


LAYERS = Exercise(1, "ex1_layers", "the backward of a dense layer, ReLU and tanh (slides 7-8)", (
    Function("dense_backward", ("dx", "dW", "db"), ref_dense_backward, dense_cases, (
        Mistake("dense_dW_transposed", "your dW is dW^T, the shape of W turned round: with y = x W, "
                "dW = x^T dout, (D_in, N) @ (N, D_out) -> (D_in, D_out), the shape of W",
                wrong=lambda x, W, dout: (dout @ W.T, dout.T @ x, dout.sum(axis=0))),
        Mistake("dense_db_mean", "your db is 1/N of the right one: b is added to every row of the batch, "
                "so its gradient is the SUM of dout over the batch (any 1/N of a batch mean is already in dout)",
                wrong=lambda x, W, dout: (dout @ W.T, x.T @ dout, dout.mean(axis=0))),
        Mistake("dense_db_axis", "your db sums over the wrong axis: b has one entry per output unit, "
                "(D_out,), so sum dout over the batch, axis 0",
                wrong=lambda x, W, dout: (dout @ W.T, x.T @ dout, dout.sum(axis=1))),
    )),
    Function("relu_backward", ("dx",), ref_relu_backward, lambda: activation_cases("relu", lambda a: np.maximum(a, 0)), (
        Mistake("relu_ge", "[y >= 0] is 1 everywhere, since y = max(x, 0) is never negative: a unit that "
                "was cut off (y = 0) must pass no gradient back; use [y > 0]",
                wrong=lambda y, dout: dout * (y >= 0)),
        Mistake("relu_no_dout", "you returned ReLU's local derivative [y > 0] alone: the chain rule "
                "multiplies it by dout, dx = dout * [y > 0]",
                wrong=lambda y, dout: (y > 0).astype(y.dtype)),
    )),
    Function("tanh_backward", ("dx",), ref_tanh_backward, lambda: activation_cases("tanh", np.tanh), (
        Mistake("tanh_of_y", "you took tanh of y, but y = tanh(x) is already the output: "
                "d tanh(x)/dx = 1 - tanh(x)^2 = 1 - y^2",
                wrong=lambda y, dout: dout * (1 - np.tanh(y) ** 2)),
        Mistake("tanh_no_dout", "you returned tanh's local derivative 1 - y^2 alone: the chain rule "
                "multiplies it by dout, dx = dout * (1 - y^2)",
                wrong=lambda y, dout: 1 - y ** 2),
    )),
), "scratchvae/layers.py: Dense.backward, ReLU.backward, Tanh.backward")


# ====================================================================== exercise 2: Bernoulli
def bernoulli_cases(grads):
    rng = rng_for("bernoulli")
    x = rng.random((3, 6))
    x[0] = x[0] > 0.5                                            # 0/1 pixels and grey levels
    moderate, broadcast = 2 * rng.standard_normal((3, 6)), 2 * rng.standard_normal((2, 3, 6))
    large = np.array([[30.0, -30.0, 1000.0, -1000.0, 60.0, -745.0]] * 3) * np.where(rng.random((3, 6)) < 0.5, 1, -1)
    log_lik = lambda x_, l: np.sum(x_ * l - np.logaddexp(0, l), axis=-1)       # log sigmoid(l) = -log(1 + e^-l)
    cases = []
    for logits, label in ((moderate, "moderate"), (broadcast, "moderate"), (large, "large")):
        truth = ({"dlogits": numerical_gradient(lambda l: np.sum(log_lik(x, l)), logits.copy())} if grads
                 else {"log_px_z": log_lik(x, logits)})
        cases.append(Case((x, logits), truth, label,
                          source="checked against float64 finite differences" if grads else
                          "checked against sum(x l - log(1 + e^l)) in float64"))
    return cases


def _naive_sigmoid(l):
    return 1 / (1 + np.exp(-l))


UNSTABLE_BERNOULLI = ("right for moderate logits, wrong (or inf, nan) for large ones like +-1000: "
                      "log(sigmoid(l)) is -inf once sigmoid rounds to 0, and clipping changes the "
                      "gradient. Rewrite x log s + (1 - x) log(1 - s) with log s = l - softplus(l) and "
                      "log(1 - s) = -softplus(l): it is sum_d [x_d l_d - softplus(l_d)], where "
                      "softplus(l) = max(l, 0) + log1p(exp(-|l|)) never overflows")

BERNOULLI = Exercise(2, "ex2_bernoulli", "the Bernoulli log-likelihood from logits, and its gradient (slides 8-11)", (
    Function("bernoulli_log_likelihood", ("log_px_z",), bernoulli_log_likelihood,
             lambda: bernoulli_cases(grads=False), (
        Mistake("bernoulli_unstable", UNSTABLE_BERNOULLI, when=unstable),
        Mistake("bernoulli_no_sum", "you returned one number per pixel: the pixels are independent "
                "given z, so their probabilities multiply and log p(x|z) is the SUM over the D pixels "
                "(the last axis)", wrong=lambda x, l: x * l - np.logaddexp(0, l)),
        Mistake("bernoulli_pixel_mean", "your log-likelihood is 1/D of the right one: it is the sum over "
                "the pixels, not their mean. (A mean over 784 pixels weighs the reconstruction 784 times "
                "less than the KL: a beta-VAE with beta = 784, and blurry digits)",
                wrong=lambda x, l: np.mean(x * l - np.logaddexp(0, l), axis=-1)),
        Mistake("bernoulli_negated", "you returned the binary cross-entropy, -log p(x|z), the loss; this "
                "function is log p(x|z) itself, which is never above 0 for 0/1 pixels",
                wrong=lambda x, l: -np.sum(x * l - np.logaddexp(0, l), axis=-1)),
    ), scalars=()),
    Function("bernoulli_log_likelihood_grads", ("dlogits",), bernoulli_log_likelihood_grads,
             lambda: bernoulli_cases(grads=True), (
        Mistake("bernoulli_grads_unstable", "right for moderate logits, wrong (or nan) for large ones: "
                "exp(l) / (1 + exp(l)) is inf / inf = nan at l = 1000. 1 / (1 + exp(-l)) is safe in "
                "float64 (exp overflows to inf, and 1 / inf = 0), and 0.5 * tanh(0.5 * l) + 0.5 is the "
                "same number without any overflow",
                when=unstable),
        Mistake("bernoulli_grad_sign", "your gradient has the wrong sign: sigmoid(l) - x is the gradient of "
                "-log p(x|z), the loss; this function returns d log p(x|z) / d logits = x - sigmoid(l)",
                wrong=lambda x, l: _naive_sigmoid(l) - x),
        Mistake("bernoulli_grad_wrt_s", "that is the derivative with respect to the probability "
                "s = sigmoid(l), x / s - (1 - x) / (1 - s); the decoder outputs logits, and the chain rule "
                "with ds/dl = s (1 - s) turns it into x - s",
                wrong=lambda x, l: x / _naive_sigmoid(l) - (1 - x) / (1 - _naive_sigmoid(l))),
    )),
), "scratchvae/losses.py: bernoulli_log_likelihood, bernoulli_log_likelihood_grads")


# ====================================================================== exercise 3: KL
def kl_formula(mu, logvar):
    return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)


def kl_cases(grads):
    rng = rng_for("kl")
    cases = []
    for shape in ((3, 4), (4,)):                                 # a batch, and one datapoint
        mu, logvar = rng.standard_normal(shape), rng.standard_normal(shape)
        truth = ({"dmu": numerical_gradient(lambda m: np.sum(kl_formula(m, logvar)), mu.copy()),
                  "dlogvar": numerical_gradient(lambda v: np.sum(kl_formula(mu, v)), logvar.copy())} if grads
                 else {"kl": kl_formula(mu, logvar)})
        cases.append(Case((mu, logvar), truth, source="checked against float64 finite differences" if grads
                          else "checked against -1/2 sum(1 + logvar - mu^2 - exp(logvar)) in float64"))
    return cases


KL = Exercise(3, "ex3_kl", "the KL divergence to N(0, I), and its gradient (slide 12)", (
    Function("kl_standard_normal", ("kl",), kl_standard_normal, lambda: kl_cases(grads=False), (
        Mistake("kl_sign", "your KL is the negative of the right one (a KL is never below 0): the "
                "formula starts with -1/2, KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))",
                wrong=lambda mu, lv: 0.5 * np.sum(1 + lv - mu ** 2 - np.exp(lv), axis=-1)),
        Mistake("kl_no_half", "your KL is twice the right one: the formula has a factor 1/2, "
                "KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))",
                wrong=lambda mu, lv: -np.sum(1 + lv - mu ** 2 - np.exp(lv), axis=-1)),
        Mistake("kl_sigma_for_variance", "you used sigma = exp(logvar / 2) where the formula has the "
                "variance sigma^2 = exp(logvar): logvar is log sigma^2, so sigma^2 = exp(logvar)",
                wrong=lambda mu, lv: -0.5 * np.sum(1 + lv - mu ** 2 - np.exp(0.5 * lv), axis=-1)),
        Mistake("kl_logvar_as_log_sigma", "you read logvar as log sigma (log sigma^2 = 2 logvar, "
                "sigma^2 = exp(2 logvar)); the encoder outputs logvar = log sigma^2: the formula's "
                "log sigma^2 is logvar and its sigma^2 is exp(logvar)",
                wrong=lambda mu, lv: -0.5 * np.sum(1 + 2 * lv - mu ** 2 - np.exp(2 * lv), axis=-1)),
        Mistake("kl_no_sum", "you returned one number per latent dimension: the KL of q(z|x) is the SUM "
                "over the K dimensions (the last axis), one number per datapoint",
                wrong=lambda mu, lv: -0.5 * (1 + lv - mu ** 2 - np.exp(lv))),
    )),
    Function("kl_standard_normal_grads", ("dmu", "dlogvar"), kl_standard_normal_grads,
             lambda: kl_cases(grads=True), (
        Mistake("kl_grad_no_half", "your dlogvar is twice the right one: d/dlogvar of "
                "-1/2 (logvar - exp(logvar)) is 1/2 (exp(logvar) - 1)",
                wrong=lambda mu, lv: (mu, np.exp(lv) - 1)),
        Mistake("kl_grad_wrt_sigma", "you differentiated with respect to sigma: dKL/dsigma = sigma - 1/sigma. "
                "The encoder outputs logvar = log sigma^2, so the gradient it needs is dKL/dlogvar = "
                "dKL/dsigma * dsigma/dlogvar = (sigma - 1/sigma) sigma / 2 = (sigma^2 - 1) / 2",
                wrong=lambda mu, lv: (mu, np.exp(0.5 * lv) - np.exp(-0.5 * lv))),
        Mistake("kl_grad_dmu_sign", "your dmu has the wrong sign: the KL grows with mu^2 / 2, so dKL/dmu = +mu",
                wrong=lambda mu, lv: (-mu, 0.5 * (np.exp(lv) - 1))),
    )),
), "scratchvae/losses.py: kl_standard_normal, kl_standard_normal_grads")


# ====================================================================== exercise 4: z = mu + sigma * eps
def ref_reparameterise(mu, logvar, eps):
    """vae.py's two lines (VAE.loss_and_grads), as a function."""
    sigma = np.exp(0.5 * logvar)                             # (N, K)   sigma = exp(logvar / 2)
    z = mu + sigma * eps                                     # (L, N, K)  z = mu + sigma . eps, slide 14
    return z


def ref_reparameterise_backward(dz, eps, logvar):
    """vae.py's backward lines for z (VAE.loss_and_grads), without the KL's terms."""
    sigma = np.exp(0.5 * logvar)
    return dz.sum(axis=0), (dz * eps).sum(axis=0) * 0.5 * sigma


def reparameterise_cases(backward):
    rng = rng_for("reparameterise")
    cases = []
    for L, shape in ((4, (3, 2)), (3, (2,))):                 # a batch, and one datapoint
        mu, logvar = rng.standard_normal(shape), rng.standard_normal(shape)
        eps, dz = rng.standard_normal((L, *shape)), rng.standard_normal((L, *shape))
        z = lambda m, v: m + np.sqrt(np.exp(v)) * eps
        if backward:
            truth = {"dmu": numerical_gradient(lambda m: np.sum(z(m, logvar) * dz), mu.copy()),
                     "dlogvar": numerical_gradient(lambda v: np.sum(z(mu, v) * dz), logvar.copy())}
            cases.append(Case((dz, eps, logvar), truth))
        else:
            cases.append(Case((mu, logvar, eps), {"z": z(mu, logvar)},
                              source="checked against mu + sqrt(exp(logvar)) eps in float64"))
    return cases


def _sigma(lv):
    return np.exp(0.5 * lv)


REPARAMETERISE = Exercise(4, "ex4_reparameterise", "the reparameterisation z = mu + sigma * eps, and its backward (slide 14)", (
    Function("reparameterise", ("z",), ref_reparameterise, lambda: reparameterise_cases(False), (
        Mistake("z_variance_for_sigma", "exp(logvar) is sigma^2, the variance: z = mu + sigma * eps needs "
                "the standard deviation sigma = exp(logvar / 2), or z would have variance sigma^4",
                wrong=lambda mu, lv, eps: mu + np.exp(lv) * eps),
        Mistake("z_logvar_for_sigma", "logvar is log sigma^2, not sigma: sigma = exp(logvar / 2)",
                wrong=lambda mu, lv, eps: mu + lv * eps),
    )),
    Function("reparameterise_backward", ("dmu", "dlogvar"), ref_reparameterise_backward,
             lambda: reparameterise_cases(True), (
        Mistake("dlogvar_no_half", "your dlogvar is twice the right one: the encoder outputs log sigma^2, "
                "and d sigma / d log sigma^2 = sigma / 2 (sigma = exp(logvar / 2)), so "
                "dz/dlogvar = eps * sigma / 2",
                wrong=lambda dz, eps, lv: (dz.sum(0), (dz * eps).sum(0) * _sigma(lv))),
        Mistake("dlogvar_is_dsigma", "you stopped at d(loss)/d sigma = sum_l dz_l eps_l; the encoder outputs "
                "logvar = log sigma^2, so multiply by d sigma / d logvar = sigma / 2",
                wrong=lambda dz, eps, lv: (dz.sum(0), (dz * eps).sum(0))),
        Mistake("dlogvar_variance_for_sigma", "you used sigma^2 = exp(logvar) in d sigma / d logvar; "
                "sigma = exp(logvar / 2), so d sigma / d logvar = exp(logvar / 2) / 2 = sigma / 2",
                wrong=lambda dz, eps, lv: (dz.sum(0), (dz * eps).sum(0) * 0.5 * np.exp(lv))),
        Mistake("dz_mean_over_samples", "your dmu and dlogvar are 1/L of the right ones: every sample "
                "z_l = mu + sigma eps_l depends on mu and logvar, so the L samples' gradients ADD UP "
                "(the loss's 1/L average over the samples is already inside dz)",
                wrong=lambda dz, eps, lv: (dz.mean(0), (dz * eps).mean(0) * 0.5 * _sigma(lv))),
        Mistake("dz_no_sum_over_samples", "you returned one gradient per sample, shape (L, N, K): mu and "
                "logvar have shape (N, K), and the L samples z_l all depend on them, so sum over l",
                wrong=lambda dz, eps, lv: (dz, dz * eps * 0.5 * _sigma(lv))),
        Mistake("dz_first_sample_only", "you kept only the first sample's gradient (dz[0]): with L "
                "samples, sum dz_l (and dz_l eps_l) over all l = 1..L",
                wrong=lambda dz, eps, lv: (dz[0], dz[0] * eps[0] * 0.5 * _sigma(lv))),
    )),
), "scratchvae/vae.py: VAE.loss_and_grads (the lines of sigma and z, and of dmu and dlogvar)")


# ====================================================================== exercise 5: the whole VAE
PARAM_NAMES = ("enc.fc1.W", "enc.fc1.b", "enc.mu.W", "enc.mu.b", "enc.logvar.W", "enc.logvar.b",
               "dec.fc1.W", "dec.fc1.b", "dec.logits.W", "dec.logits.b")


@lru_cache(maxsize=8)
def _vae(shapes, dtype):
    D, H = dict(shapes)["enc.fc1.W"]
    return VAE(D, [H], dict(shapes)["enc.mu.W"][1], dtype=np.dtype(dtype))


def vae_with(params, dtype):
    """The package's VAE (one hidden ReLU layer, Bernoulli) holding ``params`` (one per shape, reused)."""
    model = _vae(tuple((name, params[name].shape) for name in PARAM_NAMES), np.dtype(dtype).name)
    for name in PARAM_NAMES:
        model.params[name][...] = params[name]
    return model


def ref_vae_forward(params, x, eps):
    return vae_with(params, x.dtype).loss(x, eps)[0], None


def ref_vae_backward(params, x, eps, cache):
    model = vae_with(params, x.dtype)
    model.loss_and_grads(x, eps)
    return {name: g.copy() for name, g in model.grads.items()}


def vae_cases(backward):
    rng = rng_for("vae")
    cases = []
    for N, L in ((3, 2), (4, 1)):
        model = VAE(6, [5], 2, dtype=np.float64, seed=int(rng.integers(1000)))
        x, eps = rng.random((N, 6)), rng.standard_normal((L, N, 2))
        params = {name: model.params[name].copy() for name in PARAM_NAMES}
        if backward:
            loss = lambda _: model.loss(x, eps)[0]
            truth = {name: numerical_gradient(loss, model.params[name]) for name in PARAM_NAMES}
            cases.append(Case((params, x, eps), truth))
        else:
            cases.append(Case((params, x, eps), {"loss": model.loss(x, eps)[0]},
                              source="scratchvae's VAE.loss"))
    return cases


def assembled_backward(slip=None):
    """vae_backward written out with the reference pieces, with one slip (or none)."""
    def backward(params, x, eps, cache):
        p = params
        L, N, K = eps.shape
        h = np.maximum(x @ p["enc.fc1.W"] + p["enc.fc1.b"], 0)
        mu, logvar = h @ p["enc.mu.W"] + p["enc.mu.b"], h @ p["enc.logvar.W"] + p["enc.logvar.b"]
        sigma = np.exp(0.5 * logvar)
        z = (mu + sigma * eps).reshape(L * N, K)
        h_dec = np.maximum(z @ p["dec.fc1.W"] + p["dec.fc1.b"], 0)
        logits = (h_dec @ p["dec.logits.W"] + p["dec.logits.b"]).reshape(L, N, -1)
        rec_weight = {"sum_batch": 1 / L, "no_1_over_L": 1 / N, "rec_sign": -1 / (L * N)}.get(slip, 1 / (L * N))
        kl_weight = {"sum_batch": 1.0, "kl_not_over_N": 1.0, "kl_sign": -1 / N}.get(slip, 1 / N)
        d_logits = ((sigmoid(logits) - x) * rec_weight).reshape(L * N, -1)
        grads = {"dec.logits.W": h_dec.T @ d_logits, "dec.logits.b": d_logits.sum(0)}
        da_dec = (d_logits @ p["dec.logits.W"].T) * (h_dec > 0)
        grads.update({"dec.fc1.W": z.T @ da_dec, "dec.fc1.b": da_dec.sum(0)})
        dz = (da_dec @ p["dec.fc1.W"].T).reshape(L, N, K)
        dmu = dz.sum(0) + kl_weight * mu
        dlogvar = (dz * eps).sum(0) * 0.5 * sigma + kl_weight * 0.5 * np.expm1(logvar)
        grads.update({"enc.mu.W": h.T @ dmu, "enc.mu.b": dmu.sum(0),
                      "enc.logvar.W": h.T @ dlogvar, "enc.logvar.b": dlogvar.sum(0)})
        dh = dmu @ p["enc.mu.W"].T + (0 if slip == "one_head" else dlogvar @ p["enc.logvar.W"].T)
        da = dh * (h > 0)
        grads.update({"enc.fc1.W": x.T @ da, "enc.fc1.b": da.sum(0)})
        return grads
    return backward


def backward_on_forwards_cache(functions, params, x, eps):
    """vae_backward is checked on the cache of (the learner's) vae_forward."""
    _, cache = functions["vae_forward"](params, x, eps)
    return functions["vae_backward"](params, x, eps, cache)


VAE_EXERCISE = Exercise(5, "ex5_vae", "the whole VAE backward, assembled from your pieces (slide 15)", (
    Function("vae_forward", ("loss", "_cache"), ref_vae_forward, lambda: vae_cases(False), given=True,
             scalars=("loss",), tol=1e-9),
    Function("vae_backward", ("grads",), ref_vae_backward, lambda: vae_cases(True), (
        Mistake("vae_sum_over_batch", "every gradient is N times the right one: the loss is the MEAN over "
                "the batch, so each datapoint's terms carry 1/N (d_logits = (sigmoid(l) - x) / (L N), and "
                "the KL's gradient / N). With Adam the sum would train the same, but it is not the "
                "gradient of vae_forward's loss", wrong=assembled_backward("sum_batch")),
        Mistake("vae_kl_not_over_n", "the KL's gradient is not divided by N while the reconstruction's "
                "is: every datapoint's KL enters the batch mean with weight 1/N. As it is, the KL weighs "
                "N times too much (a beta-VAE with beta = N): add dkl_dmu / N and dkl_dlogvar / N",
                wrong=assembled_backward("kl_not_over_N")),
        Mistake("vae_no_1_over_l", "the reconstruction's gradient is L times too large: "
                "-E_q[log p(x|z)] is estimated by the MEAN over the L samples, so each sample's d_logits "
                "carries 1/(L N), not 1/N", wrong=assembled_backward("no_1_over_L")),
        Mistake("vae_one_head", "the hidden layer h feeds BOTH heads, mu = h W_mu + b_mu and "
                "logvar = h W_logvar + b_logvar: its gradient is the sum of the two heads' dx",
                wrong=assembled_backward("one_head")),
        Mistake("vae_kl_sign", "you subtracted the KL's gradient: the loss is -log p(x|z) + KL, so ADD "
                "dKL/dmu / N and dKL/dlogvar / N to the gradients that come through z",
                wrong=assembled_backward("kl_sign")),
        Mistake("vae_rec_sign", "the reconstruction's gradient has the wrong sign: the loss is MINUS the "
                "log-likelihood, so d loss / d logits = -(x - sigmoid(l)) / (L N) = (sigmoid(l) - x) / (L N)",
                wrong=assembled_backward("rec_sign")),
    ), call=backward_on_forwards_cache, dict_output=True),
), "scratchvae/vae.py: VAE.loss_and_grads (its backward half)")


# ====================================================================== exercise 6: Adam
def ref_adam_step(w, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """optim.py's Adam, started at step t - 1 with the paper's moments m, v."""
    adam = Adam(np.array(w, copy=True), np.array(g, copy=True), lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    adam.t = t - 1
    adam.m_sum[...], adam.v_sum[...] = m / (1 - beta1), v / (1 - beta2)      # Adam keeps m / (1 - beta1)
    adam.step()
    return adam.params, adam.m, adam.v


def adam_formula(w, g, m, v, t, lr, beta1, beta2, eps, *, correct_m=True, correct_v=True, sqrt=np.sqrt,
                 eps_inside=False, sign=-1):
    """Algorithm 1 of Kingma & Ba in float64, with switches for the slips."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t) if correct_m else m
    v_hat = v / (1 - beta2 ** t) if correct_v else v
    denominator = sqrt(v_hat + eps) if eps_inside else sqrt(v_hat) + eps
    return w + sign * lr * m_hat / denominator, m, v


def adam_cases():
    rng = rng_for("adam")
    n, cases = 8, []
    for t, scale, hyper in ((1, 1.0, (1e-3, 0.9, 0.999, 1e-8)), (3, 1.0, (1e-3, 0.9, 0.999, 1e-8)),
                            (1000, 1.0, (0.01, 0.8, 0.99, 1e-6)), (2, 1e-6, (1e-3, 0.9, 0.999, 1e-8))):
        w, g = rng.standard_normal(n), scale * rng.standard_normal(n)
        m = np.zeros(n) if t == 1 else 0.1 * scale * rng.standard_normal(n)
        v = np.zeros(n) if t == 1 else 0.01 * scale ** 2 * rng.random(n)
        args = (w, g, m, v, t, *hyper)
        cases.append(Case(args, dict(zip(("w", "m", "v"), adam_formula(*args))),
                          source="checked against Algorithm 1 in float64"))
    return cases


def adam_slip(**slip):
    return lambda w, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8: adam_formula(
        w, g, m, v, t, lr, beta1, beta2, eps, **slip)


ADAM = Exercise(6, "ex6_adam", "Adam's step, with its bias correction (slide 15)", (
    Function("adam_step", ("w", "m", "v"), ref_adam_step, adam_cases, (
        Mistake("adam_no_bias_correction", "your step has no bias correction: m and v start at 0, so in "
                "the first steps they are too small by the factors 1 - beta1^t and 1 - beta2^t; divide by "
                "them: m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)",
                wrong=adam_slip(correct_m=False, correct_v=False)),
        Mistake("adam_only_m_corrected", "you corrected m but not v: v_hat = v / (1 - beta2^t) too (at "
                "t = 1 that is 1000 times v, and the step is about 30 times too large)",
                wrong=adam_slip(correct_v=False)),
        Mistake("adam_no_sqrt", "the step divides by the square ROOT of v_hat, the running root mean "
                "square of the gradient: lr m_hat / (sqrt(v_hat) + eps)",
                wrong=adam_slip(sqrt=lambda a: a)),
        Mistake("adam_eps_inside_sqrt", "Algorithm 1 adds eps AFTER the square root, sqrt(v_hat) + eps, "
                "not inside it; the two differ where gradients are tiny",
                wrong=adam_slip(eps_inside=True)),
        Mistake("adam_ascent", "your step goes uphill: gradient DESCENT subtracts, "
                "w_t = w_{t-1} - lr m_hat / (sqrt(v_hat) + eps)", wrong=adam_slip(sign=1)),
        Mistake("adam_ignores_arguments", "right with the default hyper-parameters, wrong with others: use "
                "the arguments lr, beta1, beta2 and eps, not the numbers 1e-3, 0.9, 0.999, 1e-8",
                wrong=lambda w, g, m, v, t, *hyper, **kw: adam_formula(w, g, m, v, t, 1e-3, 0.9, 0.999, 1e-8)),
    ), tol=1e-9),
), "scratchvae/optim.py: Adam (its step computes Algorithm 1's numbers, rearranged)")


# ====================================================================== exercises 7-8: one datapoint
class Decoder:
    """p_phi(x|z) of a small fixed VAE, given to exercises 7 and 8.

    forward(z): z (L, K) -> logits (L, D);  backward(dlogits): (L, D) -> dz (L, K), the
    chain rule through the forward just made (one backward per forward). ``model``: the
    VAE (an IWAE, so that exercise 8 can ask it for its bound) whose decoder this is.
    """

    def __init__(self, model):
        self.model = model

    def forward(self, z):
        return self.model._decoder_forward(np.asarray(z, dtype=self.model.dtype))

    def backward(self, dlogits):
        return self.model._decoder_backward(np.asarray(dlogits, dtype=self.model.dtype))

    def as_dtype(self, dtype):
        config = {k: v for k, v in self.model.config().items() if k not in ("dtype", "n_samples", "beta")}
        copy = IWAE(**config, dtype=dtype, k=1)
        copy.flat_params[...] = self.model.flat_params
        return Decoder(copy)

    def __repr__(self):
        m = self.model
        return f"Decoder(z ({m.latent_dim},) -> {m.hidden_dims} ReLU -> {m.input_dim} logits)"


def one_datapoint_cases(name, value):
    """Inputs of exercises 7-8: (decoder, x, mu, logvar, eps); truth from ``value``(decoder, x, mu, logvar, eps)."""
    rng = rng_for(name)
    cases = []
    for L in (3, 1):
        decoder = Decoder(IWAE(6, [5], 2, dtype=np.float64, seed=int(rng.integers(1000)), k=1))
        x, mu, logvar = rng.random(6), rng.standard_normal(2), 0.5 * rng.standard_normal(2)
        eps = rng.standard_normal((L, 2))
        truth = {"value": value(decoder, x, mu, logvar, eps),
                 "dmu": numerical_gradient(lambda m: value(decoder, x, m, logvar, eps), mu.copy()),
                 "dlogvar": numerical_gradient(lambda v: value(decoder, x, mu, v, eps), logvar.copy())}
        cases.append(Case((decoder, x, mu, logvar, eps), truth))
    return cases


def ref_elbo_and_grads(decoder, x, mu, logvar, eps):
    """VAE.loss_and_grads (slide 15's loss, beta = 1) for one datapoint whose encoder outputs lambda:
    the loss is -ELBO and d(-ELBO)/d(bias of a head) = -dELBO/dlambda. (chapters/inference.py's
    elbo_and_grads gives the same numbers; tests/workbook/test_checks.py compares them.)"""
    model = decoder.model
    lambda_is(model, mu, logvar)
    loss, _ = VAE.loss_and_grads(model, x[None], eps[:, None])      # the VAE's loss, not the IWAE's
    return -loss, -model.grads["enc.mu.b"].copy(), -model.grads["enc.logvar.b"].copy()


def elbo_value(decoder, x, mu, logvar, eps):
    """The ELBO by VAE.loss, the forward alone."""
    lambda_is(decoder.model, mu, logvar)
    return -float(VAE.loss(decoder.model, x[None], eps[:, None])[0])


def elbo_slipped(slip=None):
    """elbo_and_grads written out with the reference pieces, with one slip (or none)."""
    def elbo_and_grads(decoder, x, mu, logvar, eps):
        L = eps.shape[0]
        average = 1.0 if slip == "sum_over_L" else 1 / L
        sigma = np.exp(0.5 * logvar)
        logits = decoder.forward(mu + sigma * eps)
        kl = kl_formula(mu, logvar)
        elbo = average * np.sum(bernoulli_log_likelihood(x, logits)) + (kl if slip == "kl_added" else -kl)
        dz = decoder.backward(average * (x - sigmoid(logits)))
        half = 1.0 if slip == "no_half" else 0.5
        kl_sign = 1 if slip == "grad_kl_added" else -1
        dmu = dz.sum(0) + kl_sign * mu
        dlogvar = (dz * eps).sum(0) * half * sigma + kl_sign * 0.5 * np.expm1(logvar)
        if slip == "loss_gradient":
            dmu, dlogvar = -dmu, -dlogvar
        return elbo, dmu, dlogvar
    return elbo_and_grads


INFERENCE = Exercise(7, "ex7_inference", "the gradient of the ELBO with respect to lambda, one datapoint (slides 19-24)", (
    Function("elbo_and_grads", ("value", "dmu", "dlogvar"), ref_elbo_and_grads,
             lambda: one_datapoint_cases("elbo", elbo_value), (
        Mistake("elbo_kl_added", "your ELBO adds the KL: ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), "
                "the KL is what q pays for leaving the prior (slide 23)", wrong=elbo_slipped("kl_added")),
        Mistake("elbo_grad_kl_added", "you added the KL's gradient: the ELBO SUBTRACTS the KL, so "
                "dELBO/dmu = 1/L sum_l dz_l - mu and dELBO/dlogvar = ... - (exp(logvar) - 1) / 2",
                wrong=elbo_slipped("grad_kl_added")),
        Mistake("elbo_sum_over_samples", "E_q[log p(x|z)] is estimated by the MEAN of the L samples' "
                "log p(x|z_l), not their sum: 1/L in the value, and in dlogits before the decoder's backward",
                wrong=elbo_slipped("sum_over_L")),
        Mistake("elbo_dlogvar_no_half", "your dlogvar's part through z is twice the right one: "
                "z = mu + sigma eps with sigma = exp(logvar / 2), so dz/dlogvar = eps sigma / 2",
                wrong=elbo_slipped("no_half")),
        Mistake("elbo_loss_gradient", "you returned the gradient of the loss -ELBO (both signs flipped); "
                "this function returns the gradient of the ELBO itself, the uphill direction of "
                "variational inference (slides 19-23)", wrong=elbo_slipped("loss_gradient")),
    ), scalars=("value",)),
), "scratchvae/chapters/inference.py: elbo_and_grads")


def ref_iwae_bound(log_w):
    """iwae.py's lines of L_k (IWAE.loss_and_grads), for one datapoint's log-weights."""
    k = log_w.shape[0]
    m = log_w.max(axis=0)                                    # (N,)    the largest log-weight
    unnorm = exp_no_subnormal(log_w - m)                     # (k, N)  w_i / w_max, in (0, 1]
    total = unnorm.sum(axis=0)                               # (N,)    sum_i w_i / w_max >= 1
    return m + np.log(total) - np.log(k)


def ref_normalised_weights(log_w):
    """iwae.py's line of w~ (IWAE.loss_and_grads), for one datapoint's log-weights."""
    m = log_w.max(axis=0)                                    # (N,)    the largest log-weight
    unnorm = exp_no_subnormal(log_w - m)                     # (k, N)  w_i / w_max, in (0, 1]
    total = unnorm.sum(axis=0)                               # (N,)    sum_i w_i / w_max >= 1
    w_tilde = unnorm / total                                 # (k, N)  w~_i = softmax_i(log w)
    return w_tilde


def bound_formula(log_w):
    """log (1/k) sum_i exp(log w_i), summed exactly (math.fsum) after taking out the largest."""
    m = max(float(v) for v in log_w)
    return m + math.log(math.fsum(math.exp(float(v) - m) for v in log_w)) - math.log(len(log_w))


def weights_cases(gradient):
    rng = rng_for("weights")
    cases = []
    for log_w, label in ((-80 + 2 * rng.standard_normal(5), "moderate"), (np.array([-3.0]), "moderate"),
                         (np.array([-1000.0, -1001.5, -1200.0, -3000.0]), "large"),
                         (np.array([700.0, 705.0, 650.0, 740.0]), "large")):
        truth = ({"w_tilde": numerical_gradient(bound_formula, log_w.copy())} if gradient
                 else {"L_k": bound_formula(log_w)})
        cases.append(Case((log_w,), truth, label, source="checked against float64 finite differences of L_k"
                          if gradient else "checked against an exact sum (math.fsum)"))
    return cases


def lambda_is(model, mu, logvar):
    """Make the encoder output lambda = (mu, logvar) for every x: its heads' weights 0, biases lambda."""
    for head, value in (("mu", mu), ("logvar", logvar)):
        model.params[f"enc.{head}.W"][...] = 0
        model.params[f"enc.{head}.b"][...] = value


def ref_iwae_and_grads(decoder, x, mu, logvar, eps):
    """IWAE.loss_and_grads for one datapoint whose encoder outputs lambda: d(-L_k)/d bias = -dL_k/dlambda."""
    model = decoder.model
    lambda_is(model, mu, logvar)
    loss, _ = model.loss_and_grads(x[None], eps[:, None])
    return -loss, -model.grads["enc.mu.b"].copy(), -model.grads["enc.logvar.b"].copy()


def iwae_value(decoder, x, mu, logvar, eps):
    """L_k by IWAE.bound, the forward of the probabilistic view (vae.py's log_weights)."""
    lambda_is(decoder.model, mu, logvar)
    return float(decoder.model.bound(x[None], eps[:, None])[0])


def iwae_slipped(slip):
    """iwae_and_grads written out with the reference pieces, with one slip."""
    def iwae_and_grads(decoder, x, mu, logvar, eps):
        k = eps.shape[0]
        sigma = np.exp(0.5 * logvar)
        z = mu + sigma * eps
        logits = decoder.forward(z)
        log_w = (bernoulli_log_likelihood(x, logits) - 0.5 * np.sum(z ** 2, axis=-1)
                 + 0.5 * np.sum(logvar + eps ** 2, axis=-1))                   # log p(z) - log q(z|x)
        w = np.full(k, 1 / k) if slip == "uniform" else ref_normalised_weights(log_w)
        dz = decoder.backward(w[:, None] * (x - sigmoid(logits)))
        if slip != "no_prior":
            dz = dz - w[:, None] * z
        dmu, dlogvar = dz.sum(0), (dz * eps).sum(0) * 0.5 * sigma
        if slip == "q_through_z_only":                      # -log q differentiated through z alone
            dmu, dlogvar = dmu + np.sum(w[:, None] * eps / sigma, 0), dlogvar + np.sum(w[:, None] * eps ** 2, 0) / 2
        elif slip != "q_constant":
            dlogvar = dlogvar + 0.5
        return ref_iwae_bound(log_w), dmu, dlogvar
    return iwae_and_grads


UNSTABLE_BOUND = ("right for moderate log-weights, wrong (or inf, nan) for log-weights like -1000 or +740: "
                  "exp(log w) underflows to 0 or overflows to inf before the log. Take out the largest "
                  "first: with m = max_i log w_i, L_k = m + log sum_i exp(log w_i - m) - log k, where every "
                  "exponent is <= 0 and the sum is >= 1")
UNSTABLE_WEIGHTS = ("right for moderate log-weights, wrong (nan) for log-weights like -1000 or +740: "
                    "exp(log w) / sum_j exp(log w_j) is 0 / 0 or inf / inf there. The ratio does not change "
                    "if every log w_i is shifted by the same m = max_j log w_j: w~_i = exp(log w_i - m) / "
                    "sum_j exp(log w_j - m), with exponents <= 0 and a sum >= 1")

IWAE_EXERCISE = Exercise(8, "ex8_iwae", "beyond the lecture: the importance-weighted bound L_k, its weights and its gradient", (
    Function("iwae_bound", ("L_k",), ref_iwae_bound, lambda: weights_cases(False), (
        Mistake("iwae_bound_unstable", UNSTABLE_BOUND, when=unstable),
        Mistake("iwae_bound_no_log_k", "L_k = log (1/k) sum_i w_i: subtract log k (the 1/k of the mean); "
                "without it the bound grows with k", wrong=lambda lw: ref_iwae_bound(lw) + np.log(len(lw))),
        Mistake("iwae_bound_is_the_elbo", "that is the mean of the log-weights, the k-sample ELBO; L_k is "
                "the log of the MEAN of the weights, which is larger (Jensen: log mean w >= mean log w)",
                wrong=lambda lw: np.mean(lw)),
    ), scalars=("L_k",), tol=1e-9),
    Function("normalised_weights", ("w_tilde",), ref_normalised_weights, lambda: weights_cases(True), (
        Mistake("weights_unstable", UNSTABLE_WEIGHTS, when=unstable),
        Mistake("weights_uniform", "those are the ELBO's weights, 1/k each; L_k weighs sample i by "
                "w~_i = w_i / sum_j w_j, so the samples that explain x best count most",
                wrong=lambda lw: np.full(lw.shape, 1 / lw.shape[0])),
        Mistake("weights_not_normalised", "you took out the largest log-weight but did not normalise: "
                "divide by the sum, w~_i = exp(log w_i - m) / sum_j exp(log w_j - m)",
                wrong=lambda lw: np.exp(lw - lw.max())),
    )),
    Function("iwae_and_grads", ("value", "dmu", "dlogvar"), ref_iwae_and_grads,
             lambda: one_datapoint_cases("iwae", iwae_value), (
        Mistake("iwae_grad_uniform_weights", "your gradient weighs every sample by 1/k: that is the "
                "gradient of the k-sample ELBO. The gradient of L_k is sum_i w~_i d log w_i, each sample "
                "weighted by its normalised weight", wrong=iwae_slipped("uniform")),
        Mistake("iwae_grad_q_constant", "your dlogvar misses a 1/2 per unit: log q(z|x) depends on lambda "
                "too. With z = mu + sigma eps, log q(z|x) = -1/2 sum_j (log 2 pi + logvar_j + eps_j^2), so "
                "d(-log q)/dlogvar = +1/2 (and d(-log q)/dmu = 0)", wrong=iwae_slipped("q_constant")),
        Mistake("iwae_grad_q_through_z_only", "you differentiated log q(z|x) only through z: it also "
                "depends on mu and logvar directly, log N(z; mu, sigma^2); the two routes together give "
                "d(-log q)/dmu = 0 and d(-log q)/dlogvar = 1/2", wrong=iwae_slipped("q_through_z_only")),
        Mistake("iwae_grad_no_prior", "the prior's term is missing from dz: log w = log p(x|z) + log p(z) "
                "- log q(z|x), and d log p(z)/dz = -z for p(z) = N(0, I)", wrong=iwae_slipped("no_prior")),
    ), scalars=("value",)),
), "scratchvae/chapters/iwae.py: IWAE.loss_and_grads (the lines of m, unnorm, total, L_k, w_tilde, and dmu, dlogvar)")


EXERCISES = (LAYERS, BERNOULLI, KL, REPARAMETERISE, VAE_EXERCISE, ADAM, INFERENCE, IWAE_EXERCISE)
