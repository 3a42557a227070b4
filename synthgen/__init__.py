"""synthgen: learn a table, write new rows that keep its statistics but belong to no real person."""

import os

# OpenMP threads that spin while waiting (the default) ruin throughput when two OpenMP runtimes (torch's and
# scikit-learn's) or two processes share a 2-core machine: measured here, a 4 s fit took 57-107 s and a 5 s
# detection score 162 s while another job ran. Waiting threads that sleep cost nothing measurable alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from synthgen.errors import UserError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Synthesizer", "UserError", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import synthgen` (and the CLI's --help) does not pay for importing torch.
    if name == "Synthesizer":
        from synthgen.synthesizer import Synthesizer

        return Synthesizer
    raise AttributeError(name)
