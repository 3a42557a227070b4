"""Datetime columns: integer steps of the data's own resolution, encoded as numbers."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from synthgen.encoders.base import ColumnEncoder, DecodeContext, Outputs, _restore_dtype
from synthgen.encoders.numerical import NumericalEncoder
from synthgen.schema import ColumnSchema, parse_datetimes


def datetimes_to_ns(s: pd.Series, fmt: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Datetimes (or text in `fmt`) as int64 nanoseconds since the epoch, UTC, and a missing mask.

    Missing and unparsable values are marked in the mask; their nanoseconds are meaningless.
    """
    parsed = s if ptypes.is_datetime64_any_dtype(s.dtype) else parse_datetimes(s, fmt)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64), parsed.isna().to_numpy()


STEPS_NS = (86_400 * 10**9, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3, 1)


def resolution_ns(ns: np.ndarray) -> int:
    """The coarsest step (a day, an hour, ..., a nanosecond) that every value sits on."""
    return next(step for step in STEPS_NS if np.all(ns % step == 0))


class DatetimeEncoder(ColumnEncoder):
    """Datetimes as integer steps of the data's own resolution (days, hours, ..., ns), then as
    numbers."""

    def __init__(self, col: ColumnSchema, numeric: NumericalEncoder) -> None:
        super().__init__(col)
        self.numeric = numeric

    @classmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> DatetimeEncoder:
        return cls(col, NumericalEncoder.from_settings(col, settings))

    def fit(self, s: pd.Series) -> DatetimeEncoder:
        ns, missing = datetimes_to_ns(s, self.col.datetime_format)
        self.step_ns = resolution_ns(ns[~missing])
        self.numeric.decimals = 0  # whole steps: a protected tail's representatives are too
        self.numeric.fit_values(self._steps(ns, missing))
        return self

    def protection(self) -> dict[str, Any] | None:
        summary = self.numeric.protection()
        if summary is None:
            return None
        for end in ("lowest_written", "highest_written"):
            if summary[end] is not None:
                summary[end] = pd.Timestamp(int(round(summary[end])) * self.step_ns).isoformat()
        return summary

    def _steps(self, ns: np.ndarray, missing: np.ndarray) -> np.ndarray:
        return np.where(missing, np.nan, (ns // self.step_ns).astype(np.float64))

    @property
    def width(self) -> int:
        return self.numeric.width

    def outputs(self) -> Outputs:
        return self.numeric.outputs()

    def encode(self, s: pd.Series) -> np.ndarray:
        ns, missing = datetimes_to_ns(s, self.col.datetime_format)
        return self.numeric.encode_values(self._steps(ns, missing))

    def surprise(self, s: pd.Series) -> np.ndarray:
        ns, missing = datetimes_to_ns(s, self.col.datetime_format)
        return self.numeric.surprise_values(self._steps(ns, missing))

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series:
        steps = self.numeric.decode_values(block, ctx.exact)
        lo, hi = self.col.min, self.col.max
        missing = np.isnan(steps)
        steps = np.clip(np.round(steps), lo * 1e9 // self.step_ns, hi * 1e9 // self.step_ns)
        ns = np.where(missing, 0, steps * self.step_ns).astype(np.int64)
        out = pd.Series(ns.view("datetime64[ns]"))
        out[missing] = pd.NaT
        if self.col.timezone:
            out = out.dt.tz_localize("UTC").dt.tz_convert(self.col.timezone)
        if self.col.datetime_format:
            out = _format_datetimes(out, self.col.datetime_format)
        elif self.col.object_values == "date":  # datetime.date objects, as pandas reads them
            dates = out.dt.date.to_numpy(dtype=object)
            dates[missing] = None
            out = pd.Series(dates, dtype=object)
        return _restore_dtype(out, self.col)

    def state(self) -> dict[str, Any]:
        return {"step_ns": self.step_ns, "numeric": self.numeric.state()}

    def load(self, state: dict[str, Any]) -> DatetimeEncoder:
        self.step_ns = state["step_ns"]
        self.numeric.load(state["numeric"])
        return self


def _format_datetimes(values: pd.Series, fmt: str) -> pd.Series:
    """Datetimes as text in `fmt`, None where missing."""
    # values sit on a grid of the data's resolution, so many repeat: format each distinct one once
    uniq, inverse = np.unique(values.to_numpy(), return_inverse=True)
    texts = pd.Series(pd.DatetimeIndex(uniq).strftime(fmt).to_numpy(dtype=object))
    out = texts.to_numpy(dtype=object)[inverse]
    out[pd.isna(values).to_numpy()] = None
    return pd.Series(out, dtype=object)
