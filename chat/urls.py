"""Every page of the ``chat`` namespace, gathered from the packages that own them (names like ``chat:index``).

The OpenAI-compatible API (``/v1/``) and the account pages (``/accounts/``) are included by ``chatsite/urls.py``."""

from django.urls import include, path

app_name = "chat"
urlpatterns = [
    path("", include("chat.conversations.urls")),
    path("", include("chat.sharing.urls")),
    path("", include("chat.documents.urls")),
    path("settings/api-keys/", include("chat.api.key_urls")),
    path("settings/prompts/", include("chat.prompts.urls")),
    path("", include("chat.ops.urls")),
]
