"""Errors a user can act on. Each message names the file, column, key or value at fault."""


class SparkJQLError(Exception):
    """Base of every error spark_jql raises on purpose."""


class CheckpointError(SparkJQLError):
    """A head checkpoint is missing, unreadable, unsafe or the wrong shape."""


class ModelNotAvailableError(SparkJQLError):
    """A model or head cannot be found locally and the Hub cannot be reached."""


class InputError(SparkJQLError):
    """The input data is missing, unreadable or lacks a needed column."""


class ThresholdsError(InputError):
    """A thresholds.json is unreadable, tampered with, or lacks what the filter needs."""


class ModelFilesError(ModelNotAvailableError):
    """A model folder is incomplete or inconsistent: missing or foreign tokenizer, corrupt weights."""


class AccountingError(SparkJQLError):
    """Row counts do not add up: a document would have been lost or duplicated (a bug, never the user's data)."""


class WorkerLoadError(SparkJQLError):
    """The scorer (or another per-worker model) could not be built on an executor."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped a run; ``progress`` says what is committed (a rerun resumes from there)."""

    def __init__(self, signum: int = 2, progress: str = ""):
        super().__init__(progress)
        self.signum = signum
        self.progress = progress


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def spark_cause(err: BaseException) -> str:
    """The line of a Spark error that says why: past py4j's ``An error occurred while calling o35.load.``."""
    lines = [line.strip().lstrip(": ") for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):
        return lines[1]
    return lines[0] if lines else type(err).__name__


def worker_error(err: BaseException) -> WorkerLoadError | None:
    """The WorkerLoadError an executor raised, out of the Spark exception that carries its traceback."""
    marker = f"{WorkerLoadError.__module__}.{WorkerLoadError.__name__}: "
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        for line in str(err).splitlines():
            if marker in line:
                return WorkerLoadError(line.split(marker, 1)[1].strip())
        err = err.__cause__ or err.__context__
    return None


def marked_line(err: BaseException, marker: str) -> str | None:
    """The rest of the line after ``marker`` (a message a query raised with ``raise_error``), out of Spark's exception
    chain; None if no exception in the chain carries it. Spark's ``SQLSTATE`` suffix is left out."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        for line in str(err).splitlines():
            if marker in line:
                return line.split(marker, 1)[1].split(" SQLSTATE: ", 1)[0].strip()
        err = err.__cause__ or err.__context__
    return None
