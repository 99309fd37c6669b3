"""Writing parquet files whose bytes depend on the data only (fixed compression, dictionary
columns and row groups), and the writer that counts each file's rows and reports progress."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

# Rows per row group and per written slice; it also bounds the chunks rows are sampled in.
_WRITE_ROWS = 2_000_000
# Low-cardinality columns worth dictionary-encoding; ids and timestamps are not.
_DICTIONARY_COLUMNS = [
    "source",
    "event_type",
    "category",
    "config_id",
    "store_id",
    "product_id",
    "reason",
    "id_type",
    "purpose",
    "channel",
    "campaign_id",
    "action_id",
    "city",
    "first_name",
    "last_name",
]


ProgressCallback = Callable[[str], None]


def _write(table: pa.Table, path: Path) -> int:
    """Write one parquet file with fixed settings so that bytes depend on data only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(
        path,
        table.schema,
        compression="zstd",
        compression_level=1,
        use_dictionary=_DICTIONARY_COLUMNS,
    ) as writer:
        for start in range(0, max(table.num_rows, 1), _WRITE_ROWS):
            writer.write_table(table.slice(start, _WRITE_ROWS), row_group_size=_WRITE_ROWS)
    return table.num_rows


class _Writer:
    """Collects row counts and reports progress."""

    def __init__(self, out_dir: Path, progress: ProgressCallback | None) -> None:
        self.out_dir = out_dir
        self.rows: dict[str, int] = {}
        self.progress = progress

    def write(self, name: str, table: pa.Table, truth: bool = False) -> None:
        path = self.out_dir / ("truth" if truth else "") / f"{name}.parquet"
        self.rows[("truth/" if truth else "") + name] = _write(table, path)
        logger.info("wrote %s (%d rows)", path.name, table.num_rows)
        if self.progress is not None:
            self.progress(name)

    def write_chunks(self, name: str, n_rows: int, build: Callable[[int, int], pa.Table]) -> None:
        """Write a large export slice by slice so its string columns never all sit in memory."""
        path = self.out_dir / f"{name}.parquet"
        schema = build(0, 0).schema
        with pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            compression_level=1,
            use_dictionary=_DICTIONARY_COLUMNS,
        ) as writer:
            for lo in range(0, n_rows, _WRITE_ROWS):
                writer.write_table(
                    build(lo, min(lo + _WRITE_ROWS, n_rows)), row_group_size=_WRITE_ROWS
                )
        self.rows[name] = n_rows
        logger.info("wrote %s (%d rows)", path.name, n_rows)
        if self.progress is not None:
            self.progress(name)
