"""The fused evaluation (fast_eval.py) computes the read-along log w (VAE.log_weights).

Both are compared with the same log w computed in float64 from the same float32 weights:
each must be within the rounding error of a float32 sum of D terms, a bound a wrong term
(a missing 1/2, a factor left out of a product, a pixel counted twice) exceeds by orders
of magnitude.
"""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from scratchvae.machinery.evaluate import evaluate, importance_sampled_nll
from scratchvae.fast.fused_eval import GROUP, FastLogWeights, unsupported_reason
from scratchvae.vae import VAE
from scratchvae.fast.workers import _GET_BLAS_THREADS, set_blas_threads


def in_float64(model):
    """The same model with its float32 weights copied into float64: the 'exact' reference."""
    exact = VAE(model.input_dim, model.hidden_dims, model.latent_dim, dtype=np.float64)
    for name, value in model.params.items():
        exact.params[name][...] = value
    return exact


def summation_bound(model, x, eps, q):
    """How far a float32 log w may be from the float64 one, in float64 (eps32 = float32's eps):

    * the logits: z = mu + sigma eps is off by up to 2 eps32 (|mu| + |sigma eps|); each
      [z, 1] [W3; b3] and [h, 1] [W4; b4] is a float32 sum of K + 1 and H + 1 products, off by
      up to (terms + 1) eps32 times the sum of their magnitudes -- which, with weights scaled
      up, can be far larger than |l| itself; relu passes errors on unchanged, and log p(x|z)
      moves by |x_d - sigmoid(l_d)| <= 1 per unit of error in l_d;
    * the terms x_d l_d - softplus(l_d) (a few eps32 each) and their sum over D (log2 D eps32),
      and the same for the K terms of log p(z) - log q(z|x): (2 log2(D) + 8) eps32 times the
      sum of the terms' magnitudes.
    A wrong term (a missing 1/2, a factor left out of a product, a pixel counted twice) is off
    by the size of the term itself, orders of magnitude more."""
    exact, u = in_float64(model), np.finfo(np.float32).eps
    P = {name: np.abs(value) for name, value in exact.params.items()}
    (L, N, K), H = eps.shape, model.hidden_dims[0]
    mu, logvar = (np.asarray(a, np.float64) for a in q)
    z = mu + np.exp(0.5 * logvar) * eps
    logits = exact.decode(z.reshape(-1, K)).reshape(L, N, -1)
    z_error = 2 * u * (np.abs(mu) + np.abs(z - mu)).reshape(-1, K)
    z_abs = np.abs(z).reshape(-1, K)
    h_error = (K + 2) * u * (z_abs @ P["dec.fc1.W"] + P["dec.fc1.b"]) + z_error @ P["dec.fc1.W"]
    h_abs = np.maximum(z.reshape(-1, K) @ exact.params["dec.fc1.W"] + exact.params["dec.fc1.b"], 0)
    l_error = (H + 2) * u * (h_abs @ P["dec.logits.W"] + P["dec.logits.b"]) + h_error @ P["dec.logits.W"]
    terms = np.abs(x * logits) + np.logaddexp(0, logits)
    gauss = (z ** 2 + np.abs(logvar) + eps ** 2 + 2).sum(axis=-1)
    return ((2 * np.log2(model.input_dim) + 8) * u * (terms.sum(axis=-1) + gauss)
            + l_error.sum(axis=-1).reshape(L, N))


def both_and_exact(model, x, eps, threads):
    q = model.encode(x)
    with np.errstate(under="raise"):                           # no subnormal on the way, either
        with FastLogWeights(model, threads=threads) as log_weights:
            fast = log_weights(x, eps, q)
        plain = model.log_weights(x, eps, q=q)
    exact = in_float64(model).log_weights(x.astype(np.float64), eps.astype(np.float64),
                                          q=tuple(a.astype(np.float64) for a in q))
    return fast, plain, exact, summation_bound(model, x, eps, q)


