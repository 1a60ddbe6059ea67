"""``python -m forge_kernel`` runs the ``forge`` command line."""

from forge_kernel.cli import main

main()
