"""The command registry: every subcommand has real --help text, and -c/--set/-v work before or after it."""

from __future__ import annotations

import json

import pytest

from spark_jql.cli import all_commands, build_parser, main, parse_args


def test_every_command_is_registered_once_with_help():
    names = [c.name for c in all_commands()]
    assert len(names) == len(set(names))
    assert {"annotate", "thresholds", "filter", "run", "validate", "judge", "embed", "train", "evaluate",
            "rank-judges", "report", "langid", "demo", "bench", "fetch-models"} <= set(names)
    assert all(c.help.strip() for c in all_commands())


@pytest.mark.parametrize("name", ["annotate", "thresholds", "filter", "run", "embed", "judge", "report"])
def test_stage_help_describes_the_stage(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    description = next(c.description for c in all_commands() if c.name == name).splitlines()[0]
    assert description and description in out and "--config" in out


def test_options_before_and_after_the_command_merge(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("filter:\n  quantile: 0.7\n")
    args = parse_args(["--set", "thresholds.min_docs=5", "run", "-c", str(cfg), "--set", "io.output=x", "-v"])
    assert args.config == [str(cfg)] and args.overrides == ["thresholds.min_docs=5", "io.output=x"] and args.verbose == 1


def test_validate_with_options_after_the_command(tmp_path, capsys):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("filter:\n  quantile: 0.7\n")
    assert main(["validate", "-c", str(cfg), "--set", "thresholds.min_docs=5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["filter"]["quantile"] == 0.7 and printed["thresholds"]["min_docs"] == 5


def test_user_errors_are_one_line_and_exit_2(capsys):
    assert main(["validate", "--set", "filter.quantile=1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spark-jql: error:") and "quantile" in err and "\n" not in err


def test_a_row_accounting_failure_is_one_line_and_exit_code_2(monkeypatch, capsys):
    import dataclasses

    import spark_jql.cli as cli
    from spark_jql.errors import AccountingError, SparkJQLError
    from spark_jql.spark import job

    assert job.AccountingError is AccountingError and issubclass(AccountingError, SparkJQLError)  # old import works

    def lose_a_row(args):
        raise AccountingError("filter: kept 3 + dropped 1 (thresholded 4) != scored 5")

    commands = [dataclasses.replace(c, run=lose_a_row) if c.name == "validate" else c for c in all_commands()]
    monkeypatch.setattr(cli, "all_commands", lambda: commands)
    assert main(["validate"]) == 2
    assert capsys.readouterr().err == "spark-jql: error: filter: kept 3 + dropped 1 (thresholded 4) != scored 5\n"


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", [None] + [c.name for c in all_commands() if not c.passthrough])
def test_help_is_plain_text_and_says_each_default_once(name, capsys):
    out = _help(([name] if name else []) + ["--help"], capsys)
    assert "``" not in out and ":func:" not in out and ":class:" not in out  # no reST markup
    assert "(default: None)" not in out
    flat = " ".join(out.split())
    for option in flat.split(" --")[1:]:  # one option's help each
        assert option.count("(default:") <= 1, option


def test_thresholds_and_filter_help_say_they_read_scored(capsys):
    for name in ("thresholds", "filter"):
        out = " ".join(_help([name, "--help"], capsys).split())
        assert "Reads <io.output>/scored/" in out and "Reads io.input" not in out
    assert "Reads io.input" in " ".join(_help(["annotate", "--help"], capsys).split())


def test_version(capsys):
    out = _help(["--version"], capsys)
    assert out.startswith("spark-jql ") and out.strip() != "spark-jql"


def test_several_configs_merge_through_the_cli(tmp_path, capsys):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("io:\n  output: from_a\nthresholds:\n  min_docs: 7\n")
    b.write_text("io:\n  output: from_b\n")
    assert main(["-c", str(a), "validate", "-c", str(b)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["io"]["output"] == "from_b" and printed["thresholds"]["min_docs"] == 7


def test_checks_without_spark_come_first(tmp_path, capsys, monkeypatch):
    """A missing local input or scored/ is one line before any SparkSession starts."""
    import spark_jql.spark.session as session

    def no_spark(*args, **kwargs):
        raise AssertionError("a SparkSession was started")

    monkeypatch.setattr(session, "session_for", no_spark)
    for var in ("PYSPARK_GATEWAY_PORT", "DATABRICKS_RUNTIME_VERSION", "SPARK_REMOTE", "HADOOP_CONF_DIR", "YARN_CONF_DIR"):
        monkeypatch.delenv(var, raising=False)
    base = ["--set", f"io.output={tmp_path / 'out'}", "--set", "spark.master=local[1]"]
    assert main([*base, "--set", f"io.input=[{tmp_path}/none-*.parquet]", "run"]) == 2
    assert "matches no file" in capsys.readouterr().err
    for stage in ("thresholds", "filter"):
        assert main([*base, stage]) == 2
        err = capsys.readouterr().err
        assert f"no scored output at {tmp_path / 'out' / 'scored'}" in err and "\n" not in err.strip()
    (tmp_path / "out" / "scored").mkdir(parents=True)
    assert main([*base, "filter"]) == 2
    assert "no thresholds at" in capsys.readouterr().err


def test_no_early_check_where_a_plain_path_may_be_the_clusters(monkeypatch, tmp_path):
    from spark_jql.cli import early
    from spark_jql.config import load_config

    cfg = load_config(None, [f"io.input=[{tmp_path}/none-*.parquet]", "spark.master=yarn"])
    early.inputs(cfg)  # yarn: a plain path is HDFS's, not this machine's; Spark says it
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1234")  # under spark-submit
    early.inputs(load_config(None, [f"io.input=[{tmp_path}/none-*.parquet]"]))
