"""The demo's figures: one function per figure, each taking arrays and a path, returning the path.

Read with the lecture: reconstructions (slides 9-11), samples from Gaussian noise (slide 6),
the learned manifold and the latent space (slide 13, after Kingma & Welling 2014, Fig. 4),
interpolation, training curves (slide 15's two terms, logged separately), the variational
gap (slides 17-21), why we reparameterise (slide 14), the inference gaps (slides 19-24), the
plain autoencoder beside the VAE (slides 3-5) and the beta sweep (slides 12-13).

Drawing uses matplotlib's object interface with the Agg canvas (``Figure`` +
``FigureCanvasAgg``): no pyplot, no global state, no display needed. Every figure has a
fixed size in inches (stated in its docstring; width x height at ``dpi`` pixels per inch,
default 100), never cropped, so its PNG is exactly that many pixels. PNGs keep every pixel's
colour exactly (see ``_lossless``): a label's colour in a legend is its colour in the plot.

Images are rows of D = side^2 values in [0, 1] (side = 28 for MNIST), drawn dark on light.
"""
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image                         # matplotlib's own dependency

from ..machinery.files import write_bytes_atomic

DPI = 100
IMAGE_CMAP = "gray_r"                         # ink dark on white paper
DIGIT_NAMES = [str(d) for d in range(10)]


# ------------------------------------------------------------------------------- helpers
def _figure(width, height):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)                      # attach the Agg canvas: savefig needs no pyplot
    return fig


def _save(fig, path, dpi):
    """Render at ``dpi`` (never cropped) and write the pixels losslessly as a PNG (``_lossless``).

    The same figure gives the same bytes. Written through machinery/files.py: a failed write
    (a full disk, a stop signal) keeps the previous figure whole and leaves no temporary file.
    """
    path = Path(path)
    fig.set_dpi(dpi)
    buffer, (width, height) = fig.canvas.print_to_buffer()            # RGBA bytes
    rgb = np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 4)[..., :3]
    image = _lossless(rgb)
    write_bytes_atomic(path, lambda f: image.save(f, format="PNG", optimize=True))
    return path


def _lossless(rgb):
    """The image of an (H, W, 3) uint8 array, every pixel exactly as drawn.

    A figure of at most 256 distinct colours (the grey image grids) becomes a palette PNG of
    exactly those colours, 2-4 times smaller than RGB; any other stays RGB. An adaptive
    palette would be smaller still, but it merges colours: the digits' greys crowd out the
    ten label colours, and a legend's colour stops being the colour of its points.
    """
    flat = rgb.reshape(-1, 3).astype(np.uint32)
    colours, index = np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2], return_inverse=True)
    if len(colours) > 256:
        return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    image = Image.fromarray(index.reshape(rgb.shape[:2]).astype(np.uint8), mode="P")
    image.putpalette(np.stack([colours >> 16, colours >> 8 & 255, colours & 255], axis=1).astype(np.uint8).tobytes())
    return image


def _side(D):
    side = int(round(np.sqrt(D)))
    if side * side != D:
        raise ValueError(f"images must be flattened squares (D = side^2), got D = {D}")
    return side


