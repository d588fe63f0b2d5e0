"""From trained models to the demo's figures: the arrays behind each picture of ``plots.py``.

``make_figures`` is what ``demo.py`` calls after training. It takes

- the main model (e.g. 784-400-20): reconstructions, samples, interpolation, the
  gradient estimators, its training curves;
- a model with a 2-D latent space: the manifold, the latent space coloured by label,
  and the variational gap (which needs a 2-D latent to integrate over z exactly);
- a plain autoencoder with a 2-D code, trained like the 2-D model: figure 10, the two side
  by side (slides 3-5 against 12-13);

and a seed, from which every random draw is made, so the same models, data and seed
give the same figures. Each ``*_arrays`` function below computes what one figure shows
and can be used on its own (in a notebook, say).

Shapes: images are (N, D) float in [0, 1] as the model sees them; labels (N,) ints.
"""
from statistics import NormalDist

import numpy as np

from . import plots
from ..chapters.autoencoder import comparison_text, compare_with_vae
from ..chapters.estimators import compare_estimators, decoder_log_likelihood
from ..chapters.inference import gaps_on_grid
from ..chapters.posterior import exact_gap
from ..vae import _need_count

FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FIGURES = ("reconstructions", "samples", "manifold", "latent_space", "interpolation",
           "training_curves", "variational_gap", "gradient_estimators", "inference_gaps",
           "autoencoder_vs_vae")


def one_per_class(labels, n, rng):
    """Indices of n images, cycling through the classes 0, 1, 2, ... (a random one of each).

    Shapes: labels (N,) -> (n,) indices
    """
    _need_count(n, "n, the number of images,")
    classes = [k for k in range(10) if np.any(labels == k)]
    return np.array([rng.choice(np.flatnonzero(labels == classes[i % len(classes)])) for i in range(n)])


def manifold_grid(n):
    """The grid of Kingma & Welling's Figure 4: evenly spaced probabilities through the inverse CDF.

    Implements:  p_i = (i + 1/2) / n ,  z_i = Phi^-1(p_i)   (Phi the standard normal CDF),
                 so each cell holds the same prior mass 1/n^2 of p(z) = N(0, I).
    Returns:     z_values (n,) increasing, points (n^2, 2) in the row order of
                 ``plots.plot_manifold`` (top row = largest z_2, z_1 growing to the right).
    """
    z_values = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])
    Z1, Z2 = np.meshgrid(z_values, z_values[::-1])                 # (n, n): row i has z_2 = z_values[n-1-i]
    return z_values, np.stack([Z1.ravel(), Z2.ravel()], axis=1)


def latent_projection(mu):
    """2-D coordinates of encoder means for a scatter plot, and what the axes are.

    K = 2: the latent coordinates themselves. K > 2: the first two principal components
    of mu (the directions of largest spread), centred. K = 1: z against 0.
    Shapes: mu (N, K) -> (N, 2), (label_1, label_2)
    """
    mu = np.asarray(mu, dtype=np.float64)
    K = mu.shape[1]
    if K == 2:
        return mu, ("z_1", "z_2")
    if K == 1:
        return np.column_stack([mu[:, 0], np.zeros(len(mu))]), ("z_1", "(K = 1)")
    centred = mu - mu.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)         # rows of vt: principal directions
    return centred @ vt[:2].T, (f"principal component 1 of mu (K = {K})", "principal component 2 of mu")


def interpolation_arrays(model, x_a, x_b, steps):
    """Decoder means along z = (1 - t) mu_a + t mu_b, t evenly spaced in [0, 1].

    Shapes: x_a, x_b (P, D) -> (P, steps, D)
    """
    _need_count(steps, "steps", at_least=2)
    mu_a, _ = model.encode(x_a)
    mu_b, _ = model.encode(x_b)
    t = np.linspace(0, 1, steps).astype(model.dtype)[None, :, None]     # (1, steps, 1)
    z = (1 - t) * mu_a[:, None] + t * mu_b[:, None]                      # (P, steps, K)
    P, K = len(mu_a), model.latent_dim
    return model.decode_mean(z.reshape(P * steps, K)).reshape(P, steps, -1)


