"""What the KL term does: the same VAE trained with the KL weighted by beta (slides 12-13).

Slide 12 calls the KL a regulariser that "encourages encoder to produce z's that are close to
standard normal distribution"; its last line says what happens without it: the encoder "could
'memorize' the data and map each observed datapoint to a distinct region of space". To see
it, weight the regulariser by beta and train one model per beta:

    -ELBO_beta = D + beta * R
    D = E_{z ~ q_theta(z|x)}[ -log p_phi(x|z) ]     distortion: the reconstruction term (slides 9-11)
    R = KL( q_theta(z|x) || p(z) ),  p(z) = N(0, I) rate: the regulariser (slide 12)

both averaged over the images. beta = 1 is the lecture's loss (slide 15), and D + R is the
negative ELBO, the bound on -log p(x), whatever beta a model was trained with. The names are
information theory's (Alemi et al., "Fixing a Broken ELBO", ICML 2018): R is how many nats
the code z carries about x (it bounds the mutual information between x and z from above),
D how much of x is lost on the way x -> z -> x~ (slide 9: "how much information is lost").
beta > 1 is the beta-VAE of Higgins et al. (ICLR 2017).

The five weights, and what each one shows:

    beta = 0     no regulariser: an autoencoder with noise. Nothing stops sigma from shrinking
                 or the codes from spreading (R grows), and N(0, I) is no longer a map of them.
    beta = 0.1   a weak pull towards N(0, I)
    beta = 1     the ELBO
    beta = 4     a strong pull (a common choice for the beta-VAE): a code that says little
                 about x (R small), blurrier reconstructions (D larger)
    beta = 25    past the point where a latent unit is worth its KL: the unit collapses to the
                 prior (posterior collapse: its mean stops moving with x, evaluate.active_units).
                 On the demo's digits, 10 epochs, beta = 16 and 20 still kept both units
                 active and 25 did not (docs/results.md).

On the rate-distortion plane (R across, D up) each trained model is a point, and the negative
ELBO D + R is constant along lines of slope -1. A model trained with weight beta minimises
D + beta R: of all the models, the beta = 1 one should sit on the lowest of those lines.

Every run is the demo's 2-D model (784-400-2, ReLU, Bernoulli on grey levels, Adam lr 1e-3,
batch 128), trained by the project's trainer (``train.train``) with the same seed, so the
runs start from the same weights, see the same batches and draw the same eps: they differ
only in beta.

    python -m scratchvae.chapters.beta_sweep --data-dir ../shared/data/mnist \\
        --train-split 'test[:9000]' --test-split 'test[9000:]' --out OUT

writes OUT/11_beta_sweep.png and OUT/beta_sweep.json and prints the table.
"""
import argparse
import dataclasses
import json
import math
import sys
import time

import numpy as np

from ..pictures import plots
from ..machinery import entry
from ..machinery.arguments import Parser, nonnegative_int, path_arg, positive_int
from ..machinery.data import BINARIZE, DATASETS, _binarize_arg, _split_arg, iterate_batches, load
from ..machinery.evaluate import evaluate_nelbo, substream
from ..machinery.files import write_text_atomic
from ..machinery.run_dir import check_writable
from ..machinery.runner import TrainConfig, derive_streams, train

BETAS = (0.0, 0.1, 1.0, 4.0, 25.0)
EPOCHS = 10                      # per beta: short runs (the demo's 2-D model trains 40 epochs)
N_PRIOR_SAMPLES = 64             # decoded from z ~ N(0, I) for each beta, an 8 x 8 grid
CIRCLE_95 = math.sqrt(-2 * math.log(0.05))    # P(|z| < r) = 1 - exp(-r^2 / 2) = 0.95 for z ~ N(0, I_2)


def sweep_config(beta, epochs=EPOCHS, seed=1):
    """The demo's 2-D VAE with the KL weighted by ``beta``: 784-400-2, ReLU, Bernoulli, grey levels."""
    return TrainConfig(hidden=(400,), latent=2, activation="relu", likelihood="bernoulli",
                       binarize="none", beta=beta, epochs=epochs, seed=seed)


