"""The ``scratchvae`` command (also ``python -m scratchvae``): train, resume, evaluate, sample, explore.

    scratchvae train --dataset fashion-mnist --data-dir DIR --epochs 10 --out RUN_DIR
    scratchvae train --model cvae --out CVAE_DIR       (or --model autoencoder)
    scratchvae resume RUN_DIR/checkpoint.npz --epochs 20
    scratchvae evaluate RUN_DIR/checkpoint.npz --is-k 1000 --limit 1000 --json
    scratchvae sample RUN_DIR/checkpoint.npz --n 64 --out samples.png
    scratchvae sample CVAE_DIR/checkpoint.npz --digit 7 --out sevens.png
    scratchvae explore RUN_DIR/checkpoint.npz --out explorer.html

Every kind of model of models.py (train --model: the VAE of vae.py, the plain autoencoder the
lecture starts from and the conditional VAE, chapters/) trains here, and every command reads
each kind's checkpoint, asking the model what it can do (explore shows VAEs only, and says
so for the others).

Each flag maps onto a ``TrainConfig`` field (config.py) or an argument of evaluate.py.
Progress goes to stderr; results go to stdout (``evaluate --json``: one JSON object, alone).

Exit codes: 0 done; 1 training diverged or an output could not be written; 2 a bad
argument, data set or checkpoint (one line on stderr); 128 + the signal's number when
stopped by one: 130 Ctrl-C, 143 SIGTERM (kill, timeout), 129 SIGHUP (terminal closed) --
training saves a checkpoint first.
"""
import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

from .. import __version__
from .checkpoint import CheckpointError, load_checkpoint, load_model
from .data import DataError, _named_for_other, add_data_arguments, iterate_batches, load
from .evaluate import evaluate, evaluate_losses, format_report
from ..pictures.explore import FASHION_LABELS, MAX_POINTS, check_explorable, write_explorer
from ..fast.fused_eval import unsupported_reason as fast_eval_refuses
from ..layers import ACTIVATIONS
from .files import write_bytes_atomic
from .models import kinds, model_class
from .runner import (CHECKPOINT_NAME, ENGINES, OBJECTIVES, ConfigError, TrainConfig, TrainingDiverged,
                    TrainingInterrupted, derive_streams, fingerprint, train)
from ..vae import LIKELIHOODS
from ..workbook.cli import add_workbook_commands

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
MEMORY_ADVICE = {                    # after a MemoryError: the flags of that command that need less
    "train": "use a smaller --batch-size, --eval-batch or --hidden",
    "resume": "use a smaller --eval-batch",
    "evaluate": "use a smaller --batch-size or --is-k",
    "sample": "ask for fewer images (--n) or a smaller --scale",
    "explore": "put fewer digits on the map (--points)",
}
MAX_PNG_PIXELS = 50_000_000          # `sample`: a larger grid is surely a typo (and gigabytes of memory)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad value is ONE line on stderr (no usage block), exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Append '(default: ...)' to a flag's help unless it already says or has no real default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or any(action.default is v for v in (None, True, False, argparse.SUPPRESS))):
            return text
        return f"{text} (default: %(default)s)"


# ---------------------------------------------------------------------------------------
# Argument types: each rejects a bad value with a message that says what is expected
# ---------------------------------------------------------------------------------------

def _number(text, kind, ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text):
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return _number(text, float, lambda v: v > 0, "a number > 0")


def nonnegative_float(text):
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def image_count(text):
    """--limit: a positive integer, or 'all'."""
    return None if text.strip().lower() == "all" else _number(text, int, lambda v: v >= 1,
                                                               "a positive integer or 'all'")


# ---------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------

