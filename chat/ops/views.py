"""Endpoints for operators: ``/healthz``, ``/readyz`` and ``/metrics`` (the request counter is ``middleware.py``).

``/metrics`` and ``/readyz``'s details say how busy the deployment is and what is broken, so they are for
operators only: a client address in ``METRICS_ALLOWED_IPS`` (addresses or networks; behind the proxy this is the
real client's, since Daphne takes it from X-Forwarded-For only with TRUSTED_PROXY) or ``Authorization: Bearer
<METRICS_TOKEN>``. Everyone else gets 403 from ``/metrics`` and only ready / not ready from ``/readyz``."""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from chat import metrics
from chat.errors import ErrorCode
from chat.replies import catalog, liveness, selectors


@lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(a.strip(), strict=False) for a in allowed if a.strip())


def operator_request(request) -> bool:
    """Whether ``request`` comes from an allowed address or carries the metrics token."""
    token = settings.METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token and sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address((request.META.get("REMOTE_ADDR") or "").split("%")[0])
    except ValueError:
        return False
    return any(address in net for net in _networks(tuple(settings.METRICS_ALLOWED_IPS)))


def _refused() -> JsonResponse:
    return JsonResponse(
        {
            "error": {
                "code": ErrorCode.FORBIDDEN,
                "detail": "Metrics are only for operators: connect from "
                "an address in METRICS_ALLOWED_IPS or send the METRICS_TOKEN.",
            }
        },
        status=403,
    )


def healthz(request):
    """The process answers (liveness probe)."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Can this deployment answer a chat now: database, Redis, and a live worker of the default model (every
    served model's live workers are reported; one without any is named in ``detail``). Operators get each
    check; anyone else only whether it is ready (the status code says the same)."""
    from django.db import connection
    from redis.exceptions import BusyLoadingError

    from chat.store import client

    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client().ping()
        checks["redis"] = "ok"
        checks["workers"] = len(liveness.workers_alive())
        checks["models"] = {m.name: len(liveness.workers_alive(m.name)) for m in settings.CHAT_SERVED_MODELS}
    except BusyLoadingError:
        checks["redis"] = "loading its data from disk"
        checks["workers"] = 0
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
        checks["workers"] = 0
    models = checks.get("models", {})
    default = (
        catalog.worker_model(catalog.site_default()) if checks["database"] == "ok" else settings.CHAT_DEFAULT_MODEL
    )
    ready = checks["database"] == "ok" and checks["redis"] == "ok" and models.get(default, 0) > 0
    if checks["redis"] == "ok" and not checks["workers"]:
        checks["detail"] = "no model worker is running"
    elif checks["redis"] == "ok" and any(n == 0 for n in models.values()):
        checks["detail"] = "no worker is running " + ", ".join(name for name, n in models.items() if n == 0)
    body = {"ready": ready, **checks} if operator_request(request) else {"ready": ready}
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
def metrics_view(request):
    """The whole deployment's figures in Prometheus text format (any Daphne process answers for all)."""
    if not operator_request(request):
        return _refused()
    served = [m.name for m in settings.CHAT_SERVED_MODELS]
    body, content_type = metrics.exposition(metrics.read_all(selectors.replies_active_by_status(), served))
    return HttpResponse(body, content_type=content_type)
