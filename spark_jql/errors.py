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
