"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, and the HTTP status of each refusal."""
from __future__ import annotations

import math

from django.http import JsonResponse

from chat.errors import ChatError

# ChatError codes of the services → (status, OpenAI type, OpenAI code, param)
_FROM_CHAT = {
    "too_many_active": (429, "rate_limit_error", "rate_limit_exceeded", None),
    "rate_limited": (429, "rate_limit_error", "rate_limit_exceeded", None),
    "quota_exhausted": (429, "insufficient_quota", "insufficient_quota", None),
    "not_approved": (403, "permission_denied", "not_approved", None),
    "key_revoked": (401, "invalid_request_error", "invalid_api_key", None),
    "no_worker": (503, "server_error", "no_worker", None),
    "unavailable": (503, "server_error", "unavailable", None),
    "too_long": (400, "invalid_request_error", "context_length_exceeded", "messages"),
    "empty": (400, "invalid_request_error", "invalid_value", "messages"),
    "invalid_content": (400, "invalid_request_error", "invalid_type", "messages"),
    "invalid_params": (400, "invalid_request_error", "invalid_value", None),
}
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

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry_after = retry_after

    @classmethod
    def from_chat(cls, exc: ChatError) -> ApiError:
        status, type_, code, param = _FROM_CHAT.get(exc.code, (400, "invalid_request_error", exc.code, None))
        return cls(status, exc.detail, type=type_, param=param, code=code,
                   retry_after=_retry_after(exc) if status == 429 else None)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


def invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """400 naming the parameter."""
    return ApiError(400, message, param=param, code=code)
