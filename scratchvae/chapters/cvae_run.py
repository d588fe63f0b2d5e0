"""Train the conditional VAE of cvae.py, draw "draw me a 7" and "one hand, every digit", ask an
independent judge whether the drawn digits are the ones asked for, and compare its bound on
-log p(x|y) with an unconditional VAE's -log p(x) on the same images.

    python -m scratchvae.chapters.cvae_run --data-dir ../shared/data/mnist --out runs/cvae \\
        --train-split 'test[:9000]' --test-split 'test[9000:]' \\
        [--compare runs/vae/checkpoint.npz]

The judge (judge.py) is softmax regression trained on real digits, never on generated ones; it
labels --judge-n digits drawn for each label y from z ~ N(0, I) (the decoder's mean image), and
"asked_for_rate" is the fraction it labels y (``judge_the_drawn_digits`` says which digits the
judge and its cross-check learned from, and why that is fair).

The labels come from the data set's IDX label files (data.load reads them with the images
and refuses a split whose label file is missing). Training goes through the trainer,
``train(TrainConfig(model=CVAE.kind, binarize="dynamic", ...))`` (machinery/runner.py): shuffled batches,
dynamic binarisation, Adam on ``CVAE.loss_and_grads``, and OUT/checkpoint.npz after every
epoch, from which ``scratchvae sample OUT/checkpoint.npz --digit 7`` draws sevens. A
checkpoint already in OUT is resumed (with the same configuration nothing is trained again:
the figures and numbers are made from it).
"""
import json
import sys

import numpy as np

from ..layers import ACTIVATIONS
from ..machinery import entry
from ..machinery.arguments import Parser, nonnegative_int, path_arg, positive_float, positive_int
from ..machinery.checkpoint import CheckpointError, load_checkpoint, load_model
from ..machinery.data import DataError, _split_arg, load
from ..machinery.evaluate import importance_sampled_nll
from ..machinery.files import write_text_atomic
from ..pictures.plots import _figure, _save, _show_mosaic, mosaic
from .cvae import CVAE
from .judge import Judge, asked_for_rate, cross_validated_accuracy
from ..machinery.runner import CHECKPOINT_NAME, ConfigError, TrainConfig, train


EPOCHS = 30                # the default training: the judge reads 87 % of the drawn digits as the digit asked for (5 epochs: 71 %)


def binarize(images_u8, rng):
    """Dynamic binarisation x ~ Bernoulli(pixels / 255) (as data.iterate_batches)."""
    return (rng.random(images_u8.shape, dtype=np.float32) < images_u8 / np.float32(255)).astype(np.float32)


def draw_me_a_digit(model, n_columns, rng):
    """(10, n_columns, D): row c decodes the shared z_j with label c (each column one z, one style)."""
    z = rng.standard_normal((n_columns, model.latent_dim), dtype=model.dtype)
    return np.stack([model.decode_mean(z, np.full(n_columns, c)) for c in range(model.n_classes)])


def same_hand_every_digit(model, x, y):
    """(M, 1 + 10, D): each test digit, then its z = mu(x, y) decoded with every label."""
    mu, _ = model.encode(x, y)
    decoded = np.stack([model.decode_mean(mu, np.full(len(x), c)) for c in range(model.n_classes)], axis=1)
    return np.concatenate([x[:, None], decoded], axis=1)


def plot_draw_me(tiles, path):
    fig = _figure(7, 6.7)
    ax = fig.add_axes([0.08, 0.02, 0.9, 0.85])
    _show_mosaic(ax, mosaic(tiles))
    ax.set_yticks(np.arange(10) * 29 + 14)
    ax.set_yticklabels([f"y = {c}" for c in range(10)])
    fig.suptitle('"Draw me a 7": rows are the label y, each column one z ~ N(0, I)\n'
                 "decoded with every label: the column keeps its style", y=0.975)
    return _save(fig, path, 100)


