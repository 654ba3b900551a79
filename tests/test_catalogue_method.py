"""Catalogue: bad input to the JQL method commands (judge, train, evaluate, rank-judges) gets one line naming it.

These run the real CLI without Spark: the judge's checks happen on the driver before a session starts.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from spark_jql.cli import main
from spark_jql.devtools.fake_judge import FakeJudgeServer

from .catalogue import case


def _judge(capsys, tmp_path, judges: dict, *extra: str) -> str:
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "level 3"}) + "\n")
    (tmp_path / "judges.yaml").write_text(yaml.safe_dump(judges))
    code = main(["--set", f"io.input=[{tmp_path / 'docs.jsonl'}]", "--set", f"io.output={tmp_path / 'out'}",
                 "judge", "--judge-config", str(tmp_path / "judges.yaml"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    return err


@case("`judge` with an endpoint that refuses connections (server down, wrong port)",
      "exit 2 within seconds, before Spark starts: `judge 'x': pre-flight request to judges.0.base_url=... failed: "
      "ConnectionRefusedError: [Errno 111] Connection refused`; nothing written")
def test_judge_unreachable_endpoint(tmp_path, capsys):
    with FakeJudgeServer() as server:
        url = server.url
    err = _judge(capsys, tmp_path, {"judges": [{"name": "x", "base_url": url, "model": "m"}], "max_retries": 0})
    assert f"judge 'x': pre-flight request to judges.0.base_url={url}" in err and "refused" in err.lower()


@case("`judge` whose API key variable is not set, or whose prompt file is missing",
      "exit 2 before Spark starts: `judge 'x': judges.0.api_key_env names environment variable X_KEY, which is not set` / "
      "`judges.0.prompt_file: prompt file not found: ...`")
def test_judge_missing_key_and_prompt(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("X_KEY", raising=False)
    err = _judge(capsys, tmp_path, {"judges": [{"name": "x", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                "api_key_env": "X_KEY"}]})
    assert "judges.0.api_key_env names environment variable X_KEY, which is not set" in err
    err = _judge(capsys, tmp_path, {"judges": [{"name": "x", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                "prompt_file": str(tmp_path / "nope.txt")}]})
    assert "judges.0.prompt_file: prompt file not found" in err


@case("a judge answers without the `Educational score: N` line, or with `3.5`",
      "the row keeps the raw answer, no score, error `unparsable answer: no match for score_pattern` / "
      "`unparsable answer: decimal score 3.5 (decimal_scores=reject)`; more than `max_failure_rate` of them stops the job")
def test_judge_unparsable_answers():
    from spark_jql.config import JudgeConfig
    from spark_jql.method.judge import judge_texts

    with FakeJudgeServer() as server:
        cfg = JudgeConfig.model_validate({"judges": [{"name": "x", "base_url": server.url, "model": "m"}]})
        gibberish, decimal = judge_texts(["GIBBERISH", "DECIMAL"], cfg.judges[0], cfg)
    assert gibberish.raw == "I cannot decide." and gibberish.error == "unparsable answer: no match for score_pattern"
    assert decimal.score is None and decimal.error == "unparsable answer: decimal score 3.5 (decimal_scores=reject)"


@case("`rank-judges` / `evaluate` / `train` with a label column of strings (`'12'`)",
      "exit 2: `column 'human' must hold numbers (or lists of numbers for rating columns); found str '12': cast it ...`; "
      "before, '12' was read character by character as the ratings [1, 2] = 1.5")
def test_text_label_column(tmp_path, capsys):
    pd.DataFrame({"human": ["12", "3", "4"], "judge_a": [1, 2, 3]}).to_parquet(tmp_path / "t.parquet")
    assert main(["rank-judges", "--input", str(tmp_path / "t.parquet"), "--label", "human"]) == 2
    err = capsys.readouterr().err
    assert "column 'human' must hold numbers" in err and "'12'" in err


@case("`train` on embeddings of different widths (two embedders mixed), or a validation set of another width",
      "exit 2 before training: `...: column 'embedding' row 40 has 16 values, expected 32 ...` / "
      "`validation embeddings ... have 8 values per row, the training set 32`")
def test_train_wrong_width(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(60, 32)).astype(np.float32)
    emb = [r.tolist() for r in x]
    emb[40] = emb[40][:16]
    (tmp_path / "emb").mkdir()
    pq.write_table(pa.table({"score": np.arange(60) % 6 * 1.0, "embedding": emb}), tmp_path / "emb" / "p.parquet")
    assert main(["train", "--embeddings", str(tmp_path / "emb"), "--output", str(tmp_path / "heads")]) == 2
    assert "column 'embedding' row 40 has 16 values, expected 32" in capsys.readouterr().err
    assert not (tmp_path / "heads").exists()


@case("`judge` rerun over existing labels with another model, prompt or parser (any `io.mode`)",
      "exit 2, nothing deleted: `<out>/judged holds judge labels this run cannot continue: ... setting "
      "judge.judges.0.model (\"a\" -> \"b\") changed. Nothing was deleted: write the new labels beside them with --output "
      "<another directory>, ... or pass --overwrite-labels`; a new endpoint address resumes without re-asking")
def test_judge_labels_are_never_deleted_without_asking(spark, tmp_path, capsys):
    rows = [{"id": str(i), "text": f"doc {i} at level {i % 6}"} for i in range(12)] + [{"id": "b", "text": "BROKEN doc"}]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    judged = tmp_path / "run" / "judged"

    def run(url, model="a", *extra, output_root=tmp_path / "run", inputs=tmp_path / "docs.jsonl"):
        (tmp_path / "judges.yaml").write_text(yaml.safe_dump({
            "judges": [{"name": "j", "base_url": url, "model": model}], "max_retries": 0, "backoff_seconds": 0.01,
            "min_requests": 100}))
        return main(["--set", f"io.input=[{inputs}]", "--set", f"io.output={output_root}",
                     "judge", "--judge-config", str(tmp_path / "judges.yaml"), *extra])

    def labels() -> dict:
        return {r["id"]: (r["judge_j"], r["judge_j_model"]) for r in spark.read.parquet(str(judged)).collect()}

    with FakeJudgeServer() as first, FakeJudgeServer() as second:
        assert run(first.url) == 0
        before = labels()
        capsys.readouterr()
        for extra in ([], ["--set", "io.mode=error"]):
            assert run(first.url, "b", *extra) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"{judged} holds judge labels this run cannot continue" in err
            assert 'setting judge.judges.0.model ("a" -> "b") changed' in err and "Nothing was deleted" in err
            assert "--overwrite-labels" in err and "embedder" not in err
            assert labels() == before
        # another address for the same model and prompt: a resume, not a single document asked again
        assert run(second.url) == 0 and second.total == 1  # the pre-flight request only
        assert labels() == before
        # the documented retry: io.output is the judged run's root, --output elsewhere
        retried = tmp_path / "run" / "retried"
        assert run(second.url, "a", "--retry-failed", "--output", str(retried), inputs=judged) == 0
        assert {d for d in second.requests if "BROKEN" in d} and spark.read.parquet(str(retried)).count() == len(rows)
        # asked in so many words: the labels go and are made again
        assert run(second.url, "b", "--overwrite-labels") == 0
        assert {m for _, m in labels().values()} == {f"b @ {second.url}"}
