"""The error types the product raises for a user's mistake (a bad file, a bad option).

Every one derives from :class:`NextbestError`, whose message is written for the person
who made the mistake: the command line prints it as one message and exits non-zero,
without a traceback. Anything else escaping a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class NextbestError(Exception):
    """A user-facing error; ``str(error)`` is the whole message."""

    #: Exit status of the command line for this kind of error.
    exit_code: int = 2


class InputError(NextbestError, ValueError):
    """An input file or table breaks its documented contract.

    A ``ValueError`` too, so callers that caught the plain ``ValueError`` these checks
    raised before still do.
    """


class MissingInputError(InputError, FileNotFoundError):
    """An input file the user named does not exist."""


class DependencyUnavailable(RuntimeError):
    """A store the service depends on cannot be read or written right now.

    ``dependency`` is one of :data:`nextbest.core.vocabulary.DEPENDENCIES`; the service answers 503
    with the reason ``<dependency>_unavailable`` and ``Retry-After``. Not a
    :class:`NextbestError`: nobody made a mistake, and the same request may succeed later.
    """

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency

    @property
    def reason(self) -> str:
        """The reason code of the 503 answer: ``<dependency>_unavailable``."""
        return f"{self.dependency}_unavailable"