def plot_same_hand(tiles, path):
    fig = _figure(7.4, 0.66 * len(tiles) + 1.0)
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.82])
    _show_mosaic(ax, mosaic(tiles))
    ax.set_xticks(np.arange(11) * 29 + 14)
    ax.set_xticklabels(["test x"] + [f"y = {c}" for c in range(10)], fontsize=8)
    ax.xaxis.tick_top()
    fig.suptitle("One hand, every digit: z = mu(x, y) of a test digit, decoded with each label y", y=0.985)
    return _save(fig, path, 100)


def judge_the_drawn_digits(model, train_u8, train_labels, test_u8, test_labels, n, rng):
    """Does "draw me a c" draw a c? Two softmax-regression judges (judge.py), trained on real
    digits only, label n digits drawn for each label c (decoder means of z ~ N(0, I), as
    draw_me_a_digit makes them).

    - The judge: trained on the model's training digits; its accuracy is measured on the test
      split's real digits, which neither saw. "asked_for_rate" is its. That it learned from
      the same real digits as the model does not let a wrong digit pass: it never sees a
      generated digit, and a drawn digit it reads as c because it looks like the training
      digits of c is a c.
    - A cross-check: a judge trained only on the test split, real digits the model never
      saw (its accuracy by 5-fold cross-validation there). As accurate on real digits, it reads
      fewer of the blurrier drawn ones as what they are (it learned from 1,000 digits, not
      9,000), so its rate is the lower of the two.
    Returns the numbers for cvae_results.json.
    """
    as_grey = lambda u8: u8.astype(np.float64) / 255                 # drawn digits are means in [0, 1]
    drawn = draw_me_a_digit(model, n, rng)                            # (C, n, D)
    judge, unseen = Judge(train_u8.shape[1], model.n_classes), Judge(test_u8.shape[1], model.n_classes)
    judge.fit(as_grey(train_u8), train_labels)
    unseen.fit(as_grey(test_u8), test_labels)
    rate, per_label = asked_for_rate(judge, drawn)
    return {"judge_n_per_label": n,
            "judge_accuracy_on_real_digits": float(np.mean(judge.predict(as_grey(test_u8)) == test_labels)),
            "asked_for_rate": rate, "asked_for_rate_per_label": [round(float(r), 4) for r in per_label],
            "unseen_digits_judge_accuracy": cross_validated_accuracy(
                as_grey(test_u8), test_labels, folds=min(5, len(test_u8)), n_classes=model.n_classes)[0],
            "asked_for_rate_by_unseen_digits_judge": asked_for_rate(unseen, drawn)[0]}


def load_comparison(path, dataset, input_dim):
    """The VAE of --compare: unconditional (its ``loss(x)`` and bound need no label), trained on
    the same data set and with as many pixels as the test images. Raises ``CheckpointError``."""
    checkpoint = load_checkpoint(path)
    vae = load_model(checkpoint)
    if not vae.variational or vae.conditional:                     # (an IWAE is saved as a VAE)
        raise CheckpointError(f"--compare: {path} holds {vae.article}; expected an unconditional VAE")
    trained_on = checkpoint["config"].get("dataset")
    if trained_on is not None and trained_on != dataset:
        raise CheckpointError(f"--compare: {path} was trained on {trained_on}, not on {dataset} (--dataset)")
    if vae.input_dim != input_dim:
        raise CheckpointError(f"--compare: {path} models {vae.input_dim} pixels, the test images have {input_dim}")
    return vae


def build_parser():
    p = Parser(prog="python -m scratchvae.chapters.cvae_run", description=__doc__.split("\n\n")[0],
               memory_advice="use a smaller --hidden, --latent, --batch-size, --is-k or --limit")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", type=path_arg, required=True)
    p.add_argument("--train-split", type=_split_arg, default="test[:9000]")
    p.add_argument("--test-split", type=_split_arg, default="test[9000:]")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[200, 200])
    p.add_argument("--latent", type=positive_int, default=50)
    p.add_argument("--activation", default="tanh", choices=list(ACTIVATIONS))
    p.add_argument("--epochs", type=positive_int, default=EPOCHS,
                   help=f"passes over the training split (default {EPOCHS}: long enough that the drawn digits "
                        f"are the asked ones, by the judge)")
    p.add_argument("--batch-size", type=positive_int, default=20)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=nonnegative_int, default=1)
    p.add_argument("--is-k", type=positive_int, default=5000, help="importance samples for the bounds")
    p.add_argument("--limit", type=positive_int, default=1000, help="test images for the bounds (at least 2)")
    p.add_argument("--judge-n", type=positive_int, default=100,
                   help="digits drawn per label for the judge (default 100)")
    p.add_argument("--compare", type=path_arg, help="an unconditional VAE's checkpoint.npz, same data")
    p.add_argument("--out", type=path_arg, required=True)
    return p


