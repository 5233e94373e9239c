"""ASGI entry point: HTTP through Django, websockets through Channels (session auth; the Origin checked as CSRF
checks a POST's: scheme, host and port, ``chat/realtime/origin.py``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.ops.access import WebsocketAccessLog  # noqa: E402
from chat.realtime.origin import SameOriginValidator  # noqa: E402
from chat.realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Outermost, so a socket refused for its Origin is logged too (LOG_FORMAT=json; chat/ops/access.py).
        "websocket": WebsocketAccessLog(SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    }
)
