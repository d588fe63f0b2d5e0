"""scratchvae: a Variational Autoencoder from scratch in NumPy, to read along with the lecture
"Variational Autoencoders - An Introduction" (after Kingma & Welling, Auto-Encoding
Variational Bayes, ICLR 2014).

Start reading at ``vae.py``; ``layers.py`` and ``losses.py`` hold its pieces,
``gradcheck.py`` proves their derivatives, ``optim.py`` trains them.
"""
import os
import sys

# Before NumPy loads OpenBLAS: OpenBLAS's idle threads then sleep after 2^20 processor cycles
# (about half a millisecond) instead of spinning for 2^28 (about 0.1 s) after each matrix
# product. Long enough to stay awake through the elementwise work between one product of a
# training step and the next (waking a sleeping thread is slow on a virtual machine), short
# enough to leave the second core to Adam's helper thread (optim.py) for most of its update.
# Only if nobody chose a value, and only if NumPy is not loaded yet (then nothing changes).
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .vae import VAE                                           # noqa: E402
from .optim import Adam, SGD                                   # noqa: E402
from .workers import keep_freed_memory                         # noqa: E402

keep_freed_memory()          # NumPy's temporaries reuse freed memory instead of fresh pages (workers.py)

__version__ = "0.1.0"
__all__ = ["VAE", "Adam", "SGD", "__version__"]
