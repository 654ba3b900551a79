"""What decides a stage's output is computed by construction (no Spark): settings minus runtime ones, files by content."""

from __future__ import annotations

import shutil

import pytest
from pydantic import BaseModel

from spark_jql.config import JudgeConfig, ScorerConfig, load_config
from spark_jql.fingerprint import Fingerprint, decisive, file_digest, runtime


def test_runtime_fields_are_left_out_and_any_other_field_is_in():
    class Settings(BaseModel):
        model: str = "m"
        batch: int = runtime(8)
        added_later: float = 0.5  # nobody had to remember to list it

    assert decisive(Settings()) == {"model": "m", "added_later": 0.5}
    scorer = decisive(ScorerConfig())
    assert {"token_budget", "max_batch_docs", "oom_retry"}.isdisjoint(scorer)
    assert {"device", "attn_implementation"}.isdisjoint(scorer["embedder"])
    assert {"model", "max_length", "dtype", "pooling", "prefix", "task_adapter"} <= set(scorer["embedder"])
    assert "aggregate" in scorer and "heads" in scorer


def test_difference_names_the_setting_or_the_file():
    before = Fingerprint({"scorer": {"aggregate": "mean"}}, {"encoder/model.safetensors": "a"})
    assert before.difference(before.as_dict()) is None
    assert "setting scorer.aggregate" in Fingerprint({"scorer": {"aggregate": "max"}}, before.files).difference(before.as_dict())
    changed = Fingerprint(before.settings, {"encoder/model.safetensors": "b"}).difference(before.as_dict())
    assert changed == "file encoder/model.safetensors has other contents"
    assert "no fingerprint" in before.difference({"scorer": "0123abcd"})  # an older manifest


def test_file_identity_is_content_not_name_or_date(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"x" * 1000)
    copy = tmp_path / "elsewhere" / "a.bin"
    copy.parent.mkdir()
    shutil.copy(a, copy)
    assert file_digest(a) == file_digest(copy)
    a.write_bytes(b"x" * 999 + b"y")  # same size, one byte replaced in place
    assert file_digest(a) != file_digest(copy)


def test_scorer_fingerprint_sees_replaced_weights_but_not_a_copy(gte_bundle, tmp_path):
    from spark_jql.devtools.tiny_models import build_encoder
    from spark_jql.scoring.identity import scorer_fingerprint

    encoder = tmp_path / "encoder"
    shutil.copytree(gte_bundle["embedder"]["model"], encoder)
    scorer = ScorerConfig.model_validate({**gte_bundle, "embedder": {"model": str(encoder)}})
    first = scorer_fingerprint(scorer, "text")
    runtime_only = ScorerConfig.model_validate({**gte_bundle, "embedder": {"model": str(encoder), "device": "cpu"},
                                                "token_budget": 9000, "max_batch_docs": 7})
    assert scorer_fingerprint(runtime_only, "text").difference(first.as_dict()) is None
    build_encoder(tmp_path / "other", "gte-tiny", seed=99)
    shutil.copy(tmp_path / "other" / "model.safetensors", encoder / "model.safetensors")  # same folder, new weights
    assert scorer_fingerprint(scorer, "text").difference(first.as_dict()) == "file encoder/model.safetensors has other contents"


@pytest.mark.parametrize("change", [{"temperature": 0.7}, {"max_tokens": 64}, {"max_chars": 30},
                                   {"score_pattern": r"Score: (\d)"}, {"decimal_scores": "round"},
                                   {"judges": [{"name": "fake", "base_url": "http://h:1/v1", "model": "other-model"}]}])
def test_judge_fingerprint_changes_with_what_decides_the_labels(change):
    from spark_jql.method.judge import check_judges
    from spark_jql.spark.judge import JudgeStage

    def fingerprint(**kw):
        cfg = JudgeConfig.model_validate({"judges": [{"name": "fake", "base_url": "http://h:1/v1", "model": "m"}], **kw})
        return JudgeStage(load_config(None, []), cfg, "out", check_judges(cfg), None, False).fingerprint()

    base = fingerprint()
    assert fingerprint(**change).difference(base.as_dict()) is not None
    how_it_runs = {"concurrency": 3, "max_retries": 0, "timeout_seconds": 5, "preflight": False,
                   "judges": [{"name": "fake", "base_url": "http://other:2/v1", "model": "m", "concurrency": 2}]}
    assert fingerprint(**how_it_runs).difference(base.as_dict()) is None


def test_settings_that_resolve_alike_are_the_same_run(gte_bundle):
    """``max_length: auto`` and the model's own 8192 write the same scores: a resume must not start over."""
    from spark_jql.scoring.identity import scorer_fingerprint

    auto = ScorerConfig(**gte_bundle)
    explicit = ScorerConfig(**{**gte_bundle, "embedder": {**gte_bundle["embedder"], "max_length": 8192, "prefix": ""}})
    shorter = ScorerConfig(**{**gte_bundle, "embedder": {**gte_bundle["embedder"], "max_length": 512}})
    assert scorer_fingerprint(auto, "text").hash == scorer_fingerprint(explicit, "text").hash
    assert "max_length" in scorer_fingerprint(shorter, "text").difference(scorer_fingerprint(auto, "text").as_dict())
