"""The middleware that counts every HTTP answer by status for ``/metrics`` (first in ``MIDDLEWARE``, so
redirects and lockouts count too).
"""

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
