"""The socket's Origin check through the real ASGI app: the origins Django's CSRF check accepts a POST from
(scheme, host and port), nothing wider. The same on the live stack: tests/e2e/test_socket_origin.py."""

import pytest

from tests.helpers.support import HOST, communicator, connect, run

pytestmark = pytest.mark.django_db(transaction=True)


def opens(cookie, origin: str | None, host: str | None = "localhost") -> bool:
    """Does a handshake with these headers open (False: refused with 403 before the consumer)?"""

    async def go():
        comm, connected, _ = await connect(
            cookie,
            origin=(b"origin", origin.encode()) if origin is not None else None,
            host=(b"host", host.encode()) if host is not None else None,
        )
        await comm.disconnect()
        return connected

    return run(go())


@pytest.fixture
def cookie(make_user, session_cookie):
    return session_cookie(make_user())


def test_only_the_sites_own_origin_opens_the_socket(cookie):
    assert opens(cookie, "http://localhost")
    assert opens(cookie, "http://localhost:8000", host="localhost:8000")
    assert opens(cookie, "http://127.0.0.1:8000", host="127.0.0.1:8000")
    refused = [
        ("http://localhost:9999", "localhost:8000"),  # another port of the same host: another program's page
        ("http://localhost:1", "127.0.0.1:8000"),
        ("http://127.0.0.1:9999", "127.0.0.1:8000"),
        ("https://localhost:8000", "localhost:8000"),  # another scheme
        ("http://localhost", "localhost:8000"),
        ("http://evil.example", "localhost"),
        ("http://evil.example:8000", "evil.example:8000"),  # DNS rebinding: a name that is not the site's
        ("null", "localhost"),
        (None, "localhost"),
        ("http://localhost", None),  # no Host: no origin of its own
    ]
    assert [pair for pair in refused if opens(cookie, *pair)] == []


def test_a_trusted_origin_opens_it_exactly_or_by_its_subdomain_pattern(cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.test", "https://*.example.org"]
    assert opens(cookie, "https://chat.example.test")
    assert opens(cookie, "https://a.example.org") and opens(cookie, "https://example.org")
    assert not opens(cookie, "http://chat.example.test")  # the scheme counts
    assert not opens(cookie, "https://chat.example.test:8443")  # so does the port
    assert not opens(cookie, "http://a.example.org") and not opens(cookie, "https://a.example.org.evil")


def test_behind_a_trusted_proxy_the_scheme_is_the_proxys(cookie, settings):
    """TRUSTED_PROXY: X-Forwarded-Proto says whether the page was HTTPS, as it does for Django's CSRF check."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    def through_proxy(origin: str, proto: str) -> bool:
        async def go():
            comm = communicator(cookie, (b"origin", origin.encode()), HOST)
            comm.scope["headers"].append((b"x-forwarded-proto", proto.encode()))
            connected, _ = await comm.connect()
            await comm.disconnect()
            return connected

        return run(go())

    assert through_proxy("https://localhost", "https")
    assert not through_proxy("http://localhost", "https")
    assert through_proxy("http://localhost", "http") and not through_proxy("https://localhost", "http")
