"""The client's address, for login throttling (django-axes calls ``client_address``; settings.AXES_CLIENT_IP_CALLABLE).

Behind proxies the socket's address is the nearest proxy's, and the client's is in ``X-Forwarded-For``: each
proxy appends the address it received the request from. Anything left of what our own proxies wrote was sent
by the client and can be forged, so with ``CHAT_TRUSTED_PROXY_COUNT`` = n the client is the n-th entry from the
right; with 0 (the default) the header is ignored, since without a proxy anyone can send it.
"""
from __future__ import annotations

import ipaddress

from django.conf import settings


def client_address(request) -> str | None:
    """The address failures are counted against."""
    remote = request.META.get("REMOTE_ADDR")
    trusted = settings.CHAT_TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote
    hops = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(hops) < trusted:  # the request did not come through every proxy we expect: only the socket is known
        return remote
    candidate = hops[-trusted]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:  # a proxy that writes something else is misconfigured; count against the socket
        return remote
