"""The command registry: every subcommand has real --help text, and -c/--set/-v work before or after it."""

from __future__ import annotations

import json

import pytest

from spark_jql.cli import all_commands, build_parser, main, parse_args


def test_every_command_is_registered_once_with_help():
    names = [c.name for c in all_commands()]
    assert len(names) == len(set(names))
    assert {"annotate", "thresholds", "filter", "run", "validate", "judge", "embed", "train", "evaluate",
            "rank-judges", "report", "langid", "demo", "bench"} <= set(names)
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
    assert args.config == str(cfg) and args.overrides == ["thresholds.min_docs=5", "io.output=x"] and args.verbose == 1


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
