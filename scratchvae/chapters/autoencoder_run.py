"""Figure 10 on its own: an autoencoder trained beside a VAE checkpoint, the two compared.

    python -m scratchvae.chapters.autoencoder_run OUT/latent2d/checkpoint.npz --out OUT

Trains an autoencoder (autoencoder.py) through the trainer with the VAE checkpoint's
architecture, data, batch size, learning rate, epochs and seed, into OUT/autoencoder2d (a
checkpoint already there with that configuration is resumed, so after the demo, which trains
it, nothing is trained again), then writes OUT/10_autoencoder_vs_vae.png and prints the
figure's numbers (``compare_with_vae``). The VAE must have a 2-D latent (the demo's OUT/latent2d).
"""
import dataclasses
from pathlib import Path

import numpy as np

from ..machinery import entry
from ..machinery.arguments import Parser, path_arg
from ..machinery.checkpoint import CheckpointError, load_checkpoint, load_model
from ..machinery.data import iterate_batches, load
from ..machinery.runner import CHECKPOINT_NAME, TrainConfig, train
from ..pictures import plots
from .autoencoder import Autoencoder, compare_with_vae, comparison_text


def build_parser():
    parser = Parser(prog="python -m scratchvae.chapters.autoencoder_run",
                    description="Train an autoencoder beside a 2-D VAE checkpoint and draw figure 10.",
                    memory_advice="the run's sizes come from the VAE's checkpoint: use a smaller model")
    parser.add_argument("checkpoint", type=path_arg, help="a VAE with a 2-D latent (the demo's OUT/latent2d)")
    parser.add_argument("--out", type=path_arg, default=Path("out"), help="where OUT/autoencoder2d and the figure go")
    parser.add_argument("--data-dir", type=path_arg, default=None, help="default: the checkpoint's")
    return parser


def main(argv=None):
    """The command; every way it ends is an exit code and one line (machinery/entry.py)."""
    return entry.run(build_parser(), argv, _run)


def _run(args):
    checkpoint = load_checkpoint(args.checkpoint)
    vae, run = load_model(checkpoint), TrainConfig.from_dict(checkpoint["config"])
    if not vae.variational or vae.conditional or vae.latent_dim != 2:
        raise CheckpointError(f"{args.checkpoint} holds {vae.article} with a {vae.latent_dim}-D latent; "
                              f"this needs an unconditional VAE with a 2-D latent (the demo's OUT/latent2d)")
    config = dataclasses.replace(run, model=Autoencoder.kind, objective="elbo", beta=1.0, warmup_epochs=0.0,
                                 n_samples=1, engine="plain", download=False,
                                 data_dir=args.data_dir or run.data_dir, out=str(args.out / "autoencoder2d"))
    previous = Path(config.out) / CHECKPOINT_NAME
    ae, history = train(config, resume=previous if previous.exists() else None)
    entry.say_when_stopped(f"the trained autoencoder is {previous}")
    test = load(run.dataset, run.test_split, config.data_dir, download=False)
    x_test = next(iterate_batches(test.images, len(test.images), np.random.default_rng(run.seed),
                                  binarize=run.binarize, shuffle=False))        # as the demo's figures
    codes, samples, numbers = compare_with_vae(ae, vae, x_test, test.labels, np.random.default_rng(run.seed))
    stats = comparison_text(numbers)
    path = plots.plot_autoencoder_vs_vae(codes, test.labels, samples, stats,
                                         args.out / "10_autoencoder_vs_vae.png")
    seconds = sum(r["seconds"] for r in history)
    print(f"autoencoder trained {run.epochs} epochs on {run.dataset} {run.train_split} in {seconds:.0f} s "
          f"(checkpoint {previous}); tested on {run.test_split} ({len(x_test):,} images)")
    for name, text in stats.items():
        print(f"  {name}: {text.replace(chr(10), ' ')}")
    print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