@settings(max_examples=40, deadline=None)
@given(D=st.sampled_from([784, 100, 13, 1]), H=st.integers(1, 40), K=st.integers(1, 6),
       L=st.integers(1, 4), N=st.integers(1, 9), threads=st.sampled_from([1, 2]),
       scale=st.sampled_from([1.0, 30.0, 1000.0]), seed=st.integers(0, 2**16))
@example(D=1, H=37, K=1, L=4, N=1, threads=1, scale=1000.0, seed=7947)   # logits that cancel
def test_fused_log_weights_are_the_read_along_ones(D, H, K, L, N, threads, scale, seed):
    """Any sizes (D odd, even, 1; one image, so nothing to split), weights scaled so that the
    logits reach hundreds (exp(-|l|) far below float32's normal range)."""
    rng = np.random.default_rng(seed)
    model = VAE(D, [H], K, seed=seed)
    model.params["dec.logits.W"][...] *= np.float32(scale)
    x = rng.random((N, D)).astype(np.float32)
    eps = rng.standard_normal((L, N, K), dtype=np.float32)
    fast, plain, exact, bound = both_and_exact(model, x, eps, threads)
    assert fast.shape == plain.shape == (L, N) and fast.dtype == np.float32
    assert np.all(np.abs(plain - exact) <= bound)               # the bound holds for the read-along
    assert np.all(np.abs(fast - exact) <= bound)                # and for the fused evaluation


def test_on_the_reference_shapes_both_are_as_close_to_float64():
    """784-400-20, a chunk of 10 samples x 100 images: the fused error is no larger than the
    read-along one, where a wrong term would cost whole nats."""
    rng = np.random.default_rng(1)
    model = VAE(784, [400], 20, seed=1)
    x = (rng.random((100, 784)) < 0.3).astype(np.float32) * rng.random((100, 784), dtype=np.float32)
    eps = rng.standard_normal((10, 100, 20), dtype=np.float32)
    fast, plain, exact, bound = both_and_exact(model, x, eps, threads=2)
    assert np.abs(fast - exact).max() <= 2 * np.abs(plain - exact).max() + 1e-5
    assert np.abs(fast - exact).max() < 1e-3 < 1 < np.abs(exact).min()
    assert 2.0 ** GROUP < np.finfo(np.float32).max                    # a group's product stays finite


def test_the_estimate_is_the_read_along_one():
    """importance_sampled_nll with the fused log w: the same draws, so the same number."""
    rng = np.random.default_rng(2)
    model = VAE(784, [64], 5, seed=2)
    x = rng.random((23, 784)).astype(np.float32)
    plain = importance_sampled_nll(model, x, 37, rng=np.random.default_rng(7), chunk=4, batch_size=10)
    with FastLogWeights(model) as log_weights:
        fast = importance_sampled_nll(model, x, 37, rng=np.random.default_rng(7), chunk=4, batch_size=10,
                                      log_weights=log_weights)
    np.testing.assert_allclose(fast, plain, rtol=1e-6)


def test_bad_data_is_refused_as_by_the_read_along_estimator():
    model = VAE(10, [8], 2, seed=0)
    with FastLogWeights(model) as log_weights:
        for bad, why in ((np.zeros((3, 9)), "shape"), (np.full((3, 10), 255, np.uint8), "divide"),
                         (np.full((3, 10), np.nan), "nan or inf")):
            for fused in (None, log_weights):
                with pytest.raises(ValueError, match=why):
                    importance_sampled_nll(model, bad, 4, rng=np.random.default_rng(0), log_weights=fused)


def test_evaluate_with_the_fused_engine_reports_the_same_numbers():
    rng = np.random.default_rng(3)
    model = VAE(784, [32], 4, seed=3)
    images = (rng.random((30, 784)) * 255).astype(np.uint8)
    plain = evaluate(model, images, is_k=20, is_limit=25, seed=5)
    fused = evaluate(model, images, is_k=20, is_limit=25, seed=5, engine="fused")
    assert {k: v for k, v in fused.items() if k not in ("is_nll", "is_nll_sem")} == \
           {k: v for k, v in plain.items() if k not in ("is_nll", "is_nll_sem")}
    assert fused["is_nll"] == pytest.approx(plain["is_nll"], rel=1e-6)


