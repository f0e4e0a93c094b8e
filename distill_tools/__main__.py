"""``python -m distill_tools``: the same commands as ``assistant distill``."""

import sys

from distill_tools.cli import main

sys.exit(main())