def importance_sampled_log_px(model, x, k, rng, chunk=500):
    """log p(x) by importance sampling with q(z|x), and its standard error: an independent check
    of the grid's log p(x) (figure 7), which shares no step with the grid integration.

    Implements:  log p(x) ~ log (1/k) sum_l w_l,  w_l = p(x, z_l) / q(z_l|x),  z_l ~ q(z|x)
                 standard error (delta method): sd_l(w_l) / (sqrt(k) mean_l(w_l)), from the
                 weights rescaled by their largest, so nothing overflows.
    The estimate is unbiased for p(x), not for log p(x): in expectation it lies below log p(x)
    (Jensen), by about half the squared standard error when that is small.
    Shapes:  x (N, D) -> estimates (N,), standard errors (N,), float64
    """
    x = np.asarray(x)
    _need_count(k, "k, the number of importance samples,", at_least=2, why=" (the standard error needs two)")
    _need_count(chunk, "chunk")
    log_w = np.concatenate([model.log_weights(x, rng.standard_normal((min(chunk, k - start), len(x),
                                                                       model.latent_dim), dtype=model.dtype))
                            for start in range(0, k, chunk)]).astype(np.float64)        # (k, N)
    top = log_w.max(axis=0)
    w = np.exp(log_w - top)                                                            # (k, N), largest 1
    estimate = top + np.log(w.mean(axis=0))
    stderr = w.std(axis=0, ddof=1) / (np.sqrt(k) * w.mean(axis=0))
    return estimate, stderr


def importance_sampled_runs(model, x, k, runs, rng, chunk=500):
    """``runs`` independent importance-sampled estimates of log p(x), each from k fresh z ~ q(z|x).

    Figure 7 shows their spread rather than one estimate's standard error: the weights
    w = p(x, z) / q(z|x) are heavy-tailed wherever q(z|x) is narrower than p(z|x) or sits off it,
    the rare large weights that decide the mean are mostly not drawn, and the standard error
    estimated from the weights drawn is then too small (it said -155.70 +- 0.04 for a digit
    whose grid value is -155.54). Independent runs show the scatter, and that the estimates
    fall below log p(x) more often than above (the estimate of log p(x) is biased low).
    Shapes:  x (N, D) -> (runs, N) float64
    """
    return np.stack([importance_sampled_log_px(model, x, k, rng, chunk)[0] for _ in range(runs)])


def gradient_arrays(model, x, rng, n_samples=10, n_repeats=500, n_reference=10_000):
    """Both gradient estimators of E_q[log p(x|z)] at the encoder's mu, sigma for x.

    Shapes: x (N, D) -> estimators.EstimatorComparison with (n_repeats, N, K) estimates
    """
    mu, logvar = model.encode(x)
    mu, sigma = mu.astype(np.float64), np.exp(0.5 * logvar.astype(np.float64))
    f, grad_f = decoder_log_likelihood(model, x)
    return compare_estimators(f, grad_f, mu, sigma, n_samples, n_repeats, rng, n_reference)


