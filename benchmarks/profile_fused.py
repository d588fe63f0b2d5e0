"""Where the fused step's time goes, phase by phase, on this machine.

    python benchmarks/profile_fused.py [--steps 300] [--rounds 7] [--data-dir DIR]

The fused step (scratchvae/fast/fused_step.py) runs each batch in two phases on two workers:

    phase 1   each worker: forward and backward for its half of the batch rows
    phase 2   worker 0: the encoder's gradients over the whole batch, then Adam on the encoder's half
              worker 1: the decoder's gradients over the whole batch, then Adam on the decoder's half

Here every piece is timed alone, in one thread with a one-thread BLAS (what each worker has),
on the reference protocol's shapes (batch 128, 784-400-20-400-784, float32, real
Fashion-MNIST batches, Adam's moments warmed up by the same steps):

    phase1_w0, phase1_w1     forward_backward of rows [0, 64) and [64, 128)
    phase1_products          the matrix products of one worker's phase 1 alone (same shapes, same out=)
    phase2_w0, phase2_w1     gradients_and_update of each worker (products, finiteness check, Adam)
    phase2_products_w0/_w1   the matrix products of phase 2 alone
    adam_w0, adam_w1         Adam's update of each half alone
    step_2workers            the whole fused step with both workers, as training runs it

and derived from them:

    worker_w = phase1_w + phase2_w                     what one worker computes per step
    handover = step_2workers - max(worker_0, worker_1) waiting and hand-over between the workers
    elementwise_w = phase1_w - phase1_products          the ufunc work of phase 1
    gemm_floor_2workers = (2 * phase1_products + phase2_products_w0 + phase2_products_w1) / 2
                        the step's products spread evenly over two cores, as if the two cores
                        did not slow each other down
    gemm_share = gemm_floor_2workers / step_2workers

and measured with both cores working at once (two threads, a one-thread BLAS each):

    products_both_cores   each worker's products of both phases, the two workers meeting after
                          each phase as in the step: the floor on a machine whose two cores
                          share resources (a 2-vCPU virtual machine may be one core's two threads)
    gemm_share_both_cores = products_both_cores / step_2workers

Medians over ``--rounds`` rounds of ``--steps`` calls each, in milliseconds. Prints the CPU,
the OpenBLAS kernel and OPENBLAS_CORETYPE as the environment sets it; one JSON line.
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import scratchvae  # noqa: E402,F401  (first, as `scratchvae train` does: how OpenBLAS's threads wait)
import numpy as np  # noqa: E402

from scratchvae.machinery.data import load                                      # noqa: E402
from scratchvae.fast.fused_step import FusedStep                                 # noqa: E402
from scratchvae.optim import Adam                                     # noqa: E402
from scratchvae.vae import VAE                                        # noqa: E402
from scratchvae.fast.workers import blas_core, cpu_model                    # noqa: E402

DEFAULT_DATA_DIR = HERE.parents[1] / "shared" / "data" / "fashion-mnist"


def median_ms(fn, steps, rounds):
    """Median over rounds of the mean ms per call of ``fn`` (``steps`` calls a round)."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - t0) / steps * 1e3)
    return round(statistics.median(times), 4)


