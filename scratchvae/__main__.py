"""``python -m scratchvae ...`` runs the ``scratchvae`` command (see machinery/cli.py)."""
import sys

from .machinery.cli import main

if __name__ == "__main__":
    sys.exit(main())
