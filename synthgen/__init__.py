"""synthgen: learn a table, write new rows that keep its statistics but belong to no real
person."""

import os

# Short OpenMP spin-wait: libgomp's default (300,000 spins) ruins throughput when two OpenMP
# runtimes (torch's, scikit-learn's) or two processes share 2 cores; a short spin costs little idle.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from synthgen.errors import UserError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Synthesizer", "UserError", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import synthgen` (and the CLI's --help) does not pay for importing torch.
    if name == "Synthesizer":
        from synthgen.synthesizer import Synthesizer

        return Synthesizer
    raise AttributeError(name)
