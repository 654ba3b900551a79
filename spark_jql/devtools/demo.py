"""Offline pipeline demo: generated multilingual sample + tiny random models, full job on local Spark.

The scores are noise (random weights); the demo shows the mechanics, schemas and
outputs. The same job with the default config loads the real JQL models from the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

from spark_jql.config import load_config
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.devtools.tiny_models import build_demo_bundle


def demo_overrides(output: str | Path, docs: int = 2000, files: int = 4) -> list[str]:
    """Write the sample data and tiny models under ``output``; return the config overrides that use them."""
    output = Path(output).resolve()
    data = output / "input"
    if not data.exists():
        write_jsonl(generate_documents(docs, seed=7), data, files=files)
    bundle = build_demo_bundle(output / "models", "gte-tiny", seed=7)
    return [
        f"io.input={json.dumps([str(data / '*.jsonl')])}",
        f"io.output={output / 'results'}",
        f"scorer.embedder.model={bundle['embedder']['model']}",
        f"scorer.heads={json.dumps(bundle['heads'])}",
        "columns.language=[language, language_script]",
        "thresholds.min_docs=50",
        "spark.master=local[2]",
    ]


def run_demo(output: str = "demo_output", docs: int = 2000, config: str | None = None, overrides: list[str] | None = None) -> dict:
    from spark_jql.spark.job import Job
    from spark_jql.spark.session import build_session

    cfg = load_config(config, demo_overrides(output, docs) + list(overrides or []))
    spark = build_session(cfg.spark.master, cfg.spark.app_name, cfg.spark.conf)
    print(f"spark-jql demo: PIPELINE DEMO with tiny random models; scores are noise. Outputs: {cfg.io.output}")
    return Job(spark, cfg).run()
