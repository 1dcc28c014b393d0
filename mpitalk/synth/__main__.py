"""``python -m mpitalk.synth``: the dataset CLI (``writer.main``)."""

import sys

from mpitalk.synth.writer import main

sys.exit(main())
