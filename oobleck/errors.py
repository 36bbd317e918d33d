"""The one exception tree of oobleck.

::

    OobleckError
    ├── ConfigError            (also ValueError)  no LM configured, bad option, unusable cache dir
    ├── SignatureError         (also ValueError)  malformed signature string or class
    ├── InputError             (also TypeError)   missing or unknown inputs to a program
    ├── ParseError             (also ValueError)  an LM completion that does not fit the signature
    ├── MetricError            (also ValueError)  a metric cannot score one row (a prediction lacks the field)
    ├── LMError                                   anything that went wrong talking to an LM
    │   ├── LMTimeoutError
    │   ├── LMRateLimitError
    │   ├── LMConnectionError
    │   └── LMResponseError                       an error status or an unusable response body
    │       └── LMContextLengthError              the prompt does not fit the model's context
    ├── BudgetExceededError                       an optimizer or run hit its call/token limit
    ├── TooManyErrorsError     (also RuntimeError) an evaluation or bootstrap failed too often
    ├── RetrievalError                            a retriever's backend failed (e.g. Qdrant unreachable)
    ├── WriteError             (also OSError)     a file oobleck was asked to write was refused or failed
    ├── CompileError           (also RuntimeError) a compile that could not produce a program (every LM call failed)
    └── ArtifactError          (also ValueError)  a saved program that cannot be loaded

Every message says what was expected, what arrived, and how to fix it.

:data:`FATAL` names the errors that stop a run over many rows at once (every row would fail
the same way, or nothing more may be spent); any other error fails its own row only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oobleck.signature import Signature

__all__ = [
    "FATAL",
    "ArtifactError",
    "BudgetExceededError",
    "CompileError",
    "ConfigError",
    "InputError",
    "LMConnectionError",
    "LMContextLengthError",
    "LMError",
    "LMRateLimitError",
    "LMResponseError",
    "LMTimeoutError",
    "MetricError",
    "OobleckError",
    "ParseError",
    "RetrievalError",
    "SignatureError",
    "TooManyErrorsError",
    "WriteError",
]


class OobleckError(Exception):
    """Base class of every error oobleck raises on purpose."""


class ConfigError(OobleckError, ValueError):
    """A setting is missing or invalid (no LM configured, unusable cache directory, ...)."""


class SignatureError(OobleckError, ValueError):
    """A signature string or class could not be understood."""


class InputError(OobleckError, TypeError):
    """A program was called with missing or unknown inputs."""


class ParseError(OobleckError, ValueError):
    """An LM completion could not be parsed into the signature's output fields.

    Attributes:
        raw: the completion text exactly as the LM returned it.
        field: the output field that failed, or None when the whole structure was unusable.
        signature: the signature the completion was parsed against.
        reason: the underlying validation message.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: str,
        field: str | None,
        signature: Signature | None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.raw = raw
        self.field = field
        self.signature = signature
        self.reason = reason


class LMError(OobleckError):
    """A call to a language model failed.

    Attributes:
        retryable: whether retrying the same request may succeed.
        status: the HTTP status code when there was one.
        attempts: how many attempts were sent before giving up (each counts as an LM call;
            backends that retry set it, 1 otherwise).
    """

    retryable: bool = False
    attempts: int = 1

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class LMTimeoutError(LMError):
    """The LM did not answer in time."""

    retryable = True


class LMRateLimitError(LMError):
    """The server refused the call for rate limiting (HTTP 429)."""

    retryable = True


class LMConnectionError(LMError):
    """The server could not be reached, or dropped the connection."""

    retryable = True


class LMResponseError(LMError):
    """The server answered with an error status or a body oobleck cannot use."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ):
        super().__init__(message, status=status, retry_after=retry_after)
        self.retryable = retryable


class LMContextLengthError(LMResponseError):
    """The prompt (inputs, demos and instructions) does not fit the model's context window.

    Never retried: the same request would fail the same way.
    """


class MetricError(OobleckError, ValueError):
    """A metric cannot score one row: the prediction lacks the field it compares.

    It fails that row only (evaluation and optimizers count it against ``max_errors``); a
    setup problem every row would share, like an example without labels, is a ConfigError.
    """


class BudgetExceededError(OobleckError):
    """A limit on LM calls or tokens was reached.

    Attributes:
        attempts: attempts of the refused request already sent (a transport retry was refused
            after them); 0 when nothing was sent.
    """

    def __init__(self, message: str, *, attempts: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts


class RetrievalError(OobleckError):
    """A retriever's backend failed: a search engine was unreachable or refused a request."""


class TooManyErrorsError(OobleckError, RuntimeError):
    """More rows failed than ``max_errors`` allows (evaluation, bootstrapping).

    Attributes:
        errors: the (index, exception) pairs seen so far.
    """

    def __init__(self, message: str, errors: list[tuple[int, BaseException]]) -> None:
        super().__init__(message)
        self.errors = errors


class ToolError(OobleckError, RuntimeError):
    """A tool's server failed: an MCP server could not be reached, or reported an error for a call.

    A failing call inside an agent becomes an observation the model reads, not a crash.
    """


class ArtifactError(OobleckError, ValueError):
    """A saved program is corrupt, truncated, from a future version, or not an oobleck artifact."""


class WriteError(OobleckError, OSError):
    """A file was not written, and whatever was at its path is unchanged.

    The target is not a regular file (a device, FIFO or folder), is a symlink, is one of the
    command's own inputs, is read-only, its folder is missing, or the disk is full.
    """


class CompileError(OobleckError, RuntimeError):
    """A compile produced nothing worth saving: every LM call it made failed.

    Attributes:
        failed: how many LM calls failed.
        first: the first of those errors.
    """

    def __init__(self, message: str, *, failed: int = 0, first: BaseException | None = None) -> None:
        super().__init__(message)
        self.failed = failed
        self.first = first


#: The errors that stop an evaluation, a bootstrap or a search at once instead of failing one
#: row: a setup problem (no LM, a bad option) that every row would share, and a spent budget.
FATAL: tuple[type[OobleckError], ...] = (ConfigError, BudgetExceededError)
