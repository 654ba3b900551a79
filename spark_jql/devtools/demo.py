"""Offline demo: a small, honest JQL run (steps 3 and 4) on local Spark, with no download.

1. Generate a multilingual corpus whose documents mix educational, everyday and
   spam sentences (``sample_data``), so each has a known educational value 0-5 and
   three noisy "judge" ratings of it. A share of it is the labelled set, the rest
   is the corpus to filter (its labels ride along, unused by the job, so the demo
   can check the filter).
2. Build the tiny bag-of-words GTE encoder (``tiny_models.build_bag_of_words_encoder``,
   fitted on other, unlabelled generated documents) and save it with ``save_pretrained``.
3. JQL step 3: ``embed`` the labelled set and ``train`` one head per judge, with the
   same functions the ``embed`` and ``train`` subcommands call.
4. JQL step 4: ``annotate``, ``thresholds``, ``filter`` the corpus with those heads.
5. Print the heads' Spearman on the corpus (documents no head was trained on) and
   the mean educational value of kept vs dropped documents; write the HTML report.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from spark_jql.config import ConfigError, load_config
from spark_jql.devtools.sample_data import (
    JUDGES,
    TRUTH,
    generate_documents,
    write_jsonl,
)
from spark_jql.devtools.tiny_models import build_bag_of_words_encoder

HEAD_NAMES = {f"Edu-Demo-{judge.split('_')[-1].upper()}": judge for judge in JUDGES}  # head -> label column
TRAIN_SETTINGS = {"epochs": 200, "batch_size": 32, "early_stopping_patience": 20, "val_fraction": 0.2}  # small set: more steps


def pairwise_cosine_spread(embeddings: np.ndarray, sample: int = 300) -> dict:
    """Mean, std, min, max of the cosine between distinct rows (the first ``sample`` rows with an embedding)."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)][:sample]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = (x @ x.T)[np.triu_indices(len(x), 1)]
    return {"pairs": int(len(cos)), "mean": float(cos.mean()), "std": float(cos.std()),
            "min": float(cos.min()), "max": float(cos.max())}


MIN_DOCS = 200  # 60 labelled documents (12 held out for validation): below that the heads learn noise


def prepare(output: str | Path, docs: int = 2000, labelled_share: float = 0.3, files: int = 4) -> dict:
    """Write the labelled set, the corpus and the encoder under ``output`` (kept if already there)."""
    output = Path(output).resolve()
    labelled, corpus = output / "input" / "labelled", output / "input" / "corpus"
    settings, made = {"docs": docs, "labelled_share": labelled_share}, output / "input" / "demo_settings.json"
    if made.is_file() and json.loads(made.read_text()) != settings:
        before = json.loads(made.read_text())
        raise ConfigError(f"{output} holds a demo of --docs {before.get('docs')} --labelled-share {before.get('labelled_share')}; "
                          "rerun with those to resume it, or give another --output (or delete the folder)")
    if not (labelled.exists() and corpus.exists()):
        records = generate_documents(docs, seed=7, labels=True)
        n_labelled = max(20, int(round(docs * labelled_share)))
        # always a folder of part files: ``labelled/*.jsonl`` is what embed reads
        write_jsonl(records[:n_labelled], labelled / "part-0000.jsonl") if n_labelled < 200 else \
            write_jsonl(records[:n_labelled], labelled, files=2)
        write_jsonl(records[n_labelled:], corpus, files=files)
        made.write_text(json.dumps(settings))
    encoder = output / "models" / "encoder"
    if not (encoder / "config.json").exists():
        build_bag_of_words_encoder(encoder, seed=11)
    return {"root": output, "labelled": labelled / "*.jsonl", "corpus": corpus / "*.jsonl", "encoder": encoder,
            "heads": output / "models" / "heads", "results": output / "results"}


def demo_overrides(paths: dict) -> list[str]:
    """Config overrides for the corpus run; ``scorer.heads`` comes from training (``heads.yaml``)."""
    return [
        f"io.input={json.dumps([str(paths['corpus'])])}",
        f"io.output={paths['results']}",
        f"scorer.embedder.model={paths['encoder']}",
        "columns.language=[language, language_script]",
        "thresholds.min_docs=50",
        "spark.master=local[2]",
    ]