def mosaic(images, pad=1):
    """Tile images (R, C, D) into one 2-D array, with ``pad`` blank pixels between tiles.

    Shapes:  (R, C, D) with D = s^2 -> (R (s + pad) - pad, C (s + pad) - pad)
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (rows, columns, D), got {images.shape}")
    R, C, D = images.shape
    s = _side(D)
    out = np.zeros((R * (s + pad) - pad, C * (s + pad) - pad))
    for r in range(R):
        for c in range(C):
            out[r * (s + pad):r * (s + pad) + s, c * (s + pad):c * (s + pad) + s] = images[r, c].reshape(s, s)
    return out


def _show_mosaic(ax, tiles):
    ax.imshow(tiles, cmap=IMAGE_CMAP, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _as_images(name, images, D=None):
    images = np.asarray(images)
    if images.ndim != 2 or (D is not None and images.shape[1] != D):
        raise ValueError(f"{name} must have shape (N, {D or 'D'}), got {images.shape}")
    return images


# ------------------------------------------------------------------------------- 1
def plot_reconstructions(originals, reconstructions, path, samples=None, title=None, dpi=DPI):
    """Figure 1: test images (top row) above their reconstructions (the decoder's mean images).

    With ``samples``, a third row: one draw x~ ~ p(x|z) for each (Bernoulli pixels with the
    mean image's probabilities): "reconstruction x~, drawn from distribution of the data"
    (slide 8). The mean image is E[x|z], not itself a sample of the model.
    Size: 8 x 2.1 inches (8 x 2.9 with samples).   Shapes: originals, reconstructions, samples (N, D).
    """
    originals = _as_images("originals", originals)
    reconstructions = _as_images("reconstructions", reconstructions, originals.shape[1])
    if len(reconstructions) != len(originals):
        raise ValueError(f"{len(originals)} originals but {len(reconstructions)} reconstructions")
    rows, names = [originals, reconstructions], ["test image x", "reconstruction\n(decoder mean)"]
    if samples is not None:
        samples = _as_images("samples", samples, originals.shape[1])
        if len(samples) != len(originals):
            raise ValueError(f"{len(originals)} originals but {len(samples)} samples")
        rows.append(samples)
        names.append("x~ ~ p(x|z)\n(a sample)")
    fig = _figure(8, 2.1 if samples is None else 2.9)
    ax = fig.add_axes([0.16, 0.03, 0.82, 0.8])
    _show_mosaic(ax, mosaic(np.stack(rows)))
    s = _side(originals.shape[1])
    ax.set_yticks([s / 2 + i * (s + 1) for i in range(len(rows))], names)
    fig.suptitle(title or "Reconstructions: x -> encoder -> z = mu -> decoder mean", y=0.97)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 2
def plot_samples(images, path, title=None, dpi=DPI):
    """Figure 2: images decoded from z ~ N(0, I), in a square grid (N must be a square).

    Size: 6 x 6.4 inches.   Shapes: images (N, D), N = n^2.
    """
    images = _as_images("images", images)
    n = int(round(np.sqrt(len(images))))
    if n * n != len(images):
        raise ValueError(f"the number of samples must be a square (n x n grid), got {len(images)}")
    fig = _figure(6, 6.4)
    ax = fig.add_axes([0.03, 0.02, 0.94, 0.88])
    _show_mosaic(ax, mosaic(images.reshape(n, n, -1)))
    fig.suptitle(title or "Generated from Gaussian noise: z ~ N(0, I), x = decoder mean(z)", y=0.97)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 3
def plot_manifold(images, z_values, path, title=None, dpi=DPI):
    """Figure 3: the learned 2-D manifold, decoder means on a grid of z (Kingma & Welling, Fig. 4).

    ``images[i, j]`` is decoded at z = (z_values[j], z_values[n - 1 - i]): z_1 grows to the
    right and z_2 upwards, as on the axes. ``z_values`` are the grid's coordinates, e.g.
    the inverse Gaussian CDF of evenly spaced probabilities.
    Size: 5.6 x 5.8 inches; the images fill a 4.48-inch square: one screen pixel per image
    pixel at 100 dpi for a 16 x 16 grid of 28 x 28 images (crisp, and a small PNG).
    Shapes: images (n, n, D) or (n^2, D), z_values (n,).
    """
    z_values = np.asarray(z_values, dtype=np.float64)
    n = len(z_values)
    images = np.asarray(images)
    if images.ndim == 2 and len(images) == n * n:
        images = images.reshape(n, n, -1)
    if images.ndim != 3 or images.shape[:2] != (n, n):
        raise ValueError(f"images must have shape ({n}, {n}, D) or ({n * n}, D) for {n} z_values, "
                         f"got {images.shape}")
    fig = _figure(5.6, 5.8)
    ax = fig.add_axes([0.8 / 5.6, 0.6 / 5.8, 4.48 / 5.6, 4.48 / 5.8])
    tiles = mosaic(images, pad=0)
    s = _side(images.shape[2])
    ax.imshow(tiles, cmap=IMAGE_CMAP, vmin=0, vmax=1, interpolation="nearest")
    step = max(1, n // 7)
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks * s + s / 2, [f"{z_values[j]:.2f}" for j in ticks])
    ax.set_yticks(ticks * s + s / 2, [f"{z_values[n - 1 - i]:.2f}" for i in ticks])
    ax.set_xlabel("z_1")
    ax.set_ylabel("z_2")
    fig.suptitle(title or "The learned manifold: decoder mean at z = Phi^-1(p), p evenly spaced",
                 y=0.975)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 4
def plot_latent_space(z, labels, path, class_names=None, axis_labels=("z_1", "z_2"), title=None,
                      dpi=DPI):
    """Figure 4: encoded test set (the means mu of q(z|x)) in the plane, coloured by label.

    For a latent space of more than 2 dimensions, pass the 2-D projection as ``z`` and say
    which one in ``axis_labels`` (e.g. ("PC 1 of mu", "PC 2 of mu")).
    Size: 7 x 6 inches.   Shapes: z (N, 2), labels (N,) integers 0..9.
    """
    z, labels = np.asarray(z), np.asarray(labels)
    if z.ndim != 2 or z.shape[1] != 2 or labels.shape != (len(z),):
        raise ValueError(f"z must be (N, 2) and labels (N,), got {z.shape} and {labels.shape}")
    names = list(class_names or DIGIT_NAMES)
    fig = _figure(7, 6)
    ax = fig.add_axes([0.1, 0.09, 0.66, 0.82])
    colours = colormaps["tab10"].colors
    for k in np.unique(labels):
        pick = labels == k
        ax.scatter(z[pick, 0], z[pick, 1], s=4, alpha=0.6, color=colours[int(k) % 10],
                   linewidths=0, rasterized=True)
    handles = [Line2D([], [], marker="o", ls="", color=colours[k % 10], label=names[k])
               for k in range(len(names)) if np.any(labels == k)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title="label")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Latent space: mean of q(z|x) for {len(z):,} test images")
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 5
def plot_interpolation(images, path, ends=None, title=None, dpi=DPI):
    """Figure 5: rows of decoded images along straight lines in latent space.

    Row r runs from the encoding of one test image x_a (t = 0) to another's x_b (t = 1):
    x = decoder mean((1 - t) mu_a + t mu_b). If ``ends`` is given, x_a and x_b themselves
    are drawn at the left and right ends of each row.
    Size: 8 x 3.2 inches.   Shapes: images (rows, steps, D), ends (rows, 2, D).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (rows, steps, D), got {images.shape}")
    rows, steps, D = images.shape
    labels = [f"{t:.2g}" for t in np.linspace(0, 1, steps)]
    if ends is not None:
        ends = np.asarray(ends)
        if ends.shape != (rows, 2, D):
            raise ValueError(f"ends must have shape ({rows}, 2, {D}), got {ends.shape}")
        blank = np.zeros((rows, 1, D))
        images = np.concatenate([ends[:, :1], blank, images, blank, ends[:, 1:]], axis=1)
        labels = ["x_a", "", *labels, "", "x_b"]
    fig = _figure(8, 3.2)
    ax = fig.add_axes([0.03, 0.12, 0.94, 0.72])
    _show_mosaic(ax, mosaic(images))
    s = _side(D)
    ax.set_xticks(np.arange(len(labels)) * (s + 1) + s / 2, labels, fontsize=8)
    ax.tick_params(axis="x", length=0)
    ax.set_xlabel("t   in   z = (1 - t) mu_a + t mu_b")
    fig.suptitle(title or "Interpolation in latent space between two test images", y=0.96)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 6
def plot_training_curves(history, path, title=None, dpi=DPI):
    """Figure 6: negative ELBO, reconstruction term and KL per epoch, on training and test images.

    Solid and dashed lines are comparable numbers: the same evaluation after each epoch, on a
    fixed subset of the training images (train_eval_*) and on the test images (test_*). The
    faint dotted line is the running mean of the training loss *during* the epoch (train_*),
    taken while the model was still changing, so it lies above the after-epoch values early on.
    A test curve above the training one is the generalisation gap: the model fits the images
    it was trained on better than images it never saw.
    ``history`` is a list of per-epoch dicts (as ``train`` returns) with keys train_nelbo,
    train_rec, train_kl and, when present, train_eval_* and test_*, in nats per datapoint.
    Size: 11 x 3.6 inches.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    epochs = np.arange(1, len(history) + 1)
    fig = _figure(11, 3.6)
    panels = [("nelbo", "negative ELBO = rec + KL"), ("rec", "reconstruction  -E_q[log p(x|z)]"),
              ("kl", "KL(q(z|x) || p(z))")]
    n_seen = history[-1].get("train_eval_n")
    series = (("train", ":", dict(color="0.55", lw=1.0), "training images, running mean during the epoch"),
              ("train_eval", "-o", dict(color="tab:blue", ms=3),
               f"training images ({n_seen:,}), after the epoch" if n_seen else "training images, after the epoch"),
              ("test", "--s", dict(color="tab:red", ms=3), "test images, after the epoch"))
    for i, (key, label) in enumerate(panels):
        ax = fig.add_axes([0.06 + i * 0.33, 0.24, 0.26, 0.6])
        for split, style, look, name in series:
            values = [h.get(f"{split}_{key}") for h in history]
            if all(v is not None for v in values):
                ax.plot(epochs, values, style, label=name, **look)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per datapoint")
        ax.grid(alpha=0.3)
        if i == 0:
            handles, labels = ax.get_legend_handles_labels()
            fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    last = history[-1]
    if "train_eval_nelbo" in last and "test_nelbo" in last:
        fig.text(0.5, 0.075, f"after the last epoch: test - training = {last['test_nelbo'] - last['train_eval_nelbo']:.2f} "
                 "nats, the generalisation gap (the model fits its training images better than new ones)",
                 ha="center", fontsize=8)
    fig.suptitle(title or "Training curves (slide 15: the loss is reconstruction + KL)", y=0.98)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 7
def mass_levels(density, cell_area, masses=(0.99, 0.9, 0.5)):
    """Density thresholds whose super-level sets hold the given probability masses, increasing.

    The contour at the returned level for mass m encloses the smallest region holding m of
    the distribution (a highest-density region). Shapes: density (any) -> (len(masses),)
    """
    d = np.sort(np.ravel(density))[::-1]
    cumulative = np.cumsum(d) * cell_area
    index = np.minimum(np.searchsorted(cumulative, masses), len(d) - 1)
    return np.sort(d[index])


def plot_variational_gap(gaps, images, path, is_runs=None, is_k=5000, title=None, dpi=DPI):
    """Figure 7: the true posterior p(z|x) beside the encoder's q(z|x), and log p(x) checked twice.

    One panel per datapoint: filled contours of p(z|x) (computed exactly on a grid), red
    contour lines of q(z|x) = N(mu, diag sigma^2), both at the levels holding 50/90/99 %
    of their mass; the image in the corner. What the picture teaches: q is a diagonal
    Gaussian, its ellipses are axis-parallel and cannot tilt with a slanted p(z|x), and the
    encoder's q is offset from the true posterior and of the wrong width (mostly narrower
    along the posterior's long axis, broader for some digits; docs/results.md measures it).
    Below each panel: log p(x) on the grid and, as an independent check of it, importance
    sampling: ``is_runs`` (n, R) gives R independent estimates per datapoint, each with
    ``is_k`` samples (``figures.importance_sampled_runs``), shown as their range rather than
    one estimate's standard error, which misleads when the weights are heavy-tailed (see
    ``importance_sampled_runs``). Then the ELBO and the gap log p(x) - ELBO = KL(q || p(z|x))
    (on the grid this identity holds by construction, so it is stated once, not checked).
    ``gaps`` is a list of ``posterior.GapOnGrid``, one datapoint each (``exact_gap``).
    Size: 3.4 n x 4.6 inches for n panels.   Shapes: images (n, D).
    """
    images = _as_images("images", images)
    if len(gaps) != len(images) or not gaps:
        raise ValueError(f"need one image per posterior, got {len(gaps)} posteriors and {len(images)} images")
    if is_runs is not None and (np.ndim(is_runs) != 2 or len(is_runs) != len(gaps) or np.shape(is_runs)[1] < 2):
        raise ValueError(f"is_runs must be (n, R) with n = {len(gaps)} posteriors and R >= 2 estimates each, "
                         f"got shape {np.shape(is_runs)}")
    n = len(gaps)
    fig = _figure(3.4 * n, 4.6)
    width = 0.77 / n
    for i, (g, image) in enumerate(zip(gaps, images)):
        ax = fig.add_axes([(i + 0.19) / n, 0.33, width, 0.53])
        z1, z2, area = g.grid.z1, g.grid.z2, g.grid.cell_area
        p = np.exp(g.log_posterior[0]).reshape(g.grid.shape)
        q = np.exp(g.log_q[0]).reshape(g.grid.shape)
        ax.contourf(z1, z2, p, levels=[*mass_levels(p, area), p.max()], cmap="Blues", extend="neither")
        ax.contour(z1, z2, q, levels=mass_levels(q, area), colors="tab:red", linewidths=1.0)
        ax.plot(*g.mu[0], "+", color="tab:red", ms=8)
        ax.set_aspect("equal")
        _zoom(ax, g.grid, [(p, mass_levels(p, area, [0.999])[0]), (q, mass_levels(q, area, [0.999])[0])])
        ax.set_xlabel("z_1", fontsize=9)
        ax.set_ylabel("z_2", fontsize=9)
        ax.tick_params(labelsize=7)
        inset = ax.inset_axes([0.0, 0.74, 0.26, 0.26])
        _show_mosaic(inset, mosaic(image[None, None]))
        text = f"log p(x), grid     = {g.log_px[0]:8.2f}\n"
        if is_runs is not None:
            text += f"log p(x), IS runs  = {np.min(is_runs[i]):8.2f} to {np.max(is_runs[i]):.2f}\n"
        text += (f"ELBO               = {g.elbo[0]:8.2f}\n"
                 f"KL(q || p(z|x))    = {g.kl[0]:8.3f}")
        fig.text((i + 0.5) / n, 0.025, text, ha="center", va="bottom", ma="left", fontsize=8.5,
                 family="monospace")
    handles = [Patch(color="tab:blue", alpha=0.6, label="true posterior p(z|x), exact on a grid"),
               Line2D([], [], color="tab:red", label="encoder q(z|x), a diagonal Gaussian"),
               Line2D([], [], color="none", label="(regions of 50, 90, 99 % mass)")]
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, 0.935), fontsize=8,
               frameon=False, ncol=3)
    if is_runs is not None:
        check = (f"IS runs: the range of {np.shape(is_runs)[1]} independent importance-sampled estimates "
                 f"of log p(x), k = {is_k:,} each (heavy-tailed weights: a standard error would mislead)")
    else:
        check = "log p(x) by the midpoint rule on the grid"
    fig.suptitle(title or "The encoder's q(z|x) is offset from the true posterior, the wrong width, and unable to "
                          "tilt (a diagonal Gaussian).\nlog p(x) - ELBO = KL(q || p(z|x)); " + check,
                 x=0.02, ha="left", y=0.995, fontsize=10)
    return _save(fig, path, dpi)


def _histogram(ax, values, colour, label, n_bins=40):
    """Histogram of ``values`` over their central 99 % (the tails clipped into the end bins);
    returns the counts."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    if not hi > lo:                                              # all equal: one visible bar
        lo, hi = lo - 0.5 * max(abs(lo), 1.0), hi + 0.5 * max(abs(hi), 1.0)
    counts, _, _ = ax.hist(np.clip(values, lo, hi), bins=np.linspace(lo, hi, n_bins + 1), alpha=0.6,
                           color=colour, label=label)
    return counts


def _zoom(ax, grid, densities_and_levels, margin=0.25):
    """Limit ``ax`` to a square around the cells where any density exceeds its level."""
    Z1, Z2 = np.meshgrid(grid.z1, grid.z2)
    inside = np.zeros(Z1.shape, dtype=bool)
    for density, level in densities_and_levels:
        inside |= density >= level
    lo = np.array([Z1[inside].min(), Z2[inside].min()])
    hi = np.array([Z1[inside].max(), Z2[inside].max()])
    center, half = (lo + hi) / 2, (1 + margin) * np.max(hi - lo) / 2
    ax.set_xlim(center[0] - half, center[0] + half)
    ax.set_ylim(center[1] - half, center[1] + half)


# ------------------------------------------------------------------------------- 8
def plot_gradient_estimators(comparison, path, datapoint=0, coordinate=0, title=None, dpi=DPI):
    """Figure 8: reparameterisation vs score-function gradients of E_q[log p(x|z)] (slide 14).

    Left: the spread of R repeated S-sample estimates of dF/dmu_j for one coordinate, both
    estimators, with the high-sample reference: the score function's histogram, and the
    range of the reparameterisation estimates, a sliver at that scale, which the inset
    zooms in on; each legend entry gives the estimator's standard deviation. Middle: each
    estimator's average over the R repeats against the reference, every coordinate, with
    +-2 standard errors of their difference (unbiased: points on the diagonal, about 95 %
    within 2 s.e.). Right: the variance ratio Var(score) / Var(reparam) per coordinate.
    One colour per estimator in every panel (blue reparameterisation, orange score function);
    the derivative is told apart by the marker (filled circle d/dmu, open triangle d/dsigma)
    and, in the ratio panel, which compares the two and so has neither colour, by grey shade.
    The score function is used without a baseline, on purpose: it is the plain estimator
    of slide 14's comparison; a baseline (control variate) would lower its variance.
    ``comparison`` is an ``estimators.EstimatorComparison``.
    Size: 13 x 4 inches.
    """
    c = comparison
    R = len(c.reparam_mu)
    fig = _figure(13, 4)
    colours = {"reparam": "tab:blue", "score": "tab:orange"}
    names = {"reparam": "reparameterisation", "score": "score function"}

    ax = fig.add_axes([0.05, 0.14, 0.26, 0.7])
    values = {k: getattr(c, f"{k}_mu")[:, datapoint, coordinate] for k in names}
    sd = {k: np.std(values[k], ddof=1) for k in names}
    reference = c.reference_mu[datapoint, coordinate]
    counts = _histogram(ax, values["score"], colours["score"], f"{names['score']}, sd {sd['score']:.3g}")
    lo, hi = np.percentile(values["reparam"], [0.5, 99.5])       # at this scale, a sliver: see the inset
    ax.axvspan(lo, hi, color=colours["reparam"], alpha=0.6,
               label=f"{names['reparam']}, sd {sd['reparam']:.3g}")
    ax.axvline(reference, color="k", lw=1, label="reference")
    ax.set_ylim(0, 1.75 * max(counts.max(), 1))                   # bars below 0.58: room for legend and inset
    ax.set_xlabel(f"estimate of dF/dmu_{coordinate + 1}")
    ax.set_ylabel(f"count (of {R} repeats)")
    ax.set_title(f"spread of {c.n_samples}-sample estimates", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    zoom = ax.inset_axes([0.66, 0.6, 0.32, 0.27])
    _histogram(zoom, values["reparam"], colours["reparam"], None)
    zoom.axvline(reference, color="k", lw=1)
    zoom.set_title("reparameterisation, zoomed", fontsize=7, pad=2)
    zoom.tick_params(labelsize=6)
    zoom.set_yticks([])

    ax = fig.add_axes([0.39, 0.14, 0.26, 0.7])
    within = {k: [] for k in names}
    for param, marker, face in (("mu", "o", None), ("sigma", "^", "white")):
        reference = getattr(c, f"reference_{param}")
        for k in names:
            average = getattr(c, f"{k}_{param}").mean(axis=0)
            stderr = c.difference_stderr(k, param)
            within[k].append(np.abs(average - reference) <= 2 * stderr)
            ax.errorbar(reference.ravel(), average.ravel(), yerr=2 * stderr.ravel(), fmt=marker, ms=5,
                        color=colours[k], mfc=face or colours[k], mew=1.0, alpha=0.8, lw=0.8,
                        label=f"{names[k]}, d/d{param}")
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
    for row, k in enumerate(names):                      # expect about 95 % for an unbiased estimator
        ax.text(0.03, 0.93 - 0.07 * row, f"{names[k]}: {np.mean(within[k]):.0%} within 2 s.e.",
                transform=ax.transAxes, fontsize=8, color=colours[k])
    ax.set_xlabel(f"reference gradient ({c.n_reference:,} samples)")
    ax.set_ylabel(f"average of {R} estimates (+-2 s.e.)")
    ax.set_title("both are unbiased: averages on the diagonal", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")

    ax = fig.add_axes([0.72, 0.14, 0.26, 0.7])
    ratios = c.variance_ratio()
    for param, ratio, offset, shade in (("mu", ratios[0], -0.2, "0.25"), ("sigma", ratios[1], 0.2, "0.65")):
        r = ratio.ravel()
        ax.bar(np.arange(len(r)) + offset, r, width=0.4, color=shade,
               label=f"d/d{param}: median {np.median(r):.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("coordinate (datapoint x latent dimension)")
    ax.set_ylabel("Var(score function) / Var(reparam.)")
    ax.set_title("variance ratio", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(title or "Why reparameterise: two unbiased gradients of E_q[log p(x|z)], very different "
                          "variances (the score function without a baseline, on purpose)", y=0.98)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 9
def plot_inference_gaps(gaps, images, path, title=None, dpi=DPI):
    """Figure 9: p(z|x), the encoder's q(z|x) and the best diagonal Gaussian q*(z|x), and the two gaps.

    One panel per datapoint: filled contours of the true posterior p(z|x) (exact on a grid),
    red lines for the encoder's q(z|x), black dashed lines for q*(z|x) found by gradient
    ascent on the ELBO of that x alone (chapters/inference.py), each at the levels holding 50/90/99 %
    of its mass. Below: log p(x), ELBO(q*), ELBO(q_encoder), the approximation gap
    log p(x) - ELBO(q*) and the amortisation gap ELBO(q*) - ELBO(q_encoder) (Cremer et al. 2018).
    ``gaps`` is an ``inference.Gaps``.   Size: 3.4 n x 4.8 inches.   Shapes: images (n, D).
    """
    images = _as_images("images", images)
    n = len(gaps.grids)
    if n != len(images) or not n:
        raise ValueError(f"need one image per posterior, got {n} posteriors and {len(images)} images")
    fig = _figure(3.4 * n, 4.8)
    width = 0.77 / n
    for i, (g, image) in enumerate(zip(gaps.grids, images)):
        ax = fig.add_axes([(i + 0.19) / n, 0.34, width, 0.52])
        z1, z2, area, pts = g.grid.z1, g.grid.z2, g.grid.cell_area, g.grid.points
        p = np.exp(g.log_posterior[0]).reshape(g.grid.shape)
        q = np.exp(g.log_q[0]).reshape(g.grid.shape)
        mu_s, logvar_s = gaps.fitted.mu[i].astype(np.float64), gaps.fitted.logvar[i].astype(np.float64)
        q_s = np.exp(-0.5 * np.sum(np.log(2 * np.pi) + logvar_s + (pts - mu_s) ** 2 * np.exp(-logvar_s),
                                   axis=1)).reshape(g.grid.shape)
        ax.contourf(z1, z2, p, levels=[*mass_levels(p, area), p.max()], cmap="Blues", extend="neither")
        ax.contour(z1, z2, q, levels=mass_levels(q, area), colors="tab:red", linewidths=1.0)
        ax.contour(z1, z2, q_s, levels=mass_levels(q_s, area), colors="black", linewidths=1.0,
                   linestyles="dashed")
        ax.plot(*g.mu[0], "+", color="tab:red", ms=8)
        ax.plot(*mu_s, "x", color="black", ms=6)
        ax.set_aspect("equal")
        _zoom(ax, g.grid, [(d, mass_levels(d, area, [0.999])[0]) for d in (p, q, q_s)])
        ax.set_xlabel("z_1", fontsize=9)
        ax.set_ylabel("z_2", fontsize=9)
        ax.tick_params(labelsize=7)
        inset = ax.inset_axes([0.0, 0.74, 0.26, 0.26])
        _show_mosaic(inset, mosaic(image[None, None]))
        text = (f"log p(x)          = {gaps.log_px[i]:8.2f}\n"
                f"ELBO(q*)          = {gaps.elbo_star[i]:8.2f}\n"
                f"ELBO(q_encoder)   = {gaps.elbo_encoder[i]:8.2f}\n"
                f"approximation gap = {gaps.approximation_gap[i]:8.3f}\n"
                f"amortisation gap  = {gaps.amortisation_gap[i]:8.3f}")
        fig.text((i + 0.5) / n, 0.02, text, ha="center", va="bottom", ma="left", fontsize=8.5,
                 family="monospace")
    handles = [Patch(color="tab:blue", alpha=0.6, label="true posterior p(z|x)"),
               Line2D([], [], color="tab:red", label="encoder q(z|x)"),
               Line2D([], [], color="black", linestyle="dashed", label="best diagonal Gaussian q*(z|x)")]
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, 0.99), fontsize=8,
               frameon=False, ncol=3)
    fig.suptitle(title or "Inference for one x, then amortised: log p(x) - ELBO(q_enc) = "
                          "approximation gap + amortisation gap",
                 x=0.02, ha="left", y=0.985, fontsize=11)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 10
def plot_autoencoder_vs_vae(codes, labels, samples, stats, path, title=None, dpi=DPI):
    """Figure 10: a plain autoencoder beside the VAE (slides 3-5 against 12-13).

    Top: the 2-D codes of the test digits for each model, coloured by label, with the circle
    holding 95 % of p(z) = N(0, I) (radius 2.45) drawn on both. Bottom: digits decoded from
    the same z ~ N(0, I) by each decoder.
    ``codes``: {"autoencoder": (N, 2), "VAE": (N, 2)} (the VAE's are mu);
    ``samples``: {name: (M, D)} decoder means, M a square; ``stats``: {name: text under its title}.
    Size: 11 x 11 inches.   Shapes: labels (N,).
    """
    names = list(codes)
    labels = np.asarray(labels)
    fig = _figure(11, 11)
    colours = colormaps["tab10"].colors
    circle = np.linspace(0, 2 * np.pi, 200)
    radius = float(np.sqrt(-2 * np.log(0.05)))                  # P(|z| < r) = 1 - exp(-r^2/2) = 0.95
    for i, name in enumerate(names):
        z = np.asarray(codes[name])
        if z.ndim != 2 or z.shape[1] != 2 or len(z) != len(labels):
            raise ValueError(f"codes[{name!r}] must be (N, 2) with N = {len(labels)}, got {z.shape}")
        ax = fig.add_axes([0.07 + 0.48 * i, 0.53, 0.4, 0.33])
        for k in np.unique(labels):
            pick = labels == k
            ax.scatter(z[pick, 0], z[pick, 1], s=3, alpha=0.6, color=colours[int(k) % 10],
                       linewidths=0, rasterized=True)
        ax.plot(radius * np.cos(circle), radius * np.sin(circle), color="black", lw=1.2,
                label="95 % of N(0, I)")
        ax.set_aspect("equal", adjustable="datalim")            # the circle drawn round
        ax.set_xlabel("z_1")
        ax.set_ylabel("z_2")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"{name}: test digits' codes\n{stats.get(name, '')}", fontsize=9.5)
        images = _as_images(f"samples[{name!r}]", samples[name])
        n = int(round(np.sqrt(len(images))))
        if n * n != len(images):
            raise ValueError(f"samples[{name!r}] must be a square number of images, got {len(images)}")
        ax = fig.add_axes([0.05 + 0.48 * i, 0.03, 0.44, 0.4])
        _show_mosaic(ax, mosaic(images.reshape(n, n, -1)))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}: decoded from z ~ N(0, I)", fontsize=10)
    handles = [Line2D([], [], marker="o", ls="", color=colours[k], label=str(k)) for k in range(10)]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.97), ncol=10, frameon=False,
               fontsize=8)
    fig.suptitle(title or "Autoencoder vs VAE: without the KL term the codes go anywhere, "
                          "and N(0, I) decodes to poor digits", y=0.995, fontsize=12)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------- 11
