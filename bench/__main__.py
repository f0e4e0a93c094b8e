"""``python -m bench``: run every benchmark module and write bench/results/."""

import sys

from bench.run import main

sys.exit(main())
