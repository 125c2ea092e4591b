"""The normalized event schema (ARCHITECTURE.md section 2) as polars/arrow types, and its content hash."""

import hashlib
import json

import polars as pl

from mmlab.types import EVENT_COLUMNS, SCHEMA_VERSION

#: polars dtype of every store column.
POLARS_SCHEMA = {
    "ts_exch": pl.Int64,
    "ts_local": pl.Int64,
    "kind": pl.UInt8,
    "side": pl.Int8,
    "price": pl.Float64,
    "qty": pl.Float64,
    "update_id": pl.Int64,
    "batch_end": pl.Boolean,
}

#: numpy dtype string of every store column (what parsers hand to the writer).
NUMPY_DTYPES = {
    "ts_exch": "int64",
    "ts_local": "int64",
    "kind": "uint8",
    "side": "int8",
    "price": "float64",
    "qty": "float64",
    "update_id": "int64",
    "batch_end": "bool",
}

assert tuple(POLARS_SCHEMA) == EVENT_COLUMNS


def schema_hash() -> str:
    """Short content hash of the store schema (column names, types, version)."""
    desc = {"version": SCHEMA_VERSION, "columns": [[c, str(POLARS_SCHEMA[c])] for c in EVENT_COLUMNS]}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
