"""Catalogue: fetch-models (the scorer's Hub files for a cluster) when the Hub or the cache cannot give them.

Offline runs use a fake Hugging Face cache (``hub_cache`` in conftest.py) or an empty one (``empty_hf_cache``).
"""

from __future__ import annotations

import json

from spark_jql.cli import main
from spark_jql.config import DEFAULT_EMBEDDER

from .catalogue import case


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("spark-jql: error: fetch-models:") and err.count("\n") == 1, err
    return err


@case("fetch-models offline (HF_HUB_OFFLINE=1) when the embedder is not in the Hugging Face cache",
      "exit 2: `fetch-models: cannot fetch 'Snowflake/snowflake-arctic-embed-m-v2.0' (revision main): HF_HUB_OFFLINE=1 and it is "
      "not in the Hugging Face cache (<HF_HUB_CACHE>)`; nothing written")
def test_a_repository_missing_offline_is_one_line(empty_hf_cache, tmp_path, capsys):
    assert main(["fetch-models", "--output", str(tmp_path / "models")]) == 2
    err = one_line_error(capsys)
    assert DEFAULT_EMBEDDER in err and "HF_HUB_OFFLINE=1" in err and str(empty_hf_cache) in err


@case("fetch-models when a head's file is not in its repository (or, offline, not in the cache)",
      "exit 2: `fetch-models: cannot fetch '<repo>/<filename>' (revision main): ...` naming the file; online, "
      "`the repository has no file ...`")
def test_a_head_file_missing_offline_is_one_line(hub_cache, tmp_path, capsys):
    heads = '[{name: x, repo_id: Jackal-AI/JQL-Edu-Heads, filename: checkpoints/none.ckpt}]'
    assert main(["fetch-models", "--output", str(tmp_path / "models"), "--set", f"scorer.heads={heads}"]) == 2
    err = one_line_error(capsys)
    assert "Jackal-AI/JQL-Edu-Heads/checkpoints/none.ckpt" in err and "HF_HUB_OFFLINE=1" in err


@case("fetch-models with a config whose embedder and heads are all local paths",
      "exit 2: `fetch-models: nothing to fetch, the config's embedder and heads are all local paths (...)`")
def test_a_config_of_local_paths_has_nothing_to_fetch(gte_bundle, tmp_path, capsys):
    heads = json.dumps(gte_bundle["heads"])
    argv = ["fetch-models", "--output", str(tmp_path / "m"), "--set", f"scorer.embedder.model={gte_bundle['embedder']['model']}",
            "--set", f"scorer.heads={heads}"]
    assert main(argv) == 2
    assert "nothing to fetch" in one_line_error(capsys)


@case("fetch-models for two repositories (or two revisions of one) that would share a folder",
      "exit 2 before any download: `fetch-models: A@main and B@main would both go to folder '<name>'; fetch them into "
      "separate --output folders`")
def test_two_repositories_of_one_name_are_refused_before_downloading(hub_cache, tmp_path, capsys):
    heads = '[{name: x, repo_id: other-org/snowflake-arctic-embed-m-v2.0, filename: h.ckpt}]'
    assert main(["fetch-models", "--output", str(tmp_path / "m"), "--set", f"scorer.heads={heads}"]) == 2
    assert "would both go to folder 'snowflake-arctic-embed-m-v2.0'" in one_line_error(capsys)
    assert not (tmp_path / "m").exists()
