"""``spark-jql`` subcommands for the rest of the JQL method (see docs/jql_method.md).

    spark-jql -c job.yaml judge --judge-config judges.yaml          # step 2: LLM labels
    spark-jql -c job.yaml embed --label scores.score                # embeddings of a labelled set
    spark-jql train --embeddings out/embeddings --output heads/     # step 3: heads (no Spark)
    spark-jql evaluate --input out/scored --label scores            # Spearman vs. labels (no Spark)
    spark-jql rank-judges --input judged.parquet --label human      # judge selection (no Spark)

``embed`` and ``judge`` take input, columns, scorer and Spark settings from the job
config (``-c`` / ``--set``), like ``annotate``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COMMANDS = ("embed", "train", "evaluate", "rank-judges", "judge")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_subcommands(sub) -> None:
    e = sub.add_parser("embed", help="write embeddings (id, language, labels, embedding) of a labelled set")
    e.add_argument("--output", help="parquet directory (default: <io.output>/embeddings)")
    e.add_argument("--label", dest="labels", action="append", default=[], metavar="[NAME=]PATH",
                   help="label column or nested path to copy, e.g. scores.score or gemma=judge_gemma (repeatable)")
    e.add_argument("--id-column", default="id", help="id column or path; 'none' numbers the rows")
    e.add_argument("--language", dest="language_path", help="language column or path (default: columns.language)")

    t = sub.add_parser("train", help="train regression heads on embeddings (runs locally, no Spark)")
    t.add_argument("--embeddings", required=True, help="parquet written by 'embed' (directory or file)")
    t.add_argument("--label", dest="labels", action="append", default=[], metavar="[HEAD=]COLUMN",
                   help="label column to train a head on, optionally named (repeatable; default: every label column)")
    t.add_argument("--output", required=True, help="directory for the heads, training_report.json and heads.yaml")
    t.add_argument("--train-config", help="YAML with TrainConfig keys (see docs/jql_method.md)")
    t.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training setting, e.g. --train-set epochs=30 (repeatable)")
    t.add_argument("--embedder", help="embedder recorded in the head metadata (default: scorer.embedder.model of -c)")

    for name, what in (("evaluate", "Spearman/Pearson/MSE of score columns against labels"),
                       ("rank-judges", "rank LLM judges by Spearman against human labels")):
        v = sub.add_parser(name, help=what + ", per language (no Spark)")
        v.add_argument("--input", required=True, help="parquet (file or directory) or JSON lines")
        v.add_argument("--label", required=True, help="label column or path: a number or a list of ratings")
        cols = "--predictions" if name == "evaluate" else "--judges"
        v.add_argument(cols, dest="columns", type=_csv,
                       help="comma-separated columns (default: score_* and jql_score / judge_<name>)")
        v.add_argument("--language", dest="language_path", help="language column or path (e.g. metadata.language)")
        v.add_argument("--constant-language", help="one language for every row")
        v.add_argument("--output", help="write the report as JSON here")

    j = sub.add_parser("judge", help="rate documents 0-5 with LLM judges behind chat-completions endpoints")
    j.add_argument("--judge-config", required=True, help="YAML with JudgeConfig keys (judges, prompt_file, ...)")
    j.add_argument("--judge-set", dest="judge_overrides", action="append", default=[], metavar="KEY=VALUE")
    j.add_argument("--output", help="parquet directory (default: <io.output>/judged)")
    j.add_argument("--partitions", type=int, help="repartition the input first (bounds concurrent tasks)")


def run(args) -> int:
    """Run one of COMMANDS; errors the user can fix come back as exit code 2."""
    from .config import ConfigError
    from .errors import SparkJQLError

    try:
        result = {"embed": _embed, "train": _train, "evaluate": _evaluate, "rank-judges": _evaluate, "judge": _judge}[args.command](args)
    except (ConfigError, SparkJQLError) as err:
        print(f"spark-jql: error: {err}", file=sys.stderr)
        return 2
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _session(config):
    from .spark.session import build_session

    return build_session(config.spark.master, config.spark.app_name, config.spark.conf)


def _embed(args) -> dict:
    from .config import load_config
    from .job import AccountingError
    from .spark.embed import embed
    from .spark.io import join_path, read_input

    cfg = load_config(args.config, args.overrides)
    spark = _session(cfg)
    out = args.output or join_path(cfg.io.output, "embeddings")
    source = read_input(spark, cfg.io.input, cfg.io.input_format)
    rows_in = source.count()
    if args.language_path:  # an explicit --language wins over the job's columns section
        language, constant = args.language_path, None
    else:
        constant = cfg.columns.constant_language
        language = None if constant else cfg.columns.language
    frame = embed(source, cfg.scorer, cfg.columns.text, None if args.id_column == "none" else args.id_column,
                  language, constant, args.labels, cfg.spark.arrow_batch_size)
    frame.write.mode(cfg.io.mode).parquet(out)
    written = spark.read.parquet(out)
    rows_out = written.count()
    if rows_out != rows_in:
        raise AccountingError(f"embed read {rows_in} rows but wrote {rows_out} to {out}")
    with_embedding = written.where("embedding IS NOT NULL").count()
    return {"output": out, "rows": rows_out, "rows_with_embedding": with_embedding, "columns": written.columns}


def _train(args) -> dict:
    from .config import TrainConfig, load_config
    from .train import load_embeddings, save_trained_heads, train_heads

    train_cfg = load_config(args.train_config, args.train_overrides, model=TrainConfig)
    specs = [s.split("=", 1) if "=" in s else [s, s] for s in args.labels]
    data = load_embeddings(args.embeddings, [c for _, c in specs] if specs else None)
    if not specs:
        specs = [[c, c] for c in data.labels]
    embedder = args.embedder
    if embedder is None and args.config:
        embedder = load_config(args.config, args.overrides).scorer.embedder.model
    results = train_heads(data.embeddings, {h: data.labels[c] for h, c in specs}, train_cfg, {h: c for h, c in specs})
    report = save_trained_heads(results, args.output, train_cfg, embedder)
    return {
        "output": args.output,
        "documents": len(data.ids),
        "dim": int(data.embeddings.shape[1]),
        "heads": {n: {k: h[k] for k in ("label", "best_epoch", "validation", "train_documents", "safetensors", "checkpoint")}
                  for n, h in report["heads"].items()},
        "scorer_heads_section": str(Path(args.output) / "heads.yaml"),
    }


def _evaluate(args) -> None:
    from . import evaluate as ev

    frame = ev.read_table(args.input)
    if args.command == "evaluate":
        report = ev.evaluate(frame, args.label, args.columns, args.language_path, args.constant_language)
        text = ev.format_report(report)
    else:
        judges = args.columns or [c for c in frame.columns if c.startswith("judge_") and not c.endswith(("_raw", "_error", "_attempts"))]
        if not judges:
            from .errors import InputError

            raise InputError(f"no --judges given and no judge_<name> columns in {list(frame.columns)}")
        report = ev.rank_judges(frame, args.label, judges, args.language_path, args.constant_language)
        text = ev.format_ranking(report)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(ev.to_json(report))
    return None


def _judge(args) -> dict:
    from pyspark.sql import functions as F

    from .config import JudgeConfig, load_config
    from .job import AccountingError
    from .spark.io import join_path, read_input
    from .spark.judge import judge, judge_columns

    cfg = load_config(args.config, args.overrides)
    judge_cfg = load_config(args.judge_config, args.judge_overrides, model=JudgeConfig)
    spark = _session(cfg)
    out = args.output or join_path(cfg.io.output, "judged")
    source = read_input(spark, cfg.io.input, cfg.io.input_format)
    if args.partitions:
        source = source.repartition(args.partitions)
    rows_in = source.count()
    judge(source, judge_cfg, cfg.columns.text, cfg.spark.arrow_batch_size).write.mode(cfg.io.mode).parquet(out)
    written = spark.read.parquet(out)
    rows_out = written.count()
    if rows_out != rows_in:
        raise AccountingError(f"judge read {rows_in} rows but wrote {rows_out} to {out}")
    summary = {"output": out, "rows": rows_out, "judges": {}}
    for e in judge_cfg.judges:
        cols = judge_columns(e.name)
        kind = F.substring_index(cols["error"], ":", 1).alias("error")
        counts = written.groupBy(F.col(cols["score"]).alias("score"), kind).count().collect()
        scores, errors = {}, {}
        for r in counts:
            scores[str(r["score"])] = scores.get(str(r["score"]), 0) + r["count"]
            if r["error"] is not None:
                errors[r["error"]] = errors.get(r["error"], 0) + r["count"]
        summary["judges"][e.name] = {"scores": dict(sorted(scores.items())), "errors": errors}
    return summary
