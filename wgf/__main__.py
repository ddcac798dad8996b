"""``python -m wgf`` — the same as the ``wgf`` console script."""

import sys

from wgf.cli import main

sys.exit(main())
