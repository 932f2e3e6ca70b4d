"""`python -m segexp.compare`: the same as `segexp-compare`."""

import sys

from segexp.compare.cli import main

sys.exit(main())