def main(argv=None):
    """The command; every way it ends is an exit code and one line (machinery/entry.py)."""
    return entry.run(build_parser(), argv, _run)


def _run(args):
    if args.limit < 2:                                                # the standard errors divide by n - 1
        raise ConfigError(f"--limit: the standard errors need at least 2 test images, got {args.limit}")
    train_set = load(args.dataset, args.train_split, args.data_dir, download=False, progress=False)
    test_set = load(args.dataset, args.test_split, args.data_dir, download=False, progress=False)
    if len(test_set) < 2:
        raise DataError(f"--test-split {args.test_split} holds only {len(test_set)} image; "
                        f"the standard errors need at least 2")
    pixels = int(np.prod(test_set.images.shape[1:]))
    vae = load_comparison(args.compare, args.dataset, pixels) if args.compare else None   # before training
    config = TrainConfig(model=CVAE.kind, dataset=args.dataset, data_dir=args.data_dir,
                         train_split=args.train_split, test_split=args.test_split, binarize="dynamic",
                         download=False, hidden=args.hidden, latent=args.latent, activation=args.activation,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         out=str(args.out))
    previous = args.out / CHECKPOINT_NAME
    model, _ = train(config, resume=previous if previous.exists() else None,
                     train_images=train_set.images, test_images=test_set.images,
                     train_labels=train_set.labels, test_labels=test_set.labels)
    entry.say_when_stopped(f"the trained model is {previous}")
    flat = lambda s: s.images.reshape(len(s.images), -1)
    rng = np.random.default_rng(args.seed + 2)
    x_test = binarize(flat(test_set)[:args.limit], rng)                  # one draw, for both models
    y_test = test_set.labels[:args.limit].astype(np.int64)
    results = {"n": len(x_test), "is_k": args.is_k, "epochs": args.epochs,
               "checkpoint": str(args.out / CHECKPOINT_NAME)}
    _, parts = model.loss(x_test, y_test)
    results["cvae_nelbo"] = parts["nelbo"]
    nll = importance_sampled_nll(model, x_test, args.is_k, labels=y_test,       # -log p(x|y)
                                 rng=np.random.default_rng(args.seed + 3), batch_size=len(x_test))
    results["cvae_nll_x_given_y"] = float(nll.mean())
    results["cvae_nll_stderr"] = float(nll.std(ddof=1) / np.sqrt(len(nll)))
    if vae is not None:
        results["vae_nelbo"] = vae.loss(x_test)[1]["nelbo"]
        nll_vae = importance_sampled_nll(vae, x_test, args.is_k, rng=np.random.default_rng(args.seed + 3))
        results["vae_nll_x"] = float(nll_vae.mean())
        diff = nll_vae - nll                                          # paired: the same images
        results["log_p_y_given_x_gain"] = float(diff.mean())
        results["gain_stderr"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    results |= judge_the_drawn_digits(model, flat(train_set), train_set.labels, flat(test_set), test_set.labels,
                                      args.judge_n, np.random.default_rng(args.seed + 5))
    plot_draw_me(draw_me_a_digit(model, 12, np.random.default_rng(args.seed + 4)), args.out / "cvae_draw_me_a_7.png")
    picks = [int(np.flatnonzero(y_test == c)[0]) for c in range(10) if np.any(y_test == c)][:6]
    plot_same_hand(same_hand_every_digit(model, x_test[picks], y_test[picks]), args.out / "cvae_same_hand.png")
    write_text_atomic(args.out / "cvae_results.json", json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
