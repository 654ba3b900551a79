"""How many documents a run will score, known before it reads them: for the progress display only.

The runner no longer counts the input before scoring (one read per unit), so the progress total is
taken from what is cheap: parquet footers and, for uncompressed JSON lines, the lines of the first MiB
of each file scaled by its size. Files this process cannot open (remote storage) give no estimate;
the progress line then shows documents done without a total.
"""

from __future__ import annotations

from pathlib import Path

from spark_jql import paths
from spark_jql.spark.io import InputFile

SAMPLE_BYTES = 2**20
MAX_FILES = 2000  # beyond that, listing footers or samples costs more than the estimate is worth


def estimated_rows(files: list[InputFile], fmt: str) -> int | None:
    """Rows in ``files`` (exact for parquet and for JSON files under 1 MiB), or None when not cheaply known."""
    if not files or len(files) > MAX_FILES or fmt not in ("parquet", "json"):
        return None
    total = 0
    for f in files:
        if paths.is_remote(f.path):
            return None
        local = Path(paths.local_path(f.path))
        try:
            total += _parquet_rows(local) if fmt == "parquet" else _json_rows(local)
        except (OSError, ValueError):
            return None
    return total


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _json_rows(path: Path) -> int:
    if path.suffix in (".gz", ".bz2", ".zst", ".xz"):
        raise ValueError("compressed")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    lines = sum(1 for line in head.split(b"\n") if line.strip())
    if size <= len(head) or not lines:
        return lines
    return round(lines * size / len(head))
