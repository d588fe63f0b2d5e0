"""scratchvae: a Variational Autoencoder from scratch in NumPy, to read along with the lecture
"Variational Autoencoders - An Introduction" (after Kingma & Welling, Auto-Encoding
Variational Bayes, ICLR 2014).

The lecture's core stands at the top of the package, in reading order:

    layers.py       slides 7-8     Dense, ReLU, tanh, sigmoid, an MLP: each with its backward
    losses.py       slides 9-12    Bernoulli and Gaussian log-likelihoods, the KL, their gradients
    vae.py          slides 14-25   the VAE: encoder, z = mu + sigma * eps, decoder, loss, backward
    optim.py        slide 15       Adam (and SGD) over one flat parameter vector
    gradcheck.py                   finite differences: the proof that every backward is right
    train.py        slide 15       the training loop: batches -> loss_and_grads -> Adam.step

and each folder has one role:

    chapters/       the lecture's story after the core (the autoencoder, the gradient
                    estimators, the beta sweep, the true posterior, inference for one x),
                    then two steps beyond it (IWAE, the conditional VAE)
    machinery/      what runs things: data, configuration, checkpoints, the run directory,
                    progress, evaluation, the training runner, the command line
    pictures/       the figures and the explorer page
    fast/           the optional fast engine, tested equal to the read-along code
    workbook/       exercises for the learner: write the backward passes yourself, and a
                    checker that names your mistake (`scratchvae workbook start DIR`)
"""
from .fast import tuning                     # noqa: F401  (first: OpenBLAS reads it when NumPy loads)
from .vae import VAE                         # noqa: E402
from .optim import Adam, SGD                 # noqa: E402

__version__ = "0.1.0"
__all__ = ["VAE", "Adam", "SGD", "__version__"]
