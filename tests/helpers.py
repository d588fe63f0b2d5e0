"""Helpers the test files share: small data sets on disk, synthetic images, tiny checkpoints,
and the check that a command's error is one line. (conftest.py's folder is on sys.path, so
``from helpers import ...`` works from every test folder.)"""
import fcntl
import gzip
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def held_by_another_process(out, pid=4242):
    """Hold ``out``'s run-directory lock as another process would: an flock on its own open
    file description (the kernel refuses a second one even within one process), with the
    holder's text a running training writes."""
    from scratchvae.machinery.run_dir import LOCK_NAME
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, f"process {pid}\n".encode(), 0)
        yield pid
    finally:
        os.close(fd)


# ------------------------------------------------------------------ commands in a child process
# A command started as its console script would be, after a few patches that hold it in one
# phase: ``wait`` says READY on stderr and sleeps until a signal comes; ``gated`` batches say
# READY and then wait for the file GO (so a signal can land inside a training step);
# ``during(a, b, new)`` replaces b by new while a runs. The computation is unchanged.
CHILD = """
import importlib, os, sys, time
sys.path[:0] = {paths!r}
GO = {go!r}

def wait(*args, **kwargs):
    print("READY", file=sys.stderr, flush=True)
    time.sleep(60)
    print("no signal came", file=sys.stderr, flush=True)

def _split(target):
    module, name = target.split(":")
    return importlib.import_module(module), name

def replace(target, new):
    module, name = _split(target)
    setattr(module, name, new)

def during(outer, inner, new):
    module, name = _split(outer)
    original = getattr(module, name)
    def wrapped(*args, **kwargs):
        replace(inner, new)
        return original(*args, **kwargs)
    setattr(module, name, wrapped)

def gated(batches):
    def gated_batches(*args, **kwargs):
        for i, batch in enumerate(batches(*args, **kwargs)):
            if i == 0:
                print("READY", file=sys.stderr, flush=True)
                while not os.path.exists(GO):
                    time.sleep(0.01)
            yield batch
    return gated_batches

def stub(*args, **kwargs):
    return {{}}

{patches}
sys.exit(importlib.import_module({module!r}).main({argv!r}))
"""
REPO = Path(__file__).resolve().parents[1]


def start_command(module, argv, patches="", go=None):
    """Popen of ``module.main(argv)`` (e.g. "demo", "scratchvae.machinery.cli") after ``patches``."""
    script = CHILD.format(paths=[str(REPO), str(REPO / "tests")], go=str(go), patches=patches,
                          module=module, argv=[str(a) for a in argv])
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(process, text="READY"):
    """Read the child's stderr up to the line starting with ``text``; return what came before it."""
    seen = []
    for line in process.stderr:
        if line.startswith(text):
            return "".join(seen)
        seen.append(line)
    process.wait()
    raise AssertionError(f"the child ended (exit {process.returncode}) before {text!r}:\n{''.join(seen)}")


def stop_with(process, signum, go=None, timeout=60):
    """Send ``signum`` (then create ``go``, opening a gated step); return (exit code, stdout, stderr)."""
    try:
        process.send_signal(signum)
        if go is not None:
            time.sleep(0.3)                              # the handler has run: let the step go on
            Path(go).touch()
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, out, err


def assert_stopped(code, err, prog, signum):
    """128 + signum, no traceback, and the last line says which signal stopped ``prog``."""
    said = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}[signum]
    assert code == 128 + signum, (code, err)
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: stopped by {said}"), err
    return last


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
