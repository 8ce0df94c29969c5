"""kulak's one exception tree.

Every error a user can meet is a :class:`KulakError`; its message says what happened and what to
do next. The CLI prints the message (never a traceback) and exits with status 2.
"""

from __future__ import annotations


class KulakError(Exception):
    """Base class of every error kulak raises on purpose."""


class ConfigError(KulakError):
    """A configuration file, environment variable or CLI value is missing or wrong."""


class SourceError(KulakError):
    """A collector could not read its source."""


class AuthError(SourceError):
    """The source rejected the credentials (401/403)."""


class RateLimited(SourceError):
    """The source asked us to slow down; ``retry_after`` is in seconds when known."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceUnavailable(SourceError):
    """The source is down, timed out or answered with something that is not its API."""


class InputFileError(KulakError):
    """A file given to ``kulak import``/``score``/``eval`` cannot be read as what it claims."""


class ModelError(KulakError):
    """A model could not be loaded, built or trained."""


class StorageError(KulakError):
    """The database cannot be opened, migrated or written."""
