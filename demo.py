#!/usr/bin/env python3
"""python demo.py -- train a VAE on MNIST and draw the lecture's pictures (README.md says how long).

    python demo.py                                   # MNIST, downloaded on first use
    python demo.py --dataset fashion-mnist           # clothes instead of digits
    python demo.py --data-dir ../shared/data/mnist --train-split 'test[:9000]' --test-split 'test[9000:]'
    python demo.py --quick                           # a smoke test: 2 epochs, smaller figures

What it does, each step one call into the package:
  1. load the train and test splits                       (scratchvae/machinery/data.py)
  2. train the main VAE, 784-400-20 (ReLU, Bernoulli): train.py's loop, run by
     scratchvae/machinery/runner.py, on VAE.loss_and_grads (vae.py) and Adam (optim.py)
  3. train a VAE with a 2-D latent space, 784-400-2, whose p(x) can be integrated exactly,
     and beside it the plain autoencoder the lecture starts from (slides 3-5), 784-400-2 with
     no KL, on the same data with the same budget and seed   (scratchvae/chapters/autoencoder.py)
  4. evaluate: test negative ELBO and importance-sampled -log p(x)   (scratchvae/machinery/evaluate.py)
  5. draw the figures into --out                (scratchvae/pictures/figures.py, plots.py)
  6. what the KL term does: the 2-D VAE once per KL weight beta, figure 11   (scratchvae/chapters/beta_sweep.py)
  7. write OUT/explorer.html: the 2-D model in one page to open in a browser   (scratchvae/pictures/explore.py)
Progress goes to stderr, the summary to stdout. Checkpoints go to OUT/main, OUT/latent2d and
OUT/autoencoder2d (checkpoints already there are replaced only with --overwrite); Ctrl-C stops
training cleanly after saving one (resume it with ``scratchvae resume
OUT/main/checkpoint.npz``). No display is needed.
"""
import argparse
import dataclasses
import math
import signal
import sys
import time
from pathlib import Path

import scratchvae  # noqa: F401  (first: it sets how OpenBLAS's threads wait before NumPy loads it)
import numpy as np

from scratchvae.chapters.autoencoder import Autoencoder, vae_reconstruction_error
from scratchvae.chapters.beta_sweep import run_beta_sweep
from scratchvae.machinery.data import DataError, add_data_arguments, iterate_batches, load
from scratchvae.machinery.evaluate import evaluate
from scratchvae.machinery.runner import (ConfigError, TrainConfig, TrainingDiverged, TrainingInterrupted,
                                         derive_streams, train)
from scratchvae.pictures.explore import FASHION_LABELS, MAX_POINTS, write_explorer
from scratchvae.pictures.figures import FIGURES, make_figures

IMAGE_BUDGET = 600_000        # default epochs: about this many training images (10 epochs of 60,000)
MAX_EPOCHS = 40               # ... but no more passes than this over a small training split
QUICK = dict(epochs=2, train_images=10_000, test_images=1_000, is_k=20, is_images=1_000,
             beta_sweep=dict(betas=(0.0, 1.0), epochs=1),
             figure_sizes=dict(n_latent=1000, gap_points=101, grad_repeats=100, grad_reference=2000,
                              infer_steps=100))
FULL = dict(is_k=100, is_images=1_000, figure_sizes={}, beta_sweep={})    # beta_sweep: its defaults
TINY_FIGURES = dict(n_latent=100, n_gap=2, gap_points=41, grad_repeats=20, grad_reference=200, infer_steps=20)   # --limit (tests)


