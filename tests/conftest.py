"""Shared fixtures: tiny offline models (built once per run) and one SparkSession."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Executor Python workers must run this interpreter (the venv), not whatever python3 is on PATH.
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(name: str) -> Path:
    """A file from ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not present (the shared sample data lives beside the repo)")
    return path


@pytest.fixture(scope="session")
def gte_bundle(tmp_path_factory) -> dict:
    """Scorer config section for a tiny random GTE encoder + three JQL-layout heads."""
    from spark_jql.devtools.tiny_models import build_demo_bundle

    return build_demo_bundle(tmp_path_factory.mktemp("gte_bundle"), "gte-tiny", seed=1)


@pytest.fixture(scope="session")
def xlmr_bundle(tmp_path_factory) -> dict:
    from spark_jql.devtools.tiny_models import build_demo_bundle

    return build_demo_bundle(tmp_path_factory.mktemp("xlmr_bundle"), "xlmr-tiny", seed=2)


def _connect_server_jar() -> bool:
    """pyspark >= 4 ships the Spark Connect server; 3.5's pip package has only the client."""
    import pyspark

    return any(p.name.startswith("spark-connect_") for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONNECT: dict[str, str] = {}


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local SparkSession for the whole test run (JVM start-up costs ~15 s); catalog tables in a temp warehouse.

    Where pyspark ships the Spark Connect server (4.x), the same JVM also serves
    Spark Connect (the plugin a Databricks/Connect cluster runs), so Connect tests
    use it from a client process without a second JVM: see :func:`connect_url`.
    """
    from spark_jql.spark.session import build_session

    conf = {"spark.sql.shuffle.partitions": "4", "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse"))}
    if _connect_server_jar():
        port = _free_port()
        conf.update({"spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
                     "spark.connect.grpc.binding.address": "127.0.0.1",
                     "spark.connect.grpc.binding.port": str(port)})
        CONNECT["url"] = f"sc://127.0.0.1:{port}"
    session = build_session(master="local[2]", app_name="spark_jql-tests", conf=conf)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def connect_url(spark) -> str:
    """``sc://`` URL of the test run's Spark Connect server (the ``spark`` fixture's JVM)."""
    if "url" not in CONNECT:
        pytest.skip("this pyspark has no Spark Connect server (pyspark >= 4 ships it)")
    return CONNECT["url"]


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, offline, so the machine's real cache cannot interfere."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf_home" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HOME", str(cache.parent))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


def job_overrides(bundle: dict, inputs: list[str], output: Path, **extra: str) -> list[str]:
    """``key=value`` overrides for a small job over ``inputs`` with a tiny model bundle."""
    import json

    sets = {
        "io.input": json.dumps(inputs),
        "io.output": str(output),
        "scorer.embedder.model": bundle["embedder"]["model"],
        "scorer.heads": json.dumps(bundle["heads"]),
        "scorer.token_budget": "8192",
        "thresholds.min_docs": "10",
        "spark.arrow_batch_size": "40",
        **extra,
    }
    return [f"{k}={v}" for k, v in sets.items()]


def as_cli_args(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]
