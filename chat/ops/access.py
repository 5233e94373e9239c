"""The access log under ``LOG_FORMAT=json``: one JSON record per HTTP request (written by
``ops.RequestMetricsMiddleware``) and per websocket accepted and closed (``WebsocketAccessLog``, around the
socket app in ``chatsite/asgi.py``), each with the client's address and the person where known.

Daphne's own access log is plain text written straight to stdout, past Python's logging, so with JSON logs the
launcher turns it off (``-v 0``, ``chatsite/web.py``) and these records take its place. With text logs
Daphne keeps its own and these are not written. One access log, never two, holds for Daphne as the launcher
starts it: ``make run``, ``python -m chatsite.stack web``, and so the systemd unit and the Procfile in deploy/,
which run that. Daphne started by hand with JSON logs must be given ``-v 0`` too, or it writes both (the app
cannot reach the access logger Daphne's command line makes).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from chat.accounts.client_address import client_address

log = logging.getLogger("chat.access")


def enabled() -> bool:
    return settings.LOG_FORMAT == "json"


def _known_user_id(request) -> int | None:
    """The person, only if the request already looked them up: asking ``request.user`` here would cost a
    session and a user query on requests that never needed them (probes, /metrics, the login page)."""
    user = getattr(request, "user", None)
    if user is not None and not hasattr(user, "_wrapped"):  # login() or logout() set a plain user object
        return user.pk if user.is_authenticated else None
    # AuthenticationMiddleware's lazy user and its async twin cache what they looked up here.
    user = getattr(request, "_cached_user", None) or getattr(request, "_acached_user", None)
    return user.pk if user is not None and user.is_authenticated else None


def log_request(request, status: int, started: float) -> None:
    """One answered HTTP request: method, path (no query string, as Daphne's log), status, time until the view
    returned, client address, person."""
    log.info(
        "%s %s %s",
        request.method,
        request.path,
        status,
        extra={
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "client": client_address(request),
            "user_id": _known_user_id(request),
        },
    )


class WebsocketAccessLog:
    """ASGI middleware: a record when a socket is accepted and one when it ends (close code, how long it was
    open), or one when it is refused before being accepted (a foreign Origin). The person comes from the log
    context the consumer binds before it accepts (``chat.logs``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket" or not enabled():
            return await self.app(scope, receive, send)
        started, state = time.monotonic(), {"accepted": False, "code": None}
        client = (scope.get("client") or [None])[0]
        fields = {"method": "WEBSOCKET", "path": scope.get("path"), "client": client}

        async def watched_send(message):
            if message["type"] == "websocket.accept":
                state["accepted"] = True
                log.info("websocket %s accepted", fields["path"], extra=fields)
            elif message["type"] == "websocket.close":
                state["code"] = message.get("code", 1000)
            await send(message)

        async def watched_receive():
            message = await receive()
            if message["type"] == "websocket.disconnect" and state["code"] is None:
                state["code"] = message.get("code")
            return message

        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            what = "closed" if state["accepted"] else "refused"
            log.info(
                "websocket %s %s",
                fields["path"],
                what,
                extra={**fields, "status": state["code"], "duration_ms": round((time.monotonic() - started) * 1000, 1)},
            )