RUNS = {"main": "main VAE", "latent2d": "VAE with a 2-D latent space",      # OUT/<name>: what is trained
        "autoencoder2d": "plain autoencoder with a 2-D code (slides 3-5)"}


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a VAE and write the lecture's figures (reconstructions, samples, the 2-D "
                    "manifold and latent space, interpolation, training curves, the variational gap, "
                    "reparameterisation vs score-function gradients, inference gaps, the plain "
                    "autoencoder beside the VAE).")
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                        help="where the figures (and OUT/main, OUT/latent2d, OUT/autoencoder2d "
                             "checkpoints) go (default: out)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the checkpoints OUT/main, OUT/latent2d and OUT/autoencoder2d of an earlier run "
                             "(without it, the demo refuses to touch them)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 2 epochs on at most 10,000 images, smaller figures")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs for each model (default: about {IMAGE_BUDGET:,} training images, "
                             f"at most {MAX_EPOCHS} epochs; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="seed of everything (default: 1)")
    parser.add_argument("--limit", type=int, default=None,      # tests: N images per split, least figure work
                        help=argparse.SUPPRESS)
    return parser


def default_epochs(n_train):
    """Enough passes to see about IMAGE_BUDGET images: 10 on MNIST's 60,000, more on less data."""
    return max(1, min(MAX_EPOCHS, math.ceil(IMAGE_BUDGET / n_train)))


def as_model_input(images_u8, binarize, seed):
    """uint8 images (N, D) -> float32 in [0, 1] as the models were trained on (binarised likewise)."""
    rng = np.random.default_rng(seed)
    return next(iterate_batches(images_u8, len(images_u8), rng, binarize=binarize, shuffle=False))


def main(argv=None):
    args = build_parser().parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.epochs is not None and args.epochs < 1:
        return fail(f"--epochs must be a positive integer, got {args.epochs}")
    if args.limit is not None and args.limit < 1:
        return fail(f"--limit must be a positive integer, got {args.limit}")
    existing = [args.out / name / "checkpoint.npz" for name in RUNS
                if (args.out / name / "checkpoint.npz").exists()]
    if existing and not args.overwrite:                  # a trained model is never silently replaced
        return fail(f"{existing[0]} already exists (an earlier run?): pass --overwrite to replace "
                    f"the demo's checkpoints in {args.out}, or choose another --out")
    start = time.perf_counter()
    try:
        train_split = load(args.dataset, args.train_split, args.data_dir, args.download)
        test_split = load(args.dataset, args.test_split, args.data_dir, args.download)
    except DataError as e:
        return fail(str(e))
    n_train = min(filter(None, (len(train_split), args.limit, settings.get("train_images"))))
    n_test = min(filter(None, (len(test_split), args.limit, settings.get("test_images"))))
    if n_test < 2:                                       # before any training: docs/reliability.md
        given = "--limit 1" if args.limit == 1 else f"{args.dataset} {test_split.split} holds one image"
        return fail(f"{given}: the importance-sampled -log p(x) has no standard error on one test "
                    f"image (it needs two)")
    # --quick and --limit take the first images of each split, and the runs record that
    # ("train[0:10000]"), so that `scratchvae resume` and `evaluate` find the same images
    train_split, test_split = train_split.first(n_train), test_split.first(n_test)
    train_images = train_split.images
    test_images, test_labels = test_split.images, test_split.labels
    epochs = args.epochs or settings.get("epochs") or default_epochs(n_train)

    try:
        config = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, train_split=train_split.split,
                             test_split=test_split.split, binarize=args.binarize, download=args.download,
                             hidden=(400,), latent=20, epochs=epochs, seed=args.seed,
                             out=str(args.out / "main"))
        config2d = dataclasses.replace(config, latent=2, out=str(args.out / "latent2d"))
        # slides 3-5: the same data, budget and seed as the 2-D VAE, no KL
        config_ae = dataclasses.replace(config2d, model=Autoencoder.kind, out=str(args.out / "autoencoder2d"))
        runs = {}
        for name, c in (("main", config), ("latent2d", config2d), ("autoencoder2d", config_ae)):
            say(f"== training the {RUNS[name]} ({c.epochs} epochs) ==")
            runs[name] = train(c, train_images=train_images, test_images=test_images, overwrite=True)
    except (ConfigError, ValueError) as e:
        return fail(str(e))
    except TrainingDiverged as e:
        return fail(str(e), code=1)
    except (TrainingInterrupted, KeyboardInterrupt) as stop:     # Ctrl-C, SIGTERM or SIGHUP
        signum = getattr(stop, "signum", signal.SIGINT)
        said = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        say(f"demo stopped by {said} (training state saved where the line above says)")
        return 128 + signum
    (model, history), (model2d, _), (autoencoder, _) = runs["main"], runs["latent2d"], runs["autoencoder2d"]

    try:
        say(f"== evaluating: importance-sampled -log p(x) with k = {settings['is_k']} ==")
        seed = derive_streams(args.seed)["eval"]
        report = evaluate(model, test_images, is_k=0, seed=seed, binarize=args.binarize)
        subset = evaluate(model, test_images[:settings["is_images"]], is_k=settings["is_k"], is_limit=None,
                          seed=seed, binarize=args.binarize)       # both bounds on the same images
        say(f"== drawing the figures into {args.out} ==")
        x_test = as_model_input(test_images, args.binarize, args.seed)
        paths = make_figures(args.out, model=model, model2d=model2d, autoencoder=autoencoder, images=x_test,
                             labels=test_labels, history=history, seed=args.seed, dataset=args.dataset,
                             sizes=TINY_FIGURES if args.limit else settings["figure_sizes"], log=say,
                             total=len(FIGURES) + 1)                    # + figure 11, the beta sweep
        say(f"== figure {len(FIGURES) + 1}/{len(FIGURES) + 1}, what the KL term does: the 2-D VAE trained once "
            f"per KL weight beta (slides 12-13) ==")
        sweep = QUICK["beta_sweep"] if args.limit else settings["beta_sweep"]
        paths["beta_sweep"] = args.out / "11_beta_sweep.png"
        run_beta_sweep(train_images, test_images[:1000], test_labels[:1000], seed=args.seed, log=say,
                       figure_path=paths["beta_sweep"], binarize=args.binarize, **sweep)   # on 1,000 test digits, as figure 10
        paths["explorer"] = args.out / "explorer.html"
        write_explorer(paths["explorer"], model2d, images=x_test[:MAX_POINTS], labels=test_labels[:MAX_POINTS],
                       title=f"scratchvae demo, {args.dataset}, 2-D latent space",
                       source=f"{args.dataset} {test_split.split}",
                       label_names=FASHION_LABELS if args.dataset == "fashion-mnist" else None)
    except TrainingDiverged as e:                                     # a beta-sweep run
        return fail(str(e), code=1)
    except KeyboardInterrupt:
        say(f"demo stopped by Ctrl-C; the trained models are in {', '.join(str(args.out / n) for n in RUNS)}")
        return 130

    print(f"\nscratchvae demo: {args.dataset}, trained on {n_train:,} images ({train_split.split}), "
          f"tested on {n_test:,} ({test_split.split}), {epochs} epochs per model, seed {args.seed}")
    print(f"test negative ELBO  {report['test_nelbo']:8.2f} nats per image (rec {report['test_rec']:.2f} "
          f"+ KL {report['test_kl']:.2f}; {report['n']:,} test images)")
    print(f"test -log p(x)      {subset['is_nll']:8.2f} nats per image (importance sampled, k = "
          f"{subset['is_k']}: an upper bound in expectation, one estimate can fall below; +/- "
          f"{subset['is_nll_sem']:.2f} s.e. over the first {subset['is_n']:,} test images, whose "
          f"negative ELBO is {subset['test_nelbo']:.2f})")
    ae_rec = float(autoencoder.reconstruction_error(x_test).mean())          # z = encoder(x)
    vae_rec = float(vae_reconstruction_error(model2d, x_test).mean())        # z = mu, no sampling noise
    print(f"test reconstruction -log p(x|z) at the code, 2-D latent: autoencoder {ae_rec:.2f} nats, "
          f"VAE {vae_rec:.2f} (at z = mu; the VAE also pays its KL; figure 10)")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    print(f"figures in {args.out}/:")
    for path in paths.values():
        print(f"  {path}")
    return 0


def say(text):
    print(text, file=sys.stderr, flush=True)


def fail(message, code=2):
    print(f"demo.py: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
