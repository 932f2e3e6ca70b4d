"""Errors that the command-line tools report as one line, without a traceback."""


class SegexpError(Exception):
    """Base class for user-facing errors."""


class ConfigError(SegexpError):
    """A configuration key or value is invalid."""


class DataError(SegexpError):
    """Input data is missing, unreadable or inconsistent."""


class TrackingError(SegexpError):
    """The MLflow tracking store cannot be used."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
