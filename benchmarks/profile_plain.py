"""Where the read-along step's time goes, on this machine.

    python benchmarks/profile_plain.py [--steps 300] [--rounds 7] [--data-dir DIR]

The read-along step is what ``scratchvae train`` runs by default: ``VAE.loss_and_grads``
(scratchvae/vae.py) on a batch, then ``Adam.step`` (scratchvae/optim.py), in one process,
with OpenBLAS's threads for the matrix products and one core for everything else. Timed on
the reference protocol's shapes (batch 128, 784-400-20-400-784, float32, real
Fashion-MNIST batches, Adam's moments warmed up by the same steps), with the BLAS threads
training uses (2):

    step                  loss_and_grads + Adam.step, as training runs it
    loss_and_grads        the forward and backward pass alone
    products              the matrix products of one loss_and_grads alone (same shapes,
                          written into preallocated arrays): the floor of the pass
    adam                  Adam.step alone
    eps                   drawing the batch's eps (rng.standard_normal, as the trainer does)

and derived from them:

    elementwise = loss_and_grads - products     the ufunc work and NumPy's overheads
    products_share = products / step

Medians over ``--rounds`` rounds of ``--steps`` calls each, in milliseconds. Prints the CPU,
the OpenBLAS kernel and OPENBLAS_CORETYPE as the environment sets it; one JSON line.
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

from scratchvae.machinery.data import load                                      # noqa: E402
from scratchvae.fast.fused_step import set_blas_threads                          # noqa: E402
from scratchvae.optim import Adam                                     # noqa: E402
from scratchvae.vae import VAE                                        # noqa: E402
from scratchvae.fast.workers import blas_core, cpu_model                   # noqa: E402
from profile_fused import DEFAULT_DATA_DIR, median_ms                 # noqa: E402  (benchmarks/)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="calls per timed round")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (the median is reported)")
    ap.add_argument("--threads", type=int, choices=(1, 2), default=2, help="OpenBLAS threads")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = ap.parse_args(argv)

    set_blas_threads(args.threads)
    B, D, H, K = 128, 784, 400, 20
    images = load("fashion-mnist", "train", args.data_dir, download=False).images
    x_all = images.reshape(len(images), -1)[:B * 50].astype(np.float32) / 255
    batches = [x_all[i * B:(i + 1) * B] for i in range(50)]
    model = VAE(D, (H,), K, seed=1)
    adam = Adam(model.flat_params, model.flat_grads, lr=1e-3)
    rng = np.random.default_rng(0)
    counter = iter(range(10**9))

    def step():
        model.loss_and_grads(batches[next(counter) % 50])
        adam.step()

    for _ in range(200):                                   # warm the moments and the allocator
        step()

    P = model.params
    f32 = np.float32
    x = batches[0]
    z = rng.standard_normal((B, K), dtype=f32)
    h, hd = np.empty((B, H), f32), np.empty((B, H), f32)
    mu, logits = np.empty((B, K), f32), np.empty((B, D), f32)
    dh, dhd, dz = np.empty((B, H), f32), np.empty((B, H), f32), np.empty((B, K), f32)
    G = {name: np.empty_like(value) for name, value in P.items() if name.endswith(".W")}

    def products():
        np.matmul(x, P["enc.fc1.W"], out=h)                          # forward
        np.matmul(h, P["enc.mu.W"], out=mu)
        np.matmul(h, P["enc.logvar.W"], out=mu)
        np.matmul(z, P["dec.fc1.W"], out=hd)
        np.matmul(hd, P["dec.logits.W"], out=logits)
        np.matmul(hd.T, logits, out=G["dec.logits.W"])               # backward
        np.matmul(logits, P["dec.logits.W"].T, out=dhd)
        np.matmul(z.T, dhd, out=G["dec.fc1.W"])
        np.matmul(dhd, P["dec.fc1.W"].T, out=dz)
        np.matmul(h.T, mu, out=G["enc.mu.W"])
        np.matmul(h.T, mu, out=G["enc.logvar.W"])
        np.matmul(mu, P["enc.mu.W"].T, out=dh)
        np.matmul(mu, P["enc.logvar.W"].T, out=dh)
        np.matmul(x.T, dh, out=G["enc.fc1.W"])

    record = {"cpu": cpu_model(), "blas_core": blas_core(),
              "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"), "blas_threads": args.threads}
    record["step"] = median_ms(step, args.steps, args.rounds)
    record["loss_and_grads"] = median_ms(lambda: model.loss_and_grads(batches[next(counter) % 50]),
                                         args.steps, args.rounds)
    record["products"] = median_ms(products, args.steps, args.rounds)
    record["adam"] = median_ms(adam.step, args.steps, args.rounds)
    record["eps"] = median_ms(lambda: rng.standard_normal((1, B, K), dtype=f32), args.steps, args.rounds)
    record["elementwise"] = round(record["loss_and_grads"] - record["products"], 3)
    record["products_share"] = round(record["products"] / record["step"], 3)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
