"""The launcher's web process: Daphne serving the ASGI app (HTTP, static files and websockets), its command line
and starting it as a child. Free of Django, like the launcher (``chatsite/stack.py``) that uses it; the serving
workers' are ``workers.py``'s."""

from __future__ import annotations

import subprocess

from chatsite.launcher_settings import ROOT, LauncherSettings
from chatsite.processes import BIN, wait_for_port
from chatsite.processes import popen as _popen

# Largest websocket message Daphne accepts: the app's own frame limit (64 Ki characters) in UTF-8, at most
# 4 bytes each. Anything larger is refused by Daphne before it is buffered.
WS_MAX_MESSAGE_BYTES = 256 * 1024


def daphne_args(port: int, conf: LauncherSettings) -> list[str]:
    """Daphne's command line: serving the ASGI app (HTTP, static files and websockets).

    Keepalive pings bound what a client that stops reading can cost: it cannot answer a ping it never reads,
    so Daphne drops it after WS_PING_INTERVAL_S + WS_PING_TIMEOUT_S instead of buffering replies for it forever.
    With TRUSTED_PROXY, --proxy-headers: the client address (logs, throttling, METRICS_ALLOWED_IPS) and scheme
    come from the proxy's X-Forwarded-For / X-Forwarded-Proto. Daphne believes whoever sends them, so Daphne
    must then be reachable only by the proxy (BIND_ADDRESS on loopback or a private network).
    With LOG_FORMAT=json, ``-v 0``: Daphne's access log is plain text that it writes to stdout itself, past
    Python's logging; the app writes each request and socket as a JSON record instead (``chat.ops.access``).
    Verbosity 0 changes nothing else that matters: Twisted's log is silenced at 1 already, and Django's LOGGING
    sets the log level once the app is loaded.
    """
    return [
        str(BIN / "daphne"),
        "-b",
        conf.bind_address,
        "-p",
        str(port),
        "--websocket-max-message-size",
        str(WS_MAX_MESSAGE_BYTES),
        "--websocket-max-frame-size",
        str(WS_MAX_MESSAGE_BYTES),
        "--ping-interval",
        conf.ws_ping_interval_s,
        "--ping-timeout",
        conf.ws_ping_timeout_s,
        *(["-v", "0"] if conf.json_logs else []),
        *(["--proxy-headers"] if conf.trusted_proxy else []),
        "chatsite.asgi:application",
    ]


def start_daphne(port: int, env: dict, *, wait: bool = True, **popen) -> subprocess.Popen:
    """Daphne (``daphne_args``) as a child."""
    proc = _popen(daphne_args(port, LauncherSettings.from_env(env)), cwd=ROOT, env=env, **popen)
    if wait:
        wait_for_port(port, proc)
    return proc