def build_parser():
    parser = _Parser(prog="scratchvae", formatter_class=_HelpFormatter, description="A Variational Autoencoder from scratch in "
                     "NumPy: train it, resume it, evaluate it, sample from it.",
                     epilog="Run 'scratchvae COMMAND --help' for the flags of each command.")
    parser.add_argument("--version", action="version", version=f"scratchvae {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = TrainConfig()                                   # defaults shown in --help come from here

    p = commands.add_parser("train", help="train a VAE (or --model autoencoder, cvae) and write "
                            "RUN_DIR/checkpoint.npz",
                            description="Train a VAE (or, with --model, the plain autoencoder or the "
                            "conditional VAE); write RUN_DIR/checkpoint.npz and "
                            "RUN_DIR/history.{json,csv} after every epoch. Ctrl-C (or SIGTERM, SIGHUP) saves and "
                            "stops; one training at a time per RUN_DIR.",
                            formatter_class=_HelpFormatter)
    add_data_arguments(p)
    model = p.add_argument_group("model")
    model.add_argument("--model", choices=list(kinds()), default=d.model,
                       help="; ".join(f"{kind}: {model_class(kind).summary}" for kind in kinds()))
    model.add_argument("--hidden", type=positive_int, nargs="+", default=list(d.hidden), metavar="H",
                       help="hidden layer sizes of the encoder (the decoder mirrors them), e.g. "
                            "--hidden 400 or --hidden 512 256")
    model.add_argument("--latent", type=positive_int, default=d.latent, help="K, the dimension of z")
    model.add_argument("--activation", choices=list(ACTIVATIONS), default=d.activation,
                       help="hidden-layer nonlinearity")
    model.add_argument("--likelihood", choices=list(LIKELIHOODS), default=d.likelihood,
                       help="the decoder's p(x|z)")
    opt = p.add_argument_group("training")
    opt.add_argument("--samples", dest="n_samples", type=positive_int, default=d.n_samples,
                     help="L, samples of z per image in each step")
    opt.add_argument("--beta", type=nonnegative_float, default=d.beta, help="weight of the KL term")
    opt.add_argument("--warmup-epochs", type=nonnegative_float, default=d.warmup_epochs,
                     help="linear KL warm-up: beta ramps from 0 over this many epochs (0 = none)")
    opt.add_argument("--objective", choices=list(OBJECTIVES), default=d.objective,
                     help="elbo: the lecture's loss (vae.py); iwae: the importance-weighted bound "
                          "L_k with --iwae-k samples per image (chapters/iwae.py)")
    opt.add_argument("--iwae-k", type=positive_int, default=d.iwae_k,
                     help="k, importance samples per image for --objective iwae")
    opt.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="images per step")
    opt.add_argument("--lr", type=positive_float, default=d.lr, help="Adam's learning rate")
    opt.add_argument("--epochs", type=positive_int, default=d.epochs,
                     help="passes over the training split")
    opt.add_argument("--seed", type=nonnegative_int, default=d.seed,
                     help="master seed of initialisation, noise, shuffling and evaluation")
    opt.add_argument("--eval-batch", type=positive_int, default=d.eval_batch,
                     help="images per forward pass when evaluating")
    _add_speed_arguments(p, d)
    output = p.add_argument_group("output")
    output.add_argument("--out", type=Path, default=Path("run"), metavar="RUN_DIR",
                        help="run directory for checkpoint.npz and history.json/.csv")
    output.add_argument("--overwrite", action="store_true",
                        help="replace an existing RUN_DIR/checkpoint.npz instead of refusing")
    p.set_defaults(run=_train, command_parser=p)

    p = commands.add_parser("resume", help="continue training from a checkpoint",
                            formatter_class=_HelpFormatter,
                            description="Continue a run exactly where its checkpoint stopped (end "
                            "of an epoch, or the step where Ctrl-C stopped it).")
    p.add_argument("checkpoint", type=Path, help="RUN_DIR/checkpoint.npz")
    p.add_argument("--epochs", type=positive_int,
                   help="total number of epochs to reach (default: the run's own --epochs)")
    p.add_argument("--lr", type=positive_float,
                   help="change the learning rate (the continuation then differs from the "
                        "uninterrupted run)")
    p.add_argument("--data-dir", type=Path, help="where the data is now (default: as in training)")
    p.add_argument("--no-download", dest="download", action="store_false", default=None,
                   help="never download the data")
    p.add_argument("--out", type=Path, metavar="RUN_DIR",
                   help="where to write (default: the checkpoint's directory)")
    p.add_argument("--eval-batch", type=positive_int, help="images per forward pass when evaluating")
    _add_speed_arguments(p, None)
    p.set_defaults(run=_resume, command_parser=p)

    p = commands.add_parser("evaluate", help="test negative ELBO and importance-sampled -log p(x)",
                            description="Evaluate a checkpoint: the negative ELBO on the whole "
                            "test split, and -log p(x) on its first --limit images by importance "
                            "sampling (the IWAE bound with k = --is-k samples; the literature "
                            "uses k = 5000). A conditional VAE is given the test labels: both are "
                            "bounds on -log p(x|y). An autoencoder has neither (no q(z|x), no prior): "
                            "its test reconstruction -log p(x|z) is reported. The data flags default "
                            "to the run's own.",
                            formatter_class=_HelpFormatter)
    p.add_argument("checkpoint", type=Path, help="RUN_DIR/checkpoint.npz")
    add_data_arguments(p, train_split=False)
    p.set_defaults(dataset=None, test_split=None, binarize=None, download=None)
    _say_defaults_come_from_the_run(p, ("dataset", "data_dir", "test_split", "binarize"))
    p.add_argument("--is-k", type=nonnegative_int, default=1000,
                   help="importance samples per image (0 skips the estimate)")
    p.add_argument("--limit", type=image_count, default=1000, metavar="N",
                   help="estimate -log p(x) on the first N test images ('all' for every one)")
    p.add_argument("--seed", type=nonnegative_int, default=None,
                   help="seed of the evaluation noise (default: the run's, so the negative "
                        "ELBO matches the training log)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per forward pass (default: the run's --eval-batch, so the negative "
                        "ELBO matches the training log to the last digit)")
    p.add_argument("--engine", choices=("plain", "fused"), default="plain",
                   help="plain (default): the importance weights from VAE.log_weights in vae.py; "
                        "fused: fast/fused_eval.py on two cores, the same numbers up to float32 rounding "
                        "(tested in tests/fast/test_fused_eval.py); one hidden layer, relu, bernoulli")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=_evaluate, command_parser=p)

    p = commands.add_parser("sample", help="write a PNG grid of images decoded from z ~ N(0, I)",
                            description="Generate: draw z ~ N(0, I), decode, and write the decoder "
                            "means as a PNG grid (slide 6: digits from Gaussian noise). A conditional "
                            "VAE decodes with a label: --digit 7 draws sevens; without --digit, one row "
                            "per class y = 0..9, each column one z decoded with every label.",
                            formatter_class=_HelpFormatter)
    p.add_argument("checkpoint", type=Path, help="RUN_DIR/checkpoint.npz")
    p.add_argument("--digit", type=nonnegative_int, default=None,
                   help="a conditional VAE's checkpoint (train --model cvae) only: draw this class, "
                        "e.g. --digit 7 for sevens (default: one row per class, the columns sharing z, "
                        "ceil(n / 10) columns)")
    p.add_argument("--n", type=positive_int, default=64,
                   help="number of images (a conditional VAE without --digit: one row per class, "
                        "ceil(n / 10) or --cols images each)")
    p.add_argument("--cols", type=positive_int, default=None,
                   help="images per row (default: ceil(sqrt(n)); see --n for a conditional VAE)")
    p.add_argument("--scale", type=positive_int, default=2, help="PNG pixels per image pixel")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of z")
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="the PNG file to write")
    p.set_defaults(run=_sample, command_parser=p)

    p = commands.add_parser("explore", help="write one HTML page to explore the latent space in a browser",
                            description="Write one self-contained HTML file (the weights inside, "
                            "no network, no server: open it from disk): the latent map with encoded "
                            "test digits, the decoder's image at the pointer, a canvas to draw a "
                            "digit on with q(z|x), its reconstruction and its negative ELBO, and a "
                            "slider per latent dimension. The data flags default to the run's own; "
                            "when the run's data cannot be found, the map has no test digits.",
                            formatter_class=_HelpFormatter)
    p.add_argument("checkpoint", type=Path, help="RUN_DIR/checkpoint.npz")
    p.add_argument("--out", type=Path, default=Path("explorer.html"), help="the HTML file to write")
    p.add_argument("--points", type=nonnegative_int, default=MAX_POINTS,
                   help="encoded test digits on the map, the first of the test split (0: none)")
    add_data_arguments(p, train_split=False)
    p.set_defaults(dataset=None, test_split=None, binarize=None, download=None)
    _say_defaults_come_from_the_run(p, ("dataset", "data_dir", "test_split", "binarize"))
    p.set_defaults(run=_explore, command_parser=p)

    add_workbook_commands(commands)      # scratchvae workbook start|check|train: workbook/cli.py
    return parser


