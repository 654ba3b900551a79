"""Errors a user can act on. Each message names the file, column, key or value at fault."""


class SparkJQLError(Exception):
    """Base of every error spark_jql raises on purpose."""


class CheckpointError(SparkJQLError):
    """A head checkpoint is missing, unreadable, unsafe or the wrong shape."""


class ModelNotAvailableError(SparkJQLError):
    """A model or head cannot be found locally and the Hub cannot be reached."""


class InputError(SparkJQLError):
    """The input data is missing, unreadable or lacks a needed column."""
