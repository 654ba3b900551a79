"""Shared fixtures: tiny offline models (built once per run) and one SparkSession."""

from __future__ import annotations

import hashlib
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
REPO = Path(__file__).resolve().parents[1]
CONNECTORS = REPO / ".ci" / "connector-jars.txt"
# CI sets this (.ci/run): a connector pinned for this Spark whose JAR is missing fails its tests instead of skipping them.
REQUIRE_CONNECTORS = "SPARK_JQL_REQUIRE_CONNECTORS"
# Session settings each connector needs besides its JARs (Iceberg's catalog `lake` gets its warehouse in `spark`).
LAKE_SETTINGS = {
    "delta": {"spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
              "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
              "spark.databricks.delta.snapshotPartitions": "2"},  # log replay of tiny tables: 2 tasks, not 50
    "iceberg": {"spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
                "spark.sql.catalog.lake": "org.apache.iceberg.spark.SparkCatalog",
                "spark.sql.catalog.lake.type": "hadoop"},
}


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


def _spark_line() -> str:
    import pyspark

    return ".".join(pyspark.__version__.split(".")[:2])


def connectors() -> dict[str, tuple[list[Path], str | None]]:
    """Per format pinned for this pyspark line (.ci/connector-jars.txt): its JARs, and why it cannot run (None: it can).

    A format is ready when every JAR pinned for it lies in .jars/spark-<line>/ (``.ci/fetch-jars``).
    """
    line = _spark_line()
    found: dict[str, tuple[list[Path], str | None]] = {}
    for row in CONNECTORS.read_text().splitlines():
        parts = row.split(None, 3)
        if len(parts) < 3 or row.startswith("#") or parts[0] != line:
            continue
        fmt, coordinate = parts[1], parts[2]
        jars, why = found.get(fmt, ([], None))
        if coordinate == "none":
            found[fmt] = ([], f"{fmt} is not tested on Spark {line}: {parts[3] if len(parts) > 3 else 'no release'}")
            continue
        _, artifact, version = coordinate.split(":")
        jar = REPO / ".jars" / f"spark-{line}" / f"{artifact}-{version}.jar"
        if not jar.is_file() and why is None:
            why = f"{jar.relative_to(REPO)} is absent: run .ci/fetch-jars to test {fmt} tables"
        found[fmt] = ([*jars, jar], why)
    return found


def ready_connectors() -> dict[str, list[Path]]:
    return {fmt: jars for fmt, (jars, why) in connectors().items() if why is None}


def require_connector(fmt: str) -> None:
    """Skip the test where ``fmt``'s connector cannot run here, saying why; in CI a pinned but absent JAR fails it."""
    jars, why = connectors().get(fmt, ([], f"no {fmt} connector is pinned for Spark {_spark_line()} in {CONNECTORS.name}"))
    if why is None:
        return
    if jars and os.environ.get(REQUIRE_CONNECTORS):
        pytest.fail(f"{why} ({REQUIRE_CONNECTORS} is set: CI must test {fmt})")
    pytest.skip(why)


def _lake_conf(warehouse: Path) -> dict[str, str]:
    """spark.jars, SQL extensions and catalogs for every connector whose JARs are here (none: no setting at all)."""
    ready = ready_connectors()
    conf: dict[str, str] = {}
    if ready:
        conf["spark.jars"] = ",".join(str(j) for fmt in sorted(ready) for j in ready[fmt])
        conf["spark.sql.extensions"] = ",".join(LAKE_SETTINGS[fmt]["spark.sql.extensions"] for fmt in sorted(ready))
    for fmt in sorted(ready):
        conf.update({k: v for k, v in LAKE_SETTINGS[fmt].items() if k != "spark.sql.extensions"})
    if "iceberg" in ready:
        conf["spark.sql.catalog.lake.warehouse"] = str(warehouse / "iceberg")
    return conf


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

    Delta and Iceberg are set up (``spark.jars`` must be given at start-up) where their pinned JARs are
    here (see :func:`connectors`): Delta as the session catalog, Iceberg as the Hadoop catalog ``lake``.

    Where pyspark ships the Spark Connect server (4.x), the same JVM also serves
    Spark Connect (the plugin a Databricks/Connect cluster runs), so Connect tests
    use it from a client process without a second JVM: see :func:`connect_url`.
    """
    from spark_jql.spark.session import build_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    conf = {"spark.sql.shuffle.partitions": "4", "spark.sql.warehouse.dir": str(warehouse), **_lake_conf(warehouse)}
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


HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo_id: str, files: dict[str, Path], commit: str = HUB_COMMIT, ref: str = "main") -> None:
    """A repository in the Hub cache layout: blobs/<sha256>, snapshots/<commit>/<path> linking to them, refs/<ref>."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    for rel, source in files.items():
        data = source.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = root / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(Path(rel).parts) + 1), "blobs", blob.name))


@pytest.fixture
def hub_cache(empty_hf_cache, gte_bundle) -> Path:
    """The default scorer's repositories (embedder, JQL-Edu heads) in the offline cache, holding the tiny GTE bundle."""
    from spark_jql.config import DEFAULT_EMBEDDER, JQL_HEADS_REPO

    encoder = Path(gte_bundle["embedder"]["model"])
    cache_repo(empty_hf_cache, DEFAULT_EMBEDDER, {str(p.relative_to(encoder)): p for p in encoder.rglob("*") if p.is_file()})
    heads = {f"checkpoints/edu-{judge}-snowflake-balanced.ckpt": Path(h["path"]) for judge, h in zip(("gemma", "mistral", "llama"), gte_bundle["heads"])}
    cache_repo(empty_hf_cache, JQL_HEADS_REPO, heads)
    return empty_hf_cache


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
