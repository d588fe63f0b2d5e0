"""How good is a trained VAE? Two numbers, both in nats per image (lower is better).

1. The test negative ELBO, -ELBO = rec + KL (slides 21-23), the training loss evaluated on
   images the model never saw. It is an upper bound on -log p(x), loose by
   KL(q(z|x) || p(z|x)) (slide 21: log p(x) = ELBO + KL(q || p(z|x))).

2. An importance-sampled estimate of -log p(x) itself (slide 18: the evidence p(x) is
   intractable -- but it can be estimated). With k samples z_l ~ q(z|x):

       p(x) = E_{z ~ q(z|x)}[ p(x, z) / q(z|x) ]  ~  1/k sum_l w_l,   w_l = p(x, z_l) / q(z_l|x)

   so  log p(x) ~ log-mean-exp_l (log w_l). Its expectation is the importance weighted
   autoencoder bound L_k (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted
   Autoencoders", Theorem 1):  ELBO = L_1 <= L_k <= L_{k+1} <= log p(x),  L_k -> log p(x).
   The reported -log p(x) is therefore, in expectation, an upper bound that tightens as
   k grows. k = 5000 is the literature's protocol (Burda et al. 2016, section 5).

Memory stays bounded for any k: the k samples are processed ``chunk`` at a time with a
running log-sum-exp, for ``batch_size`` datapoints at a time.
"""
import numpy as np

from .data import iterate_batches
from ..fast.fused_eval import FastLogWeights, unsupported_reason
from ..layers import exp_no_subnormal
from ..vae import _need_count, _need_generator

ESTIMATOR = "importance-sampled (IWAE) bound"


