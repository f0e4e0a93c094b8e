"""``python -m distill_tools``: the same commands as ``assistant distill``."""

import os
import sys

from distill_tools import distributed  # imports no torch

if distributed.world().parallel:  # a rank of torchrun: set before torch loads its OpenMP runtime
    # llama.cpp (export check, evaluation on rank 0) runs its threads in torch's OpenMP runtime; under torchrun
    # (OMP_NUM_THREADS=1) they spin at its barriers, and with one more busy process on the machine the evaluation
    # took 240 s instead of 2 s. Passive waiting sleeps instead.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from distill_tools.cli import main  # noqa: E402

sys.exit(main())
