"""Behind a real nginx: Debian's package, run by the test with the repo's own deploy/nginx/chat.conf (ports,
paths and name swapped for loopback ones) and a self-signed certificate, in front of a Daphne started with the
production environment (deploy/production.env.example) on the live stack's Redis, database and worker.

The test's client connects from 127.0.0.2 (all of 127/8 is loopback) while nginx reaches Daphne from
127.0.0.1, so the address Daphne logs and login throttling counts is the client's only because Daphne believed
nginx's X-Forwarded-For. Daphne logs as in production (LOG_FORMAT=json): every line of its output must parse.
"""

import asyncio
import http.client
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async

from chat.models import Message
from chatsite import stack
from tests.helpers.live import recv, send
from tests.helpers.support import json_records
from tests.helpers.tools import missing_tool

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
SITE = stack.ROOT / "deploy" / "nginx" / "chat.conf"
ENV_EXAMPLE = stack.ROOT / "deploy" / "production.env.example"
CLIENT = "127.0.0.2"  # the test's own address, as nginx sees it
NEIGHBOUR = "127.0.0.3"  # another client, for what one client's lock must not touch
SPOOFED = "203.0.113.9"  # what the client claims in its own X-Forwarded-For; nginx must overwrite it
PASSWORD = "a-long-test-password"
LOGIN_LIMIT = 2  # wrong passwords before a lock (CHAT_LOGIN_FAILURE_LIMIT): each costs a password hash
REQUESTS_IN_FLIGHT = 2  # per client address (the site's limit_conn, 32 in the shipped file)


def sourced(path: Path) -> dict:
    """The variables ``path`` sets when a shell sources it, in an otherwise empty environment."""
    out = subprocess.run(
        ["env", "-i", "bash", "-c", f'set -a; . "{path}"; set +a; env -0'], capture_output=True, check=True, timeout=30
    ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if item and "=" in item)


def adapt(site: str, *, daphne_port: int, http_port: int, https_port: int, cert: Path, key: Path, static: Path) -> str:
    """The repo's site with loopback ports and the test's certificate and static folder; every swap must
    match, so the test fails if the shipped file changes under it."""
    swaps = [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{daphne_port};"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("server_name chat.example.com;", "server_name 127.0.0.1;"),
        ("/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/chat.example.com/privkey.pem", str(key)),
        ("/srv/chat-server/var/staticfiles/", f"{static}/"),
        ("limit_conn chat_per_address 32;", f"limit_conn chat_per_address {REQUESTS_IN_FLIGHT};"),
    ]
    for old, new in swaps:
        assert old in site, f"deploy/nginx/chat.conf no longer has {old!r}"
        site = site.replace(old, new)
    return "\n".join(line for line in site.splitlines() if "[::]" not in line)  # no IPv6 on the test machine


def nginx_conf(tmp: Path, site: Path) -> str:
    """A main configuration around the site: foreground, every file under ``tmp``."""
    temp = "\n".join(
        f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        ("user root;\n" if os.geteuid() == 0 else "")  # its workers must read the test's 0700 temp dir
        + f"daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n    include /etc/nginx/mime.types;\n    access_log {tmp / 'access.log'};\n{temp}\n"
        f"    include {site};\n}}\n"
    )


class Https:
    """A tiny HTTPS client from the test's address, keeping cookies and every Set-Cookie it was sent."""

    def __init__(self, port: int, context: ssl.SSLContext, source: str = CLIENT):
        self.port, self.context, self.source, self.cookies, self.set_cookies = port, context, source, {}, []
        self.origin = f"https://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=30, source_address=(self.source, 0)
        )
        headers = {"X-Forwarded-For": SPOOFED, **(headers or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            headers.update(
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Origin": self.origin,
                    "Referer": f"{self.origin}{path}",
                }
            )
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        content = response.read()
        for raw in response.headers.get_all("Set-Cookie") or []:
            self.set_cookies.append(raw)
            for name, morsel in SimpleCookie(raw).items():
                self.cookies[name] = morsel.value
        conn.close()
        return response, content


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as a deployer would make a test one)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def require_nginx(nginx: str | None = NGINX) -> None:
    """Skip without nginx, a program at ``nginx`` (fail under CI: tests/helpers/tools.py)."""
    if not (nginx and shutil.which(nginx)):
        missing_tool("nginx is not installed (make test installs Debian's nginx when run as root)")


