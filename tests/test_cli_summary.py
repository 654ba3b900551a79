"""The short summary a job stage prints for people (the full JSON stays in summary.json and behind --json)."""

from __future__ import annotations

from spark_jql.cli.summary import MAX_LANGUAGES, command_line, job_summary
from spark_jql.config import load_config

SUMMARY = {
    "annotate": {"input_rows": 240, "input_files": 3, "units": 1, "units_resumed": 0, "scored_rows": 240,
                 "rows_without_text": 2, "seconds": 12.5, "docs_per_second": 40.1, "skipped_files": [], "skipped_records": 0},
    "thresholds": {"file": "/o/thresholds.json", "languages": 3, "fallback_languages": 1,
                   "global_thresholds": {"0.6": 2.91234, "0.7": 3.2}, "documents": 240},
    "filter": {"quantile": 0.6, "scored_rows": 240, "kept_rows": 96, "dropped_rows": 144,
               "dropped_by_reason": {"below_threshold": 140, "no_score": 4}, "rows_with_unknown_language": 0,
               "per_language": [{"language": "deu", "language_script": "Latn", "documents": 100, "kept_documents": 40,
                                 "tokens": 1, "kept_tokens": 1, "token_retention": 1.0},
                                {"language": "ell", "language_script": "Grek", "documents": 140, "kept_documents": 56,
                                 "tokens": 1, "kept_tokens": 1, "token_retention": 1.0}]},
}


def _config(tmp_path):
    return load_config(None, [f"io.output={tmp_path / 'o'}", "thresholds.min_docs=50"])


def test_run_summary_says_rows_outputs_time_and_next(tmp_path):
    text = job_summary("run", SUMMARY, _config(tmp_path), ["conf/local.yaml"], ["io.input=[a b]"], 25.04)
    lines = text.splitlines()
    assert len(lines) < 25
    assert "read 240 rows from 3 files" in text and "scored 240 (2 without text) in 12.5 s" in text
    assert "3 language(s); 1 with fewer than thresholds.min_docs=50" in text and "q0.6 = 2.912" in text
    assert "kept 96 of 240 (40.0%), dropped 144 (below_threshold: 140, no_score: 4)" in text
    assert any(line.split() == ["deu/Latn", "100", "40", "40.0%"] for line in lines)
    for folder in ("scored", "stats", "filtered", "dropped"):
        assert any(line.split() == [folder, str(tmp_path / "o" / folder)] for line in lines), folder
    assert "/o/thresholds.json" in text and str(tmp_path / "o" / "summary.json") in text
    assert "done in 25.0 s" in text
    assert lines[-1] == "next: spark-jql -c conf/local.yaml --set 'io.input=[a b]' report"


def test_each_stage_shows_only_its_part_and_its_next_command(tmp_path):
    cfg = _config(tmp_path)
    th = job_summary("thresholds", SUMMARY, cfg, ["a.yaml", "b.yaml"], [], 1.0)
    assert "thresholds:" in th and "annotate:" not in th and "filter (" not in th
    assert th.splitlines()[-1] == "next: spark-jql -c a.yaml -c b.yaml filter"
    assert "filtered" not in th and "/o/thresholds.json" in th
    flt = job_summary("filter", SUMMARY, cfg, [], [], 1.0)
    assert "kept 96 of 240" in flt and "thresholds:" not in flt
    assert flt.splitlines()[-1] == "next: spark-jql report"
    ann = job_summary("annotate", SUMMARY, cfg, [], [], 1.0)
    assert "annotate: read 240" in ann and ann.splitlines()[-1] == "next: spark-jql thresholds"


def test_many_languages_are_cut_short(tmp_path):
    many = [{"language": f"l{i:03d}", "documents": 10, "kept_documents": 4, "tokens": 1, "kept_tokens": 1,
             "token_retention": 1.0} for i in range(MAX_LANGUAGES + 5)]
    text = job_summary("filter", {"filter": {**SUMMARY["filter"], "per_language": many}}, _config(tmp_path), [], [], 1.0)
    assert "l000" in text and f"l{MAX_LANGUAGES + 4:03d}" not in text and "... 5 more language(s)" in text


def test_output_tables_are_named_instead_of_folders(tmp_path):
    cfg = load_config(None, [f"io.output={tmp_path / 'o'}", "io.output_tables.filtered=db.kept",
                             "io.output_tables.dropped=db.dropped"])
    text = job_summary("filter", SUMMARY, cfg, [], [], 1.0)
    assert any(line.split() == ["filtered", "db.kept"] for line in text.splitlines())


def test_command_line_quotes_for_the_shell():
    assert command_line(["my conf.yaml"], ["io.input=[x]"], "filter") == "spark-jql -c 'my conf.yaml' --set 'io.input=[x]' filter"
