"""``python -m wgf`` — the same as the ``wgf`` console script."""

from wgf.cli import entry

entry()