def _say_defaults_come_from_the_run(parser, dests):
    for action in parser._actions:                       # argparse has no public API for this
        if action.dest in dests:
            text = (action.help or "").split(" (default")[0].split("; default")[0]
            action.help = text + " (default: as in training)"


# ---------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------

def _train(args, parser):
    try:
        config = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, train_split=args.train_split,
                             test_split=args.test_split, binarize=args.binarize, download=args.download,
                             hidden=args.hidden, latent=args.latent, activation=args.activation,
                             model=args.model, likelihood=args.likelihood, n_samples=args.n_samples, beta=args.beta,
                             warmup_epochs=args.warmup_epochs, objective=args.objective,
                             iwae_k=args.iwae_k, batch_size=args.batch_size, lr=args.lr,
                             epochs=args.epochs, seed=args.seed, out=args.out, eval_batch=args.eval_batch,
                             engine=args.engine, threads=args.threads)
    except ConfigError as e:
        parser.error(str(e))
    return _run_training("train", config, None, args.overwrite)


def _add_speed_arguments(parser, defaults):
    """--engine and --threads; defaults None (resume) keep what the checkpoint says."""
    speed = parser.add_argument_group("speed (what is computed stays the same)")
    speed.add_argument("--engine", choices=ENGINES, default=defaults and defaults.engine,
                       help="plain (default): the read-along step, VAE.loss_and_grads in vae.py; "
                            "fused: fast/fused_step.py's step for two cores, which computes the same numbers "
                            "(tested in tests/fast/test_fused_step.py; read about it in docs/derivations.md, "
                            "section 11); one hidden layer, relu, bernoulli, one sample only"
                            + ("" if defaults else " (default: as in training)"))
    speed.add_argument("--threads", type=int, choices=(1, 2), default=defaults and defaults.threads,
                       help="CPU cores the fused step uses" + ("" if defaults else " (default: as in training)"))


