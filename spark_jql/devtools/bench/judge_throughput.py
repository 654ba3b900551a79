"""LLM-judge client throughput against a local fake chat-completions server: requests/s vs the concurrency bound.

    python -m spark_jql.devtools.bench.judge_throughput --latency 0.05 --concurrency 1,2,4,8,16,32,64

Each point asks one judge (``JudgePanel``, the code the Spark UDF runs) ``--requests-per-slot``
x concurrency documents against ``spark_jql.devtools.fake_judge.FakeJudgeServer`` answering after
``--latency`` seconds; the ideal is concurrency / latency. The last line runs two judges at once
(each with the largest bound) to show they overlap. A benchmark: results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time

from spark_jql.config import JudgeConfig
from spark_jql.devtools.fake_judge import FakeJudgeServer
from spark_jql.method.judge import JudgePanel


def measure(url: str, concurrency: int, requests: int, judges: int = 1) -> dict:
    cfg = JudgeConfig.model_validate({
        "judges": [{"name": f"j{i}", "base_url": url, "model": f"m{i}"} for i in range(judges)],
        "concurrency": concurrency, "max_retries": 0, "timeout_seconds": 30})
    texts = [f"document {i} at level {i % 6}" for i in range(requests)]
    with JudgePanel(cfg) as panel:
        start = time.perf_counter()
        results = panel.judge({j.name: texts for j in cfg.judges})
        seconds = time.perf_counter() - start
    ok = sum(r.score is not None for rs in results.values() for r in rs)
    return {"judges": judges, "concurrency": concurrency, "requests": requests * judges, "ok": ok,
            "seconds": round(seconds, 2), "requests_per_second": round(requests * judges / seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="server seconds per answer")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--requests-per-slot", type=int, default=8)
    args = parser.parse_args(argv)
    bounds = [int(c) for c in args.concurrency.split(",")]
    with FakeJudgeServer(latency=args.latency) as server:
        for c in bounds:
            row = measure(server.url, c, max(32, c * args.requests_per_slot))
            row["ideal_requests_per_second"] = round(c / args.latency, 1)
            row["server_max_in_flight"], server.max_in_flight = server.max_in_flight, 0
            print(json.dumps(row))
        row = measure(server.url, bounds[-1], bounds[-1] * args.requests_per_slot, judges=2)
        row["server_max_in_flight"] = server.max_in_flight
        print(json.dumps(row))


if __name__ == "__main__":
    main()
