"""``python -m shadow_edge.cli``: same as the ``shadow-edge`` console script."""

from shadow_edge.cli import main

main()
