"""What runs things; nothing here is part of the lecture's story.

    data.py         MNIST and Fashion-MNIST: find, verify, download, read, split, batch
    config.py       TrainConfig: every knob of a training run, checked
    models.py       the kinds of model, each a class that answers for itself
    runner.py       train(config): train.py's loop with checkpoints, resume, signals, progress
    evaluate.py     the test negative ELBO and the importance-sampled -log p(x)
    checkpoint.py   one .npz file that holds a run, read back without trusting it
    run_dir.py      what a run writes into its directory, and its lock
    progress.py     the lines training prints
    files.py        every file written whole or not at all
    cli.py          the `scratchvae` command: train, resume, evaluate, sample, explore
"""
