"""One native thread (OpenMP, BLAS) per server process, set before those libraries load.

Measured on the penguins gradient-boosting model (2 cores): scikit-learn's trees run an
OpenMP region per tree, and from the thread the server predicts in (not the main thread)
each region paid for waking its team — a 2,000-row call took 62-80 ms with 2 threads and
30 ms with 1 (20 ms on the main thread). Several processes each using every core also
oversubscribed the cores (184 against 319 req/s). threadpoolctl's limits apply to the
calling thread only for OpenMP, so the limit must be in the environment before import.
"""

from __future__ import annotations

import os

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_native_threads() -> None:
    """One thread each, unless the operator set the variable."""
    for name in VARIABLES:
        os.environ.setdefault(name, "1")
