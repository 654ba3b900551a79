"""``spark-jql fetch-models``: the scorer's Hub models as plain folders a cluster can copy, with a manifest.

Cluster workers often cannot reach the Hub; the recipes (conf/emr.yaml, conf/databricks.yaml) read local
folders instead: ``<root>/<repo name>/`` for the embedder (weights, config, tokenizer) and
``<root>/<repo name>/<filename>`` for each head. This fills ``DIR`` in that layout on a machine that can reach the
Hub. Files go through the Hugging Face cache (so ``HF_HUB_OFFLINE`` and a warm cache work as everywhere else) and
are copied out of it: the folder holds real files, not links into a cache that will not travel with it.
``DIR/manifest.json`` lists every file with its size, sha256, repository and revision, to check a copy against.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from spark_jql.config import ScorerConfig
from spark_jql.errors import ModelNotAvailableError
from spark_jql.scoring import hub

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "spark_jql-models-v1"
# Other runtimes' copies of the weights: spark_jql loads safetensors (or pytorch .bin) only.
EMBEDDER_IGNORE = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "*.gguf", "tf_model*", "flax_model*",
                   "rust_model*", "coreml/*"]


@dataclass(frozen=True)
class Fetched:
    """One repository (or some of its files) copied under the output folder."""

    repo_id: str
    revision: str
    commit: str | None
    folder: Path  # DIR/<repo name>
    files: list[Path]  # relative to folder


def folder_name(repo_id: str) -> str:
    """The folder a repository lands in: its name without the organisation, as the recipes read it."""
    return repo_id.rstrip("/").rsplit("/", 1)[-1]


def _commit(cached: Path) -> str | None:
    """The commit a cache path belongs to (``.../snapshots/<commit>/...``)."""
    parts = cached.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def _failure(repo_id: str, filename: str | None, revision: str, err: Exception) -> ModelNotAvailableError:
    from huggingface_hub import constants, errors

    target = f"{repo_id}/{filename}" if filename else repo_id
    if isinstance(err, errors.GatedRepoError):
        why = "the repository is gated: accept its terms on the Hub and log in (`hf auth login`)"
    elif isinstance(err, errors.RepositoryNotFoundError):
        why = "no such repository on the Hub (or it is private: log in with `hf auth login`)"
    elif isinstance(err, errors.RevisionNotFoundError):
        why = f"the repository has no revision {revision!r}"
    elif isinstance(err, errors.RemoteEntryNotFoundError):
        why = f"the repository has no file {filename!r} at revision {revision!r}"
    elif hub.offline():
        why = f"HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    else:
        first = str(err).splitlines()[0] if str(err) else ""
        why = f"the Hub could not be reached and it is not in the Hugging Face cache ({type(err).__name__}: {first})"
    return ModelNotAvailableError(f"fetch-models: cannot fetch {target!r} (revision {revision}): {why}")


def _copy_out(source: Path, dest: Path) -> None:
    """A real file at ``dest`` with ``source``'s bytes (the cache's entries are links to its blobs)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copyfile(source.resolve(), dest)


def fetch_embedder(repo_id: str, revision: str | None, output: Path) -> Fetched:
    """The whole repository (weights, config, tokenizer, remote code) but other runtimes' weights."""
    from huggingface_hub import snapshot_download

    rev = revision or "main"
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, ignore_patterns=EMBEDDER_IGNORE))
    except Exception as err:
        raise _failure(repo_id, None, rev, err) from None
    folder = output / folder_name(repo_id)
    files = sorted(p.relative_to(snapshot) for p in snapshot.rglob("*") if p.is_file() and ".cache" not in p.parts)
    for rel in files:
        _copy_out(snapshot / rel, folder / rel)
    return Fetched(repo_id, rev, _commit(snapshot), folder, files)


def fetch_files(repo_id: str, filenames: list[str], revision: str | None, output: Path) -> Fetched:
    """Some files of a repository (the heads' checkpoints), each at its path inside the repository."""
    from huggingface_hub import hf_hub_download

    rev, folder, commit = revision or "main", output / folder_name(repo_id), None
    for filename in filenames:
        try:
            cached = Path(hf_hub_download(repo_id, filename, revision=revision))
        except Exception as err:
            raise _failure(repo_id, filename, rev, err) from None
        commit = commit or _commit(cached)
        _copy_out(cached, folder / filename)
    return Fetched(repo_id, rev, commit, folder, sorted(Path(f) for f in filenames))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()


