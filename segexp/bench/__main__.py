"""``python -m segexp.bench``."""

from segexp.bench.cli import main

main()
