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
OUT/autoencoder2d, which the demo locks from start to end as `scratchvae train` does (checkpoints
already there are replaced only with --overwrite). Ctrl-C, SIGTERM or SIGHUP stop it in any
phase; in training it first saves a checkpoint (resume it with ``scratchvae resume
OUT/main/checkpoint.npz``). Every file is written whole or not at all, and the exit codes are
those of every command (scratchvae/machinery/entry.py). No display is needed.
"""
import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import scratchvae  # noqa: F401  (first: it sets how OpenBLAS's threads wait before NumPy loads it)
import numpy as np

from scratchvae.chapters.autoencoder import Autoencoder, vae_reconstruction_error
from scratchvae.chapters.beta_sweep import run_beta_sweep
from scratchvae.machinery.arguments import Parser, nonnegative_int, path_arg, positive_int
from scratchvae.machinery.data import DataError, add_data_arguments, iterate_batches, load
from scratchvae.machinery.entry import run, say_when_stopped
from scratchvae.machinery.evaluate import evaluate
from scratchvae.machinery.run_dir import hold_run_directories
from scratchvae.machinery.runner import CHECKPOINT_NAME, ConfigError, TrainConfig, derive_streams, train
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
    parser = Parser(
        prog="demo.py", memory_advice="try --quick, or smaller splits (--train-split, --test-split)",
        description="Train a VAE and write the lecture's figures (reconstructions, samples, the 2-D "
                    "manifold and latent space, interpolation, training curves, the variational gap, "
                    "reparameterisation vs score-function gradients, inference gaps, the plain "
                    "autoencoder beside the VAE).")
    add_data_arguments(parser)
    parser.add_argument("--out", type=path_arg, default=Path("out"), metavar="DIR",
                        help="where the figures (and OUT/main, OUT/latent2d, OUT/autoencoder2d "
                             "checkpoints) go (default: out)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the checkpoints OUT/main, OUT/latent2d and OUT/autoencoder2d of an earlier run "
                             "(without it, the demo refuses to touch them)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 2 epochs on at most 10,000 images, smaller figures")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"epochs for each model (default: about {IMAGE_BUDGET:,} training images, "
                             f"at most {MAX_EPOCHS} epochs; 2 with --quick)")
    parser.add_argument("--seed", type=nonnegative_int, default=1, help="seed of everything (default: 1)")
    parser.add_argument("--limit", type=positive_int, default=None,      # tests: N images per split, least figure work
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
    """Every way the demo ends is an exit code and one line (scratchvae/machinery/entry.py)."""
    return run(build_parser(), argv, demo)


def demo(args):
    settings = QUICK if args.quick else FULL
    runs = {name: args.out / name for name in RUNS}                 # OUT/main, OUT/latent2d, OUT/autoencoder2d
    refuse_earlier_runs(runs.values(), args)                        # before loading anything
    start = time.perf_counter()
    train_split = load(args.dataset, args.train_split, args.data_dir, args.download)
    test_split = load(args.dataset, args.test_split, args.data_dir, args.download)
    n_train = min(filter(None, (len(train_split), args.limit, settings.get("train_images"))))
    n_test = min(filter(None, (len(test_split), args.limit, settings.get("test_images"))))
    if n_test < 2:                                       # before any training: docs/reliability.md
        given = "--limit 1" if args.limit == 1 else f"{args.dataset} {test_split.split} holds one image"
        raise DataError(f"{given}: the importance-sampled -log p(x) has no standard error on one test "
                        f"image (it needs two)")
    # --quick and --limit take the first images of each split, and the runs record that
    # ("train[0:10000]"), so that `scratchvae resume` and `evaluate` find the same images
    train_split, test_split = train_split.first(n_train), test_split.first(n_test)
    train_images = train_split.images
    test_images, test_labels = test_split.images, test_split.labels
    epochs = args.epochs or settings.get("epochs") or default_epochs(n_train)

    config = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, train_split=train_split.split,
                         test_split=test_split.split, binarize=args.binarize, download=args.download,
                         hidden=(400,), latent=20, epochs=epochs, seed=args.seed, out=str(runs["main"]))
    configs = {"main": config, "latent2d": dataclasses.replace(config, latent=2, out=str(runs["latent2d"])),
               # slides 3-5: the same data, budget and seed as the 2-D VAE, no KL
               "autoencoder2d": dataclasses.replace(config, latent=2, model=Autoencoder.kind,
                                                    out=str(runs["autoencoder2d"]))}
    # the run directories are the demo's, under the lock `train` takes, from the check to the end:
    # another run cannot write into them meanwhile, and train() refuses a checkpoint found there
    with hold_run_directories(runs.values()):
        refuse_earlier_runs(runs.values(), args)
        trained = {}
        for name, c in configs.items():
            say(f"== training the {RUNS[name]} ({c.epochs} epochs) ==")
            trained[name] = train(c, train_images=train_images, test_images=test_images, overwrite=args.overwrite)
        (model, history), (model2d, _), (autoencoder, _) = trained["main"], trained["latent2d"], trained["autoencoder2d"]
        say_when_stopped(f"the trained models are in {', '.join(map(str, runs.values()))}")

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


def refuse_earlier_runs(run_dirs, args):
    """A trained model is never silently replaced: an earlier run's checkpoint needs --overwrite."""
    existing = [d / CHECKPOINT_NAME for d in run_dirs if (d / CHECKPOINT_NAME).exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"{existing[0]} already exists (an earlier run?): pass --overwrite to replace "
                          f"the demo's checkpoints in {args.out}, or choose another --out")


def say(text):
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
