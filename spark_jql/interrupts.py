"""Ctrl-C and SIGTERM as one exception, :class:`~spark_jql.errors.Interrupted`, for the command line.

The CLI turns both signals into ``Interrupted(signum)`` for the length of a command, so it can print one line and
exit 130 / 143 while the stage's ``finally`` blocks release the output lease and the runner cancels its Spark jobs.
pyspark's SparkContext installs its own SIGINT handler, which calls the JVM from inside the handler (a reentrant
py4j call that logs tracebacks); :func:`reassert` puts ours back once a session is built.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from spark_jql.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active = False
_received: list[int] = []  # signals taken inside the current block


def _raise(signum, frame):
    _received.append(signum)
    raise Interrupted(signum)


def received() -> int | None:
    """The signal taken inside the current :func:`as_interrupted` block, if any.

    The exception a signal raises can surface as another one: raised inside a py4j call, it breaks the socket and
    comes back as ``Py4JNetworkError: Answer from Java side is empty`` (then, say, an input error). Callers that
    turn errors into messages check this first, so an interrupted run still says it was interrupted."""
    return _received[-1] if _received else None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def as_interrupted():
    """Within the block, SIGINT and SIGTERM raise ``Interrupted`` (main thread only; elsewhere a no-op)."""
    global _active
    if not _main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _raise)
    _active = True
    _received.clear()
    try:
        yield
    finally:
        _active = False
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def reassert() -> None:
    """Inside :func:`as_interrupted`, take SIGINT back from a handler installed since (pyspark's)."""
    if _active and _main_thread():
        signal.signal(signal.SIGINT, _raise)
