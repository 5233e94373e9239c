"""The client's address, for login throttling (django-axes calls ``client_address``; settings.AXES_CLIENT_IP_CALLABLE)
and the access log.

It is ``REMOTE_ADDR``, the address Daphne gives the request: the socket's, or with ``TRUSTED_PROXY`` (Daphne's
``--proxy-headers``) the one the proxy *set* in ``X-Forwarded-For``. Without this callable axes would read
``X-Forwarded-For`` itself, which anyone reaching Daphne directly can write; and Daphne takes the header's
left-most entry, so the proxy in front must overwrite the header, never append to it (deploy/nginx/chat.conf).
Behind a chain of proxies, the one next to Daphne works out the client (nginx's realip module) and sets that.
"""

from __future__ import annotations

import ipaddress

# One IPv6 host is usually given a whole /64 (2^64 addresses): counted per address, one machine would have
# endless tries. Its counts are kept per /64, as an IPv4 address's are per address.
IPV6_PREFIX = 64


def client_address(request) -> str | None:
    """The client's address, exactly (the access log)."""
    return request.META.get("REMOTE_ADDR")


def throttle_address(request) -> str | None:
    """The address login failures and sign-ups are counted against: an IPv4 address (also written as IPv6,
    ``::ffff:a.b.c.d``) as it is, an IPv6 address as the first address of its /64 (a valid address, which
    axes' ``GenericIPAddressField`` stores)."""
    address = client_address(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # no address (a test client without one) or not one
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False).network_address)
    return str(ip)
