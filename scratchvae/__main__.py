"""``python -m scratchvae ...`` runs the ``scratchvae`` command (see cli.py)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
