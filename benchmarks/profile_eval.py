"""Where the importance-sampled evaluation's time goes: matrix products against the rest.

    python benchmarks/profile_eval.py [--checkpoint RUN/checkpoint.npz] [--reps 200]

evaluate.importance_sampled_nll spends nearly all its time in ``model.log_weights`` on chunks
of 10 samples x 100 images (1,000 decoder rows). This times, for one such chunk, on the
reference shapes (784-400-20-400-784, float32, 2-thread OpenBLAS as evaluation runs it):

    log_weights_ms     the whole call: z, the decoder, log p(x|z), log p(z), log q(z|x)
    fused_ms           the same log w from fast.fused_eval.FastLogWeights (evaluate --engine fused),
                       two threads with a one-thread BLAS each
    products_ms        the decoder's two matrix products alone, same shapes
    elementwise_ms     the difference: bias additions, relu, the Bernoulli log-likelihood
                       (softplus and the sums), the two Gaussian log-densities
    products_share     products_ms / log_weights_ms

Medians of 7 rounds of ``--reps`` calls, ms per chunk. Prints the CPU, the OpenBLAS kernel and
OPENBLAS_CORETYPE as the environment sets it; one JSON line.
"""
import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import scratchvae  # noqa: E402,F401  (first, as `scratchvae train` does: how OpenBLAS's threads wait)
import numpy as np  # noqa: E402
sys.path.insert(0, str(HERE))

from scratchvae.machinery.checkpoint import load_model                          # noqa: E402
from scratchvae.machinery.data import load                                       # noqa: E402
from scratchvae.fast.fused_eval import FastLogWeights                        # noqa: E402
from scratchvae.vae import VAE                                         # noqa: E402
from scratchvae.fast.workers import blas_core, cpu_model                   # noqa: E402
from profile_fused import median_ms                                   # noqa: E402  (benchmarks/)

DEFAULT_DATA_DIR = HERE.parents[1] / "shared" / "data" / "fashion-mnist"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="a trained model (default: a freshly initialised one)")
    ap.add_argument("--reps", type=int, default=200, help="calls per timed round")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = ap.parse_args(argv)

    model = load_model(args.checkpoint) if args.checkpoint else VAE(784, (400,), 20, seed=1)
    images = load("fashion-mnist", "test", args.data_dir, download=False).images[:100]
    x = images.reshape(len(images), -1).astype(np.float32) / 255                # (100, 784)
    c, n, K = 10, len(x), model.latent_dim
    eps = np.random.default_rng(0).standard_normal((c, n, K), dtype=np.float32)
    q = model.encode(x)
    z = (q[0] + np.exp(0.5 * q[1]) * eps).reshape(c * n, K)                   # (1000, K)
    P = model.params
    h = np.empty((c * n, P["dec.fc1.W"].shape[1]), np.float32)
    logits = np.empty((c * n, P["dec.logits.W"].shape[1]), np.float32)

    def products():
        np.matmul(z, P["dec.fc1.W"], out=h)
        np.matmul(h, P["dec.logits.W"], out=logits)

    record = {"cpu": cpu_model(), "blas_core": blas_core(),
              "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
              "chunk": f"{c} samples x {n} images"}
    record["log_weights_ms"] = median_ms(lambda: model.log_weights(x, eps, q=q), args.reps, 7)
    record["products_ms"] = median_ms(products, args.reps, 7)
    with FastLogWeights(model) as fused:
        record["fused_ms"] = median_ms(lambda: fused(x, eps, q), args.reps, 7)
    record["elementwise_ms"] = round(record["log_weights_ms"] - record["products_ms"], 3)
    record["products_share"] = round(record["products_ms"] / record["log_weights_ms"], 3)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
