"""Two process-wide settings, made when scratchvae is imported: speed only, never a number.

1. OpenBLAS's idle threads sleep after 2^20 processor cycles (about half a millisecond)
   instead of spinning for 2^28 (about 0.1 s) after each matrix product. Long enough to stay
   awake through the elementwise work between one product of a training step and the next
   (waking a sleeping thread is slow on a virtual machine), short enough to leave the second
   core to Adam's helper thread (optim.py) for most of its update. Set only if nobody chose
   a value, and only if NumPy is not loaded yet (OpenBLAS reads it when NumPy loads it).
2. NumPy's temporaries reuse freed memory instead of arriving as fresh pages
   (``workers.keep_freed_memory``).
"""
import os
import sys

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .workers import keep_freed_memory      # noqa: E402  (imports NumPy: after the line above)

keep_freed_memory()