def concurrent_ms(phases_w0, phases_w1, steps, rounds):
    """Like median_ms for two workers at once: worker 0's phases in this thread, worker 1's in
    another, both meeting after each phase (as the fused step's workers do); ms per step."""
    barrier = threading.Barrier(2)

    def run(phases):
        for _ in range(steps):
            for phase in phases:
                phase()
                barrier.wait()

    times = []
    for _ in range(rounds):
        other = threading.Thread(target=run, args=(phases_w1,))
        t0 = time.perf_counter()
        other.start()
        run(phases_w0)
        other.join()
        times.append((time.perf_counter() - t0) / steps * 1e3)
    return round(statistics.median(times), 4)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="calls per timed round")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (the median is reported)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = ap.parse_args(argv)

    B, H, K = 128, 400, 20
    images = load("fashion-mnist", "train", args.data_dir, download=False).images
    x_all = images.reshape(len(images), -1)[:B * 50].astype(np.float32) / 255
    rng = np.random.default_rng(0)
    model = VAE(784, (H,), K, seed=1)
    adam = Adam(model.flat_params, model.flat_grads, lr=1e-3)
    batches = [x_all[i * B:(i + 1) * B] for i in range(50)]
    noise = [rng.standard_normal((B, K), dtype=np.float32) for _ in range(50)]
    counter = iter(range(10 ** 9))

    def next_batch():
        i = next(counter) % 50
        return batches[i], noise[i]

    record = {"cpu": cpu_model(), "blas_core": blas_core(),
              "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
              "shapes": f"batch {B}, 784-{H}-{K}-{H}-784, float32"}

    # --- the whole step with two workers, as training runs it (warms Adam's moments too)
    with FusedStep(model, adam, B, workers=2) as fused:
        for _ in range(200):
            fused.step(*next_batch())
        record["step_2workers"] = median_ms(lambda: fused.step(*next_batch()), args.steps, args.rounds)

    # --- each piece alone, one thread, one-thread BLAS
    with FusedStep(model, adam, B, workers=1) as one:
        w0, w1 = one.workers
        half = B // 2

        def load_batch():
            x, eps = next_batch()
            one.x[:B], one.eps[:B] = x, eps
            one.beta, one.inv_b = model.beta, np.float32(1.0 / B)

        load_batch()
        one.step(*next_batch())
        record["phase1_w0"] = median_ms(lambda: w0.forward_backward(0, half), args.steps, args.rounds)
        record["phase1_w1"] = median_ms(lambda: w1.forward_backward(half, B), args.steps, args.rounds)

        def phase2(w):
            def run():
                alpha_t, eps_hat_t = adam.advance()
                w.gradients_and_update(B, True, alpha_t, eps_hat_t)
            return run

        record["phase2_w0"] = median_ms(phase2(w0), args.steps, args.rounds)
        record["phase2_w1"] = median_ms(phase2(w1), args.steps, args.rounds)

        def adam_only(w):
            def run():
                alpha_t, eps_hat_t = adam.advance()
                adam.update(w.span, alpha_t, eps_hat_t)
            return run

        record["adam_w0"] = median_ms(adam_only(w0), args.steps, args.rounds)
        record["adam_w1"] = median_ms(adam_only(w1), args.steps, args.rounds)

        # the products alone, with the shapes and out= arrays the phases use
        P, A, G, st = model.params, one.A, one.G, one
        def phase1_products_of(r, dz):
            """The products of phase 1 for the batch rows r (dz: that worker's (rows, K) array)."""
            scratch = np.empty((r.stop - r.start, H), np.float32)

            def products():
                np.matmul(st.x[r], P["enc.fc1.W"], out=st.h1a[r, :H])
                np.matmul(st.h1a[r], A["enc.mu"], out=st.mu[r])
                np.matmul(st.h1a[r], A["enc.logvar"], out=st.logvar[r])
                np.matmul(st.za[r], A["dec.fc1"], out=st.h3a[r, :H])
                np.matmul(st.h3a[r], A["dec.logits"], out=st.logits[r])
                np.matmul(st.dl[r], P["dec.logits.W"].T, out=st.da3[r])
                np.matmul(st.da3[r], P["dec.fc1.W"].T, out=dz)
                np.matmul(st.dmu[r], P["enc.mu.W"].T, out=st.da1[r])
                np.matmul(st.dlogvar[r], P["enc.logvar.W"].T, out=scratch)
            return products

        phase1_products = phase1_products_of(slice(0, half), w0.dz[:half])

        def phase2_products_w0():
            np.matmul(st.x[:B].T, st.da1[:B], out=G["enc.fc1.W"])
            np.matmul(st.ones[:B], st.da1[:B], out=G["enc.fc1.b"])
            np.matmul(st.h1a[:B].T, st.dmu[:B], out=G["enc.mu"])
            np.matmul(st.h1a[:B].T, st.dlogvar[:B], out=G["enc.logvar"])

        def phase2_products_w1():
            np.matmul(st.za[:B].T, st.da3[:B], out=G["dec.fc1"])
            np.matmul(st.h3a[:B].T, st.dl[:B], out=G["dec.logits"])

        record["phase1_products"] = median_ms(phase1_products, args.steps, args.rounds)
        record["phase2_products_w0"] = median_ms(phase2_products_w0, args.steps, args.rounds)
        record["phase2_products_w1"] = median_ms(phase2_products_w1, args.steps, args.rounds)

        # the same products on both cores at once, as the step runs them: worker 1's share
        # (its phase-1 rows, then the decoder's gradients) in a second thread, meeting worker 0
        # after each phase like the fused step's workers do
        phase1_products_w1 = phase1_products_of(slice(half, B), w1.dz[:B - half])
        record["products_both_cores"] = concurrent_ms(
            (phase1_products, phase2_products_w0), (phase1_products_w1, phase2_products_w1),
            args.steps, args.rounds)

    for w in (0, 1):
        record[f"worker_{w}"] = round(record[f"phase1_w{w}"] + record[f"phase2_w{w}"], 4)
        record[f"elementwise_w{w}"] = round(record[f"phase1_w{w}"] - record["phase1_products"], 4)
    record["handover"] = round(record["step_2workers"] - max(record["worker_0"], record["worker_1"]), 4)
    floor = (2 * record["phase1_products"] + record["phase2_products_w0"] + record["phase2_products_w1"]) / 2
    record["gemm_floor_2workers"] = round(floor, 4)
    record["gemm_share"] = round(floor / record["step_2workers"], 3)
    record["gemm_share_both_cores"] = round(record["products_both_cores"] / record["step_2workers"], 3)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