def run_demo(output: str = "demo_output", docs: int = 2000, config: str | None = None,
             overrides: list[str] | None = None, labelled_share: float = 0.3) -> dict:
    import yaml

    from spark_jql.method.evaluate import evaluate
    from spark_jql.method.train import load_embeddings
    from spark_jql.report import require_plotting, write_report
    from spark_jql.spark.embed import write_embeddings
    from spark_jql.spark.job import Job
    from spark_jql.spark.session import build_session

    if docs < MIN_DOCS:
        raise ConfigError(f"demo --docs {docs}: the demo needs at least {MIN_DOCS} documents "
                          f"({labelled_share:.0%} of them train the heads; fewer train on noise)")
    require_plotting()  # the demo ends with the report: say what to install before any work
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait on a network
    paths = prepare(output, docs, labelled_share)
    base = demo_overrides(paths) + list(overrides or [])
    cfg = load_config(config, base)
    say(f"JQL demo (offline, tiny bag-of-words encoder, toy corpus with known labels); outputs under {Path(output).resolve()}")
    spark = build_session(cfg.spark.master, cfg.spark.app_name, cfg.spark.conf)

    # JQL step 3: embed the labelled set, train one head per judge (kept from an earlier run into the same folder)
    embeddings = str(paths["results"] / "embeddings")
    trained_before = (paths["heads"] / "heads.yaml").is_file() and (paths["heads"] / "training_report.json").is_file() \
        and Path(embeddings).is_dir()
    if trained_before:
        say(f"step 3: reusing the embeddings and heads of an earlier run in {paths['heads']} (delete it to retrain)")
        report = json.loads((paths["heads"] / "training_report.json").read_text())
        trained = report.get("heads", {})
    else:
        labelled_cfg = load_config(config, base + [f"io.input={json.dumps([str(paths['labelled'])])}"])  # embed loads no head
        embedded = write_embeddings(labelled_cfg, embeddings, [*JUDGES, TRUTH])
        say(f"step 3: embedded {embedded['rows']} labelled documents")
        trained = train_demo_heads(embeddings, paths["heads"], str(paths["encoder"]))
    spread = pairwise_cosine_spread(load_embeddings(embeddings, []).embeddings)
    say(f"step 3: pairwise cosine of the labelled embeddings mean {spread['mean']:.3f}, std {spread['std']:.3f}, "
        f"min {spread['min']:.3f}")
    validation = {h: (r.get("validation") or {}).get("spearman") for h, r in trained.items()}
    say("step 3: trained heads " + ", ".join(f"{h} (validation Spearman vs its judge {_num(v)})" for h, v in validation.items()))

    # JQL step 4: annotate, thresholds and filter the corpus with the trained heads, from the config written for the
    # user (a rerun resumes the scored units: same inputs, same encoder, same heads)
    heads = yaml.safe_load((paths["heads"] / "heads.yaml").read_text())["heads"]
    cfg = load_config(config, base + [f"scorer.heads={json.dumps(heads)}"])
    demo_yaml = write_demo_config(cfg, paths["root"] / DEMO_CONFIG)
    say(f"config: {demo_yaml} (every spark-jql command takes it: -c {Path(output) / DEMO_CONFIG})")
    summary = Job(spark, load_config(demo_yaml)).run()
    stats = _columns(paths["results"] / "stats", [TRUTH, *[f"score_{h}" for h in HEAD_NAMES], "jql_score"])
    quality = evaluate(stats, TRUTH)["overall"]
    held_out = {p.removeprefix("score_"): m["spearman"] for p, m in quality.items()}
    kept = _mean_value(_columns(paths["results"] / "filtered", [TRUTH]))
    dropped = _mean_value(_columns(paths["results"] / "dropped", [TRUTH]))
    flt = summary["filter"]
    say(f"step 4: scored {summary['annotate']['scored_rows']} corpus documents at "
        f"{summary['annotate']['docs_per_second']} docs/s; held-out Spearman vs the true value: "
        + ", ".join(f"{h} {_num(v)}" for h, v in held_out.items()))
    say(f"step 4: kept {flt['kept_rows']}, dropped {flt['dropped_rows']} (quantile {flt['quantile']}); "
        f"mean educational value kept {kept['mean']:.2f} vs dropped {dropped['mean']:.2f} (0-5); "
        f"share of mostly educational documents (value >= 3.5) kept {kept['high_share']:.0%} vs dropped {dropped['high_share']:.0%}")

    if summary["annotate"].get("units_resumed"):
        say(f"step 4: resumed {summary['annotate']['units_resumed']} of {summary['annotate']['units']} unit(s) scored "
            "by an earlier run")
    report = write_report(spark, str(paths["results"]), filter_quantile=cfg.filter.quantile)
    say(f"report: {report['report']}")
    return {
        "output": str(paths["results"]),
        "report": report["report"],
        "embedding_cosine": spread,
        "validation_spearman": validation,
        "held_out_spearman": held_out,
        "kept": kept,
        "dropped": dropped,
        "summary": str(paths["results"] / "summary.json"),
        "config": str(demo_yaml),
        "resumed": {"heads": trained_before, "units": summary["annotate"].get("units_resumed", 0)},
        "next": next_commands(Path(output) / DEMO_CONFIG, cfg),
    }


