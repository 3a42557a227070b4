"""Column encoders: one module per column kind, all behind `ColumnEncoder`; `ENCODERS` picks one
for each schema kind."""

from __future__ import annotations

from typing import Any, Mapping

from synthgen.encoders.base import ColumnEncoder, DecodeContext, GaussianPart, Outputs, SoftmaxPart
from synthgen.encoders.categorical import DEFAULT_RARE_PLACEHOLDER, CategoricalEncoder
from synthgen.encoders.datetime import DatetimeEncoder, datetimes_to_ns
from synthgen.encoders.ids import IdEncoder, render_ids
from synthgen.encoders.missing import MissingEncoder
from synthgen.encoders.numerical import NumericalEncoder
from synthgen.schema import ColumnSchema

# schema kind -> encoder class; a new column kind is a new module and one entry here
ENCODERS: dict[str, type[ColumnEncoder]] = {
    "numerical": NumericalEncoder,
    "categorical": CategoricalEncoder,
    "text": CategoricalEncoder,
    "datetime": DatetimeEncoder,
    "id": IdEncoder,
    "empty": MissingEncoder,
    "unsupported": MissingEncoder,
}


def make_encoder(col: ColumnSchema, settings: Mapping[str, Any]) -> ColumnEncoder:
    """An unfitted encoder for `col`, of the class its kind is registered with."""
    return ENCODERS[col.kind].from_settings(col, settings)


__all__ = [
    "CategoricalEncoder",
    "ColumnEncoder",
    "DEFAULT_RARE_PLACEHOLDER",
    "DatetimeEncoder",
    "DecodeContext",
    "ENCODERS",
    "GaussianPart",
    "IdEncoder",
    "MissingEncoder",
    "NumericalEncoder",
    "Outputs",
    "SoftmaxPart",
    "datetimes_to_ns",
    "make_encoder",
    "render_ids",
]