def test_the_blas_threads_come_back_and_the_helper_stops():
    if _GET_BLAS_THREADS is None:
        pytest.skip("OpenBLAS's thread count cannot be read here")
    before = set_blas_threads(2)
    try:
        model = VAE(20, [8], 2, seed=0)
        with FastLogWeights(model, threads=2) as log_weights:
            assert _GET_BLAS_THREADS() == 1                      # one BLAS thread per worker
            log_weights(np.zeros((4, 20), np.float32), np.zeros((1, 4, 2), np.float32), model.encode(np.zeros((4, 20))))
        assert _GET_BLAS_THREADS() == 2 and log_weights._helper is None
    finally:
        set_blas_threads(before)


@pytest.mark.parametrize("build, reason", [
    (lambda: VAE(10, [8, 8], 2), "2 hidden layers"),
    (lambda: VAE(10, [8], 2, activation="tanh"), "activation is tanh"),
    (lambda: VAE(10, [8], 2, likelihood="gaussian"), "likelihood is gaussian"),
])
def test_what_it_cannot_evaluate_it_refuses_and_says_why(build, reason):
    model = build()
    assert reason in unsupported_reason(model)
    with pytest.raises(ValueError, match=reason):
        FastLogWeights(model)
    with pytest.raises(ValueError, match=f"{reason}.*engine='plain'"):
        evaluate(model, np.zeros((3, 10), np.uint8), is_k=2, engine="fused")
    with pytest.raises(ValueError, match="engine must be"):
        evaluate(model, np.zeros((3, 10), np.uint8), is_k=2, engine="fast")


def test_a_conditional_vae_is_refused():
    from scratchvae.chapters.cvae import CVAE
    model = CVAE(10, [8], 2, n_classes=3)
    assert "CVAE" in unsupported_reason(model)
    with pytest.raises(ValueError, match="cannot evaluate this model"):
        evaluate(model, np.zeros((3, 10), np.uint8), is_k=2, engine="fused", labels=np.zeros(3, int))


def test_the_helper_process_gives_the_helper_threads_numbers_and_refits_to_a_larger_chunk():
    """Process or thread, worker 1 runs the same code on the same numbers: bit for bit. A chunk
    larger than the first forks a new helper whose shared arrays fit it; a smaller one reuses."""
    rng = np.random.default_rng(5)
    model = VAE(784, [40], 6, seed=5)
    x = rng.random((30, 784)).astype(np.float32)
    q = model.encode(x)
    chunks = [rng.standard_normal(shape, dtype=np.float32) for shape in ((3, 20, 6), (2, 7, 6), (5, 30, 6))]
    with FastLogWeights(model, threads=2, helper="thread") as by_thread:
        expected = [by_thread(x[:e.shape[1]], e, tuple(a[:e.shape[1]] for a in q)) for e in chunks]
    with FastLogWeights(model, threads=2, helper="process") as by_process:
        pids = []
        for e, want in zip(chunks, expected):
            n = e.shape[1]
            got = by_process(x[:n], e, tuple(a[:n] for a in q))
            pids.append(by_process._helper.pid)
            assert np.array_equal(got, want)
    assert pids[0] == pids[1] != pids[2]                            # re-forked for the larger chunk only
    assert by_process._helper is None


def test_an_error_in_the_helper_process_is_raised_in_the_evaluating_one(monkeypatch):
    model = VAE(20, [8], 2, seed=0)
    real_part = FastLogWeights._part

    def failing_part(self, worker, *args):
        if worker == 1:
            raise FloatingPointError("worker 1 broke")
        return real_part(self, worker, *args)

    monkeypatch.setattr(FastLogWeights, "_part", failing_part)      # the forked child inherits it
    x = np.zeros((4, 20), np.float32)
    with FastLogWeights(model, threads=2, helper="process") as log_weights:
        with pytest.raises(RuntimeError, match="helper process stopped.*worker 1 broke"):
            log_weights(x, np.zeros((1, 4, 2), np.float32), model.encode(x))
