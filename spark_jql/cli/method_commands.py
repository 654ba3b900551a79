"""The JQL method's subcommands (see docs/jql_method.md): judge, embed, train, evaluate, rank-judges.

    spark-jql -c job.yaml judge --judge-config judges.yaml          # step 2: LLM labels
    spark-jql -c job.yaml embed --label scores.score                # embeddings of a labelled set
    spark-jql train --embeddings out/embeddings --output heads/     # step 3: heads (no Spark)
    spark-jql evaluate --input out/scored --label scores            # Spearman vs. labels (no Spark)
    spark-jql rank-judges --input judged.parquet --label human      # judge selection (no Spark)

``embed`` and ``judge`` take input, columns, scorer and Spark settings from the job
config (``-c`` / ``--set``), like ``annotate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spark_jql.cli.registry import Command
from spark_jql.config import load_config


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _embed_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--output", help="parquet directory (default: <io.output>/embeddings)")
    e.add_argument("--label", dest="labels", action="append", default=[], metavar="[NAME=]PATH",
                   help="label column or nested path to copy, e.g. scores.score or gemma=judge_gemma (repeatable)")
    e.add_argument("--id-column", default="id", help="id column or path; 'none' numbers the rows")
    e.add_argument("--language", dest="language_path", help="language column or path (default: columns.language)")


def _embed(args: argparse.Namespace) -> dict:
    from spark_jql.spark.embed import write_embeddings

    cfg = load_config(args.config, args.overrides)
    return write_embeddings(cfg, args.output, args.labels, None if args.id_column == "none" else args.id_column,
                            args.language_path)


def _train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--embeddings", required=True, help="parquet written by 'embed' (directory or file)")
    t.add_argument("--label", dest="labels", action="append", default=[], metavar="[HEAD=]COLUMN",
                   help="label column to train a head on, optionally named (repeatable; default: every label column)")
    t.add_argument("--output", required=True, help="directory for the heads, training_report.json and heads.yaml")
    t.add_argument("--validation", help="another embed output used as the validation set (no random split then)")
    t.add_argument("--test", help="another embed output: the kept heads are measured on it (training_report.json)")
    t.add_argument("--train-config", help="YAML with TrainConfig keys (see docs/jql_method.md); preset: jql for the co-authors' recipe")
    t.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training setting, e.g. --train-set epochs=30 (repeatable)")
    t.add_argument("--embedder", help="embedder recorded in the head metadata (default: scorer.embedder.model of -c)")


def _train(args: argparse.Namespace) -> dict:
    from spark_jql.config import TrainConfig
    from spark_jql.method.train import train_from_parquet

    train_cfg = load_config(args.train_config, args.train_overrides, model=TrainConfig)
    specs = dict(s.split("=", 1) if "=" in s else (s, s) for s in args.labels) or None
    embedder = args.embedder
    if embedder is None and args.config:
        embedder = load_config(args.config, args.overrides).scorer.embedder.model
    report = train_from_parquet(args.embeddings, args.output, specs, train_cfg, args.validation, args.test, embedder)
    return {
        "output": args.output,
        "documents": report["documents"]["train"],
        "dim": report["dim"],
        "heads": {n: {k: h[k] for k in ("label", "best_epoch", "validation", "test", "train_documents", "safetensors", "checkpoint")}
                  for n, h in report["heads"].items()},
        "scorer_heads_section": str(Path(args.output) / "heads.yaml"),
    }


def _evaluation_arguments(columns_flag: str):
    def add(v: argparse.ArgumentParser) -> None:
        v.add_argument("--input", required=True, help="parquet (file or directory) or JSON lines")
        v.add_argument("--label", required=True, help="label column or path: a number or a list of ratings")
        v.add_argument(columns_flag, dest="columns", type=_csv,
                       help="comma-separated columns (default: score_* and jql_score / judge_<name>)")
        v.add_argument("--language", dest="language_path", help="language column or path (e.g. metadata.language)")
        v.add_argument("--constant-language", help="one language for every row")
        v.add_argument("--output", help="write the report as JSON here")
        v.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                       help="bootstrap resamples for the confidence intervals (0: none; default 1000)")
        v.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default 0)")
        v.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
        if columns_flag == "--judges":
            v.add_argument("--min-coverage", type=float, metavar="SHARE",
                           help="a judge that answered less than this share of the labelled documents (overall, or in "
                                "any language) is flagged, not ranked (default 0.9)")

    return add


def _bootstrap(args: argparse.Namespace) -> tuple[int, int, float]:
    from spark_jql.errors import InputError

    if args.bootstrap < 0 or not 0 < args.level < 1:
        raise InputError(f"--bootstrap must be >= 0 and --level in (0, 1), got {args.bootstrap} and {args.level}")
    return args.bootstrap, args.seed, args.level


def _write_report_json(path: str | None, text: str) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)


def _evaluate(args: argparse.Namespace) -> None:
    from spark_jql.method import evaluate as ev

    frame = ev.read_table(args.input)
    report = ev.evaluate(frame, args.label, args.columns, args.language_path, args.constant_language, *_bootstrap(args))
    print(ev.format_report(report))
    _write_report_json(args.output, ev.to_json(report))


def _rank_judges(args: argparse.Namespace) -> None:
    from spark_jql.errors import InputError
    from spark_jql.method import evaluate as ev

    frame = ev.read_table(args.input)
    from spark_jql.method.judge import is_judge_score_column

    judges = args.columns or [c for c in frame.columns if is_judge_score_column(c)]
    if not judges:
        raise InputError(f"no --judges given and no judge_<name> columns in {list(frame.columns)}")
    report = ev.rank_judges(frame, args.label, judges, args.language_path, args.constant_language, *_bootstrap(args),
                            min_coverage=ev.DEFAULT_MIN_COVERAGE if args.min_coverage is None else args.min_coverage)
    print(ev.format_ranking(report))
    _write_report_json(args.output, ev.to_json(report))


def _judge_arguments(j: argparse.ArgumentParser) -> None:
    j.add_argument("--judge-config", required=True, help="YAML with JudgeConfig keys (judges, prompt_file, ...)")
    j.add_argument("--judge-set", dest="judge_overrides", action="append", default=[], metavar="KEY=VALUE")
    j.add_argument("--output", help="parquet directory (default: <io.output>/judged)")
    j.add_argument("--partitions", type=int, help="repartition each unit first (bounds concurrent tasks)")
    j.add_argument("--retry-failed", action="store_true",
                   help="the input is a judged output: re-ask only rows whose judge error is set; write to a new --output")
    j.add_argument("--overwrite-labels", action="store_true",
                   help="delete the labels in the output when they cannot be resumed (another judge configuration or other "
                        "inputs); without it such a run is refused and nothing is deleted")


def _judge(args: argparse.Namespace) -> dict:
    from spark_jql.config import JudgeConfig
    from spark_jql.spark.judge import write_judgements

    cfg = load_config(args.config, args.overrides)
    judge_cfg = load_config(args.judge_config, args.judge_overrides, model=JudgeConfig)
    return write_judgements(cfg, judge_cfg, args.output, args.partitions, args.retry_failed, args.overwrite_labels)


COMMANDS = [
    Command("judge", "rate documents 0-5 with LLM judges behind chat-completions endpoints", _judge, _judge_arguments,
            description="JQL step 2: ask every judge of --judge-config to rate each document of io.input, all judges\n"
                        "at once; writes judge_<name> and its _raw, _error, _attempts, _prompt, _model columns in\n"
                        "committed units (a rerun resumes). Stops (exit 2) when a judge's pre-flight request fails or\n"
                        "more than max_failure_rate of its requests fail."),
    Command("embed", "write embeddings (id, language, labels, embedding) of a labelled set", _embed, _embed_arguments,
            description="JQL step 3a: embed io.input with scorer.embedder (the same code path as annotate) and\n"
                        "write id, language, the --label columns and the embedding as parquet."),
    Command("train", "train regression heads on embeddings (runs locally, no Spark)", _train, _train_arguments,
            description="JQL step 3b: train one Linear(d,1000) -> ReLU -> Linear(1000,1) head per label (MSE) on\n"
                        "the output of 'embed'; saves safetensors, the JQL Lightning .ckpt layout and heads.yaml."),
    Command("evaluate", "Spearman/Pearson/MSE of score columns against labels, per language (no Spark)", _evaluate,
            _evaluation_arguments("--predictions"),
            description="JQL step 1 check: correlate score columns with (human) labels, overall and per language."),
    Command("rank-judges", "rank LLM judges by Spearman against human labels, per language (no Spark)", _rank_judges,
            _evaluation_arguments("--judges"),
            description="JQL step 2 selection: rank judge_<name> columns by Spearman with the human labels, all judges\n"
                        "on the documents every ranked judge answered, with coverage and bootstrap intervals; a judge\n"
                        "below --min-coverage (overall or in a language) is listed and flagged, never ranked."),
]