@pytest.fixture(scope="module")
def proxied(live_stack, certificate, tmp_path_factory):
    """nginx (repo config) → a Daphne with the production environment → the live stack's worker."""
    require_nginx()
    tmp = tmp_path_factory.mktemp("nginx")
    daphne_port, http_port, https_port = stack.free_port(), stack.free_port(), stack.free_port()
    env = sourced(ENV_EXAMPLE)
    # What a deployer changes: where the data is, the key file, the host name and port, static files.
    env.update(
        {
            "DATABASE_URL": live_stack.env["DATABASE_URL"],
            "REDIS_URL": live_stack.env["REDIS_URL"],
            "SECRET_KEY_FILE": str(tmp / "secret_key"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{https_port}",
            "PORT": str(daphne_port),
            "STATIC_ROOT": str(tmp / "static"),
            "PATH": os.environ["PATH"],
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "CHAT_LOGIN_FAILURE_LIMIT": str(LOGIN_LIMIT),
        }
    )
    subprocess.run([sys.executable, "-m", "chatsite.secret", env["SECRET_KEY_FILE"]], check=True, timeout=30)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=stack.ROOT,
        env=env,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )
    site = tmp / "chat.conf"
    cert, key = certificate
    site.write_text(
        adapt(
            SITE.read_text(),
            daphne_port=daphne_port,
            http_port=http_port,
            https_port=https_port,
            cert=cert,
            key=key,
            static=tmp / "static",
        )
    )
    (tmp / "nginx.conf").write_text(nginx_conf(tmp, site))
    daphne_log = tmp / "daphne.log"
    daphne = stack.start_daphne(daphne_port, env, stdout=open(daphne_log, "w"), stderr=subprocess.STDOUT)
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "nginx.out", "w"),
    )
    try:
        stack.wait_for_port(https_port, nginx, timeout=30)
    except Exception:
        stack.stop(nginx, daphne)
        raise AssertionError((tmp / "nginx.out").read_text() + (tmp / "error.log").read_text())
    context = ssl.create_default_context(cafile=str(cert))
    yield {
        "env": env,
        "https_port": https_port,
        "http_port": http_port,
        "context": context,
        "daphne_log": daphne_log,
        "tmp": tmp,
    }
    stack.stop(nginx, daphne)


def log_in(client: Https, username: str, password: str = PASSWORD, token: str | None = None):
    """The real login form over HTTPS: its CSRF token (unless given), then the POST. Returns the response,
    its page and the token (good for the next POST of this client)."""
    if token is None:
        response, page = client.request("GET", "/accounts/login/")
        assert response.status == 200
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    response, page = client.request(
        "POST", "/accounts/login/", {"username": username, "password": password, "csrfmiddlewaretoken": token}
    )
    return response, page, token


def sign_in(client: Https, username: str) -> None:
    """Log in with the right password; Django redirects to the chat page."""
    response, _, _ = log_in(client, username)
    assert response.status == 302 and response.headers["Location"] == "/", response.status
    assert "sessionid" in client.cookies


def daphne_records(proxied) -> list[dict]:
    """Daphne's output: with the production LOG_FORMAT=json every line is one JSON object, access log included;
    read while Daphne writes, so a last line not yet ended is left for the next read."""
    return json_records(proxied["daphne_log"].read_text(errors="replace"))


