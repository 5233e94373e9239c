"""Refusals a person can meet: a stable code and a sentence.

``ErrorCode`` is every code the app sends anywhere — the chat socket's ``error`` frames, a failed reply's
``error_code``, the page's JSON endpoints, the OpenAI API's ``error.code`` — in one place, so adding one is one
line here and one row in docs/protocol.md or docs/api.md (``tests/test_vocabulary.py`` fails until both exist, and
fails on a code written as a bare string anywhere else in ``chat/``). The values are wire values: never change one.
"""

from __future__ import annotations

from enum import StrEnum

from django.http import JsonResponse


class ErrorCode(StrEnum):
    # --- a frame or request that cannot be read (docs/protocol.md) --------------------------------------------
    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    BAD_ID = "bad_id"
    BAD_CURSOR = "bad_cursor"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"
    # --- what a person wrote or asked for ----------------------------------------------------------------------
    EMPTY = "empty"
    INVALID_CONTENT = "invalid_content"
    TOO_LONG = "too_long"
    INVALID_PARAMS = "invalid_params"
    INVALID_RATING = "invalid_rating"
    INVALID_NAME = "invalid_name"
    # --- the state of a conversation ---------------------------------------------------------------------------
    BUSY = "busy"
    NOT_REGENERABLE = "not_regenerable"
    NOT_CONTINUABLE = "not_continuable"
    NOT_STOPPABLE = "not_stoppable"
    NOT_EDITABLE = "not_editable"
    NOT_SWITCHABLE = "not_switchable"
    NOT_RATEABLE = "not_rateable"
    # --- a person's organising: folders, bulk actions (docs/protocol.md) --------------------------------------
    TOO_MANY_FOLDERS = "too_many_folders"
    TOO_MANY_SELECTED = "too_many_selected"
    # --- fair use and capacity (docs/fair-use.md) ---------------------------------------------------------------
    TOO_MANY_ACTIVE = "too_many_active"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    TOO_MANY_FRAMES = "too_many_frames"
    TOO_MANY_SOCKETS = "too_many_sockets"
    NO_WORKER = "no_worker"
    UNAVAILABLE = "unavailable"
    # --- accounts (docs/accounts.md) -----------------------------------------------------------------------------
    NOT_APPROVED = "not_approved"
    SIGNUP_RATE_LIMITED = "signup_rate_limited"
    RESET_RATE_LIMITED = "reset_rate_limited"
    LOGIN_LOCKED = "login_locked"
    INVITE_REQUIRED = "invite_required"
    INVITE_UNKNOWN = "invite_unknown"
    INVITE_USED = "invite_used"
    INVITE_EXPIRED = "invite_expired"
    INVITE_EMAIL = "invite_email"
    # --- the review panel (docs/review-panel.md) ---------------------------------------------------------------
    INVALID_STATE = "invalid_state"
    INVALID_KIND = "invalid_kind"
    NOT_AN_ANSWER = "not_an_answer"
    RANGE_REVERSED = "range_reversed"
    RANGE_TOO_LONG = "range_too_long"
    # --- training runs (docs/improvement-loop.md) -----------------------------------------------------------------
    NAME_TAKEN = "name_taken"
    NO_EXAMPLES = "no_examples"
    NOT_CANCELLABLE = "not_cancellable"
    # --- several models: Compare (docs/protocol.md) -------------------------------------------------------------
    COMPARE_SAME_MODEL = "compare_same_model"
    NOT_COMPARED = "not_compared"
    ALREADY_PICKED = "already_picked"
    # --- the improvement loop: A/B experiments (docs/protocol.md, pages around the chat) --------------------------
    INVALID_SHARE = "invalid_share"
    EXPERIMENT_RUNNING = "experiment_running"
    EXPERIMENT_NOT_RUNNING = "experiment_not_running"
    # --- share links (docs/chat-page.md, docs/protocol.md) ---------------------------------------------------------
    NOTHING_TO_SHARE = "nothing_to_share"
    TOO_MANY_SHARE_LINKS = "too_many_share_links"
    SHARE_GONE = "share_gone"
    # --- documents attached to messages (docs/protocol.md, docs/chat-page.md#documents) -----------------------------
    FILE_TOO_LARGE = "file_too_large"
    FILE_UNSUPPORTED = "file_unsupported"
    FILE_UNREADABLE = "file_unreadable"
    FILE_ENCRYPTED = "file_encrypted"
    FILE_TOO_MANY_PAGES = "file_too_many_pages"
    FILE_NO_TEXT = "file_no_text"
    TOO_MANY_ATTACHMENTS = "too_many_attachments"
    ATTACHMENTS_FULL = "attachments_full"
    # --- API keys and the OpenAI-compatible API (docs/api.md) ---------------------------------------------------
    TOO_MANY_KEYS = "too_many_keys"
    KEY_REVOKED = "key_revoked"
    INVALID_API_KEY = "invalid_api_key"
    INVALID_JSON = "invalid_json"
    INVALID_VALUE = "invalid_value"
    INVALID_TYPE = "invalid_type"
    MISSING_REQUIRED_PARAMETER = "missing_required_parameter"
    MODEL_NOT_FOUND = "model_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    TOO_MANY_REQUESTS = "too_many_requests"
    # --- the prompt library (docs/chat-page.md) -------------------------------------------------------------------
    TOO_MANY_PROMPTS = "too_many_prompts"
    # --- importing conversations from a file (docs/api.md, "Importing conversations") ---------------------------
    IMPORT_TOO_LARGE = "import_too_large"
    IMPORT_INVALID = "import_invalid"
    IMPORT_UNKNOWN_FORMAT = "import_unknown_format"
    IMPORT_LIMIT = "import_limit"
    # --- why a reply failed (``Message.error_code``, the ``done`` frame's ``error_code``) ----------------------
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    GENERATION_FAILED = "generation_failed"
    ADAPTER_UNAVAILABLE = "adapter_unavailable"


class ChatError(Exception):
    """A request the app refuses; ``code`` is stable, ``detail`` is for a person. ``retry_after``: seconds until
    the same request could succeed, where the refusal knows (a rate or quota); the API's ``Retry-After`` is it,
    so no caller has to read the number back out of the sentence."""

    def __init__(self, code: ErrorCode, detail: str, *, retry_after: float | None = None):
        detail = str(detail)  # a lazy translation (a module's sentence) in the language of the refused request
        super().__init__(detail)
        self.code = ErrorCode(code)
        self.detail = detail
        self.retry_after = retry_after


def json_refusal(exc: ChatError, status: int = 400) -> JsonResponse:
    """A page's JSON refusal: ``{"error": {"code", "detail"}}`` with ``status``, and ``Retry-After`` where the
    refusal knows when the same request could succeed (the page's fetch helpers read both)."""
    response = JsonResponse({"error": {"code": exc.code, "detail": exc.detail}}, status=status)
    if exc.retry_after:
        response["Retry-After"] = str(int(exc.retry_after))
    return response