def measure(model, test_images, seed, binarize="none"):
    """Distortion, rate and the codes of a trained model on the test images.

    Implements:  D = mean_i -log p(x_i|z_i),  z_i = mu_i + sigma_i eps_i   (one eps per image)
                 R = mean_i KL(q(z|x_i) || N(0, I))                         (closed form, slide 12)
                 -ELBO = D + R                                              (the bound, beta = 1)
    The same numbers the trainer logs each epoch as test_rec and test_kl (evaluate_nelbo with
    the run's evaluation stream, from ``seed``); the codes of the images as that evaluation
    sees them (``binarize``: as the run was trained).
    Shapes:      test_images (N, 784) uint8 -> dict; codes mu (N, K)
    Returns:     dict(distortion, rate, nelbo, active_units, codes, code_mean (K,), code_std (K,),
                 inside = the fraction of codes within the circle that holds 95 % of N(0, I),
                 as autoencoder.compare_with_vae measures it for figure 10)
    """
    eval_seed = derive_streams(seed)["eval"]
    bound = evaluate_nelbo(model, test_images, seed=eval_seed, binarize=binarize)
    x = next(iterate_batches(test_images, len(test_images), np.random.default_rng(substream(eval_seed, 0)),
                             binarize=binarize, shuffle=False))          # pixels / 255, or 0/1 draws
    codes = model.encode(x)[0].astype(np.float64)                        # E_q[z] = mu
    return {"distortion": bound["rec"], "rate": bound["kl"], "nelbo": bound["nelbo"],
            "active_units": bound["active_units"], "codes": codes,
            "code_mean": codes.mean(axis=0), "code_std": codes.std(axis=0),
            "inside": float(np.mean(np.linalg.norm(codes, axis=1) < CIRCLE_95))}


def run_beta_sweep(train_images, test_images, test_labels, betas=BETAS, epochs=EPOCHS, seed=1,
                   log=print, figure_path=None, n_samples=N_PRIOR_SAMPLES, config=sweep_config,
                   binarize="none"):
    """Train one model per beta on ``train_images``, measure each on ``test_images``, draw figure 11.

    ``train_images``, ``test_images``: uint8 (N, 784); ``test_labels`` (N,) colour the codes in
    the figure, written to ``figure_path`` when it is given (plots.plot_beta_sweep).
    ``config(beta, epochs, seed)`` makes each run's TrainConfig (tests pass a smaller model);
    ``binarize`` replaces its targets (as ``--binarize`` does for the demo's other models).
    Every model decodes the same n_samples draws z ~ N(0, I) (made from ``seed``).
    Returns:  a list, one dict per beta in the order given: beta, distortion, rate, nelbo
              (D + R), objective (D + beta R, what that run minimised), active_units, codes
              (N, K), code_mean, code_std, inside, samples (n_samples, D) decoder means, history
              (the trainer's records), seconds (training and measuring).
    """
    betas = [float(b) for b in betas]
    bad = [b for b in betas if not (math.isfinite(b) and b >= 0)]
    if not betas or bad:
        raise ValueError(f"betas must be finite numbers >= 0, got {bad or 'none'}")
    results = []
    for beta in betas:
        start = time.perf_counter()
        run = dataclasses.replace(config(beta, epochs, seed), binarize=binarize)
        model, history = train(run, train_images=train_images, test_images=test_images, log=False)
        numbers = measure(model, test_images, seed, binarize)
        z_prior = np.random.default_rng(seed).standard_normal((int(n_samples), model.latent_dim))
        numbers.update(beta=beta, objective=numbers["distortion"] + beta * numbers["rate"],
                       samples=model.decode_mean(z_prior), history=history,
                       seconds=time.perf_counter() - start)
        results.append(numbers)
        log(f"beta {beta:g}: {summary_line(numbers)}  ({numbers['seconds']:.1f} s)")
    if figure_path is not None:
        figure(results, test_labels, figure_path)
    return results


def summary_line(r):
    """One result as text: D, R, D + R, active units, codes' spread and circle fraction."""
    return (f"D {r['distortion']:.2f}  R {r['rate']:.2f}  D + R {r['nelbo']:.2f}  "
            f"active units {r['active_units']} of {len(r['code_std'])}  codes' s.d. "
            f"({', '.join(f'{s:.2f}' for s in r['code_std'])})  inside N(0, I)'s 95 % circle "
            f"{100 * r['inside']:.1f} %")


