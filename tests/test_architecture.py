"""The layers of docs/architecture.md, checked from the code: the torch side never imports
pyspark, and nothing imports a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spark_jql"

# Lower number = lower layer. A module may import its own layer and any layer below.
LAYERS = {
    "core": 0,       # config, errors, schema, thresholds, worker_cache (top-level modules)
    "scoring": 1,    # tokenise, batch, embed, heads, scorer (torch; no Spark)
    "method": 1,     # judge, train, evaluate (no Spark)
    "spark": 2,      # UDFs, DataFrame API, io, session, units, the job
    "report": 3,     # the HTML report (reads what the job wrote)
    "ml": 3,         # pyspark.ml stages over the spark layer's DataFrame API
    "devtools": 4,   # tiny models, sample data, demo, bench
    "cli": 5,        # the spark-jql command
}
NO_SPARK = {"core", "scoring", "method"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "spark_jql", module
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module imported anywhere in the file (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports (spark_jql.<layer>...)"
            found.add(node.module or "")
            found.update(f"{node.module}.{a.name}" for a in node.names if node.module == "spark_jql")
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_package_folder_is_a_known_layer():
    folders = {p.parent.relative_to(PACKAGE).parts[0] for p in SOURCES if p.parent != PACKAGE}
    assert folders <= set(LAYERS), f"new folder(s) {folders - set(LAYERS)}: add them to docs/architecture.md and LAYERS"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_imports(path):
    here = layer_of(module_name(path))
    for imported in imports_of(path):
        if imported.split(".")[0] == "pyspark":
            assert here not in NO_SPARK, f"{path.name} ({here}) imports {imported}: the torch/method side must not need Spark"
        if imported.startswith("spark_jql."):
            target = layer_of(imported)
            assert LAYERS[target] <= LAYERS[here] or target == here, (
                f"{module_name(path)} ({here}, layer {LAYERS[here]}) imports {imported} ({target}, layer {LAYERS[target]})")


def test_the_checker_sees_a_violation(tmp_path):
    """The rule itself: a scoring module importing pyspark or the spark layer would be caught."""
    fake = tmp_path / "bad.py"
    fake.write_text("from pyspark.sql import DataFrame\nfrom spark_jql.spark.api import annotate\n")
    found = imports_of(fake)
    assert "pyspark.sql" in found and "spark_jql.spark.api" in found
    assert layer_of("spark_jql.spark.api") == "spark" and LAYERS["spark"] > LAYERS["scoring"]
