"""The cluster-sim workloads: file layouts that stress Spark's packing of files into partitions.

Every document is a real FineWeb2 record from ``../shared/data`` (reused cyclically, with a new id),
so tokenisation and the per-micro-batch token counts are real; only the number, sizes and format of
the files vary:

* ``lognormal``: 256 JSON-lines files whose document counts are lognormal (mean 100, sigma 0.8);
* ``small-files``: 600 JSON-lines files of 1-4 documents (``spark.sql.files.openCostInBytes`` packing);
* ``large-files``: 4 parquet files of 6,000 documents in row groups of 250, so Spark splits each file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORKLOADS = ("lognormal", "small-files", "large-files")
FINEWEB2_GLOB = "fineweb2_*.jsonl"


class NoSampleData(RuntimeError):
    """The real FineWeb2 samples (``../shared/data``) are not there: the bench skips, saying so."""


@dataclass(frozen=True)
class Layout:
    fmt: str  # json or parquet
    files: list[int]  # documents per file
    row_group: int | None = None  # parquet only

    @property
    def documents(self) -> int:
        return sum(self.files)


def layout(name: str, quick: bool = False, seed: int = 0) -> Layout:
    """Documents per file for a workload (``quick``: a few hundred documents, for a smoke test)."""
    rng = np.random.default_rng(seed)
    if name == "lognormal":
        n, mean, sigma = (24, 10.0, 0.8) if quick else (256, 100.0, 0.8)
        sizes = np.maximum(1, np.rint(rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n))).astype(int)
        return Layout("json", sizes.tolist())
    if name == "small-files":
        return Layout("json", rng.integers(1, 5, 40 if quick else 600).tolist())
    if name == "large-files":
        return Layout("parquet", [150] * 2 if quick else [6000] * 4, row_group=25 if quick else 250)
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")


def shared_data_dir() -> Path | None:
    here = Path(__file__).resolve()
    for root in (here.parents[4] / "shared" / "data", Path("/work/shared/data")):
        if any(root.glob(FINEWEB2_GLOB)):
            return root
    return None


def fineweb2_records(root: Path | None = None) -> list[dict]:
    """text, id, language, language_script of every FineWeb2 sample record (German's id is document_id)."""
    root = root or shared_data_dir()
    if root is None:
        raise NoSampleData("no FineWeb2 samples (../shared/data/fineweb2_*.jsonl): the cluster simulation needs real text")
    records = []
    for path in sorted(root.glob(FINEWEB2_GLOB)):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    r = json.loads(line)
                    if isinstance(r.get("text"), str) and r["text"].strip():
                        records.append({"text": r["text"], "id": str(r.get("id") or r.get("document_id")),
                                        "language": r.get("language"), "language_script": r.get("language_script")})
    return records


def write_workload(out: Path, spec: Layout, records: list[dict]) -> list[int]:
    """Write the files under ``out``; returns which record each document is (index into ``records``)."""
    out.mkdir(parents=True, exist_ok=True)
    which: list[int] = []
    for f, count in enumerate(spec.files):
        rows = []
        for _ in range(count):
            i = len(which)
            which.append(i % len(records))
            rows.append({**records[i % len(records)], "id": f"sim-{i:07d}"})
        if spec.fmt == "json":
            with open(out / f"part-{f:05d}.jsonl", "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), out / f"part-{f:05d}.parquet", row_group_size=spec.row_group)
    return which
