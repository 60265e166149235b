"""``python -m lab demo|up``: see :func:`lab.daemons.main`."""

import sys

from .daemons import main

sys.exit(main())