def _resume(args, parser):
    checkpoint = load_checkpoint(args.checkpoint)
    saved = TrainConfig.from_dict(checkpoint["config"])
    changes = {"out": args.out or args.checkpoint.parent}
    for field in ("epochs", "lr", "data_dir", "download", "eval_batch", "engine", "threads"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    if args.data_dir is not None and _named_for_other(Path(args.data_dir), saved.dataset):
        # said here, not by data.load, whose advice would be a --dataset that resume does not take
        raise DataError(f"data directory {args.data_dir} is named after the dataset "
                        f"{Path(args.data_dir).name!r}, but this run trained on {saved.dataset!r}: "
                        f"point --data-dir at the {saved.dataset} files")
    return _run_training("resume", dataclasses.replace(saved, **changes), args.checkpoint, False)


def _run_training(command, config, resume, overwrite):
    try:
        model, history = train(config, resume=resume, overwrite=overwrite)
    except TrainingDiverged as e:
        print(f"scratchvae {command}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except TrainingInterrupted as e:
        return 128 + int(e.signum)                       # train() has said where it saved
    if history:
        last = history[-1]
        where = f"; checkpoint {Path(config.out) / CHECKPOINT_NAME}" if config.out else ""
        if "test_nelbo" in last:
            print(f"epoch {last['epoch']}: test negative ELBO {last['test_nelbo']:.3f} nats "
                  f"(rec {last['test_rec']:.3f} + KL {last['test_kl']:.3f}){where}")
        else:                                            # the autoencoder: no KL, no ELBO
            print(f"epoch {last['epoch']}: test reconstruction -log p(x|z) {last['test_rec']:.3f} nats{where}")
    return 0


def _evaluate(args, parser):
    checkpoint = load_checkpoint(args.checkpoint)
    run = TrainConfig.from_dict(checkpoint["config"])
    model = load_model(checkpoint)
    dataset = args.dataset or run.dataset
    split = args.test_split or run.test_split
    binarize = args.binarize or run.binarize
    download = run.download if args.download is None else args.download
    data_dir = args.data_dir if args.data_dir is not None else run.data_dir
    test = load(dataset, split, data_dir, download)
    images, labels = test.images, test.labels if model.conditional else None   # a conditional model is given y
    if images.shape[1] != model.input_dim:
        raise DataError(f"{dataset} images have {images.shape[1]} pixels, the model expects "
                        f"{model.input_dim}")
    n_is = len(images) if args.limit is None else min(args.limit, len(images))
    if model.variational and args.is_k and n_is < 2:                   # reliability.md: bad input
        given = f"--limit {args.limit}" if n_is == args.limit else f"{dataset} {split} holds one image"
        parser.error(f"{given}: the importance-sampled estimate on one image has no standard error "
                     f"(it needs two): evaluate two or more images, or skip the estimate with --is-k 0")
    run_data = checkpoint["progress"].get("data", {}).get("test")          # None: not recorded
    now = fingerprint(images, labels)
    same_data = None if run_data is None else now == run_data
    if same_data is False:
        print(f"scratchvae evaluate: note: these are not the images the run was tested on "
              f"({dataset} {split}: {len(images):,} images, CRC-32 {now['crc32']}; the run's: "
              f"{run_data['images']:,} images, CRC-32 {run_data['crc32']}), so the numbers are not "
              f"comparable with its training log", file=sys.stderr)
    seed = run.seed if args.seed is None else args.seed
    batch_size = run.eval_batch if args.batch_size is None else args.batch_size
    if args.engine == "fused" and fast_eval_refuses(model):
        parser.error(f"--engine fused cannot evaluate this model: {fast_eval_refuses(model)}; "
                     f"use --engine plain")
    if not model.variational:
        if args.is_k:
            print(f"scratchvae evaluate: note: {model.article} has no ELBO and no importance-sampled "
                  "-log p(x) (no q(z|x), and no prior p(z) it was trained with): its test "
                  "reconstruction -log p(x|z) is the number", file=sys.stderr)
        rec = evaluate_losses(model, images, batch_size=batch_size, seed=derive_streams(seed)["eval"],
                              binarize=binarize)
        report = {"test_rec": rec["rec"], "n": rec["n"], "is_nll": None, "binarize": binarize}
    else:
        report = evaluate(model, images, is_k=args.is_k, is_limit=args.limit, seed=derive_streams(seed)["eval"],
                          binarize=binarize, batch_size=batch_size, labels=labels, engine=args.engine,
                          progress=_progress_line("-log p(x|y)" if labels is not None else "-log p(x)"))
    report.update(model=model.kind, dataset=dataset, test_split=split, seed=seed, checkpoint=str(args.checkpoint),
                  epochs_trained=len(checkpoint["history"]), same_data_as_training=same_data)
    if args.json:                                        # strict JSON: a non-finite number is null
        print(json.dumps({k: v if not isinstance(v, float) or math.isfinite(v) else None
                          for k, v in report.items()}, allow_nan=False))
    else:
        given = ", given the test labels" if model.conditional else ""
        print(f"{args.checkpoint} ({model.article}, {report['epochs_trained']} epochs) on {dataset} "
              f"{split}, binarize={binarize}{given}:")
        print(format_report(report) if model.variational else
              f"test reconstruction -log p(x|z)  {report['test_rec']:10.3f} nats  (at z = encoder(x); "
              f"{report['n']:,} images)")
    return 0


def _sample(args, parser):
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must name a .png file, got {str(args.out)!r}")
    checkpoint = load_checkpoint(args.checkpoint)
    model = load_model(checkpoint)
    if args.digit is not None and not model.conditional:
        parser.error(f"--digit needs a conditional VAE (train --model cvae); {args.checkpoint} holds "
                     f"{model.article}, which is not given a label")
    if args.digit is not None and args.digit >= model.n_classes:
        parser.error(f"--digit must be a class 0..{model.n_classes - 1} of this model, got {args.digit}")
    side = math.isqrt(model.input_dim)
    if side * side != model.input_dim:
        raise CheckpointError(f"{args.checkpoint}: the model's {model.input_dim} outputs are not a "
                              f"square image")
    every_class = model.conditional and args.digit is None   # one row per class, the columns sharing z
    if every_class:
        cols = args.cols or math.ceil(args.n / model.n_classes)
        n, rows = cols * model.n_classes, model.n_classes
    else:
        n, cols = args.n, args.cols or math.ceil(math.sqrt(args.n))
        rows = math.ceil(n / cols)
    pixels = (rows * (side + 2) + 2) * (cols * (side + 2) + 2) * args.scale ** 2
    if pixels > MAX_PNG_PIXELS:
        parser.error(f"a grid of {n} images, {cols} per row, at --scale {args.scale} would be "
                     f"{pixels / 1e6:,.0f} megapixels (at most {MAX_PNG_PIXELS / 1e6:.0f}): ask for "
                     f"fewer images or a smaller --scale")
    rng = np.random.default_rng(args.seed)
    if every_class:                                          # z_j ~ N(0, I), decoded with y = 0, 1, ...
        z = rng.standard_normal((cols, model.latent_dim), dtype=model.dtype)
        images = np.concatenate([model.decode_mean(z, np.full(cols, y)) for y in range(model.n_classes)])
        what = (f"{model.n_classes} rows, one per class y = 0..{model.n_classes - 1}, each of the "
                f"{cols} columns one z ~ N(0, I)")
    elif model.conditional:
        images = model.sample(n, args.digit, rng)            # "draw me a 7": z ~ N(0, I), label 7
        what = f"{n} images of class {args.digit} decoded from z ~ N(0, I)"
    else:
        images = model.sample(n, rng)                        # (n, D) decoder means
        what = f"{n} images decoded from z ~ N(0, I)"
    write_grid_png(np.clip(images, 0, 1).reshape(-1, side, side), args.out, cols=cols,
                   scale=args.scale)
    print(f"wrote {args.out}: {what} (seed {args.seed})")
    return 0


def _explore(args, parser):
    if args.out.suffix.lower() not in (".html", ".htm"):
        parser.error(f"--out must name an .html file, got {str(args.out)!r}")
    checkpoint = load_checkpoint(args.checkpoint)
    run = TrainConfig.from_dict(checkpoint["config"])
    model = load_model(checkpoint)
    try:
        check_explorable(model)
    except ValueError as e:
        raise CheckpointError(f"{args.checkpoint}: {e}") from None
    dataset, split = args.dataset or run.dataset, args.test_split or run.test_split
    images = labels = None
    if args.points:
        asked = any(v is not None for v in (args.dataset, args.data_dir, args.test_split))
        try:
            test = load(dataset, split, args.data_dir if args.data_dir is not None else run.data_dir,
                        run.download if args.download is None else args.download)
        except DataError as e:
            if asked:                                    # the data the user named: an error
                raise
            print(f"scratchvae explore: no test digits for the map ({e}); writing the page "
                  f"without them (--data-dir adds them)", file=sys.stderr)
        else:
            if test.images.shape[1] != model.input_dim:
                raise DataError(f"{dataset} images have {test.images.shape[1]} pixels, the model "
                                f"expects {model.input_dim}")
            n = min(args.points, len(test))
            binarize = args.binarize or run.binarize
            images = next(iterate_batches(test.images[:n], n, np.random.default_rng(run.seed),
                                          binarize=binarize, shuffle=False))
            labels = test.labels[:n]
    source = f"{dataset} {split}" if images is not None else ""
    try:
        size = write_explorer(args.out, model, images=images, labels=labels, title=str(args.checkpoint),
                              source=source, label_names=FASHION_LABELS if dataset == "fashion-mnist" else None)
    except OSError as e:
        raise ConfigError(f"cannot write {args.out}: {e.strerror or e}") from None
    shown = f"{len(images):,} test digits ({source})" if images is not None else "no test digits"
    print(f"wrote {args.out}: {size / 1e6:.1f} MB, {shown} on the map; open it in a browser "
          f"(from disk, no server needed)")
    return 0


def write_grid_png(images, path, cols=None, pad=2, scale=1):
    """Tile images (n, h, w) in [0, 1] into a grid and write it as a grey PNG (dark ink on white).

    ``pad`` white pixels between tiles, then every pixel drawn as a scale x scale block; no
    axes, no figure: ``matplotlib.image.imsave`` writes the array headlessly (Agg).
    Shapes:  (n, h, w) -> PNG of (rows (h + pad) + pad) scale x (cols (w + pad) + pad) scale pixels
    """
    from matplotlib.image import imsave
    n, h, w = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad))   # 0 = paper (white below)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    path = Path(path)                                     # a failed write keeps the previous picture:
    write_bytes_atomic(path, lambda f: imsave(f, grid, cmap="gray_r", vmin=0, vmax=1, format="png"))
    return path


def _progress_line(what):
    """A callback(done, total) drawing an in-place percentage on a terminal, else nothing."""
    if not sys.stderr.isatty():
        return None
    state = {"shown": -1}

    def show(done, total):
        percent = 100 * done // total
        if percent != state["shown"]:
            state["shown"] = percent
            end = "\n" if done == total else ""
            print(f"\r{what}: {percent:3d}%", end=end, file=sys.stderr, flush=True)
    return show


# ---------------------------------------------------------------------------------------

def main(argv=None):
    """Entry point of the ``scratchvae`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args, args.command_parser)
    except (DataError, CheckpointError, ConfigError) as e:
        print(f"scratchvae {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"scratchvae {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError as e:
        detail = f" ({e})" if str(e) else ""
        print(f"scratchvae {args.command}: error: not enough memory{detail}; "
              f"{MEMORY_ADVICE[args.command]}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"scratchvae {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
