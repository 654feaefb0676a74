"""One exception type per kind of failure, each mapped once to an exit code at the CLI edge."""

from __future__ import annotations


class AlignevalError(Exception):
    """Base class: a one-line message for the user and the exit code the CLI returns."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(AlignevalError):
    """Wrong flags, unknown names, invalid spec or rules file (exit 2)."""

    exit_code = 2


class ArtifactError(AlignevalError):
    """A file the command needs is missing or corrupt: data file, model folder, results (exit 3)."""

    exit_code = 3


class DataError(AlignevalError):
    """The data is readable but unusable: missing columns, one class, duplicate ids (exit 4)."""

    exit_code = 4


class ResourceError(AlignevalError):
    """Something outside the project is missing: network, NLTK data, WordNet (exit 5)."""

    exit_code = 5


EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_INTERNAL = 70  # an unforeseen exception (a bug): one line + a log file; never 1, which CI reads as a regression
EXIT_INTERRUPTED = 130
