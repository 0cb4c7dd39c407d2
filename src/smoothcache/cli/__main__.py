"""``python -m smoothcache.cli``: the ``smoothcache`` command (as ``torchrun -m smoothcache.cli`` needs)."""

import sys

from . import main

sys.exit(main())
