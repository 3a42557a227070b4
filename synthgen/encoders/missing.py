"""Empty and unsupported columns: nothing is learned; decoding writes them back all-missing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthgen.encoders.base import DecodeContext, SchemaOnlyEncoder, _nullable


class MissingEncoder(SchemaOnlyEncoder):
    """An all-missing column in the input's dtype (its nullable counterpart where it has one)."""

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series:
        n = ctx.n_rows
        if self.col.dtype == "category":  # as pandas reads an all-missing category column
            return pd.Series(pd.Categorical([np.nan] * n))  # no categories, float-typed
        try:
            return pd.Series([None] * n, dtype=object).astype(_nullable(self.col.dtype))
        except (TypeError, ValueError):
            return pd.Series([None] * n, dtype=object)
