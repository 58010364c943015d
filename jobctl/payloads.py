"""Payload models of the built-in jobs (docs/jobs.md), validated at enqueue and again before a job runs.

Which job uses which model is declared in its job-type record (`jobctl.processors.BUILTINS`)."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from jobctl.errors import UsageError, printable

TEMPLATES = ("welcome", "password-reset", "notification")
NonEmpty = Annotated[str, Field(min_length=1, max_length=2000)]
Dimension = Annotated[StrictInt, Field(ge=1, le=10000)]


class _Payload(BaseModel):
    # defer_build: a model's validator is built when first used (`JobType.payload_model`), so a command
    # pays for its job's model only, not for all of them at import
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SendEmail(_Payload):
    """send-email."""

    to: EmailStr
    subject: Annotated[str, Field(min_length=1, max_length=998)]
    template: Literal["welcome", "password-reset", "notification"]
    data: dict[str, Any] = Field(default_factory=dict)
    lang: Literal["en", "fr"] = "en"
    idempotencyKey: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # noqa: N815

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(c != "\t" and unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value):
            raise ValueError("must be one line of printable text (no CR, LF, VT, FF, NEL, U+2028 or other "
                             "control characters)")
        return value


class SendPush(_Payload):
    """send-push."""

    userId: NonEmpty  # noqa: N815
    title: Annotated[str, Field(min_length=1, max_length=500)]
    message: Annotated[str, Field(min_length=1, max_length=4000)]
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Literal["HIGH", "MEDIUM", "LOW"] = "MEDIUM"


class ProcessImage(_Payload):
    """process-image."""

    userId: NonEmpty  # noqa: N815
    originalPath: NonEmpty  # noqa: N815
    targetPath: NonEmpty  # noqa: N815
    maxWidth: Dimension  # noqa: N815
    maxHeight: Dimension  # noqa: N815
    quality: Annotated[StrictInt, Field(ge=1, le=100)] = 85

    @field_validator("originalPath", "targetPath")
    @classmethod
    def _relative(cls, value: str) -> str:
        from jobctl.storage import key_problem  # the one key rule, also checked at run time

        if problem := key_problem(value):
            raise ValueError(f"invalid storage key: {problem}")
        return value


class RetryWebhook(_Payload):
    """retry-webhook."""

    eventId: NonEmpty  # noqa: N815
    eventType: NonEmpty  # noqa: N815
    eventData: dict[str, Any]  # noqa: N815
    attemptNumber: Annotated[StrictInt, Field(ge=0)] = 0  # noqa: N815


class Cleanup(_Payload):
    """cleanup-audit-logs, cleanup-notifications, cleanup-temp-files."""

    retentionDays: Annotated[StrictInt, Field(ge=1, le=36500)] | None = None  # noqa: N815
    dryRun: StrictBool = False  # noqa: N815


def describe(exc: ValidationError) -> str:
    """First error as `field.path: reason`."""
    err = exc.errors()[0]
    path = printable(".".join(str(p) for p in err["loc"])) or "(payload)"  # a field name may hold ESC or LF
    msg = printable(err["msg"].removeprefix("Value error, "))
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return f"{path}: {msg}"


def validate(job_name: str, payload: object, model: type[BaseModel] | None = None) -> dict[str, Any]:
    """The payload, checked and normalised by `model` (default: the built-in job's), or a UsageError
    naming the field. A configuration's own jobs: `Registry.validate`."""
    if model is None:
        from jobctl.queues import DEFAULT_POLICIES, Registry

        model = Registry(DEFAULT_POLICIES).model(job_name)
    if not isinstance(payload, dict):
        raise UsageError(f"invalid payload for {job_name}: must be a JSON object")
    try:
        parsed = model.model_validate(payload)
    except ValidationError as exc:
        raise UsageError(f"invalid payload for {job_name}: {describe(exc)}") from None
    return parsed.model_dump(mode="json", exclude_unset=True)
