"""Evaluation speed: the importance-sampled -log p(x) with k = 5000 on 1,000 test images.

    python benchmarks/bench_eval.py [--checkpoint RUN/checkpoint.npz] [--k 5000] [--limit 1000]
                                    [--engine plain|fused] [--threads 2] [--data-dir DIR]

Times ``scratchvae.machinery.evaluate.importance_sampled_nll`` -- the estimator behind
``scratchvae evaluate --is-k`` -- on the first ``--limit`` Fashion-MNIST test images
(x = pixels / 255) with k importance samples each: k * limit passes of a z through the
decoder (5 million for the defaults), processed ``--chunk`` samples x ``--batch``
images at a time (the evaluate defaults, 10 x 100). ``--engine fused`` gives it the
importance weights of fast.fused_eval.FastLogWeights (``scratchvae evaluate --engine fused``),
on ``--threads`` cores.

The model: the checkpoint's trained model with --checkpoint (e.g. the run directory of
``bench_train.py --out DIR``), otherwise a freshly initialised 784-400-20-400-784 VAE
(``VAE(784, [400], 20, seed=--seed)``). The cost per sample does not depend on the
weights' values; the summary says which one was used. OpenBLAS runs with --threads
threads (the estimator is plain NumPy: its products use BLAS threads, its elementwise
work one core). Other processes' CPU use during the timing is reported ("foreign_cpus"),
as the machine may be shared.

Prints one JSON line: seconds, img_per_s, samples_per_s, the estimate itself (is_nll,
nats), the settings, this process's peak RSS, and the peak proportional set size of this
process and the fused evaluation's helper process together (pss_total_peak_mb, sampled every
0.5 s; shared pages counted once).

Side by side with PyTorch (``--torch``, needs torch==2.13.0): the same estimator written in
PyTorch (``pytorch_reference.importance_sampled_nll``: the same chunks, the same
log w = log p(x|z) + log p(z) - log q(z|x), torch.logsumexp) on the same model -- the
checkpoint's weights copied into the PyTorch example's module -- and the same images, with
torch.set_num_threads(--threads). Each of ``--rounds`` rounds runs scratchvae with each of
``--engines`` (default: plain and fused) and PyTorch, each in a fresh process, the order
rotating; printed: every run, then per engine the median of the per-round ratios PyTorch
seconds / scratchvae seconds. The estimates differ only by their random eps.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import scratchvae  # noqa: F401  (first, as `scratchvae train` does: how OpenBLAS's threads wait)
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_train import DEFAULT_DATA_DIR, LoadMeter, MemorySampler, own_peak_rss_mb, wait_quiet  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="a trained model (default: a freshly initialised one)")
    ap.add_argument("--k", type=int, default=5000, help="importance samples per image")
    ap.add_argument("--limit", type=int, default=1000, help="the first this many test images")
    ap.add_argument("--chunk", type=int, default=10, help="samples per forward pass (memory, not result)")
    ap.add_argument("--batch", type=int, default=100, help="images per forward pass (memory, not result)")
    ap.add_argument("--threads", type=int, choices=(1, 2), default=2,
                    help="OpenBLAS threads (plain), worker threads (fused), torch threads")
    ap.add_argument("--engine", choices=("plain", "fused"), default="plain", help="scratchvae's engine")
    ap.add_argument("--engines", nargs="+", choices=("plain", "fused"), default=["plain", "fused"],
                    help="scratchvae's engines side by side with PyTorch (with --torch)")
    ap.add_argument("--seed", type=int, default=0, help="initialisation (no checkpoint) and the eps stream")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="wait up to this many s for a quiet machine")
    ap.add_argument("--torch", action="store_true", help="side by side with PyTorch (needs --checkpoint)")
    ap.add_argument("--rounds", type=int, default=3, help="side-by-side rounds (with --torch)")
    ap.add_argument("--worker", choices=("scratchvae", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if min(args.k, args.limit, args.chunk, args.batch) < 1:
        ap.error("--k, --limit, --chunk and --batch must be positive")
    if args.torch:
        if not args.checkpoint:
            ap.error("--torch compares the same trained model: give --checkpoint")
        return side_by_side(args)
    if args.worker == "torch":
        return torch_worker(args)

    from scratchvae.machinery.checkpoint import load_model
    from scratchvae.machinery.data import load
    from scratchvae.machinery.evaluate import importance_sampled_nll
    from scratchvae.fast.fused_step import set_blas_threads
    from scratchvae.fast.fused_eval import FastLogWeights
    from scratchvae.vae import VAE

    set_blas_threads(args.threads)
    images = load("fashion-mnist", f"test[:{args.limit}]", args.data_dir, download=False).images
    x = images.astype(np.float32) / np.float32(255)                  # (n, 784) grey levels
    if args.checkpoint:
        model, what = load_model(args.checkpoint), f"trained ({args.checkpoint})"
    else:
        model, what = VAE(784, [400], 20, seed=args.seed), f"freshly initialised (seed {args.seed})"
    arch = "-".join(map(str, [model.input_dim, *model.hidden_dims, model.latent_dim,
                              *model.hidden_dims[::-1], model.input_dim]))
    meter = LoadMeter()
    if args.quiet_wait > 0:
        wait_quiet(0.075, timeout=args.quiet_wait, meter=meter)
    a = meter.snapshot()
    memory = MemorySampler(os.getpid(), 0.5)
    memory.start()
    t0 = time.perf_counter()
    run = dict(rng=np.random.default_rng(args.seed), chunk=args.chunk, batch_size=args.batch)
    if args.engine == "fused":
        with FastLogWeights(model, threads=args.threads) as log_weights:
            nll = importance_sampled_nll(model, x, args.k, log_weights=log_weights, **run)
    else:
        nll = importance_sampled_nll(model, x, args.k, **run)
    seconds = time.perf_counter() - t0
    memory.stop()
    foreign = LoadMeter.foreign_cpus(a, meter.snapshot())
    print(json.dumps({"what": "importance_sampled_nll", "engine": args.engine, "model": what, "arch": arch,
                      "dtype": str(model.dtype), "k": args.k, "images": len(x),
                      "seconds": round(seconds, 2), "img_per_s": round(len(x) / seconds, 2),
                      "samples_per_s": round(len(x) * args.k / seconds),
                      "is_nll": round(float(nll.mean()), 3), "threads": args.threads,
                      "chunk": args.chunk, "batch": args.batch, "foreign_cpus": round(foreign, 3),
                      "peak_rss_mb": own_peak_rss_mb(), **memory.report()}), flush=True)


def torch_worker(args):
    """The PyTorch side: the checkpoint's weights in pytorch_reference.VAE, the same estimator."""
    import numpy as np
    import torch
    from pytorch_reference import VAE as TorchExampleVAE
    from pytorch_reference import importance_sampled_nll as torch_is_nll

    from scratchvae.machinery.checkpoint import load_model
    from scratchvae.machinery.data import load
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_model(args.checkpoint)
    if model.hidden_dims != [400] or model.latent_dim != 20 or model.likelihood != "bernoulli":
        raise SystemExit("--torch needs the PyTorch example's architecture (784-400-20-400-784, bernoulli)")
    net = TorchExampleVAE()
    with torch.no_grad():
        for layer, name in ((net.fc1, "enc.fc1"), (net.fc21, "enc.mu"), (net.fc22, "enc.logvar"),
                            (net.fc3, "dec.fc1"), (net.fc4, "dec.logits")):
            layer.weight.copy_(torch.from_numpy(model.params[f"{name}.W"].T.copy()))   # nn.Linear: (out, in)
            layer.bias.copy_(torch.from_numpy(model.params[f"{name}.b"]))
    images = load("fashion-mnist", f"test[:{args.limit}]", args.data_dir, download=False).images
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255))
    t0 = time.perf_counter()
    nll = torch_is_nll(net, x, args.k, chunk=args.chunk, batch_size=args.batch)
    seconds = time.perf_counter() - t0
    print(json.dumps({"what": "pytorch importance_sampled_nll", "k": args.k, "images": len(x),
                      "seconds": round(seconds, 2), "is_nll": round(float(nll.mean()), 3),
                      "threads": args.threads, "torch": torch.__version__,
                      "peak_rss_mb": own_peak_rss_mb()}), flush=True)