DEMO_CONFIG = "demo.yaml"


def write_demo_config(cfg, path: Path) -> Path:
    """The demo's job config as YAML (what differs from the defaults), so ``spark-jql -c <it> COMMAND`` continues."""
    import yaml

    tree = cfg.model_dump(mode="json", exclude_defaults=True)
    header = ("# Written by `spark-jql demo`: the config of its corpus run. Continue with, e.g.\n"
              f"#   spark-jql -c {path} --set filter.quantile=0.7 filter\n")
    path.write_text(header + yaml.safe_dump(tree, sort_keys=False))
    return path


def next_commands(config: Path, cfg) -> list[str]:
    """What to try after the demo, with its config."""
    other = next((q for q in cfg.thresholds.quantiles if q != cfg.filter.quantile), None)
    commands = [f"spark-jql -c {config} report --quantile {other}   # the report at another quantile"] if other else []
    if other:
        commands.insert(0, f"spark-jql -c {config} --set filter.quantile={other} filter   # keep the top {1 - other:.0%} instead")
    return commands + [f"spark-jql -c {config} thresholds   # recompute the per-language thresholds",
                       f"spark-jql -c {config} run   # the whole job again: finished units are resumed"]


def render(result: dict, args, seconds: float) -> str:
    """The demo's last lines: where it all is and what to run next (the JSON with --json)."""
    lines = [f"spark-jql demo: done in {seconds:.0f} s; report {result['report']}; config {result['config']}", "next:"]
    return "\n".join(lines + [f"  {c}" for c in result["next"]])


def train_demo_heads(embeddings: str, output: Path, embedder: str) -> dict:
    """One head per judge column: what ``spark-jql train --label HEAD=COLUMN ...`` runs; returns the per-head report."""
    from spark_jql.config import TrainConfig
    from spark_jql.method.train import train_from_parquet

    return train_from_parquet(embeddings, output, HEAD_NAMES, TrainConfig(**TRAIN_SETTINGS), embedder=embedder)["heads"]


def _columns(path: Path, columns: list[str]):
    """Some columns of a parquet directory Spark wrote (``jql_unit=N`` partitions included) as pandas."""
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table(columns=columns).to_pandas()


def _mean_value(frame) -> dict:
    values = frame[TRUTH].to_numpy(dtype=np.float64)
    return {"documents": int(len(values)), "mean": float(values.mean()) if len(values) else math.nan,
            "high_share": float((values >= 3.5).mean()) if len(values) else math.nan}


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def say(line: str) -> None:
    print(f"spark-jql demo: {line}", flush=True)
