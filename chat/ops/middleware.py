"""Endpoints for operators: ``/healthz``, ``/readyz``, ``/metrics``, and the middleware counting requests.

``/metrics`` and ``/readyz``'s details say how busy the deployment is and what is broken, so they are for
operators only: a client address in ``METRICS_ALLOWED_IPS`` (addresses or networks; behind the proxy this is the
real client's, since Daphne takes it from X-Forwarded-For only with TRUSTED_PROXY) or ``Authorization: Bearer
<METRICS_TOKEN>``. Everyone else gets 403 from ``/metrics`` and only ready / not ready from ``/readyz``."""

from __future__ import annotations

import time

from chat import metrics
from chat.ops import access


class RequestMetricsMiddleware:
    """Counts every HTTP request by method and status (websockets are counted by the consumer), and with
    LOG_FORMAT=json writes its access record (``chat.ops.access``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        metrics.count_request(request.method, response.status_code)
        if access.enabled():
            access.log_request(request, response.status_code, started)
        return response
