"""synthgen: learn a table, write new rows that keep its statistics but belong to no real person."""

from synthgen.errors import UserError

__version__ = "0.1.0"

__all__ = ["Synthesizer", "UserError", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import synthgen` (and the CLI's --help) does not pay for importing torch.
    if name == "Synthesizer":
        from synthgen.synthesizer import Synthesizer

        return Synthesizer
    raise AttributeError(name)
