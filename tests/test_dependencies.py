"""The installed packages are the tested set, and pyproject.toml admits only what was tested.

A green suite must mean the versions in ``.ci/constraints*.txt``: when pip resolves something else (a
new transformers whose adapters need a newer peft, say), this fails naming every drifted package,
instead of waiting for a test that happens to break. Developers on a machine with its own torch build
can set ``SPARK_JQL_ALLOW_DRIFT=1``; CI never does.
"""

from __future__ import annotations

import os
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LEGS = {"4": ROOT / ".ci" / "constraints.txt", "3": ROOT / ".ci" / "constraints-spark35.txt"}


def pins(path: Path) -> dict[str, Version]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin (name==version)"
            out[canonicalize_name(name)] = Version(version)
    return out


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def this_leg() -> Path:
    return LEGS[metadata.version("pyspark").split(".", 1)[0]]


def test_installed_versions_are_the_tested_set():
    if os.environ.get("SPARK_JQL_ALLOW_DRIFT") == "1":
        pytest.skip("SPARK_JQL_ALLOW_DRIFT=1: a developer machine outside the tested set (never set in CI)")
    leg = this_leg()
    drifted = []
    for name, wanted in pins(leg).items():
        try:
            found = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # platform-only packages (CUDA libraries) are absent elsewhere; pip check sees real gaps
        if found != wanted:
            drifted.append(f"{name} {found} (tested: {wanted})")
    assert not drifted, (
        f"installed packages differ from the tested set {leg.relative_to(ROOT)}: {', '.join(drifted)}; "
        f"reinstall with `pip install -c {leg.relative_to(ROOT)} -e \".[test]\"`, or test the new versions "
        "on both legs and update the constraints files"
    )


def test_every_dependency_is_pinned_in_both_legs():
    for leg in LEGS.values():
        pinned = pins(leg)
        missing = [r.name for r in requirements() if canonicalize_name(r.name) not in pinned]
        assert not missing, f"{leg.name} pins no version of {missing}"


def test_pyproject_ranges_admit_exactly_from_the_tested_pins_up_to_the_next_major():
    old, new = pins(LEGS["3"]), pins(LEGS["4"])
    for req in requirements():
        name = canonicalize_name(req.name)
        for leg in (old, new):
            assert req.specifier.contains(leg[name], prereleases=True), f"pyproject's {req} refuses the tested {name} {leg[name]}"
        lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert lower == [old[name]], f"pyproject's {req}: the lower bound must be the Spark 3.5 leg's pin {old[name]}"
        assert any(s.operator == "<" for s in req.specifier), f"pyproject's {req} has no upper bound"


def test_requires_python_matches_what_the_pins_need():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = project["requires-python"]
    for name in ("transformers", "torch", "pyspark"):
        needed = metadata.metadata(name).get("Requires-Python") or ""
        floor = [s.split(">=", 1)[1].strip() for s in needed.split(",") if ">=" in s]
        if floor:
            assert Version(ours.removeprefix(">=")) >= Version(floor[0]), f"{name} needs Python {needed}, pyproject says {ours}"
