"""The bad-input catalogue: one registered case per fault a hostile user can throw at spark-jql.

Each ``tests/test_catalogue_*.py`` test that exercises a fault is decorated with
``@case(situation, outcome)``; the README's "What happens when" table is printed from
these registrations, so it cannot drift from what the tests check:

    python -m tests.catalogue            # the markdown table, from every tests/test_catalogue_*.py
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    situation: str  # the bad input or fault, as a user would describe it
    outcome: str    # what spark-jql does: the message it prints, the exit code, what happens to the rows
    test: str       # module::function that checks it


CASES: list[Case] = []


def case(situation: str, outcome: str):
    """Register the decorated test as the check for one row of the catalogue."""

    def register(fn):
        CASES.append(Case(situation, outcome, f"{fn.__module__.rsplit('.', 1)[-1]}::{fn.__name__}"))
        return fn

    return register


def markdown_table() -> str:
    here = Path(__file__).parent
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("test_catalogue"):
            importlib.import_module(f"tests.{info.name}")
    rows = ["| situation | outcome | checked by |", "| --- | --- | --- |"]
    rows += [f"| {c.situation} | {c.outcome} | `{c.test}` |" for c in CASES]
    return "\n".join(rows)


if __name__ == "__main__":
    # The tests register into the module ``tests.catalogue``, not into this ``__main__`` copy of it.
    print(importlib.import_module("tests.catalogue").markdown_table())
