"""User-facing errors (with exit codes) and the signals a processor raises.

`JobctlError` subclasses become one red line on stderr and an exit code (docs/index.md, exit codes).
`RetryLater` and `PermanentFailure` are job signals: a processor raises them and the
worker applies them; they never reach the console as errors.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: object) -> str:
    """`text` with every control character (ESC, CR, LF, NEL, U+2028, …) and lone surrogate written as a
    Python escape (`\\x1b`, `\\n`, `\\u2028`), so user data cannot move a terminal's cursor or forge a log
    line. Use it wherever user data meets a terminal or a log."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


class JobctlError(Exception):
    """An error shown to the operator as one line, ending the command with `exit_code`."""

    exit_code = 1


class UsageError(JobctlError):
    """Bad input: unknown queue/job, invalid JSON or payload; nothing was written."""

    exit_code = 2


class ConfigError(UsageError):
    """An invalid settings file or variable."""


class NotFound(JobctlError):
    """A job id or dead-letter id that does not exist."""

    exit_code = 3


class ServiceUnavailable(JobctlError):
    """A required service (Redis, database) does not answer."""

    exit_code = 4


class OperationFailed(JobctlError):
    """The operation failed or partly failed."""

    exit_code = 1


class JobSignal(Exception):
    """Base of the signals a processor raises to steer what happens next."""


class RetryLater(JobSignal):
    """Retry after `delay_s` seconds instead of the policy's back-off (e.g. HTTP 429)."""

    def __init__(self, delay_s: float, reason: str = "retry later", throttle_queue: bool = False) -> None:
        super().__init__(reason)
        self.delay_s = max(0.0, float(delay_s))
        self.reason = reason
        self.throttle_queue = throttle_queue  # an upstream limit shared by the whole queue (OneSignal 429)


class PermanentFailure(JobSignal):
    """Do not retry: the job goes to the dead-letter store at once (e.g. invalid input, HTTP 4xx)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobTimeout(Exception):
    """Raised inside a job that ran past its queue's timeout."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("job exceeded its timeout",)))
