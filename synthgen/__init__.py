"""synthgen: learn a table, write new rows that keep its statistics but belong to no real person."""

import os

# OpenMP threads spin while they wait for work (libgomp: 300,000 spins by default). When two OpenMP runtimes
# (torch's and scikit-learn's) or two processes share a 2-core machine, that spinning ruins throughput:
# measured here, a 4 s fit took 57-107 s and a 5 s detection score 162 s while another job ran. A short spin
# keeps an idle machine's speed (fit 2.8 s vs 2.4 s spinning, 3.5 s never spinning) and a busy one's (4.5 s).
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
