"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, and the HTTP status of each refusal."""

from __future__ import annotations

import functools
import logging
import math

from django.http import JsonResponse

from chat.errors import ChatError, ErrorCode

# ChatError codes of the services → (status, OpenAI type, OpenAI code, param)
_FROM_CHAT = {
    ErrorCode.TOO_MANY_ACTIVE: (429, "rate_limit_error", ErrorCode.RATE_LIMIT_EXCEEDED, None),
    ErrorCode.RATE_LIMITED: (429, "rate_limit_error", ErrorCode.RATE_LIMIT_EXCEEDED, None),
    ErrorCode.QUOTA_EXHAUSTED: (429, ErrorCode.INSUFFICIENT_QUOTA, ErrorCode.INSUFFICIENT_QUOTA, None),
    ErrorCode.NOT_APPROVED: (403, "permission_denied", ErrorCode.NOT_APPROVED, None),
    ErrorCode.KEY_REVOKED: (401, "invalid_request_error", ErrorCode.INVALID_API_KEY, None),
    ErrorCode.NO_WORKER: (503, "server_error", ErrorCode.NO_WORKER, "model"),
    ErrorCode.MODEL_NOT_FOUND: (404, "invalid_request_error", ErrorCode.MODEL_NOT_FOUND, "model"),
    ErrorCode.UNAVAILABLE: (503, "server_error", ErrorCode.UNAVAILABLE, None),
    ErrorCode.TOO_LONG: (400, "invalid_request_error", ErrorCode.CONTEXT_LENGTH_EXCEEDED, "messages"),
    ErrorCode.EMPTY: (400, "invalid_request_error", ErrorCode.INVALID_VALUE, "messages"),
    ErrorCode.INVALID_CONTENT: (400, "invalid_request_error", ErrorCode.INVALID_TYPE, "messages"),
    ErrorCode.INVALID_PARAMS: (400, "invalid_request_error", ErrorCode.INVALID_VALUE, None),
}
log = logging.getLogger(__name__)
# How long a person over the active-reply cap waits before trying again (a short reply takes seconds).
RETRY_AFTER_S = 2


def _retry_after(exc: ChatError) -> int:
    """Whole seconds until the refused request could succeed: what the refusal knows (the messages-a-minute
    window's own wait, today's tokens until midnight), else the cap's short wait (replies end in seconds)."""
    if exc.retry_after is None:
        return RETRY_AFTER_S
    return max(1, math.ceil(exc.retry_after))


class ApiError(Exception):
    """A refusal in OpenAI's terms."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: ErrorCode | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry_after = retry_after

    @classmethod
    def from_chat(cls, exc: ChatError) -> ApiError:
        status, type_, code, param = _FROM_CHAT.get(exc.code, (400, "invalid_request_error", exc.code, None))
        return cls(
            status,
            exc.detail,
            type=type_,
            param=param,
            code=code,
            retry_after=_retry_after(exc) if status == 429 else None,
        )

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


def invalid(param: str, message: str, code: ErrorCode = ErrorCode.INVALID_VALUE) -> ApiError:
    """400 naming the parameter."""
    return ApiError(400, message, param=param, code=code)


def json_errors(view):
    """An async API view whose unforeseen failure is still OpenAI's error shape (500, ``internal``), logged with
    its traceback: a client of /v1 parses JSON, never Django's HTML error page."""

    @functools.wraps(view)
    async def wrapped(request, *args, **kwargs):
        try:
            return await view(request, *args, **kwargs)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return ApiError(
                500,
                "Something went wrong on our side; the request was not processed.",
                type="server_error",
                code=ErrorCode.INTERNAL,
            ).response()

    return wrapped