def _plan(scorer: ScorerConfig) -> tuple[tuple[str, str | None] | None, dict[tuple[str, str | None], list[str]], list[str]]:
    """(embedder repo and revision or None, head files by repo and revision, what is already local and why)."""
    local: list[str] = []
    embedder = scorer.embedder
    if hub.looks_like_path(embedder.model) or hub.is_local(embedder.model):
        local.append(f"scorer.embedder.model {embedder.model!r} is a local path")
        wanted = None
    else:
        wanted = (embedder.model, embedder.revision)
    heads: dict[tuple[str, str | None], list[str]] = {}
    for head in scorer.heads:
        if head.path is not None:
            local.append(f"head {head.name!r} is a local file ({head.path})")
        else:
            heads.setdefault((head.repo_id, head.revision), []).append(head.filename)
    return wanted, heads, local


def _check_folders(repos: list[tuple[str, str | None]]) -> None:
    """Two repositories (or two revisions of one) would share a folder: say so before downloading anything."""
    seen: dict[str, tuple[str, str | None]] = {}
    for repo in repos:
        name = folder_name(repo[0])
        if name in seen and seen[name] != repo:
            a, b = seen[name], repo
            raise ModelNotAvailableError(
                f"fetch-models: {a[0]}@{a[1] or 'main'} and {b[0]}@{b[1] or 'main'} would both go to folder {name!r}; "
                "fetch them into separate --output folders")
        seen[name] = repo


def fetch_models(scorer: ScorerConfig, output: str | Path, prefix: str | None = None) -> dict:
    """Fetch the scorer's Hub embedder and heads into ``output``; write the manifest; return a summary.

    ``prefix`` is where the folder will be on the cluster (``/mnt/models``, ``/Volumes/main/models``): the
    scorer section returned names paths under it (default: ``output`` itself).
    """
    output = Path(output).expanduser().resolve()
    embedder, heads, local = _plan(scorer)
    if embedder is None and not heads:
        raise ModelNotAvailableError(
            "fetch-models: nothing to fetch, the config's embedder and heads are all local paths ("
            + "; ".join(local) + "); run it without -c for the published JQL models, or name Hub ids in scorer")
    _check_folders(([embedder] if embedder else []) + list(heads))
    output.mkdir(parents=True, exist_ok=True)
    fetched = ([fetch_embedder(*embedder, output)] if embedder else []) + [
        fetch_files(repo_id, files, revision, output) for (repo_id, revision), files in heads.items()]
    entries = []
    for f in fetched:
        for rel in f.files:
            path = f.folder / rel
            entries.append({"path": str(path.relative_to(output).as_posix()), "size": path.stat().st_size,
                            "sha256": sha256(path), "repo_id": f.repo_id, "revision": f.revision, "commit": f.commit})
    root = (prefix or str(output)).rstrip("/")
    section = scorer_section(scorer, root)
    manifest = {"format": MANIFEST_FORMAT, "files": entries,
                "repos": [{"repo_id": f.repo_id, "revision": f.revision, "commit": f.commit,
                           "folder": f.folder.name} for f in fetched],
                "scorer": scorer_section(scorer, ".")}
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return {"output": str(output), "manifest": str(output / MANIFEST), "files": len(entries),
            "bytes": sum(e["size"] for e in entries), "repos": manifest["repos"], "local": local,
            "scorer": section, "config": config_lines(section)}


def scorer_section(scorer: ScorerConfig, root: str) -> dict:
    """The ``scorer`` settings that read the fetched folders under ``root`` (local entries stay as they were)."""
    embedder = scorer.embedder
    model = embedder.model if embedder.model in _local_names(scorer) else f"{root}/{folder_name(embedder.model)}"
    heads = [{"name": h.name, "path": h.path if h.path is not None else f"{root}/{folder_name(h.repo_id)}/{h.filename}"}
             for h in scorer.heads]
    return {"embedder": {"model": model}, "heads": heads}


def _local_names(scorer: ScorerConfig) -> set[str]:
    model = scorer.embedder.model
    return {model} if hub.looks_like_path(model) or hub.is_local(model) else set()


def config_lines(section: dict) -> list[str]:
    """The YAML lines to put in a job config (the form conf/emr.yaml uses)."""
    lines = ["scorer:", "  embedder:", f"    model: {section['embedder']['model']}", "  heads:"]
    lines += [f"    - {{name: {h['name']}, path: {h['path']}}}" for h in section["heads"]]
    return lines
