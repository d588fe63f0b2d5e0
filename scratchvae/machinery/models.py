"""The kinds of model scratchvae trains, saves and loads: one class each, one line each below.

A kind of model is a class that answers for itself. Besides ``loss_and_grads``, ``encode``,
``decode_mean`` and ``config()``, each declares what the rest of the program asks of it
(vae.py's plumbing section has the list, with a comment on each):

    kind, title, article, summary   its name: --model, model.json's "type"; in messages and --help
    objective                       the TrainConfig.objective it trains ("elbo"; the IWAE: "iwae")
    loss_name                       what its loss_and_grads computes, for the progress lines
    variational, conditional        q(z|x) and a KL term? given the label y?
    random_streams                  its own generators, saved in a checkpoint's rng.json
    fixed_fields                    TrainConfig fields it cannot use, their only value and why
    history_fields, history_newer   the trainer's record of each epoch
    from_config(config, D)          the untrained model of a TrainConfig
    parameter_shapes(arch)          model.json's parameters, name -> shape, without building them

The checkpoint, the configuration, the trainer, the evaluation and the command line ask
these, and compare no names. A new kind of model: its own file, and its class in MODELS.
"""
from ..chapters.autoencoder import Autoencoder
from ..chapters.cvae import CVAE
from ..chapters.iwae import IWAE
from ..vae import VAE

MODELS = (VAE, IWAE, Autoencoder, CVAE)
UNTYPED = VAE.kind            # checkpoints and configurations from before kinds were recorded hold a VAE


def kinds():
    """The kind names, in MODELS' order: what --model and TrainConfig.model accept."""
    return tuple(dict.fromkeys(Model.kind for Model in MODELS))


def objectives(kind):
    """The objectives the kind trains, its first the one it is loaded as."""
    return tuple(Model.objective for Model in MODELS if Model.kind == kind)


def model_class(kind, objective=None):
    """The class that trains ``kind`` with ``objective`` (None: the class a checkpoint of the kind
    is loaded as, the first listed); None when there is none."""
    return next((Model for Model in MODELS if Model.kind == kind
                 and (objective is None or Model.objective == objective)), None)
