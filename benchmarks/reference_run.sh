#!/usr/bin/env bash
# The reference run: scratchvae against the PyTorch example VAE's protocol.
#
#   784-400-20-400-784, ReLU, Bernoulli likelihood on grey-level targets (--binarize none),
#   Adam lr 1e-3, batch 128, one z sample per image, 10 epochs, full Fashion-MNIST.
#   PyTorch 2.13 CPU with this protocol: test negative ELBO ~244 nats; importance-sampled
#   -log p(x) ~241 (k = 1000, first 1000 test images).
#
# Measured (scratchvae 0.1.0, NumPy 2.4, 2 CPU cores), test negative ELBO on all 10,000 test
# images / IWAE -log p(x), k = 1000, first 1000 test images, in nats (docs/results.md):
#   scratchvae (fused step)  seed 1: 244.43 / 241.00   seed 2: 243.99 / 240.90   seed 3: 243.84 / 240.84
#   --engine plain           seed 1: 244.48 / 240.98   seed 2: 243.96 / 240.90   seed 3: 243.78 / 240.85
#   PyTorch example (*)      seed 1: 243.90 / 240.91   seed 2: 244.71 / 241.08   seed 3: 244.69 / 241.23
#   (*) benchmarks/pytorch_reference.py: pytorch/examples vae/main.py's model and loss (summed over
#       the batch) with torch 2.13 CPU,
#       evaluated with the same IWAE estimator. Seed-to-seed spread is about 0.8 nats.
#
# Usage:  benchmarks/reference_run.sh [DATA_DIR] [RUN_DIR]
#   DATA_DIR  directory with the Fashion-MNIST IDX files (default: ../shared/data/fashion-mnist)
#   RUN_DIR   where checkpoint.npz, history.json/.csv and evaluation.json go
#             (default: runs/reference-fashion-mnist; an existing run there is replaced)
# Takes a few minutes on an idle 2-core machine (much longer when other jobs share the cores).
# Needs `pip install -e .` (the scratchvae command).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
data_dir="${1:-$here/../../shared/data/fashion-mnist}"
run_dir="${2:-runs/reference-fashion-mnist}"

scratchvae train --dataset fashion-mnist --data-dir "$data_dir" \
    --train-split train --test-split test \
    --hidden 400 --latent 20 --activation relu --likelihood bernoulli --binarize none \
    --batch-size 128 --lr 1e-3 --epochs 10 --seed 1 \
    --out "$run_dir" --overwrite

scratchvae evaluate "$run_dir/checkpoint.npz" --dataset fashion-mnist --data-dir "$data_dir" \
    --test-split test --is-k 1000 --limit 1000 --json | tee "$run_dir/evaluation.json"