def make_figures(out_dir, *, model, model2d, autoencoder, images, labels, history, seed=0, dataset="mnist",
                 sizes=None, log=print, total=None):
    """Write every figure of the demo into ``out_dir``; return {name: path} in FIGURES order.

    ``images`` (N, D) in [0, 1] and ``labels`` (N,) are test images as the models see them.
    ``model2d`` must have latent_dim = 2 (figures 3, 4, 7, 9), and so must ``autoencoder``, an
    ``autoencoder.Autoencoder`` trained like model2d (figure 10). ``sizes`` overrides the default
    amounts of work (keys: n_recon, n_grid, n_manifold, n_latent, n_pairs, n_steps, n_gap, gap_points, gap_is_k,
    gap_is_runs, n_grad, grad_samples, grad_repeats, grad_reference, infer_steps, n_compare), e.g. smaller for a quick run.
    ``total``: the figure count the progress lines give (default: these; demo.py draws one more).
    """
    for name, m in (("model2d", model2d), ("autoencoder", autoencoder)):
        if m.latent_dim != 2:
            raise ValueError(f"{name} must have a 2-D latent space, got latent_dim={m.latent_dim}")
    s = dict(n_recon=10, n_grid=10, n_manifold=16, n_latent=5000, n_pairs=4, n_steps=10, n_gap=4,
             gap_points=201, gap_is_k=5000, gap_is_runs=5, n_grad=2, grad_samples=10, grad_repeats=500, grad_reference=10_000,
             infer_steps=500, n_compare=1000)
    unknown = set(sizes or {}) - set(s)
    if unknown:
        raise ValueError(f"unknown figure size key(s) {sorted(unknown)}; known: {sorted(s)}")
    s.update(sizes or {})
    images = np.asarray(images, dtype=model.dtype)
    labels = np.asarray(labels)
    names = FASHION_NAMES if dataset == "fashion-mnist" else None
    rngs = [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(len(FIGURES))]
    rng = dict(zip(FIGURES, rngs))
    paths = {}

    def out(name):
        log(f"  figure {len(paths) + 1}/{total or len(FIGURES)}: {name}")
        return f"{out_dir}/{len(paths) + 1}_{name}.png"

    pick = one_per_class(labels, s["n_recon"], rng["reconstructions"])
    means = model.reconstruct(images[pick])                            # E[x|z], z = mu
    drawn = ((rng["reconstructions"].random(means.shape) < means).astype(means.dtype)
             if model.likelihood == "bernoulli" else None)
    paths["reconstructions"] = plots.plot_reconstructions(               # x~ ~ Bernoulli(mean), slide 8
        images[pick], means, out("reconstructions"), samples=drawn)

    paths["samples"] = plots.plot_samples(model.sample(s["n_grid"] ** 2, rng["samples"]), out("samples"))

    z_values, points = manifold_grid(s["n_manifold"])
    paths["manifold"] = plots.plot_manifold(model2d.decode_mean(points), z_values, out("manifold"),
                                            title="The learned 2-D manifold\n(as Kingma & Welling, Fig. 4)")

    subset = rng["latent_space"].permutation(len(images))[:s["n_latent"]]
    z, axis_labels = latent_projection(model2d.encode(images[subset])[0])     # K = 2: z itself
    paths["latent_space"] = plots.plot_latent_space(z, labels[subset], out("latent_space"),
                                                    class_names=names, axis_labels=axis_labels)

    ends = one_per_class(labels, 2 * s["n_pairs"], rng["interpolation"]).reshape(2, -1)
    paths["interpolation"] = plots.plot_interpolation(
        interpolation_arrays(model, images[ends[0]], images[ends[1]], s["n_steps"]), out("interpolation"),
        ends=np.stack([images[ends[0]], images[ends[1]]], axis=1))

    paths["training_curves"] = plots.plot_training_curves(history, out("training_curves"))

    pick = one_per_class(labels, s["n_gap"], rng["variational_gap"])
    gaps = exact_gap(model2d, images[pick], points=s["gap_points"])
    runs = importance_sampled_runs(model2d, images[pick], s["gap_is_k"], s["gap_is_runs"], rng["variational_gap"])
    paths["variational_gap"] = plots.plot_variational_gap(gaps, images[pick], out("variational_gap"),
                                                          is_runs=runs.T, is_k=s["gap_is_k"])

    pick = one_per_class(labels, s["n_grad"], rng["gradient_estimators"])
    comparison = gradient_arrays(model, images[pick], rng["gradient_estimators"], s["grad_samples"],
                                 s["grad_repeats"], s["grad_reference"])
    paths["gradient_estimators"] = plots.plot_gradient_estimators(comparison, out("gradient_estimators"))

    pick = one_per_class(labels, s["n_gap"], rng["inference_gaps"])       # slides 19-24: q* beside q_encoder
    gaps = gaps_on_grid(model2d, images[pick], rng["inference_gaps"], points=s["gap_points"],
                        steps=s["infer_steps"])
    paths["inference_gaps"] = plots.plot_inference_gaps(gaps, images[pick], out("inference_gaps"))

    first = slice(0, s["n_compare"])                     # the first test digits (pairwise distances: N^2)
    codes, samples, numbers = compare_with_vae(autoencoder, model2d, images[first], labels[first],
                                               rng["autoencoder_vs_vae"])
    paths["autoencoder_vs_vae"] = plots.plot_autoencoder_vs_vae(codes, labels[first], samples,
                                                                comparison_text(numbers), out("autoencoder_vs_vae"))
    return paths
