"""Progress bars in IPython/Jupyter, where log lines go nowhere unless logging is configured.

:class:`ProgressBar` draws what :class:`~spark_jql.spark.progress.ScoringProgress` measures. ``annotate`` is lazy, so
in a notebook the scoring runs later, in the user's own action: :func:`notebook_beacon` gives its UDF the address
of the process's :class:`NotebookProgress`, which draws one bar per action's scoring stage from the tasks' reports.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from spark_jql.spark.beacon import BeaconAddress, BeaconListener, advertised_host

log = logging.getLogger("spark_jql.spark.progress")

POLL_SECONDS = 0.5


def in_notebook() -> bool:
    """True in IPython/Jupyter (where log lines go nowhere unless logging is configured), unless
    ``SPARK_JQL_NOTEBOOK_PROGRESS=0``."""
    if os.environ.get("SPARK_JQL_NOTEBOOK_PROGRESS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    ipython = sys.modules.get("IPython")
    try:
        return ipython is not None and ipython.get_ipython() is not None
    except Exception:
        return False


def _bar_class():
    """tqdm's notebook bar in a Jupyter kernel with ipywidgets; its plain line elsewhere."""
    from tqdm import std

    try:
        shell = type(sys.modules["IPython"].get_ipython()).__name__
        if shell == "ZMQInteractiveShell":
            import ipywidgets  # noqa: F401
            from tqdm import notebook

            return notebook.tqdm
    except Exception:
        pass
    return std.tqdm


class ProgressBar:
    """A tqdm bar of scored documents (``total`` when known), tasks and ETA in its postfix."""

    factory = None  # tests swap in a recorder; None: :func:`_bar_class`

    def __init__(self, label: str, total: int | None):
        make = ProgressBar.factory or _bar_class()
        self.bar = make(total=total, desc=f"spark_jql {label}", unit="docs", unit_scale=False, dynamic_ncols=True)

    def show(self, docs: int, postfix: str | None = None) -> None:
        try:
            self.bar.update(max(0, docs - self.bar.n))
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.refresh()
        except Exception:  # a display must never fail a job
            pass

    def close(self) -> None:
        try:
            self.bar.close()
        except Exception:
            pass


class NotebookProgress:
    """One per notebook process: a beacon listener and a thread that draws a bar per scoring action.

    ``annotate`` is lazy: scoring runs in the user's action, possibly cells later, so the
    bar cannot wrap it. Each action's scoring stage reports under its ``annotate``'s run id;
    a bar per (run, stage) appears with its first report and closes after ``idle`` seconds
    without one (the count is then final)."""

    def __init__(self, spark, idle: float = 30.0):
        self.listener = BeaconListener(advertised_host(spark))
        self.idle = idle
        self.runs: set[str] = set()
        self.bars: dict[tuple[str, int], tuple[ProgressBar, float]] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._draw, name="spark_jql-notebook-progress", daemon=True).start()

    def address(self) -> BeaconAddress:
        address = self.listener.address()
        with self.lock:
            self.runs.add(address.run)
        return address

    def _draw(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            try:
                self.draw(time.monotonic())
            except Exception as err:  # pragma: no cover - a display must never fail anything
                log.debug("notebook progress: %s", err)

    def draw(self, now: float) -> None:
        with self.lock:
            runs = list(self.runs)
        for run in runs:
            counts = self.listener.counts(run)
            for stage in sorted(counts.stages) if counts else ():
                key = (run, stage)
                if key in self.bars and self.bars[key][0] is None:
                    continue  # finished
                docs = sum(n for (s, _), n in counts.partitions.items() if s == stage)
                bar, _ = self.bars.get(key) or (ProgressBar("scoring", None), now)
                if key not in self.bars or docs != bar.bar.n:
                    self.bars[key] = (bar, now)
                    bar.show(docs)
        for key, (bar, last) in list(self.bars.items()):
            if bar is not None and now - last > self.idle:
                bar.close()
                self.bars[key] = (None, float("inf"))  # finished: never redrawn

    def finish(self) -> None:
        """Close every open bar now (tests; the end of a notebook)."""
        self.draw(time.monotonic())
        for key, (bar, _) in list(self.bars.items()):
            if bar is not None:
                bar.close()
                self.bars[key] = (None, float("inf"))


_NOTEBOOK: dict = {}


def notebook_beacon(spark) -> BeaconAddress | None:
    """In a notebook, a fresh run address of the process's :class:`NotebookProgress`; None outside
    notebooks or when it cannot listen."""
    if not in_notebook():
        return None
    if "progress" not in _NOTEBOOK:
        try:
            _NOTEBOOK["progress"] = NotebookProgress(spark)
        except Exception as err:
            log.debug("no notebook progress: %s", err)
            return None
    return _NOTEBOOK["progress"].address()