def substream(seed, i):
    """Child ``i`` of ``seed``'s SeedSequence: an independent random stream, made statelessly.

    ``SeedSequence.spawn`` is stateful (a second call gives new children), which would
    make an evaluation repeated every epoch draw different noise each time; building the
    child from (entropy, spawn_key + (i,)) gives the same stream as the i-th spawned child,
    every time. ``seed`` is an int or a SeedSequence.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, i), pool_size=ss.pool_size)


ACTIVE_THRESHOLD = 0.01      # Burda, Grosse & Salakhutdinov 2016, section 5.2


def active_units(mu, threshold=ACTIVE_THRESHOLD):
    """How many latent units the encoder uses: unit u is active if Cov_x( E_q[z_u] ) > 0.01.

    Implements:  A_u = Var_x( mu_u(x) ),  E_q(z|x)[z_u] = mu_u(x);   active = #{u : A_u > threshold}
                 (the variance over the data set, 1/N sum_i (mu_iu - mean_i mu_iu)^2).
    A unit whose mean does not move with x carries no information about x: its q(z_u|x)
    is the same for every image, and the KL term pushes such a unit to q = p(z_u) = N(0, 1)
    (posterior collapse, slides 12-13).
    Source:      Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016, sec. 5.2.
    Shapes:      mu (N, K) -> (count, activity (K,))
    """
    mu = np.asarray(mu, dtype=np.float64)
    activity = mu.var(axis=0)
    return int(np.sum(activity > threshold)), activity


def evaluate_nelbo(model, images_u8, *, batch_size=1000, seed=0, binarize="none", n_samples=1,
                   labels=None):
    """The negative ELBO of a data set, averaged over its images, with its two parts.

    Implements:  -ELBO_i = -1/L sum_l log p(x_i | z_il) + KL(q(z|x_i) || N(0, I))   (slide 23)
                 averaged over all N images (one sample of z each by default, as in the
                 PyTorch example's test loss). beta is not applied: this is the bound itself.
    Reproducible: the noise comes from ``seed`` (int or SeedSequence) only. Each image's
    eps (and its dynamic binarisation) is drawn in image order from its own stream, so the
    draws do not depend on ``batch_size``.
    A conditional VAE (chapters/cvae.py) is given its images' ``labels`` (N,): then it is the bound on
    -log p(x|y), with q(z|x, y) and p(x|z, y), and the same draws.
    Shapes:      images_u8 (N, D) uint8
    Returns:     dict(nelbo, rec, kl, n) in nats per image, and active_units: how many of
                 the K latent units have Var_x(mu_u) > 0.01 over these images (``active_units``)
    """
    _check_images(model, images_u8, labels)
    _need_count(batch_size, "batch_size")
    L = _need_count(n_samples, "n_samples, the samples of z per image,")
    binarize_rng = np.random.default_rng(substream(seed, 0))
    eps_rng = np.random.default_rng(substream(seed, 1))
    K = model.latent_dim
    totals, means = {"rec": 0.0, "kl": 0.0}, []
    batches = iterate_batches(images_u8, batch_size, binarize_rng, binarize=binarize, shuffle=False,
                              labels=labels)
    for batch in batches:
        x, y = (batch, ()) if labels is None else (batch[0], (batch[1],))   # y: the cvae's labels
        B = len(x)
        q = model.encode(x, *y)                                    # lambda = (mu, logvar), encoded once
        means.append(q[0].astype(np.float64))                      # E_q[z] = mu, for active_units
        eps = eps_rng.standard_normal((B, L, K), dtype=model.dtype).transpose(1, 0, 2)   # (L, B, K)
        with np.errstate(over="ignore", invalid="ignore"):         # a diverged model: inf / nan, reported
            _, parts = model.loss(x, *y, eps, q=q)
        totals["rec"] += parts["rec"] * B                          # batch means -> sums
        totals["kl"] += parts["kl"] * B
    n = len(images_u8)
    rec, kl = totals["rec"] / n, totals["kl"] / n
    return {"nelbo": rec + kl, "rec": rec, "kl": kl, "n": n,
            "active_units": active_units(np.concatenate(means))[0]}


def evaluate_reconstruction(model, images_u8, *, batch_size=1000, seed=0, binarize="none"):
    """The autoencoder's test loss: -log p(x|z) at its code z = encoder(x), averaged over the images.

    Implements:  rec = 1/N sum_i -log p(x_i | z_i),  z_i = encoder(x_i)   (chapters/autoencoder.py, slides 3-5)
    Nothing is sampled; the binarisation draws are ``evaluate_nelbo``'s (substream 0 of ``seed``).
    There is no ELBO and no importance-sampled -log p(x): the autoencoder has no q(z|x) and was
    not trained with a prior p(z).
    Shapes:      images_u8 (N, D) uint8
    Returns:     dict(rec, n), rec in nats per image
    """
    _check_images(model, images_u8, variational=False)
    _need_count(batch_size, "batch_size")
    binarize_rng = np.random.default_rng(substream(seed, 0))
    total = 0.0
    for x in iterate_batches(images_u8, batch_size, binarize_rng, binarize=binarize, shuffle=False):
        with np.errstate(over="ignore", invalid="ignore"):         # a diverged model: inf / nan, reported
            total += float(np.sum(model.reconstruction_error(x), dtype=np.float64))
    n = len(images_u8)
    return {"rec": total / n, "n": n}


def evaluate_losses(model, images_u8, *, labels=None, batch_size=1000, seed=0, binarize="none"):
    """The model's loss on a data set, as its class says to measure it: the negative ELBO of a
    variational model (``evaluate_nelbo``; a conditional one is given ``labels``), or the
    autoencoder's -log p(x|z) (``evaluate_reconstruction``). What the trainer logs each epoch."""
    if not model.variational:
        return evaluate_reconstruction(model, images_u8, batch_size=batch_size, seed=seed, binarize=binarize)
    return evaluate_nelbo(model, images_u8, batch_size=batch_size, seed=seed, binarize=binarize,
                          labels=labels if model.conditional else None)


def importance_sampled_nll(model, x, k, *, rng, chunk=10, batch_size=100, progress=None, labels=None,
                           log_weights=None):
    """Per-datapoint estimate of -log p(x) from k importance samples (the IWAE bound).

    Implements:  -log p(x_i) ~ -( logsumexp_l log w_il - log k ),
                 log w_il = log p(x_i, z_il) - log q(z_il | x_i),  z_il ~ q(z|x_i)   (model.log_weights)
    Computed as a running log-sum-exp over chunks of samples, so only
    (chunk x batch_size) decoder outputs are in memory at once, whatever k is:
                 m <- max(m, max_l log w_l) ;  s <- s exp(m_old - m) + sum_l exp(log w_l - m)
                 logsumexp = m + log s
    eps is drawn sample-major, ``rng.standard_normal((c, n, K))`` per chunk, so the chunk
    size does not change the draws: the result depends on ``rng`` and ``batch_size`` only.

    Parameters
    ----------
    model : VAE
    x : (N, D) float array    datapoints as the model sees them (scaled / binarised)
    k : int                   importance samples per datapoint (k = 1 gives a one-sample ELBO)
    rng : numpy.random.Generator
    chunk, batch_size : int   samples and datapoints per forward pass (memory, not result).
                              10 x 100 = 1,000 decoder rows keeps each (rows, D) array at 3 MB,
                              in the CPU's cache: with k = 1000 on 200 images, 2.1-2.4 s
                              against 3.5-3.6 s for 100 x 100, and 67 MB peak memory instead of
                              242 MB (Intel Xeon, 2 cores; benchmarks/bench_eval.py --chunk)
    progress : callable(done, total), optional   called after each chunk (datapoint-samples)
    labels : (N,) ints, optional   for a conditional VAE (chapters/cvae.py): the bound on -log p(x|y),
                              log w = log p(x|z, y) + log p(z) - log q(z|x, y); the same draws
    log_weights : callable(x, eps, q) -> (c, n), optional
                              computes ``model.log_weights(x, eps, q=q)`` another way: the
                              fused evaluation (fast_eval.FastLogWeights, ``evaluate(...,
                              engine="fused")``). The draws and the log-sum-exp stay these.

    Returns
    -------
    (N,) float64 array of -log p(x_i) estimates, in nats
    """
    k = _need_count(k, "k, the number of importance samples,")
    chunk, batch_size = _need_count(chunk, "chunk"), _need_count(batch_size, "batch_size")
    _need_generator(rng)
    if not model.variational:
        raise ValueError(f"{model.article} has no q(z|x) to sample from: no importance-sampled -log p(x)")
    x = model._check_x(x)                                                # (N, D): at least one datapoint
    _check_labels(model, labels, len(x))
    N, K = len(x), model.latent_dim
    nll = np.empty(N, dtype=np.float64)
    done = 0
    for start in range(0, N, batch_size):
        xb = x[start:start + batch_size]                                     # (n, D)
        yb = () if labels is None else (labels[start:start + batch_size],)   # the cvae's labels
        n = len(xb)
        q = model.encode(xb, *yb)                                            # (mu, logvar), once per batch
        m = np.full(n, -np.inf)                                              # running max of log w
        s = np.zeros(n)                                                      # running sum of exp(log w - m)
        for c0 in range(0, k, chunk):
            c = min(chunk, k - c0)
            eps = rng.standard_normal((c, n, K), dtype=model.dtype)          # (c, n, K)
            log_w = (model.log_weights(xb, *yb, eps, q=q) if log_weights is None   # (c, n)
                     else log_weights(xb, eps, q)).astype(np.float64)
            m_new = np.maximum(m, log_w.max(axis=0))
            s = (s * exp_no_subnormal(m - m_new)                              # rescale old sum to new max
                 + exp_no_subnormal(log_w - m_new).sum(axis=0))               # (weights far below it: no subnormals)
            m = m_new
            done += c * n
            if progress is not None:
                progress(done, N * k)
        nll[start:start + n] = -(m + np.log(s) - np.log(k))                  # -(logsumexp - log k)
    return nll


def evaluate(model, images_u8, *, is_k=1000, is_limit=1000, seed=0, binarize="none",
             batch_size=1000, is_chunk=10, is_batch=100, progress=None, labels=None, engine="plain"):
    """The full report: test negative ELBO on all images, IS estimate of -log p(x) on the first ones.

    ``is_limit`` images (None = all) get the importance-sampled estimate with ``is_k``
    samples (``is_k = 0`` skips it). Everything is reproducible from ``seed`` (int or
    SeedSequence); the negative ELBO is ``evaluate_nelbo(..., seed=seed)``, the number the
    trainer logs each epoch when given the run's evaluation stream.
    Returns a JSON-ready dict: test_nelbo, test_rec, test_kl, n, active_units (of latent_dim; see
    ``active_units``), is_nll, is_nll_sem (its
    standard error over images), is_k, is_n, estimator, binarize, conditional.
    ``labels`` (N,): a conditional VAE's labels; both numbers are then bounds on -log p(x|y)
    (``conditional`` True).
    ``engine``: "plain" (the default) computes the importance weights with ``model.log_weights``;
    "fused" with fast/fused_eval.py on two cores -- the same numbers up to float32 rounding
    (tests/fast/test_fused_eval.py), for one hidden layer, relu and a Bernoulli decoder.
    """
    if engine not in ("plain", "fused"):
        raise ValueError(f"engine must be 'plain' or 'fused', got {engine!r}")
    _check_images(model, images_u8, labels)
    is_k = _need_count(is_k, "is_k, the importance samples per image (0 skips the estimate),", at_least=0)
    for name, value in (("is_chunk", is_chunk), ("is_batch", is_batch)):
        _need_count(value, name)
    n_is = len(images_u8) if is_limit is None else min(_need_count(is_limit, "is_limit"), len(images_u8))
    if is_k and n_is < 2:
        raise ValueError(f"the importance-sampled estimate on {n_is} image has no standard error (it "
                         f"needs two images): evaluate more (is_limit), or skip it (is_k=0)")
    if engine == "fused" and (labels is not None or unsupported_reason(model) is not None):
        raise ValueError("the fused evaluation cannot evaluate this model: "
                         f"{unsupported_reason(model) or 'it is given labels'}; use engine='plain'")
    bound = evaluate_nelbo(model, images_u8, batch_size=batch_size, seed=seed, binarize=binarize,
                           labels=labels)
    report = {"test_nelbo": bound["nelbo"], "test_rec": bound["rec"], "test_kl": bound["kl"],
              "n": bound["n"], "active_units": bound["active_units"], "latent_dim": model.latent_dim,
              "is_nll": None, "is_nll_sem": None, "is_k": is_k, "is_n": 0,
              "estimator": None, "binarize": binarize, "conditional": labels is not None}
    if is_k:
        subset = images_u8[:n_is]
        binarize_rng = np.random.default_rng(substream(seed, 2))
        eps_rng = np.random.default_rng(substream(seed, 3))
        x = np.concatenate(list(iterate_batches(subset, batch_size, binarize_rng,
                                                binarize=binarize, shuffle=False)))
        run = dict(rng=eps_rng, chunk=is_chunk, batch_size=is_batch, progress=progress,
                   labels=None if labels is None else labels[:len(x)])
        if engine == "fused":
            with FastLogWeights(model) as fast_log_weights:
                nll = importance_sampled_nll(model, x, is_k, log_weights=fast_log_weights, **run)
        else:
            nll = importance_sampled_nll(model, x, is_k, **run)
        report.update(is_nll=float(nll.mean()), is_n=len(nll),
                      is_nll_sem=float(nll.std(ddof=1) / np.sqrt(len(nll))),     # over >= 2 images
                      estimator=f"{ESTIMATOR}, k={is_k}")
    return report


def _check_images(model, images_u8, labels=None, variational=True):
    """The images to evaluate: a non-empty uint8 array (N, D); a conditional model's labels (N,).
    ``variational``: what the caller computes, an ELBO (q(z|x) and a prior) or the autoencoder's -log p(x|z)."""
    if model.variational != variational:
        raise ValueError(f"{model.article} has no ELBO and no -log p(x) (no q(z|x), no prior): "
                         f"evaluate_reconstruction (or evaluate_losses) measures it" if variational else
                         f"{model.article} is measured by its ELBO: evaluate_nelbo (or evaluate_losses)")
    if not (isinstance(images_u8, np.ndarray) and images_u8.dtype == np.uint8 and images_u8.ndim == 2):
        got = getattr(images_u8, "dtype", type(images_u8).__name__)
        raise ValueError(f"images_u8 must be a uint8 array (N, D) of pixels 0..255, got {got} "
                         f"{getattr(images_u8, 'shape', '')}")
    if len(images_u8) == 0:
        raise ValueError(f"images_u8 holds no images (shape {images_u8.shape}): there is nothing to evaluate")
    _check_labels(model, labels, len(images_u8))


def _check_labels(model, labels, N):
    """A conditional model needs one label per image (its own one_hot checks their values); the others none."""
    if model.conditional and labels is None:
        raise ValueError(f"{model.article} is given the images' labels: pass labels, one per image")
    if not model.conditional and labels is not None:
        raise ValueError(f"labels: {model.article} is not given labels; leave them out")
    if labels is not None and np.shape(labels) != (N,):
        raise ValueError(f"labels must hold one label per image, shape ({N},), got shape {np.shape(labels)}")


def format_report(report, what="test"):
    """The report as a few human-readable lines."""
    lines = [f"{what} negative ELBO  {report['test_nelbo']:10.3f} nats  "
             f"(rec {report['test_rec']:.3f} + KL {report['test_kl']:.3f}; {report['n']:,} images, "
             f"one z sample each)"]
    if report.get("active_units") is not None:
        lines.append(f"active latent units {report['active_units']:>4d} of {report['latent_dim']}  "
                     f"(Var_x E_q[z_u] > {ACTIVE_THRESHOLD}, Burda et al. 2016)")
    if report["is_nll"] is not None:
        target = "-log p(x|y)" if report.get("conditional") else "-log p(x)  "
        lines.append(f"{what} {target}  {report['is_nll']:10.3f} nats  "
                     f"(+/- {report['is_nll_sem']:.3f} s.e.; {report['estimator']}; "
                     f"first {report['is_n']:,} images)")
    return "\n".join(lines)
