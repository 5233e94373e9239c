"""``Authorization: Bearer sk-<prefix>-<secret>``: the prefix finds the key, the secret's SHA-256 is compared in
constant time, and a revoked key or an inactive owner is refused like a wrong one."""

from __future__ import annotations

import hmac

from chat.api import services
from chat.api.errors import ApiError
from chat.errors import ErrorCode
from chat.models import ApiKey

_INVALID = (
    "Incorrect API key provided. Create a key on the API keys page of your account and send it as "
    "'Authorization: Bearer <key>'."
)


def _refused(message: str = _INVALID) -> ApiError:
    return ApiError(401, message, code=ErrorCode.INVALID_API_KEY)


def authenticate(header: str | None) -> ApiKey:
    """The active key the header carries, its owner loaded; ``ApiError`` 401 otherwise. Records the use."""
    if not header or not header.startswith("Bearer "):
        raise _refused("You didn't provide an API key: send it as 'Authorization: Bearer <key>'.")
    token = header[len("Bearer ") :].strip()
    start, n = services.API_KEY_START, services.API_KEY_PREFIX_CHARS
    if not token.startswith(start) or len(token) < len(start) + n + 2 or token[len(start) + n] != "-":
        raise _refused()
    prefix, secret = token[len(start) : len(start) + n], token[len(start) + n + 1 :]
    key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    # Compare even when no key has this prefix, so a miss and a wrong secret take the same time.
    expected = key.secret_hash if key else "0" * 64
    if not hmac.compare_digest(expected, services.api_key_secret_hash(secret)) or key is None:
        raise _refused()
    if key.revoked_at is not None:
        raise _refused("This API key has been revoked.")
    if not key.owner.is_active:
        raise _refused("The account of this API key is disabled.")
    services.api_key_touch(key=key)
    return key