def wait_for_records(proxied, found, timeout: float = 15.0) -> list[dict]:
    """Daphne's access records once ``found(records)`` holds (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in daphne_records(proxied) if r["logger"] == "chat.access"]
        if found(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def test_https_through_nginx_sign_in_chat_over_wss_streamed_secure_cookies_client_address(
    proxied, transactional_db, make_user
):
    user_id = make_user("proxied").pk
    client = Https(proxied["https_port"], proxied["context"])
    sign_in(client, "proxied")

    # Cookies a browser only ever sends back over TLS; HSTS tells it never to try plain HTTP again.
    set_cookies = {SimpleCookie(raw).popitem()[0]: raw for raw in client.set_cookies}
    assert {"csrftoken", "sessionid"} <= set(set_cookies)
    for name, raw in set_cookies.items():
        assert re.search(r";\s*Secure", raw, re.I), f"{name} cookie is not Secure: {raw}"
    response, page = client.request("GET", "/")
    assert response.status == 200 and b"chat" in page.lower()
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"  # no preload

    async def chat():
        async with websockets.connect(
            f"wss://127.0.0.1:{proxied['https_port']}/ws/chat/",
            ssl=proxied["context"],
            local_addr=(CLIENT, 0),
            open_timeout=20,
            additional_headers={
                "Cookie": f"sessionid={client.cookies['sessionid']}",
                "Origin": client.origin,
                "X-Forwarded-For": SPOOFED,
            },
        ) as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "content": "Write a long story about a dragon.",
                    "client_id": "t",
                    "params": {"max_new_tokens": 64},
                },
            )
            frames, status_at_first_delta = [], None
            while True:
                frame = await recv(ws, 120)
                frames.append(frame)
                assert frame["type"] != "error", frame
                if frame["type"] == "delta" and status_at_first_delta is None:
                    # Not buffered by the proxy: the first delta is here while the reply is still being written.
                    status_at_first_delta = await database_sync_to_async(
                        lambda: Message.objects.get(pk=frame["message"]).status
                    )()
                if frame["type"] == "done":
                    return frames, status_at_first_delta

    frames, status_at_first_delta = asyncio.run(chat())
    deltas = [f for f in frames if f["type"] == "delta"]
    done = frames[-1]
    assert status_at_first_delta == "streaming"
    assert len(deltas) > 1 and "".join(d["text"] for d in deltas) == done["content"] and done["status"] == "complete"

    # Daphne's access records carry the client's address (from nginx's X-Forwarded-For), never nginx's nor the
    # spoofed one, and the person once known.
    # The socket's closing record is written once Daphne has seen the close, a moment after the test's.
    access = wait_for_records(
        proxied, lambda records: any(r["message"] == "websocket /ws/chat/ closed" for r in records)
    )
    login = [r for r in access if r["method"] == "POST" and r["path"] == "/accounts/login/"]
    assert login and login[-1]["status"] == 302 and login[-1]["client"] == CLIENT
    assert login[-1]["user_id"] == user_id and login[-1]["duration_ms"] >= 0
    sockets = [r for r in access if r["method"] == "WEBSOCKET" and r["path"] == "/ws/chat/"]
    assert [r["message"] for r in sockets] == ["websocket /ws/chat/ accepted", "websocket /ws/chat/ closed"]
    assert all(r["client"] == CLIENT and r["user_id"] == user_id for r in sockets), sockets
    assert {r["client"] for r in access} == {CLIENT}, access


def test_failed_logins_through_nginx_count_against_the_clients_address_and_lock_it(
    proxied, transactional_db, make_user
):
    from axes.models import AccessAttempt

    make_user("guarded")
    guesser = Https(proxied["https_port"], proxied["context"])
    token = None
    try:
        for n in range(LOGIN_LIMIT):  # a new username each time: only the address adds up
            response, page, token = log_in(guesser, f"nobody{n}", "a-guess", token)
        assert response.status == 429 and b'data-code="login_locked"' in page  # the n-th locks
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {CLIENT}
        response, page, _ = log_in(guesser, "guarded", PASSWORD, token)  # the right password, same address
        assert response.status == 429 and "sessionid" not in guesser.cookies
        sign_in(Https(proxied["https_port"], proxied["context"], source=NEIGHBOUR), "guarded")  # not locked
        refused = [
            r
            for r in wait_for_records(proxied, lambda records: False, timeout=0)
            if r["path"] == "/accounts/login/" and r["status"] == 429
        ]
        assert len(refused) == 2 and {r["client"] for r in refused} == {CLIENT}
    finally:  # the lock is by address: the module's other tests sign in from CLIENT too
        AccessAttempt.objects.filter(ip_address=CLIENT).delete()


def test_static_files_come_from_nginx_and_plain_http_is_redirected(proxied):
    client = Https(proxied["https_port"], proxied["context"])
    response, body = client.request("GET", "/static/chat/page/main.js")
    assert response.status == 200 and body == (stack.ROOT / "static" / "chat" / "page" / "main.js").read_bytes()
    assert "/static/chat/page/main.js" not in proxied["daphne_log"].read_text(errors="replace")  # nginx served it

    conn = http.client.HTTPConnection("127.0.0.1", proxied["http_port"], timeout=10)
    conn.request("GET", "/accounts/login/")
    response = conn.getresponse()
    assert response.status == 301 and response.headers["Location"] == "https://127.0.0.1/accounts/login/"

    # Over the client body limit: nginx refuses before Daphne reads it.
    response, _ = client.request("POST", "/accounts/login/", {"username": "x" * (2 * 2**20)})
    assert response.status == 413


def test_one_address_holds_so_many_requests_at_once_and_its_neighbour_is_served(proxied, transactional_db, make_user):
    """Two API streams held open from the test's address fill its requests in flight: a third request from it
    is refused by nginx with a sentence and a code, the neighbour's is served, and once the streams are closed
    (which stops their replies) the address is served again."""
    import json

    from django.conf import settings

    from chat.api import services

    key = services.api_key_create(owner=make_user("holder"), name="held").plaintext
    body = json.dumps(
        {
            "model": settings.CHAT_MODEL,
            "stream": True,
            "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write a long story."}],
        }
    )
    held = []
    try:
        for _ in range(REQUESTS_IN_FLIGHT):
            conn = http.client.HTTPSConnection(
                "127.0.0.1", proxied["https_port"], context=proxied["context"], timeout=30, source_address=(CLIENT, 0)
            )
            conn.request(
                "POST",
                "/v1/chat/completions",
                body=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()  # the headers: the stream is open, its body left unread
            assert response.status == 200, response.read()
            held.append(conn)
        response, content = Https(proxied["https_port"], proxied["context"]).request("GET", "/healthz")
        assert response.status == 429 and response.headers["Retry-After"] == "5"
        refusal = json.loads(content)["error"]
        assert refusal["code"] == "too_many_requests" and refusal["message"].startswith("Too many requests at once")
        response, _ = Https(proxied["https_port"], proxied["context"], source=NEIGHBOUR).request("GET", "/healthz")
        assert response.status == 200
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 10
    while (
        status := Https(proxied["https_port"], proxied["context"]).request("GET", "/healthz")[0].status
    ) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200


def test_check_deploy_is_clean_with_the_production_environment(proxied):
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=stack.ROOT,
        env=proxied["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "no issues" in out.stdout, out.stdout + out.stderr
