"""Subcommands that prepare model files for a cluster: fetch-models (the Hub's files into the recipes' layout)."""

from __future__ import annotations

import argparse

from spark_jql.cli.registry import Command
from spark_jql.config import load_config


def _fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder to fill: DIR/<repo name>/ per repository, DIR/manifest.json")
    parser.add_argument("--prefix", metavar="PATH",
                        help="where DIR will be on the cluster (/mnt/models, /Volumes/main/models), for the printed "
                             "config lines (default: DIR itself)")


def _fetch(args: argparse.Namespace) -> dict:
    from spark_jql.scoring.fetch import fetch_models

    config = load_config(args.config, args.overrides)
    return fetch_models(config.scorer, args.output, args.prefix)


def _fetch_render(result: dict, args: argparse.Namespace, seconds: float) -> str:
    repos = ", ".join(f"{r['repo_id']}@{(r['commit'] or r['revision'])[:12]}" for r in result["repos"])
    lines = [f"fetch-models: {result['files']} files, {result['bytes'] / 2**20:,.1f} MiB from {repos} "
             f"into {result['output']} ({seconds:,.1f} s)", f"manifest: {result['manifest']}"]
    lines += [f"not fetched: {why}" for why in result["local"]]
    lines += ["", "Config lines that read these folders (put them in your job's YAML):", *result["config"]]
    return "\n".join(lines)


COMMANDS = [
    Command("fetch-models", "download the scorer's embedder and heads from the Hub into DIR, with a manifest", _fetch,
            _fetch_arguments, render=_fetch_render,
            description="On a machine with Hub access: fetch scorer.embedder.model (weights, config, tokenizer) and\n"
                        "every Hub head of the config (default: the published JQL-Edu heads) into DIR/<repo name>/,\n"
                        "the layout conf/emr.yaml (/mnt/models) and conf/databricks.yaml (/Volumes/main/models) read;\n"
                        "write DIR/manifest.json (every file's size, sha256, repository and revision) and print the\n"
                        "config lines to use. Revisions follow scorer.embedder.revision and each head's revision.\n"
                        "Files pass through the Hugging Face cache (HF_HOME), so HF_HUB_OFFLINE=1 copies a warm cache.\n"
                        "Then copy DIR to the cluster: aws s3 cp --recursive DIR s3://.../models/ (EMR) or into a\n"
                        "Unity Catalog volume (Databricks). Starts no Spark."),
]
