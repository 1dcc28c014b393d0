"""``python -m mpitalk.evaluate``: see :mod:`mpitalk.evaluate.cli`."""

from mpitalk.evaluate.cli import main

raise SystemExit(main())
