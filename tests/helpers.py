"""Helpers the test files share: small data sets on disk, synthetic images, tiny checkpoints,
and the check that a command's error is one line. (conftest.py's folder is on sys.path, so
``from helpers import ...`` works from every test folder.)"""
import fcntl
import gzip
import os
from contextlib import contextmanager

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
