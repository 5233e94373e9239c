"""The client's address, for login throttling (django-axes calls ``client_address``; settings.AXES_CLIENT_IP_CALLABLE)
and the access log.

It is ``REMOTE_ADDR``, the address Daphne gives the request: the socket's, or with ``TRUSTED_PROXY`` (Daphne's
``--proxy-headers``) the one the proxy *set* in ``X-Forwarded-For``. Without this callable axes would read
``X-Forwarded-For`` itself, which anyone reaching Daphne directly can write; and Daphne takes the header's
left-most entry, so the proxy in front must overwrite the header, never append to it (deploy/nginx/chat.conf).
Behind a chain of proxies, the one next to Daphne works out the client (nginx's realip module) and sets that.
"""
from __future__ import annotations


def client_address(request) -> str | None:
    """The address failures are counted against."""
    return request.META.get("REMOTE_ADDR")
