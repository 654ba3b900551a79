"""Judge throughput against fake replicas: docs/s with 1, 2, 4, 8 endpoints behind one judge (no Spark, no GPU).

Each fake replica generates ``slots`` answers at once, each taking ``latency`` seconds (a GPU server's
batch capacity and per-request time); the client balances one judge's requests across ``base_urls``.
Throughput should scale with the endpoints until the client (threads, CPU) becomes the limit:

    python -m spark_jql.devtools.judge_bench --endpoints 1,2,4,8 --docs-per-endpoint 200
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack

from spark_jql.config import JudgeConfig
from spark_jql.devtools.fake_judge import FakeJudgeServer
from spark_jql.method.judge import JudgePanel


def measure(endpoints: int, docs_per_endpoint: int, slots: int, latency: float) -> dict:
    """One run: ``endpoints`` replicas, enough client concurrency to fill them, docs/s over every document."""
    with ExitStack() as stack:
        servers = [stack.enter_context(FakeJudgeServer(latency=latency, slots=slots)) for _ in range(endpoints)]
        cfg = JudgeConfig.model_validate({
            "judges": [{"name": "j", "base_urls": [s.url for s in servers], "model": "m"}],
            "concurrency": 2 * slots * endpoints, "max_retries": 2, "backoff_seconds": 0.05, "preflight": False})
        texts = [f"document {i} at level {i % 6}" for i in range(docs_per_endpoint * endpoints)]
        with JudgePanel(cfg) as panel:
            start = time.perf_counter()
            results = panel.judge({"j": texts})["j"]
            seconds = time.perf_counter() - start
        ok = sum(r.score is not None for r in results)
        return {"endpoints": endpoints, "docs": len(texts), "scored": ok, "seconds": round(seconds, 2),
                "docs_per_second": round(len(texts) / seconds, 1), "ideal": round(endpoints * slots / latency, 1),
                "per_endpoint": [s.total for s in servers]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", default="1,2,4,8")
    parser.add_argument("--docs-per-endpoint", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4, help="answers a replica generates at once")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per answer")
    args = parser.parse_args(argv)
    rows = [measure(int(n), args.docs_per_endpoint, args.slots, args.latency) for n in args.endpoints.split(",")]
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