def side_by_side(args):
    """Rounds of every worker, each in a fresh process, the order rotating from round to round."""
    from scratchvae.fast.workers import blas_core, cpu_model
    common = ["--checkpoint", str(args.checkpoint), "--k", str(args.k), "--limit", str(args.limit),
              "--chunk", str(args.chunk), "--batch", str(args.batch), "--threads", str(args.threads),
              "--seed", str(args.seed), "--data-dir", str(args.data_dir), "--quiet-wait", "0"]
    print(json.dumps({"cpu": cpu_model(), "blas_core": blas_core()}), flush=True)
    workers = [("scratchvae", engine) for engine in args.engines] + [("torch", None)]
    ratios = {engine: [] for engine in args.engines}
    for r in range(args.rounds):
        seconds = {}
        for who, engine in workers[r % len(workers):] + workers[:r % len(workers)]:
            extra = ["--engine", engine] if engine else []
            done = subprocess.run([sys.executable, __file__, "--worker", who, *extra, *common],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{who} worker failed: {done.stderr.strip()[-500:]}")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            seconds[engine or who] = record["seconds"]
            print(json.dumps({"round": r + 1, "who": who, **record}), flush=True)
        for engine in args.engines:
            ratios[engine].append(seconds["torch"] / seconds[engine])
    print(json.dumps({"rounds": args.rounds, **{
        f"pytorch / scratchvae {engine} seconds": {"per round": [round(x, 3) for x in ratios[engine]],
                                                   "median": round(statistics.median(ratios[engine]), 3)}
        for engine in args.engines}}), flush=True)


if __name__ == "__main__":
    main()
