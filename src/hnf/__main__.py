"""``python -m hnf`` runs the command line (``torchrun -m hnf`` too)."""

from hnf.cli import main

main()
