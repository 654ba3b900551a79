"""``spark-jql report`` and ``spark-jql langid``: subcommands added to the main parser (see cli.py)."""

from __future__ import annotations

import argparse
import json
import sys

COMMANDS = ("report", "langid")


def add_subcommands(sub) -> None:
    rep = sub.add_parser("report", help="HTML report with plots from stats/ and thresholds.json; writes report.html")
    rep.add_argument("--output", help="run directory holding stats/ and thresholds.json (default: io.output)")
    rep.add_argument("--path", help="where to write the page (default: <output>/report.html; report.json beside it)")
    rep.add_argument("--bins", type=int, default=40, help="histogram bins (default 40)")
    rep.add_argument("--quantile", type=float, help="quantile drawn solid and used for the headline numbers (default: filter.quantile of the run)")
    lid = sub.add_parser("langid", help="add language, language_script, language_score to io.input (lingua); writes parquet",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    lid.add_argument("--output", help="output parquet directory (default: <io.output>/with_language)")
    lid.add_argument("--languages", help="comma-separated ISO 639-3 codes to choose among (default: all 75)")
    lid.add_argument("--max-chars", type=int, default=500, help="characters of each document looked at")
    lid.add_argument("--min-confidence", type=float, default=0.0, help="below this the language is null")
    lid.add_argument("--high-accuracy", action="store_true", help="lingua's high-accuracy mode (slower, ~1.4 GB per worker)")
    lid.add_argument("--code-style", choices=["fineweb2", "iso639_3"], default="fineweb2")
    lid.add_argument("--if-exists", choices=["error", "replace", "fill"], default="error",
                     help="when the input already has a language column")


def run(args) -> int:
    from .config import ConfigError, LangIdConfig, load_config
    from .errors import SparkJQLError

    try:
        config = load_config(args.config, args.overrides)
        if args.command == "report":
            from .report import write_report
            from .spark.session import build_session

            spark = build_session(config.spark.master, config.spark.app_name, config.spark.conf)
            quantile = args.quantile if args.quantile is not None else config.filter.quantile
            result = write_report(spark, args.output or config.io.output, args.path, args.bins, quantile)
        else:
            from .langid import cli_langid

            try:
                langid = LangIdConfig(
                    languages=args.languages.split(",") if args.languages else None, max_chars=args.max_chars,
                    min_confidence=args.min_confidence, low_accuracy=not args.high_accuracy,
                    code_style=args.code_style, if_exists=args.if_exists,
                )
            except ValueError as err:
                raise ConfigError(str(err)) from None
            result = cli_langid(config, args.output, langid)
    except (ConfigError, SparkJQLError) as err:
        print(f"spark-jql: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0
