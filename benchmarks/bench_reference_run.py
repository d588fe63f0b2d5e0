"""The whole 10-epoch reference run, side by side: scratchvae's command against PyTorch.

    python benchmarks/bench_reference_run.py [--rounds 3] [--engines plain fused]
                                             [--torch default flush-denormal] [--epochs 10]
                                             [--data-dir DIR]

What is measured is what a user runs, from start to end, every epoch included:

* scratchvae: the command ``scratchvae train`` (``python -m scratchvae train``) on
  Fashion-MNIST's 60,000 training images with the PyTorch example's protocol (its
  defaults: 784-400-20-400-784, ReLU, Bernoulli on grey levels, Adam 1e-3, batch 128, one z
  per image), 10 epochs, evaluating the test -ELBO on the 10,000 test images and writing a
  checkpoint after every epoch -- in a fresh process, once per engine asked for ("plain", the
  read-along step of vae.py, is the default).
* PyTorch 2.13: the same protocol written the PyTorch way (benchmarks/torch_vae.py), also
  with the test -ELBO after every epoch, in a fresh process; "default" is PyTorch as
  installed, "flush-denormal" the same after ``torch.set_flush_denormal(True)``.

Each round runs every contestant once, one after the other, in an order that rotates from
round to round; the ratios are per round (PyTorch's seconds / scratchvae's seconds, both
from the same round) and the summary gives their median over the rounds. Two times per run:
"train_s", the sum of the epochs' training loops (no evaluation, no checkpoint), and
"wall_s", the whole process from start to exit (imports, data loading, evaluation and
checkpoints included). Every epoch's throughput is printed, and "slowest_over_fastest", the
slowest epoch's images/s over the fastest's.

Needs torch==2.13.0 for the PyTorch side (``pip install -e '.[bench]'``); without it only
scratchvae is timed. Prints the CPU, the OpenBLAS kernels NumPy runs, OPENBLAS_CORETYPE as
the environment sets it (these machines may pin older kernels; the benchmarks README says
how to measure both ways) and PyTorch's CPU capability. One JSON line per run, then a
summary JSON line.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = HERE.parents[1] / "shared" / "data" / "fashion-mnist"
TRAIN_IMAGES = 60_000                                           # Fashion-MNIST's training split


# ---------------------------------------------------------------------------------------
# The two kinds of run, each in its own process
# ---------------------------------------------------------------------------------------

def run_scratchvae(engine, data_dir, epochs, seed):
    """``scratchvae train`` in a fresh process; returns its record (times from history.json)."""
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as out:
        command = [sys.executable, "-m", "scratchvae", "train", "--dataset", "fashion-mnist",
                   "--data-dir", str(data_dir), "--epochs", str(epochs), "--seed", str(seed),
                   "--engine", engine, "--out", out, "--no-download"]
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"scratchvae train failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        history = json.loads(Path(out, "history.json").read_text())
    rates = [h["img_per_s"] for h in history]                   # the training loop's images/s
    return {"who": f"scratchvae --engine {engine}", "wall_s": wall,
            "train_s": sum(TRAIN_IMAGES / r for r in rates), "img_per_s": rates,
            "test_nelbo": history[-1]["test_nelbo"]}


def run_torch(mode, data_dir, epochs, seed):
    """This script's --worker torch in a fresh process; returns its record."""
    command = [sys.executable, __file__, "--worker", mode, "--data-dir", str(data_dir),
               "--epochs", str(epochs), "--seed", str(seed)]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"PyTorch worker failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {"who": f"pytorch {mode}", "wall_s": wall, **record}


def torch_worker(mode, data_dir, epochs, seed):
    """The PyTorch side: 10 epochs of TorchTrainer, the test -ELBO after each, as scratchvae does."""
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    from torch_vae import TorchTrainer

    from scratchvae.machinery.data import load
    if mode == "flush-denormal":
        torch.set_flush_denormal(True)
    train_u8 = load("fashion-mnist", "train", data_dir=data_dir, download=False).images
    test_u8 = load("fashion-mnist", "test", data_dir=data_dir, download=False).images
    trainer = TorchTrainer(np.ascontiguousarray(train_u8), threads=2, seed=seed)
    rates, seconds, test_nelbo = [], [], None
    for _ in range(epochs):
        s, _ = trainer.epoch()
        seconds.append(s)
        rates.append(len(train_u8) / s)
        test_nelbo = trainer.test_nelbo(test_u8)
    print(json.dumps({"train_s": sum(seconds), "img_per_s": rates, "test_nelbo": test_nelbo,
                      "torch": torch.__version__,
                      "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}))


# ---------------------------------------------------------------------------------------
# Rounds and the summary
# ---------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", nargs="+", choices=("plain", "fused"), default=["plain", "fused"])
    ap.add_argument("--torch", nargs="*", choices=("default", "flush-denormal"),
                    default=["default", "flush-denormal"], help="PyTorch configurations (none: skip)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--worker", choices=("default", "flush-denormal"), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return torch_worker(args.worker, args.data_dir, args.epochs, args.seed)

    from scratchvae.fast.workers import blas_core, cpu_model
    torch_modes = args.torch if importlib.util.find_spec("torch") else []
    print(json.dumps({"cpu": cpu_model(), "blas_core": blas_core(),
                      "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
                      "torch": "missing: pip install -e '.[bench]'" if args.torch and not torch_modes else None}),
          flush=True)
    contestants = ([("scratchvae", e) for e in args.engines] + [("torch", m) for m in torch_modes])
    rounds = []
    for r in range(args.rounds):
        shift = r % len(contestants)
        results = {}
        for kind, name in contestants[shift:] + contestants[:shift]:
            run = run_scratchvae if kind == "scratchvae" else run_torch
            record = run(name, args.data_dir, args.epochs, args.seed)
            record["round"] = r + 1
            record["slowest_over_fastest"] = min(record["img_per_s"]) / max(record["img_per_s"])
            results[record["who"]] = record
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else
                                  [round(x) for x in v] if k == "img_per_s" else v)
                              for k, v in record.items()}), flush=True)
        rounds.append(results)

    summary = {"rounds": args.rounds, "epochs": args.epochs}
    for who in rounds[0]:
        for key in ("train_s", "wall_s", "slowest_over_fastest"):
            summary[f"{who}: median {key}"] = round(statistics.median(r[who][key] for r in rounds), 3)
    for engine in args.engines:
        for mode in torch_modes:
            for key in ("train_s", "wall_s"):
                ratios = [r[f"pytorch {mode}"][key] / r[f"scratchvae --engine {engine}"][key] for r in rounds]
                summary[f"pytorch {mode} / scratchvae {engine}, {key}: median ratio"] = round(statistics.median(ratios), 3)
                summary[f"pytorch {mode} / scratchvae {engine}, {key}: per round"] = [round(x, 3) for x in ratios]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
