"""System checks for settings that only make sense together (``manage.py check``, ``check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

HTTPS_WITHOUT_PROXY = checks.Warning(
    "HTTPS is on but TRUSTED_PROXY is off.",
    hint="Daphne speaks plain HTTP here, so HTTPS means a TLS proxy in front; without TRUSTED_PROXY Django takes "
    "every request for plain HTTP (the HTTPS redirect loops) and every client for the proxy's address: "
    "login throttling locks everyone out together, and with the proxy on loopback /metrics is open to "
    "anyone (METRICS_ALLOWED_IPS lists loopback). Set TRUSTED_PROXY=true when a proxy you run is the only "
    "way in and overwrites X-Forwarded-For (deploy/nginx/chat.conf does).",
    id="chat.W001",
)


@checks.register(checks.Tags.security)
def https_behind_a_trusted_proxy(app_configs=None, **kwargs):
    """HTTPS without TRUSTED_PROXY is a TLS proxy Daphne does not believe (see the warning's hint)."""
    return [HTTPS_WITHOUT_PROXY] if settings.HTTPS and not settings.TRUSTED_PROXY else []