def table(results):
    """The results as a Markdown table (the one in docs/results.md)."""
    rows = ["| β | D (distortion) | R (rate) | D + R (−ELBO) | active units | codes' s.d. (z_1, z_2) "
            "| codes inside the 95 % circle |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['beta']:g} | {r['distortion']:.2f} | {r['rate']:.2f} | {r['nelbo']:.2f} | "
                    f"{r['active_units']} of {len(r['code_std'])} | "
                    f"({', '.join(f'{s:.2f}' for s in r['code_std'])}) | {100 * r['inside']:.1f} % |")
    return "\n".join(rows)


def figure(results, test_labels, path):
    """Draw figure 11 (plots.plot_beta_sweep) from the results of ``run_beta_sweep``."""
    return plots.plot_beta_sweep([r["beta"] for r in results], [r["rate"] for r in results],
                                 [r["distortion"] for r in results], [r["codes"] for r in results],
                                 test_labels, [r["samples"] for r in results], path,
                                 active_units=[r["active_units"] for r in results])


# ------------------------------------------------------------------------------- the command
def _beta(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"a KL weight must be a finite number >= 0, got {text}")
    return value


def build_parser():
    p = Parser(prog="python -m scratchvae.chapters.beta_sweep",
               description="Train the 2-D VAE once per KL weight beta and draw the rate-distortion "
                           "plane, each model's latent space and its samples from N(0, I).",
               memory_advice="use smaller splits (--train-split, --test-split)")
    p.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    p.add_argument("--data-dir", type=path_arg, default=None, help="directory holding the IDX files")
    p.add_argument("--train-split", type=_split_arg, default="train", help="e.g. train, 'test[:9000]'")
    p.add_argument("--test-split", type=_split_arg, default="test", help="e.g. test, 'test[9000:]'")
    p.add_argument("--no-download", dest="download", action="store_false", help="never download")
    p.add_argument("--binarize", type=_binarize_arg, default="none", metavar="{" + ",".join(BINARIZE) + "}",
                   help="targets: grey levels (none, the default), dynamic or threshold")
    p.add_argument("--betas", type=_beta, nargs="+", default=list(BETAS), metavar="BETA",
                   help=f"KL weights (default: {' '.join(f'{b:g}' for b in BETAS)})")
    p.add_argument("--epochs", type=positive_int, default=EPOCHS, help=f"epochs per beta (default: {EPOCHS})")
    p.add_argument("--seed", type=nonnegative_int, default=1, help="seed of every run (default: 1)")
    p.add_argument("--out", type=path_arg, required=True, metavar="DIR",
                   help="where 11_beta_sweep.png and beta_sweep.json go")
    return p


def main(argv=None):
    """The command; every way it ends is an exit code and one line (machinery/entry.py)."""
    return entry.run(build_parser(), argv, _sweep)


def _sweep(args):
    start = time.perf_counter()
    check_writable(args.out)                          # before hours of training, not after
    train_split = load(args.dataset, args.train_split, args.data_dir, args.download, progress=False)
    test_split = load(args.dataset, args.test_split, args.data_dir, args.download, progress=False)
    say = lambda text: print(text, file=sys.stderr, flush=True)
    say(f"training {len(args.betas)} models of {args.epochs} epochs on {args.dataset} "
        f"{args.train_split} ({len(train_split):,} images), testing on {args.test_split} "
        f"({len(test_split):,})")
    path = args.out / "11_beta_sweep.png"
    results = run_beta_sweep(train_split.images, test_split.images, test_split.labels,
                             betas=args.betas, epochs=args.epochs, seed=args.seed, log=say,
                             figure_path=path, binarize=args.binarize)
    keep = ("beta", "distortion", "rate", "nelbo", "objective", "active_units", "inside", "seconds")
    write_text_atomic(args.out / "beta_sweep.json", json.dumps(
        [{**{k: r[k] for k in keep}, "code_mean": r["code_mean"].tolist(), "code_std": r["code_std"].tolist()}
         for r in results], indent=1) + "\n")
    print(table(results))
    print(f"\n{len(results)} models, {args.epochs} epochs each, on {len(train_split):,} training and "
          f"{len(test_split):,} test images, seed {args.seed}: wall time {time.perf_counter() - start:.0f} s")
    print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
