"""Catalogue: bad configuration, models, columns and artefacts are refused on the driver before any scoring.

Every case runs the real CLI (``spark_jql.cli.main``) and checks the one line on stderr, exit
code 2, and that nothing ran: no ``scored/`` (or ``filtered/``) was written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spark_jql.cli import main
from spark_jql.devtools.sample_data import generate_documents, write_jsonl
from spark_jql.devtools.tiny_models import build_encoder, random_head
from spark_jql.scoring.heads import save_lightning_checkpoint

from .catalogue import case
from .conftest import as_cli_args, job_overrides


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory) -> Path:
    return write_jsonl(generate_documents(20, seed=3), tmp_path_factory.mktemp("preflight_in") / "docs.jsonl")[0]


def _refused(capsys, bundle: dict, inputs: list[str], out: Path, stage: str = "run", **sets: str) -> str:
    """Run ``stage``; assert exit code 2, one line on stderr, and no scored output. Returns the line."""
    code = main([*as_cli_args(job_overrides(bundle, inputs, out, **sets)), stage])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("spark-jql: error: "), err
    assert not (out / "scored").exists()
    return err


def _model_copy(bundle: dict, tmp_path: Path) -> tuple[dict, Path]:
    encoder = tmp_path / "encoder"
    shutil.copytree(bundle["embedder"]["model"], encoder)
    return {**bundle, "embedder": {"model": str(encoder)}}, encoder


# -- configuration: refused when it is loaded, before Spark starts ----------------------------------------
@case("`thresholds.relative_error=1e-12` (beyond Spark's percentile_approx accuracy limit)",
      "exit 2 at config load: `thresholds.relative_error: 1e-12 is below 1/2147483647 ...`; nothing scored")
def test_relative_error_beyond_spark_accuracy(gte_bundle, docs_file, tmp_path, capsys):
    err = _refused(capsys, gte_bundle, [str(docs_file)], tmp_path / "out", **{"thresholds.relative_error": "1.0e-12"})
    assert "thresholds.relative_error: 1e-12 is below 1/2147483647" in err
    assert not (tmp_path / "out").exists()


@case("`columns.language=[]`", "exit 2 at config load: `columns: language is empty: name the language column(s) ... "
      "or set columns.constant_language`; before, scoring ran and then said \"no scored documents\"")
def test_empty_language_list(gte_bundle, docs_file, tmp_path, capsys):
    err = _refused(capsys, gte_bundle, [str(docs_file)], tmp_path / "out", **{"columns.language": "[]"})
    assert "columns: language is empty" in err and "columns.constant_language" in err


@case("`columns.text=''`", "exit 2 at config load: `columns.text: String should have at least 1 character`")
def test_empty_text_column_name(gte_bundle, docs_file, tmp_path, capsys):
    err = _refused(capsys, gte_bundle, [str(docs_file)], tmp_path / "out", **{"columns.text": "''"})
    assert "columns.text: String should have at least 1 character" in err


@pytest.mark.parametrize("output", ["''", "/", "file:///", "/tmp/.."])
@case("`io.output` empty or a filesystem root (`''`, `/`, `file:///`, `/tmp/..`)",
      "exit 2 at config load: `io.output: output '/' is the root of a filesystem ...` (`... is empty`); nothing deleted")
def test_output_at_filesystem_root(gte_bundle, docs_file, tmp_path, capsys, output):
    err = _refused(capsys, gte_bundle, [str(docs_file)], tmp_path / "out", **{"io.output": output})
    assert "io.output: output " in err and ("root of a filesystem" in err or "is empty" in err)


@case("`io.output` inside the input (a directory or glob given as `io.input`), or an input inside scored/ ...",
      "exit 2 at config load: `io: output '<in>/out' lies inside the input '<in>' ...` / `io: input "
      "'<out>/scored/*.parquet' lies inside '<out>/scored', which a run with output '<out>' replaces`")
def test_output_inside_input(gte_bundle, docs_file, tmp_path, capsys):
    folder = docs_file.parent
    err = _refused(capsys, gte_bundle, [str(folder)], folder / "out")
    assert f"io: output '{folder / 'out'}' lies inside the input '{folder}'" in err
    err = _refused(capsys, gte_bundle, [str(tmp_path / "out" / "scored" / "*.parquet")], tmp_path / "out")
    assert f"input '{tmp_path / 'out' / 'scored' / '*.parquet'}' lies inside '{tmp_path / 'out' / 'scored'}', which a run" in err


# -- the input's columns (schema only) ----------------------------------------------------------------
@case("the text column is missing from the input",
      "exit 2 before scoring: `text column 'text' (columns.text) is not in the input; its columns are [...]` "
      "(it used to blame a healthy file and suggest io.on_bad_file=skip)")
def test_missing_text_column(spark, gte_bundle, tmp_path, capsys):
    path = tmp_path / "in" / "docs.jsonl"
    write_jsonl([{"id": str(i), "content": "Hallo Welt", "language": "deu"} for i in range(5)], path)
    err = _refused(capsys, gte_bundle, [str(path)], tmp_path / "out", stage="annotate")
    assert "text column 'text' (columns.text) is not in the input; its columns are ['content', 'id', 'language']" in err
    assert "on_bad_file" not in err and "cannot read input file" not in err


@case("the text column is not a string (e.g. a number in every row)",
      "exit 2 before scoring: `text column 'text' has type bigint, not string (columns.text, in the input): a text column that is not a string must be cast first ...`")
def test_text_column_not_a_string(spark, gte_bundle, tmp_path, capsys):
    path = tmp_path / "in" / "docs.jsonl"
    write_jsonl([{"id": str(i), "text": i, "language": "deu"} for i in range(5)], path)
    err = _refused(capsys, gte_bundle, [str(path)], tmp_path / "out", stage="annotate")
    assert "text column 'text' has type bigint, not string (columns.text, in the input): a text column" in err


@case("a `columns.language` column is missing from the input (`run`)",
      "exit 2 before scoring: `language column(s) ['lang'] (columns.language) not in the input; ...`")
def test_missing_language_column_for_run(spark, gte_bundle, docs_file, tmp_path, capsys):
    err = _refused(capsys, gte_bundle, [str(docs_file)], tmp_path / "out", **{"columns.language": "[lang]"})
    assert "language column(s) ['lang'] (columns.language) not in the input" in err
    assert "columns.constant_language" in err


@case("a `columns.language` column that is a struct, array or map",
      "exit 2 before scoring: `language column 'meta' (columns.language) in the input has type struct<...>; a language "
      "key must be a string, integer or boolean ...`")
def test_language_column_not_a_plain_value(spark, gte_bundle, tmp_path, capsys):
    path = tmp_path / "in" / "docs.jsonl"
    write_jsonl([{"id": str(i), "text": "Hallo Welt", "meta": {"lang": "deu"}} for i in range(5)], path)
    err = _refused(capsys, gte_bundle, [str(path)], tmp_path / "out", **{"columns.language": "[meta]"})
    assert "language column 'meta' (columns.language) in the input has type struct<lang:string>" in err


@case("`langid`, `embed` or `judge` with `--output` that holds the input, or is a filesystem root",
      "exit 2 before any task: `output '<dir>' lies inside the input ...` / `input '<dir>/*.jsonl' lies inside "
      "'<dir>', which a run with output '<dir>' replaces`")
def test_stage_output_over_the_input(spark, gte_bundle, docs_file, tmp_path, capsys):
    args = [*as_cli_args(job_overrides(gte_bundle, [str(docs_file.parent / "*.jsonl")], tmp_path / "out")), "langid"]
    assert main([*args, "--output", str(docs_file.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"input '{docs_file.parent / '*.jsonl'}' lies inside '{docs_file.parent}', which a run with output" in err
    assert docs_file.is_file()
    assert main([*args, "--output", "/"]) == 2
    assert "output '/' is empty or the root of a filesystem" in capsys.readouterr().err


# -- the embedder and its tokenizer (files and headers only; the encoder is not run) ------------------
@case("the embedder folder has no tokenizer files (transformers would build an empty 5-token tokenizer)",
      "exit 2 before scoring: `embedder folder <dir> has no tokenizer files (none of tokenizer.json, ...)`")
def test_encoder_without_tokenizer(spark, gte_bundle, docs_file, tmp_path, capsys):
    bundle, encoder = _model_copy(gte_bundle, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (encoder / name).unlink()
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"embedder folder {encoder} has no tokenizer files (none of tokenizer.json" in err


def _tokens(model_dir) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(str(model_dir)))


@case("the tokenizer is not the model's: more tokens than the embedding table has rows",
      "exit 2 before scoring: `the tokenizer in <dir> has <n> tokens but the model's embedding table has 300 rows ...`")
def test_tokenizer_larger_than_embedding_table(spark, gte_bundle, docs_file, tmp_path, capsys):
    encoder = build_encoder(tmp_path / "encoder", "gte-tiny", vocab_size=300)
    bundle = {**gte_bundle, "embedder": {"model": str(encoder)}}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"the tokenizer in {encoder} has {_tokens(encoder)} tokens but the model's embedding table has 300 rows" in err


@case("the tokenizer is not the model's: far fewer tokens than the embedding table",
      "exit 2 before scoring: `the tokenizer in <dir> has <n> tokens but ... 5000 rows: it is not this model's tokenizer`")
def test_tokenizer_much_smaller_than_embedding_table(spark, gte_bundle, docs_file, tmp_path, capsys):
    encoder = build_encoder(tmp_path / "encoder", "gte-tiny", vocab_size=5000)
    bundle = {**gte_bundle, "embedder": {"model": str(encoder)}}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"has {_tokens(encoder)} tokens but the model's embedding table has 5000 rows: it is not this model's tokenizer" in err


@case("`model.safetensors` is truncated or corrupt",
      "exit 2 before scoring: `<dir>/model.safetensors is corrupt or truncated (SafetensorError: ...); download or copy it again`")
def test_corrupt_safetensors(spark, gte_bundle, docs_file, tmp_path, capsys):
    bundle, encoder = _model_copy(gte_bundle, tmp_path)
    weights = encoder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"{weights} is corrupt or truncated (SafetensorError: " in err


@case("config.json and the weights belong to different models",
      "exit 2 before scoring: `<dir>: config.json says vocab_size 700 x hidden_size 32, but no tensor ... has that shape`")
def test_config_and_weights_disagree(spark, gte_bundle, docs_file, tmp_path, capsys):
    bundle, encoder = _model_copy(gte_bundle, tmp_path)
    settings = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps({**settings, "vocab_size": 700}))
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"{encoder}: config.json says vocab_size 700 x hidden_size 32, but no tensor" in err


@case("a Hub embedder id that is not cached while `HF_HUB_OFFLINE=1`",
      "exit 2 before scoring: `cannot load embedder '<id>': HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache "
      "(<dir>). Pre-download it (hf download <id> ...) or give a local path instead.`")
def test_uncached_hub_embedder_offline(spark, gte_bundle, docs_file, tmp_path, capsys, empty_hf_cache):
    bundle = {**gte_bundle, "embedder": {"model": "Snowflake/snowflake-arctic-embed-m-v2.0"}}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert ("cannot load embedder 'Snowflake/snowflake-arctic-embed-m-v2.0': HF_HUB_OFFLINE=1 and it is not in the "
            f"Hugging Face cache ({empty_hf_cache})") in err
    assert "`hf download Snowflake/snowflake-arctic-embed-m-v2.0`" in err


@case("`scorer.embedder.model` names a local folder that does not exist",
      "exit 2 before scoring: `embedder '<path>' looks like a local path but does not exist`")
def test_missing_model_folder(spark, gte_bundle, docs_file, tmp_path, capsys):
    bundle = {**gte_bundle, "embedder": {"model": str(tmp_path / "no" / "model")}}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"embedder '{tmp_path / 'no' / 'model'}' looks like a local path but does not exist" in err


@case("config.json of a model type transformers does not know (custom code, `trust_remote_code` off)",
      "exit 2 before scoring: `<dir>/config.json: transformers cannot read it (ValueError: ...)`")
def test_unknown_model_type(spark, gte_bundle, docs_file, tmp_path, capsys):
    bundle, encoder = _model_copy(gte_bundle, tmp_path)
    settings = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps({**settings, "model_type": "no-such-model"}))
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"{encoder / 'config.json'}: transformers cannot read it (" in err


# -- heads (loaded and probed for real: they are tiny) --------------------------------------------------
@case("a head file that does not exist", "exit 2 before scoring: `head 'gone': checkpoint file not found: <path>`")
def test_missing_head_file(spark, gte_bundle, docs_file, tmp_path, capsys):
    bundle = {**gte_bundle, "heads": [{"name": "gone", "path": str(tmp_path / "gone.ckpt")}]}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"head 'gone': checkpoint file not found: {tmp_path / 'gone.ckpt'}" in err


@case("a Hub head that is not cached while `HF_HUB_OFFLINE=1`",
      "exit 2 before scoring: `cannot load head 'h' from '<repo>/<file>': HF_HUB_OFFLINE=1 and it is not in the "
      "Hugging Face cache (<dir>). Pre-download it (hf download <repo> <file> ...)`")
def test_uncached_hub_head_offline(spark, gte_bundle, docs_file, tmp_path, capsys, empty_hf_cache):
    bundle = {**gte_bundle, "heads": [{"name": "h", "repo_id": "Jackal-AI/JQL-Edu-Heads", "filename": "checkpoints/x.ckpt"}]}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert "cannot load head 'h' from 'Jackal-AI/JQL-Edu-Heads/checkpoints/x.ckpt': HF_HUB_OFFLINE=1" in err
    assert "`hf download Jackal-AI/JQL-Edu-Heads checkpoints/x.ckpt`" in err


@case("a head whose weights hold NaN", "exit 2 before scoring: `head 'broken' (<file>) gives non-finite scores on a probe ...`")
def test_head_with_nan_weights(spark, gte_bundle, docs_file, tmp_path, capsys):
    head = random_head("broken", 32, 64)
    head.w2[0, 3] = float("nan")
    path = save_lightning_checkpoint(head, tmp_path / "broken.ckpt")
    bundle = {**gte_bundle, "heads": [{"name": "broken", "path": str(path)}]}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert f"head 'broken' ({path}) gives non-finite scores on a probe" in err


@case("a head whose input size is not the embedder's", "exit 2 before scoring: `heads ['wide'] take 48-dimensional input "
      "but embedder '<dir>' produces 32-dimensional embeddings`")
def test_head_for_another_embedder(spark, gte_bundle, docs_file, tmp_path, capsys):
    path = save_lightning_checkpoint(random_head("wide", 48, 64), tmp_path / "wide.ckpt")
    bundle = {**gte_bundle, "heads": [{"name": "wide", "path": str(path)}]}
    err = _refused(capsys, bundle, [str(docs_file)], tmp_path / "out")
    assert "heads ['wide'] take 48-dimensional input but embedder" in err and "32-dimensional embeddings" in err


@case("the model fails to load on an executor although the driver's check passed (e.g. other files there)",
      "exit 2, one line: `cannot load the scorer on executor pid N (cpu): <dir>/model.safetensors is corrupt or "
      "truncated ...` (not Spark's traceback of every task attempt)")
def test_executor_load_error_is_one_line(spark, gte_bundle, docs_file, tmp_path, capsys, monkeypatch):
    from spark_jql.spark import preflight

    bundle, encoder = _model_copy(gte_bundle, tmp_path)
    weights = encoder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    monkeypatch.setattr(preflight, "check_scorer", lambda config, with_heads=True: None)  # the driver sees a healthy model
    code = main([*as_cli_args(job_overrides(bundle, [str(docs_file)], tmp_path / "out")), "annotate"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err[-2000:]
    assert len(err.splitlines()) == 1, err[-2000:]
    assert "cannot load the scorer on executor pid " in err and f"{weights} is corrupt or truncated" in err


# -- artefacts of earlier stages ------------------------------------------------------------------------
def _thresholds_json() -> dict:
    language = {"language": {"language": "deu"}, "documents": 50, "thresholds": {"0.6": 2.0, "0.7": 2.5},
                "fallback": False, "own_thresholds": {"0.6": 2.0, "0.7": 2.5}}
    return {"score_column": "jql_score", "language_columns": ["language"], "quantiles": [0.6, 0.7],
            "relative_error": 0.001, "min_docs": 10, "global_documents": 50,
            "global_thresholds": {"0.6": 2.0, "0.7": 2.5}, "languages": [language], "format": "spark_jql-thresholds-v1"}


@pytest.mark.parametrize("damage, expected", [
    (lambda t: json.dumps(t)[:120], "is not valid JSON (Unterminated string"),
    (lambda t: json.dumps({**t, "global_thresholds": {"0.7": 2.5}}),
     "global_thresholds lacks the threshold for quantile(s) ['0.6']"),
    (lambda t: json.dumps({**t, "min_docs": "ten"}), "min_docs: Input should be a valid integer (got 'ten')"),
    (lambda t: json.dumps({**t, "languages": {"deu": 1}}), "languages: Input should be a valid array"),
    (lambda t: json.dumps(t).replace('"thresholds": {"0.6": 2.0', '"thresholds": {"0.6": NaN'),
     "languages.0.thresholds.0.6: Input should be a finite number (got nan)"),
    (lambda t: json.dumps({**t, "format": "other"}), "is not a spark_jql thresholds file (format='other'"),
])
@case("thresholds.json truncated or tampered with: not JSON, a quantile's threshold missing, wrong types, NaN/inf",
      "exit 2 before filtering: `thresholds file <out>/thresholds.json: languages.0.thresholds.0.6: Input should be a "
      "finite number (got nan)` (the file and the key named); nothing written")
def test_tampered_thresholds_file(spark, gte_bundle, docs_file, tmp_path, capsys, damage, expected):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thresholds.json").write_text(damage(_thresholds_json()))
    err = _refused(capsys, gte_bundle, [str(docs_file)], out, stage="filter")
    assert f"thresholds file {out / 'thresholds.json'}" in err and expected in err
    assert not (out / "filtered").exists()


@case("thresholds.json lists a language twice",
      "exit 2 before filtering: `thresholds file <out>/thresholds.json: language {\"language\": \"deu\"} is listed twice "
      "(languages.0 and languages.1) ...`; nothing written (a second entry would duplicate the language's documents)")
def test_thresholds_file_lists_a_language_twice(spark, gte_bundle, docs_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    thresholds = _thresholds_json()
    thresholds["languages"] = thresholds["languages"] * 2
    (out / "thresholds.json").write_text(json.dumps(thresholds))
    err = _refused(capsys, gte_bundle, [str(docs_file)], out, stage="filter")
    assert f"thresholds file {out / 'thresholds.json'}: language {{\"language\": \"deu\"}} is listed twice " \
           "(languages.0 and languages.1)" in err
    assert not (out / "filtered").exists()


@case("`io.output_columns` names a column that neither the input nor spark_jql has",
      "exit 2 before anything is scored: `io.output_columns names column(s) ['nope'] that the filtered output will not "
      "have (...); the available columns are ['id', ..., 'text', ..., 'jql_score', ...]`")
def test_unknown_output_column(spark, gte_bundle, docs_file, tmp_path, capsys):
    err = _refused(capsys, gte_bundle, [str(docs_file)], tmp_path / "out",
                   **{"io.output_columns": '["id", "nope", "jql_score"]'})
    assert "io.output_columns names column(s) ['nope'] that the filtered output will not have" in err
    available = err.split("the available columns are ", 1)[1]
    assert all(f"'{c}'" in available for c in ("id", "text", "url", "jql_score", "jql_threshold"))


@case("`filter.quantile` that thresholds.json was not computed for",
      "exit 2 before filtering: `<out>/thresholds.json has thresholds for quantiles [0.6, 0.7], not for filter.quantile 0.8 ...`")
def test_filter_quantile_not_in_thresholds(spark, gte_bundle, docs_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thresholds.json").write_text(json.dumps(_thresholds_json()))
    err = _refused(capsys, gte_bundle, [str(docs_file)], out, stage="filter",
                   **{"thresholds.quantiles": "[0.6, 0.8]", "filter.quantile": "0.8"})
    assert "has thresholds for quantiles [0.6, 0.7], not for filter.quantile 0.8" in err


@case("`thresholds` or `filter` run before `annotate` (no scored/)",
      "exit 2 before Spark starts: `no scored output at <out>/scored: thresholds reads <io.output>/scored/ (not "
      "io.input); run annotate (or run) first, ...`")
def test_thresholds_before_annotate(spark, gte_bundle, docs_file, tmp_path, capsys):
    err = _refused(capsys, gte_bundle, [str(docs_file)], tmp_path / "out", stage="thresholds")
    assert f"no scored output at {tmp_path / 'out' / 'scored'}: thresholds reads <io.output>/scored/" in err


def test_connect_client_without_the_model_files_leaves_the_check_to_executors(gte_bundle, tmp_path, monkeypatch,
                                                                               empty_hf_cache):
    """Databricks Connect on a laptop: models in a cluster-only path or Hub cache are not refused by the client."""
    from spark_jql.config import ScorerConfig
    from spark_jql.errors import ModelFilesError, ModelNotAvailableError
    from spark_jql.spark import preflight

    cluster_only = ScorerConfig.model_validate({**gte_bundle, "embedder": {"model": "/Volumes/main/models/arctic"}})
    hub = ScorerConfig.model_validate({**gte_bundle, "embedder": {"model": "Snowflake/snowflake-arctic-embed-m-v2.0"}})
    bundle, encoder = _model_copy(gte_bundle, tmp_path)
    (encoder / "tokenizer.json").unlink()
    broken = ScorerConfig.model_validate(bundle)
    monkeypatch.setattr(preflight, "_connect", lambda spark: False)
    with pytest.raises(ModelNotAvailableError, match="/Volumes/main/models/arctic"):
        preflight.check_models(None, cluster_only)
    monkeypatch.setattr(preflight, "_connect", lambda spark: True)
    assert preflight.check_models(None, cluster_only) is None
    assert preflight.check_models(None, hub) is None
    with pytest.raises(ModelFilesError, match="no tokenizer files"):  # files the client sees are still checked
        preflight.check_models(None, broken)
