"""Exceptions that the CLI turns into one-line error messages instead of tracebacks."""


class CifarError(Exception):
    """Base class for user-facing errors of the `cifar` package."""


class DataError(CifarError):
    """The CIFAR-10 files are missing, corrupt or have the wrong layout."""


class CheckpointError(CifarError):
    """A checkpoint cannot be read or does not fit the expected architecture."""


class DivergenceError(CifarError):
    """Training produced a NaN or infinite loss."""
