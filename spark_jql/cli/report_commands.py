"""Subcommands that read or prepare a run's data: report (HTML page) and langid (language columns)."""

from __future__ import annotations

import argparse

from spark_jql.cli.registry import Command
from spark_jql.config import ConfigError, LangIdConfig, load_config


def _report_arguments(rep: argparse.ArgumentParser) -> None:
    rep.add_argument("--output", help="run directory holding stats/ and thresholds.json (default: io.output)")
    rep.add_argument("--path", help="where to write the page (default: <output>/report.html; report.json beside it)")
    rep.add_argument("--bins", type=int, default=40, help="histogram bins (default 40)")
    rep.add_argument("--quantile", type=float,
                     help="quantile drawn solid and used for the headline numbers (default: filter.quantile of the run)")


def _report(args: argparse.Namespace) -> dict:
    from spark_jql.report import require_plotting, write_report
    from spark_jql.spark.session import session_for

    require_plotting()  # before the SparkSession starts
    config = load_config(args.config, args.overrides)
    quantile = args.quantile if args.quantile is not None else config.filter.quantile
    return write_report(session_for(config), args.output or config.io.output, args.path, args.bins, quantile,
                        samples=config.report, text_column=config.columns.text)


def _langid_arguments(lid: argparse.ArgumentParser) -> None:
    lid.add_argument("--output", help="output parquet directory (default: <io.output>/with_language)")
    lid.add_argument("--languages", help="comma-separated ISO 639-3 codes to choose among (default: all 75)")
    lid.add_argument("--max-chars", type=int, default=500, help="characters of each document looked at")
    lid.add_argument("--min-confidence", type=float, default=0.0, help="below this the language is null")
    lid.add_argument("--high-accuracy", action="store_true", help="lingua's high-accuracy mode (slower, ~1.4 GB per worker)")
    lid.add_argument("--code-style", choices=["fineweb2", "iso639_3"], default="fineweb2",
                     help="language codes as FineWeb2 writes them, or lingua's ISO 639-3")
    lid.add_argument("--if-exists", choices=["error", "replace", "fill"], default="error",
                     help="when the input already has a language column")


def _langid(args: argparse.Namespace) -> dict:
    from spark_jql.spark.langid import cli_langid

    config = load_config(args.config, args.overrides)
    try:
        langid = LangIdConfig(
            languages=args.languages.split(",") if args.languages else None, max_chars=args.max_chars,
            min_confidence=args.min_confidence, low_accuracy=not args.high_accuracy,
            code_style=args.code_style, if_exists=args.if_exists,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return cli_langid(config, args.output, langid)


COMMANDS = [
    Command("report", "HTML report with plots from stats/ and thresholds.json; writes report.html", _report,
            _report_arguments,
            description="Read a run's stats/ and thresholds.json and write a self-contained HTML page (score\n"
                        "histograms per language, thresholds, kept/dropped counts) plus report.json.\n"
                        "report.samples: N adds N example documents per score band from scored/ (off by default),\n"
                        "each cut to report.sample_chars characters."),
    Command("langid", "add language, language_script, language_score to io.input (lingua); writes parquet", _langid,
            _langid_arguments,
            description="Language identification for corpora without FineWeb2's language columns (lingua)."),
]
