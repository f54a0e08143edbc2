"""
The Arrow fast path: record batches from the ADBC PostgreSQL driver (optional extra).

The ADBC driver reads the server's binary COPY output straight into Arrow buffers in C,
so no Python object is built per value. The statement is the read plan's (same key
order, same resumption condition), and each batch's state is taken from its last row,
so Arrow and dict reads of a stream share states. Arrow types are the driver's mapping
(e.g. numeric → string, jsonb → string), not the dict mapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from headwater import Batch, ConfigError
from headwater_postgres._plan import BatchCutter, ReadPlan


def read_arrow(uri: str, select: str, plan: ReadPlan) -> Iterator[Batch]:
    """Batches of ``pyarrow.RecordBatch`` for ``select``, cut to the plan's batch size."""
    try:
        import adbc_driver_postgresql.dbapi as adbc  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ConfigError(
            "format='arrow' needs the ADBC driver: pip install 'headwater-postgres[arrow]'",
            field="format",
        ) from None
    cutter = BatchCutter(plan)
    size = plan.rows_per_batch
    with adbc.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(select)
        reader: Any = cur.fetch_record_batch()
        for record_batch in reader:
            rows = record_batch.num_rows
            for offset in range(0, rows, size):
                piece = record_batch.slice(offset, size)
                n = piece.num_rows
                if not n:
                    continue
                key = (
                    [piece.column(i)[n - 1].as_py() for i in plan.key_positions]
                    if plan.key_positions
                    else None
                )
                yield Batch(plan.stream, piece, cutter.arrow_state(key, n))
