"""Live document counts from the scoring UDF to the driver, one UDP datagram per Arrow batch.

Spark tells the driver how many tasks ended, not how far a running task is: a GPU
task of 100,000 documents shows 0 until it ends, and Python accumulators only report
at task end too. So each scoring task sends, after each batch (at most every
``interval`` seconds, and always at its end), one datagram
``run stage partition attempt docs-so-far`` to a UDP socket the driver (or the
notebook's Python) listens on. The listener keeps, per run and partition, the
largest count any attempt reached: a retried or speculative task never counts twice.

Best effort by design: UDP never blocks or fails a task; where executors cannot reach
the driver's address (a remote Spark Connect client behind NAT, a firewall), no
datagram arrives and the progress display falls back to task counts. Only the scoring
UDF sends, so the counts are the scoring stage's documents, never a read stage's.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

log = logging.getLogger("spark_jql.spark.progress")

DEFAULT_INTERVAL = 0.5  # seconds between two datagrams of one task


def env_float(name: str, default: float) -> float:
    """A number from the environment (the progress knobs); the default when unset or not a number."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def interval_setting() -> float:
    """``SPARK_JQL_BEACON_INTERVAL`` (seconds between a task's datagrams; 0: one per batch), else the default."""
    return env_float("SPARK_JQL_BEACON_INTERVAL", DEFAULT_INTERVAL)


@dataclass(frozen=True)
class BeaconAddress:
    """Where a UDF's tasks send their counts, and the run they count for; pickled into the UDF."""

    host: str
    port: int
    run: str
    interval: float = DEFAULT_INTERVAL


@dataclass
class RunCounts:
    """A run's documents per (stage, partition), the largest count of any attempt."""

    partitions: dict[tuple[int, int], int] = field(default_factory=dict)
    reports: int = 0  # datagrams received

    @property
    def docs(self) -> int:
        return sum(self.partitions.values())

    @property
    def stages(self) -> set[int]:
        return {stage for stage, _ in self.partitions}


class BeaconListener:
    """A UDP socket on the driver and a daemon thread that folds datagrams into :class:`RunCounts`."""

    def __init__(self, advertise: str, interval: float | None = None):
        self.advertise = advertise
        self.interval = interval_setting() if interval is None else interval
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.runs: dict[str, RunCounts] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="spark_jql-beacon", daemon=True)
        self._thread.start()

    def address(self, run: str | None = None) -> BeaconAddress:
        """A new run's address (``run`` names it; default: a fresh id)."""
        return BeaconAddress(self.advertise, self.port, run or uuid.uuid4().hex[:12], self.interval)

    def counts(self, run: str) -> RunCounts | None:
        with self.lock:
            found = self.runs.get(run)
            return RunCounts(dict(found.partitions), found.reports) if found else None

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(256)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.record(data)

    def record(self, data: bytes) -> None:
        try:
            run, stage, partition, _attempt, docs = data.decode("ascii").split()
            key, count = (int(stage), int(partition)), int(docs)
        except (UnicodeDecodeError, ValueError):
            return  # not ours
        with self.lock:
            counts = self.runs.setdefault(run, RunCounts())
            counts.partitions[key] = max(count, counts.partitions.get(key, 0))
            counts.reports += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def advertised_host(spark) -> str:
    """The address executors reach this Python process at: the driver host (classic), or this client's
    address toward the Connect server (the interface a datagram to the server would leave by)."""
    from spark_jql.spark.session import connect_host, is_connect

    if not is_connect(spark):
        try:
            return spark.sparkContext.getConf().get("spark.driver.host") or socket.gethostname()
        except Exception:
            return socket.gethostname()
    server = connect_host(spark) or "localhost"
    if server in ("localhost", "127.0.0.1", "::1") or server.startswith("local"):
        return "127.0.0.1"
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect((server, 9))  # no packet is sent: this only picks the outgoing interface
        host = probe.getsockname()[0]
        probe.close()
        return host
    except OSError:
        return socket.gethostname()


class BeaconSender:
    """Worker side: one task's running count, sent at most every ``interval`` seconds and at the end."""

    def __init__(self, address: BeaconAddress | None):
        self.address = address
        self.docs = 0
        self.sent = -1  # the count last sent
        self.last = 0.0
        self.sock = None
        self.prefix = ""
        if address is None:
            return
        try:
            from pyspark import TaskContext

            ctx = TaskContext.get()
            stage, partition, attempt = (ctx.stageId(), ctx.partitionId(), ctx.attemptNumber()) if ctx else (0, 0, 0)
            self.prefix = f"{address.run} {stage} {partition} {attempt}"
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        except Exception:  # progress must never fail a task
            self.sock = None

    def add(self, rows: int) -> None:
        self.docs += rows
        now = time.monotonic()
        if self.sock is not None and now - self.last >= self.address.interval:
            self.send()
            self.last = now

    def send(self) -> None:
        if self.sock is None or self.sent == self.docs:
            return
        self.sent = self.docs
        try:
            self.sock.sendto(f"{self.prefix} {self.docs}".encode("ascii"), (self.address.host, self.address.port))
        except OSError:
            pass

    def close(self) -> None:
        self.send()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
