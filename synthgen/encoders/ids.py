"""Id columns: nothing is learned; decoding writes new unique ids in the format the schema
learned."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthgen.encoders.base import DecodeContext, SchemaOnlyEncoder, _restore_dtype
from synthgen.errors import UserError
from synthgen.schema import ID_CLASSES


class IdEncoder(SchemaOnlyEncoder):
    """New ids numbered by global row, so batches decoded apart still get unique ids."""

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series:
        index = np.arange(ctx.row_offset, ctx.row_offset + ctx.n_rows)
        ids = render_ids(self.col.id_format, index, ctx.id_seed)
        return _restore_dtype(pd.Series(ids), self.col)


def render_ids(fmt: dict[str, Any], index: np.ndarray, seed: int = 0) -> np.ndarray:
    """Unique ids for global row numbers `index`, written in the learned format.

    An id depends only on its row number (and the seed), so rows drawn in any batches or shards get
    the same, unique ids.
    """
    index = np.asarray(index, dtype=np.int64)
    kind = fmt["type"]
    if kind == "integer":
        return fmt["start"] + index
    if kind == "uuid":
        raw = np.empty((len(index), 16), dtype=np.uint8)
        mixed = _splitmix64(index.astype(np.uint64) ^ np.uint64(seed))
        raw[:, :8] = mixed.astype(">u8").view(np.uint8).reshape(-1, 8)
        # the row number: unique by construction
        raw[:, 8:] = index.astype(">u8").view(np.uint8).reshape(-1, 8)
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
        # RFC 4122 variant (overwrites the top bits of a row number < 2**62)
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        hex_chars = np.frombuffer(b"0123456789abcdef", np.uint8)
        digits = np.stack([hex_chars[raw >> 4], hex_chars[raw & 15]], axis=2)
        digits = digits.reshape(len(index), 32)
        dash = np.full((len(index), 1), ord("-"), np.uint8)
        matrix = np.concatenate(
            [
                digits[:, :8],
                dash,
                digits[:, 8:12],
                dash,
                digits[:, 12:16],
                dash,
                digits[:, 16:20],
                dash,
                digits[:, 20:],
            ],
            axis=1,
        )
        return _bytes_rows_to_str(matrix)
    if kind == "template":
        segments = [list(seg) for seg in fmt["segments"]]
        classes = [seg for seg in segments if seg[0] == "class"]
        capacity = int(np.prod([float(len(ID_CLASSES[seg[1]][0])) ** seg[2] for seg in classes]))
        while classes and len(index) and int(index.max()) >= capacity:
            classes[0][2] += 1  # more rows than the format can number: widen its first field
            capacity *= len(ID_CLASSES[classes[0][1]][0])
        if not classes:
            raise UserError(f"cannot write unique ids in the format {fmt['regex']}")
        parts = []
        rest = index.copy()
        for seg in reversed(segments):  # the last character varies fastest
            if seg[0] == "literal":
                literal = np.frombuffer(seg[1].encode(), np.uint8)
                parts.append(np.broadcast_to(literal, (len(index), len(literal))))
                continue
            alphabet = np.frombuffer(ID_CLASSES[seg[1]][0].encode(), np.uint8)
            chars = np.empty((len(index), seg[2]), dtype=np.uint8)
            for pos in range(seg[2] - 1, -1, -1):
                chars[:, pos] = alphabet[rest % len(alphabet)]
                rest //= len(alphabet)
            parts.append(chars)
        return _bytes_rows_to_str(np.concatenate(parts[::-1], axis=1))
    # "prefixed": the common prefix, then the row number
    return np.char.add(fmt["prefix"], index.astype(str)).astype(object)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix: distinct row numbers give distinct, random-looking words."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _bytes_rows_to_str(matrix: np.ndarray) -> np.ndarray:
    """Each row of a uint8 matrix as one str, in an object array."""
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    return matrix.view(f"S{matrix.shape[1]}")[:, 0].astype(str).astype(object)
