"""Errors a user can act on.

Every error that reaches the CLI as a ``MusifyError`` is printed as one line and exits
with ``exit_code``. Anything else is unexpected: the CLI prints it as one line too
(its type and message; a full disk names the file) with exit code 1, and ``musify
--debug`` shows its traceback.
"""

from __future__ import annotations


class MusifyError(Exception):
    """An error caused by input or environment, reported without a traceback."""

    exit_code = 1


class UsageError(MusifyError):
    """Bad input: a config, catalog, option or file the user supplied (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """An invalid configuration; the message names the file and the offending key."""

    def __init__(self, where: str, key: str, problem: str) -> None:
        self.where = where
        self.key = key
        self.problem = problem
        location = f"{where}: {key}" if key else where
        super().__init__(f"invalid config {location}: {problem}")


class BrokerError(MusifyError):
    """The Kafka broker could not be reached or refused our requests."""
