"""The person's API keys page (``/settings/api-keys/``), in the ``chat`` namespace with the other pages."""

from django.urls import path

from chat.api import key_views

urlpatterns = [
    path("", key_views.api_keys, name="api-keys"),
    path("<int:key_id>/revoke", key_views.api_key_revoke, name="api-key-revoke"),
]
