"""The websocket's one route (``chatsite/asgi.py`` serves it through Channels)."""

from django.urls import path

from chat import names
from chat.realtime.consumers import ChatConsumer

websocket_urlpatterns = [path(names.SOCKET_PATH, ChatConsumer.as_asgi())]
