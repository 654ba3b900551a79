"""fetch-models: the Hub's embedder and heads into the folders the cluster recipes read, offline from a fake HF cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import yaml

from spark_jql.cli import main
from spark_jql.config import DEFAULT_EMBEDDER, ScorerConfig

from .conftest import HUB_COMMIT as COMMIT
from .conftest import cache_repo

REPO = Path(__file__).resolve().parents[1]
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def no_spark(monkeypatch) -> None:
    import spark_jql.spark.session as session

    def refuse(*args, **kwargs):
        raise AssertionError("a SparkSession was started")

    monkeypatch.setattr(session, "session_for", refuse)


def test_fetch_fills_the_recipes_layout_with_a_manifest_and_the_scorer_loads_it(hub_cache, gte_bundle, tmp_path, capsys,
                                                                                 monkeypatch):
    from spark_jql.scoring.scorer import Scorer

    no_spark(monkeypatch)
    out = tmp_path / "models"
    assert main(["fetch-models", "--output", str(out), "--prefix", "/mnt/models"]) == 0
    printed = capsys.readouterr().out
    assert "model: /mnt/models/snowflake-arctic-embed-m-v2.0" in printed
    assert "path: /mnt/models/JQL-Edu-Heads/checkpoints/edu-llama-snowflake-balanced.ckpt" in printed

    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert all(not p.is_symlink() for p in out.rglob("*"))  # real files: they travel with aws s3 cp
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(e["path"] for e in manifest["files"]) == on_disk
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["revision"] == "main" and entry["commit"] == COMMIT
    encoder = Path(gte_bundle["embedder"]["model"])
    assert {e["path"] for e in manifest["files"] if e["repo_id"] == DEFAULT_EMBEDDER} == {
        f"snowflake-arctic-embed-m-v2.0/{p.relative_to(encoder)}" for p in encoder.rglob("*") if p.is_file()}
    assert any(e["path"].endswith("tokenizer.json") for e in manifest["files"])

    # The paths the EMR and Databricks recipes read are there once DIR is copied to their root, and score as the originals.
    texts = ["Photosynthesis converts light into chemical energy.", "buy now!!! best price"]
    want = Scorer(ScorerConfig.model_validate(gte_bundle), device="cpu").score(texts)
    for recipe, root in (("emr.yaml", "/mnt/models"), ("databricks.yaml", "/Volumes/main/models")):
        scorer = yaml.safe_load((REPO / "conf" / recipe).read_text())["scorer"]
        section = json.loads(json.dumps({"embedder": {"model": scorer["embedder"]["model"]}, "heads": scorer["heads"]})
                             .replace(root, str(out)))
        got = Scorer(ScorerConfig.model_validate(section), device="cpu").score(texts)
        assert len(got) == 2
        np.testing.assert_allclose(got["jql_score"], want["jql_score"], rtol=1e-5)


def test_the_configs_revision_is_fetched(hub_cache, gte_bundle, tmp_path, capsys):
    """scorer.embedder.revision picks the snapshot that revision points at, and the manifest says which."""
    encoder = Path(gte_bundle["embedder"]["model"])
    extra = tmp_path / "NOTE.txt"
    extra.write_text("only in v2")
    files = {str(p.relative_to(encoder)): p for p in encoder.rglob("*") if p.is_file()}
    cache_repo(hub_cache, DEFAULT_EMBEDDER, {**files, "NOTE.txt": extra}, commit=OTHER_COMMIT, ref="v2")
    out = tmp_path / "models"
    assert main(["fetch-models", "--output", str(out), "--set", "scorer.embedder.revision=v2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (out / "snowflake-arctic-embed-m-v2.0" / "NOTE.txt").read_text() == "only in v2"
    manifest = json.loads((out / "manifest.json").read_text())
    embedder = [e for e in manifest["files"] if e["repo_id"] == DEFAULT_EMBEDDER]
    assert {(e["revision"], e["commit"]) for e in embedder} == {("v2", OTHER_COMMIT)}
    assert summary["scorer"]["embedder"]["model"] == str(out.resolve() / "snowflake-arctic-embed-m-v2.0")


def test_a_rerun_replaces_the_files(hub_cache, tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["fetch-models", "--output", str(out)]) == 0
    target = out / "JQL-Edu-Heads" / "checkpoints" / "edu-gemma-snowflake-balanced.ckpt"
    original = target.read_bytes()
    target.write_bytes(b"corrupt")
    assert main(["fetch-models", "--output", str(out)]) == 0
    assert target.read_bytes() == original
    shutil.rmtree(out)
