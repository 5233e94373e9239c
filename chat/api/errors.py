"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, and the HTTP status of each refusal."""
from __future__ import annotations

from django.http import JsonResponse

from ..errors import ChatError

# ChatError codes of the services → (status, OpenAI type, OpenAI code, param)
_FROM_CHAT = {
    "too_many_active": (429, "rate_limit_error", "rate_limit_exceeded", None),
    "no_worker": (503, "server_error", "no_worker", None),
    "unavailable": (503, "server_error", "unavailable", None),
    "too_long": (400, "invalid_request_error", "context_length_exceeded", "messages"),
    "empty": (400, "invalid_request_error", "invalid_value", "messages"),
    "invalid_content": (400, "invalid_request_error", "invalid_type", "messages"),
    "invalid_params": (400, "invalid_request_error", "invalid_value", None),
}
# How long a person over the active-reply cap waits before trying again (a short reply takes seconds).
RETRY_AFTER_S = 2


class ApiError(Exception):
    """A refusal in OpenAI's terms."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    @classmethod
    def from_chat(cls, exc: ChatError) -> ApiError:
        status, type_, code, param = _FROM_CHAT.get(exc.code, (400, "invalid_request_error", exc.code, None))
        return cls(status, exc.detail, type=type_, param=param, code=code)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        if self.status == 429:
            response["Retry-After"] = str(RETRY_AFTER_S)
        return response


def invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """400 naming the parameter."""
    return ApiError(400, message, param=param, code=code)
