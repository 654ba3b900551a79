"""How many documents a run will score, known before it reads them: for the progress display only.

The runner no longer counts the input before scoring (one read per unit), so the progress total is
taken from what is cheap: parquet footers and, for uncompressed JSON lines, the lines in the first MiB
of up to 16 files scaled to all the files' bytes (a fixed cost on the driver, whatever the input's size). Files this process cannot open (remote storage) give no estimate;
the progress line then shows documents done without a total.
"""

from __future__ import annotations

from pathlib import Path

from spark_jql import paths
from spark_jql.spark.io import InputFile

SAMPLE_BYTES = 2**20
SAMPLE_FILES = 16  # JSON: the heads of this many files give the bytes per line for all
MAX_FILES = 2000  # parquet: footers of at most this many files, beyond that the estimate costs too much


def estimated_rows(files: list[InputFile], fmt: str) -> int | None:
    """Rows in ``files`` (exact for parquet and for small JSON inputs), or None when not cheaply known."""
    if not files or fmt not in ("parquet", "json") or any(paths.is_remote(f.path) for f in files):
        return None
    try:
        if fmt == "parquet":
            return None if len(files) > MAX_FILES else sum(_parquet_rows(_local(f)) for f in files)
        return _json_rows(files)
    except (OSError, ValueError):
        return None


def _local(f: InputFile) -> Path:
    return Path(paths.local_path(f.path))


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _json_rows(files: list[InputFile]) -> int:
    """Lines of the first MiB of up to 16 files, spread over the list, scaled to all the files' bytes."""
    if any(f.path.endswith((".gz", ".bz2", ".zst", ".xz")) for f in files):
        raise ValueError("compressed")
    step = max(1, len(files) // SAMPLE_FILES)
    sampled = files[::step][:SAMPLE_FILES]
    lines = read = 0
    whole = len(sampled) == len(files)
    for f in sampled:
        with _local(f).open("rb") as fh:
            head = fh.read(SAMPLE_BYTES)
        lines += sum(1 for line in head.split(b"\n") if line.strip())
        read += len(head)
        whole = whole and len(head) == _local(f).stat().st_size
    if whole or not read:
        return lines  # every file read to its end: exact
    return round(lines * sum(f.size or 0 for f in files) / read)
