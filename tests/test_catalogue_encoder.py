"""Catalogue: heads and the encoder they were trained on, compared by the encoder's files, on the driver.

A head records the encoder it was trained on (its name, and from ``spark-jql train`` the digest of its files,
spark_jql/scoring/identity.py). A byte-identical copy in another folder is the same encoder; another encoder in a
folder of the same name is not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spark_jql.cli import main
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.devtools.tiny_models import build_encoder, build_heads
from spark_jql.scoring.identity import encoder_content

from .catalogue import case
from .conftest import as_cli_args, job_overrides


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory) -> Path:
    return write_jsonl(generate_documents(20, seed=9), tmp_path_factory.mktemp("encoder_in") / "docs.jsonl")[0]


def _bundle(encoder: Path, heads: dict[str, Path]) -> dict:
    return {"embedder": {"model": str(encoder)}, "heads": [{"name": n, "path": str(p)} for n, p in heads.items()]}


@case("heads trained on an encoder, scored with a byte-identical copy of it in another folder",
      "accepted (the encoder is compared by the digest of its files, not its folder name); before, refused after Spark "
      "started with ~250 lines of executor tracebacks")
def test_byte_identical_encoder_copy_is_accepted(spark, gte_bundle, docs_file, tmp_path, capsys):
    original = Path(gte_bundle["embedder"]["model"])
    copy = Path(shutil.copytree(original, tmp_path / "copy-of-the-encoder"))
    named = build_heads(tmp_path / "named", 32, ["h"], hidden_dim=8, embedder=str(original))
    digested = build_heads(tmp_path / "digested", 32, ["d"], hidden_dim=8, seed=3, embedder="/training/cluster/encoder",
                           embedder_digest=encoder_content(str(original)))
    bundle = _bundle(copy, {**named, **digested})
    code = main([*as_cli_args(job_overrides(bundle, [str(docs_file)], tmp_path / "out")), "annotate"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["annotate"]["rows_with_score"] == 20


@case("heads trained on one encoder, scored with another (even in a folder of the same name)",
      "exit 2 on the driver before any task: `head 'd' (<file>) was trained on embeddings of '<encoder>' (files digest "
      "<d>), but the files of the scorer's embedder '<dir>' differ ...` / `... but the scorer's embedder is '<dir>' "
      "(their files differ) ...`; nothing scored")
def test_another_encoder_is_refused_on_the_driver(spark, gte_bundle, docs_file, tmp_path, capsys):
    original = Path(gte_bundle["embedder"]["model"])
    other = build_encoder(tmp_path / "elsewhere" / original.name, "gte-tiny", seed=9)  # same folder name, other weights
    digested = build_heads(tmp_path / "digested", 32, ["d"], hidden_dim=8, embedder="/training/cluster/encoder",
                           embedder_digest=encoder_content(str(original)))
    named = build_heads(tmp_path / "named", 32, ["h"], hidden_dim=8, embedder=str(original))
    for heads, expected in [(digested, "was trained on embeddings of '/training/cluster/encoder' (files digest "),
                            (named, f"was trained on embeddings of '{original}', but the scorer's embedder is "
                                    f"'{other}' (their files differ)")]:
        out = tmp_path / "out"
        code = main([*as_cli_args(job_overrides(_bundle(other, heads), [str(docs_file)], out)), "annotate"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("spark-jql: error: head "), err
        assert expected in err
        assert not (out / "scored").exists()
