"""What subnormal numbers cost on this CPU, and what Adam's flush does about them.

    python benchmarks/bench_subnormal.py [--epochs 3] [--data-dir DIR] [--skip-training]

Prints (docs/derivations.md, section 12, explains the numbers):

1. Elementwise passes, median of many: ``a *= 0.9`` over 652,824 float32 (the size of the
   PyTorch example's parameter vector) with all entries normal and with a quarter of them
   subnormal; ``np.exp`` of 10^6 exponents whose results are normal, subnormal, or 0 by
   underflow, in float32 and float64; ``exp_no_subnormal`` on the same exponents.
2. Training with the read-along step (vae.py + Adam) on Fashion-MNIST's 60,000 training
   images, the PyTorch example's protocol, once with Adam's flush switched off and once
   with it on, epoch by epoch: images/s, Adam's milliseconds per step, and how many entries
   of Adam's moment vectors are subnormal at the end of each epoch. The two runs compute the
   same numbers (the flush changes nothing visible in float32); the test -ELBO after the last
   epoch (at z = mu, on the 10,000 test images) is printed for both.

The CPU model and the OpenBLAS kernels are printed first. One JSON line per measurement.
"""
import argparse
import json
import time
from pathlib import Path

import scratchvae  # noqa: F401  (first, as `scratchvae train` does: how OpenBLAS's threads wait)
import numpy as np

from scratchvae import VAE, Adam
from scratchvae.machinery.data import iterate_batches, load
from scratchvae.layers import exp_no_subnormal
from scratchvae.fast.workers import blas_core, cpu_model

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def subnormal_count(a):
    return int(((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)).sum())


def passes():
    rng = np.random.default_rng(0)
    n = 652_824
    normal = rng.uniform(0.5, 1.0, n).astype(np.float32)
    mixed = normal.copy()
    mixed[::4] = np.float32(1e-39)                                   # a quarter subnormal
    work = np.empty_like(normal)

    def scale(src):                                                  # a fresh copy each time, so
        def run():                                                   # nothing decays as it repeats
            np.copyto(work, src)
            np.multiply(work, np.float32(0.9), out=work)
        return run
    copy_only = median_ms(lambda: np.copyto(work, normal), 400)
    yield {"what": "a *= 0.9, 652,824 float32", "normal_ms": median_ms(scale(normal), 400) - copy_only,
           "quarter_subnormal_ms": median_ms(scale(mixed), 400) - copy_only}
    for dtype in (np.float32, np.float64):
        log_tiny = float(np.log(np.finfo(dtype).tiny))
        out = np.empty(1_000_000, dtype)
        row = {"what": f"exp of 10^6 {np.dtype(dtype).name}"}
        for name, lo, hi in (("normal", -50, 0), ("subnormal", log_tiny - 15, log_tiny - 1),
                             ("underflow", 2 * log_tiny, log_tiny - 20)):
            a = rng.uniform(lo, hi, out.size).astype(dtype)
            with np.errstate(under="ignore"):
                row[f"np.exp_{name}_ms"] = median_ms(lambda: np.exp(a, out=out), 40)
            row[f"exp_no_subnormal_{name}_ms"] = median_ms(lambda: exp_no_subnormal(a), 40)
        yield row


def training(data_dir, epochs):
    images = load("fashion-mnist", "train", data_dir=data_dir, download=False).images
    test = load("fashion-mnist", "test", data_dir=data_dir, download=False).images / np.float32(255)
    for flush in (False, True):
        model = VAE(784, [400], 20, seed=1)
        adam = Adam(model.flat_params, model.flat_grads)
        if not flush:
            adam.flush_every = 10 ** 12
        rng = np.random.default_rng(1)
        x_buffer = np.empty((128, 784), np.float32)
        for epoch in range(1, epochs + 1):
            adam_seconds, steps, t0 = 0.0, 0, time.perf_counter()
            for x in iterate_batches(images, 128, rng, shuffle=True, out=x_buffer):
                model.loss_and_grads(x)
                t1 = time.perf_counter()
                adam.step()
                adam_seconds += time.perf_counter() - t1
                steps += 1
            seconds = time.perf_counter() - t0
            row = {"what": "training, read-along step", "flush": flush, "epoch": epoch,
                   "img_per_s": round(len(images) / seconds), "adam_ms_per_step": 1e3 * adam_seconds / steps,
                   "subnormal_m_sum": subnormal_count(adam.m_sum), "subnormal_v_sum": subnormal_count(adam.v_sum),
                   "of": adam.m_sum.size}
            if epoch == epochs:
                row["test_nelbo_at_z_mu"] = model.loss(test, np.zeros((len(test), 20), np.float32))[1]["nelbo"]
            yield row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args(argv)
    print(json.dumps({"cpu": cpu_model(), "blas_core": blas_core(), "numpy": np.__version__}), flush=True)
    for row in passes():
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if not args.skip_training:
        for row in training(args.data_dir, args.epochs):
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
