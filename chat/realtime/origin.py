"""The websocket's Origin check: a socket is opened only from an origin Django's CSRF check would accept a POST
from — the site's own origin (scheme, host and port), or one of ``CSRF_TRUSTED_ORIGINS``.

A browser sends the person's cookies with a websocket handshake whatever page opens it, and a handshake is not
a POST, so CSRF never sees it: the Origin header is the only thing telling the person's own page from another.
Channels' ``AllowedHostsOriginValidator`` compares the origin's host with ``ALLOWED_HOSTS`` and nothing else, so
a page on another port of the same host (``http://127.0.0.1:9999``, ``http://localhost:1``: any local program,
any other site on that machine) or the plain-HTTP twin of an HTTPS site opened the socket with the person's
cookies and acted as them. Here, as ``CsrfViewMiddleware._origin_verified`` does for HTTP:

- the socket's own origin is ``<scheme>://<Host header>``, the Host checked against ``ALLOWED_HOSTS`` (so a
  DNS-rebinding name that merely points at the server is not its own origin); the scheme is ``https`` when the
  connection is TLS, or with ``TRUSTED_PROXY`` when the proxy's ``X-Forwarded-Proto`` says so
  (``SECURE_PROXY_SSL_HEADER``), else ``http``;
- an origin equal to it, or to an entry of ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` matches its
  subdomains, as for CSRF), is accepted; anything else — no Origin, two, ``null`` — is refused with HTTP 403
  before the consumer runs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


def _headers(scope, name: bytes) -> list[str]:
    return [value.decode("latin1") for key, value in scope.get("headers", []) if key.lower() == name]


def socket_scheme(scope) -> str:
    """``https`` or ``http``: the scheme of the page that may open this socket, as ``request.scheme`` says it
    for an HTTP request to the same server."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
        values = _headers(scope, name)
        if values:
            return "https" if values[0].split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def socket_host(scope) -> str | None:
    """The Host header (with its port) if it names this site (``ALLOWED_HOSTS``), else None."""
    hosts = _headers(scope, b"host")
    if len(hosts) != 1:
        return None
    domain, _ = split_domain_port(hosts[0])
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # Django's own fallback for a site in DEBUG
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return hosts[0] if domain and validate_host(domain, allowed) else None


def origin_allowed(scope) -> bool:
    """May a page of this Origin open the socket?"""
    origins = _headers(scope, b"origin")
    if len(origins) != 1:
        return False
    origin = origins[0]
    host = socket_host(scope)
    if host is not None and origin == f"{socket_scheme(scope)}://{host}":
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in [entry for entry in trusted if "*" not in entry]:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    for entry in (entry for entry in trusted if "*" in entry):
        pattern = urlsplit(entry)
        if parsed.scheme == pattern.scheme and is_same_domain(parsed.netloc, pattern.netloc.lstrip("*")):
            return True
    return False


class SameOriginValidator:
    """ASGI middleware for the websocket: refuse (HTTP 403) a handshake whose Origin is not the site's own."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
