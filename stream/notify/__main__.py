"""``python -m stream.notify --config FILE ...`` (the same as ``shiftwatch notify``)."""

import sys

from .runner import main

sys.exit(main())