def iso_elbo_lines(rates, distortions, rate_limits):
    """The dashed lines of figure 11: for each model, the points of the (R, D) plane with its -ELBO.

    Implements:  -ELBO = D + R = c_i  for each model i,  i.e.  D = c_i - R  (slope -1),
                 drawn from R = rate_limits[0] to R = rate_limits[1].
    Shapes:      rates, distortions (n,) -> list of n (level c_i, R (2,), D (2,))
    """
    rates, distortions = np.asarray(rates, np.float64), np.asarray(distortions, np.float64)
    if rates.shape != distortions.shape or rates.ndim != 1:
        raise ValueError(f"rates and distortions must be two (n,) arrays, got {rates.shape} and {distortions.shape}")
    r = np.asarray(rate_limits, np.float64)
    return [(c, r, c - r) for c in rates + distortions]


def plot_beta_sweep(betas, rates, distortions, codes, labels, samples, path, active_units=None,
                    title=None, dpi=DPI):
    """Figure 11: what the KL term does, one model per KL weight beta (slides 12-13).

    Top left: the rate-distortion plane, R = KL(q(z|x) || p(z)) across, D = -E_q[log p(x|z)] up,
    one point per beta, and through each the dashed line of its -ELBO, D + R = const (slope
    -1, ``iso_elbo_lines``). Top right: the numbers. Then for each beta (one column each) the
    test codes mu coloured by label, with the circle holding 95 % of N(0, I), and below them
    digits decoded from the same z ~ N(0, I).
    ``codes``: one (N, 2) array per beta; ``samples``: one (M, D) array per beta, M a square;
    ``active_units``: optional counts per beta, shown in the numbers.
    Size: 3.5 n + 1 x 12.5 inches for n betas (at least 4 columns wide).   Shapes: labels (N,).
    """
    n = len(betas)
    rates, distortions = np.asarray(rates, np.float64), np.asarray(distortions, np.float64)
    labels = np.asarray(labels)
    if not (len(rates) == len(distortions) == len(codes) == len(samples) == n) or n == 0:
        raise ValueError(f"need one rate, distortion, codes and samples array per beta: {n} betas, "
                         f"{len(rates)} rates, {len(distortions)} distortions, {len(codes)} codes, "
                         f"{len(samples)} samples")
    width = 3.5 * max(n, 4) + 1
    fig = _figure(width, 12.5)
    colours = colormaps["tab10"].colors              # the digits' labels; the plane stays black and grey

    # ---- the rate-distortion plane
    ax = fig.add_axes([0.9 / width, 0.655, 0.5 - 0.9 / width, 0.27])
    span_r = max(rates.max() - min(rates.min(), 0), 1.0)
    r_limits = (min(rates.min(), 0) - 0.05 * span_r, rates.max() + 0.08 * span_r)
    span_d = max(distortions.max() - distortions.min(), 1.0)
    d_limits = (distortions.min() - 0.15 * span_d, distortions.max() + 0.15 * span_d)
    for level, r, d in iso_elbo_lines(rates, distortions, r_limits):
        ax.plot(r, d, ls="--", lw=1, color="0.45")
    for i, beta in enumerate(betas):
        ax.plot(rates[i], distortions[i], "o", ms=7, color="black", zorder=3)
        ax.annotate(f"β = {beta:g}", (rates[i], distortions[i]), xytext=(7, 5), textcoords="offset points",
                    fontsize=10)
    ax.set_xlim(*r_limits)
    ax.set_ylim(*d_limits)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)), nats")
    ax.set_ylabel("distortion D = -E_q[log p(x|z)], nats")
    ax.grid(alpha=0.3)
    ax.set_title("Rate against distortion; dashed: lines of equal -ELBO = D + R (slope -1)", fontsize=10)

    # ---- the numbers
    rows = [f"{'beta':>5} {'D':>8} {'R':>7} {'D + R':>8} {'D + beta R':>11}"
            + ("  active units" if active_units is not None else "")]
    for i, beta in enumerate(betas):
        rows.append(f"{beta:5g} {distortions[i]:8.2f} {rates[i]:7.2f} {distortions[i] + rates[i]:8.2f} "
                    f"{distortions[i] + beta * rates[i]:11.2f}"
                    + (f"  {active_units[i]:>6} of {np.asarray(codes[i]).shape[1]}" if active_units is not None else ""))
    best = betas[int(np.argmin(rates + distortions))]
    text = ("\n".join(rows) + "\n\nnats per test image; each model minimised D + beta R,\n"
            "and D + R is the negative ELBO (beta = 1's loss) of every one:\n"
            f"the lowest dashed line is beta = {best:g}'s")
    fig.text(0.54, 0.92, text, ha="left", va="top", family="monospace", fontsize=9.5)

    # ---- per beta: the codes, and decoded prior samples
    circle = np.linspace(0, 2 * np.pi, 200)
    radius = float(np.sqrt(-2 * np.log(0.05)))
    column = (1 - 0.02) / max(n, 4)
    for i, beta in enumerate(betas):
        z = np.asarray(codes[i])
        if z.ndim != 2 or z.shape[1] != 2 or len(z) != len(labels):
            raise ValueError(f"codes[{i}] must be (N, 2) with N = {len(labels)}, got {z.shape}")
        ax = fig.add_axes([0.02 + i * column + 0.16 * column, 0.34, 0.78 * column, 0.24])
        for k in np.unique(labels):
            pick = labels == k
            ax.scatter(z[pick, 0], z[pick, 1], s=3, alpha=0.6, color=colours[int(k) % 10],
                       linewidths=0, rasterized=True)
        ax.plot(radius * np.cos(circle), radius * np.sin(circle), color="black", lw=1.2)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=8)
        ax.set_title(f"β = {beta:g}: test codes μ\ns.d. ({', '.join(f'{s:.2f}' for s in z.std(axis=0))});"
                     f" circle: 95 % of N(0, I)", fontsize=9)
        images = _as_images(f"samples[{i}]", samples[i])
        m = int(round(np.sqrt(len(images))))
        if m * m != len(images):
            raise ValueError(f"samples[{i}] must be a square number of images, got {len(images)}")
        ax = fig.add_axes([0.02 + i * column + 0.05 * column, 0.015, 0.9 * column, 0.27])
        _show_mosaic(ax, mosaic(images.reshape(m, m, -1)))
        ax.set_title(f"β = {beta:g}: decoded from z ~ N(0, I)", fontsize=9.5)
    handles = [Line2D([], [], marker="o", ls="", color=colours[k % 10], label=str(k))
               for k in range(10) if np.any(labels == k)]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.535, 0.715), ncol=10, frameon=False,
               fontsize=9, title="colour: the label of the test digit", title_fontsize=9)
    fig.suptitle(title or "What the KL term does: the same VAE trained on D + β R for each β",
                 y=0.985, fontsize=12)
    return _save(fig, path, dpi)
