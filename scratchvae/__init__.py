"""scratchvae: a Variational Autoencoder from scratch in NumPy, to read along with the lecture
"Variational Autoencoders - An Introduction" (after Kingma & Welling, Auto-Encoding
Variational Bayes, ICLR 2014).

Start reading at ``vae.py``; ``layers.py`` and ``losses.py`` hold its pieces,
``gradcheck.py`` proves their derivatives, ``optim.py`` trains them.
"""
from .vae import VAE
from .optim import Adam, SGD
from .workers import keep_freed_memory

keep_freed_memory()          # NumPy's temporaries reuse freed memory instead of fresh pages (workers.py)

__version__ = "0.1.0"
__all__ = ["VAE", "Adam", "SGD", "__version__"]
