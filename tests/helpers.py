"""Helpers the test files share: small data sets on disk, synthetic images, tiny checkpoints,
and the check that a command's error is one line. (conftest.py's folder is on sys.path, so
``from helpers import ...`` works from every test folder.)"""
import gzip

import numpy as np

from scratchvae import Adam
from scratchvae.machinery import data
from scratchvae.machinery.checkpoint import save_checkpoint


def synthetic_images(n, D=36, seed=0):
    """Four binary prototypes with 5% of pixels flipped: structure a small VAE can learn."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((4, D)) < 0.3
    noise = rng.random((n, D)) < 0.05
    return ((prototypes[rng.integers(0, 4, n)] ^ noise) * 255).astype(np.uint8)


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def idx_bytes(array, type_code=0x08):
    """Header + big-endian payload of ``array`` in the IDX format."""
    array = np.asarray(array)
    dtype = data.IDX_TYPES[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(dtype).tobytes()


def write_file(path, payload):
    """Write ``payload``, gzip-compressed when the file name ends in .gz."""
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def fake_images(n, seed=0):
    """(n, 28, 28) uint8 images whose first two pixels encode their index (for order checks)."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    return images


def write_dataset(directory, n_train=None, n_test=None, gz=True, seed=0):
    """Write MNIST-named files for the splits whose sizes are given; return the arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        if n is None:
            continue
        images, labels = fake_images(n, seed), np.arange(n, dtype=np.uint8) % 10
        images_name, labels_name = data.FILES[split]
        write_file(directory / (images_name + suffix), idx_bytes(images))
        write_file(directory / (labels_name + suffix), idx_bytes(labels))
        written[split] = (images.reshape(n, 784), labels)
    return written


def run_main(main, argv, capsys):
    """main(argv) -> (exit code, stderr); argparse errors exit through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, prog, *words):
    assert code == 2, (code, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert err.startswith(f"{prog}: error: "), err
    for word in words:
        assert word in err, (word, err)


def tiny_checkpoint(path, model, dataset="mnist"):
    """A checkpoint of an untrained ``model``, as the project's own save function writes it."""
    kind = type(model).kind
    adam = Adam(model.flat_params, model.flat_grads)
    return save_checkpoint(path, model, adam, {"model": kind, "dataset": dataset}, [], {})


# ---------------------------------------------------------------- what a figure drew
def drawn_figures(monkeypatch):
    """The matplotlib Figures the plot functions save from now on (to read back what they drew)."""
    from scratchvae.pictures import plots
    figures, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: figures.append(fig) or save(fig, path, dpi))
    return figures


def scatter_points(ax):
    """Every point of every scatter in ``ax``, (n, 2)."""
    offsets = [c.get_offsets() for c in ax.collections if hasattr(c, "get_offsets") and len(c.get_offsets())]
    return np.concatenate(offsets) if offsets else np.zeros((0, 2))


def circle_radii(ax):
    """The radius of every circle about 0 drawn in ``ax``: a line all of whose points are equally
    far from the origin, or a Circle patch centred there."""
    from matplotlib.patches import Circle
    radii = []
    for line in ax.get_lines():
        r = np.hypot(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
        if len(r) > 10 and np.ptp(r) < 1e-9 * r.max():
            radii.append(float(r.mean()))
    radii += [float(p.radius) for p in ax.patches if isinstance(p, Circle) and np.allclose(p.center, 0)]
    return radii


def same_rows(a, b):
    """a and b hold the same rows, in any order."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and np.allclose(a[np.lexsort(a.T)], b[np.lexsort(b.T)])


# ---------------------------------------------------------------- integrals over a 2-D latent, by quadrature
def gauss_hermite_2d(n=100):
    """Nodes t (n^2, 2) and weights w (n^2,) with E[f(z)] = sum_g w_g f(t_g) for z ~ N(0, I_2):
    Gauss-Hermite quadrature, exact for polynomials up to degree 2n - 1 in each coordinate."""
    t, w = np.polynomial.hermite.hermgauss(n)
    T1, T2 = np.meshgrid(t, t)
    return np.sqrt(2) * np.column_stack([T1.ravel(), T2.ravel()]), np.outer(w, w).ravel() / np.pi


def bernoulli_log_likelihood_of(model, x, z):
    """log p(x|z) for a Bernoulli decoder, written out: sum_d [x_d l_d - log(1 + exp(l_d))]."""
    logits = model.decode(z)
    return (x * logits - np.logaddexp(0, logits)).sum(axis=1)


def log_px_by_quadrature(model, x, mu, logvar, nodes, weights):
    """log p(x) = log E_q[ p(x|z) p(z) / q(z) ] by Gauss-Hermite quadrature over q = N(mu, diag
    exp(logvar)) (z = mu + sigma t; p(z) / q(z) = N(z; 0, I) / (N(t; 0, I) / prod sigma))."""
    sigma = np.exp(0.5 * logvar)
    z = mu + sigma * nodes
    log_ratio = -0.5 * np.sum(z ** 2, axis=1) + 0.5 * np.sum(nodes ** 2, axis=1) + np.sum(np.log(sigma))
    return np.log(np.sum(weights * np.exp(bernoulli_log_likelihood_of(model, x, z) + log_ratio)))


def elbo_by_quadrature(model, x, mu, logvar, nodes, weights):
    """ELBO(q) = E_q[log p(x|z)] - KL(q || N(0, I)), q = N(mu, diag exp(logvar)): the expectation by
    Gauss-Hermite quadrature (z = mu + sigma t), the KL in closed form. No grid, no sampling."""
    z = mu + np.exp(0.5 * logvar) * nodes
    kl = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar)
    return np.sum(weights * bernoulli_log_likelihood_of(model, x, z)) - kl
