"""``python -m segexp.train``: the same as ``segexp-train``."""

from segexp.train.app import main

main()
