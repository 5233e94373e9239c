"""The chat page and its JSON endpoints (the sidebar's list, one conversation, the export, today's allowance).

Not under ``/api/``: that prefix would read as the OpenAI-compatible API, which lives under ``/v1/``."""

from django.urls import path

from chat.conversations import import_views, views

urlpatterns = [
    path("", views.chat_page, name="index"),
    path("quota/", views.quota, name="quota"),
    path("conversations/", views.conversation_list, name="conversation-list"),
    path("conversations/import/", import_views.import_page, name="conversation-import"),
    path("conversations/<int:conversation_id>/", views.conversation_detail, name="conversation-detail"),
    path("conversations/<int:conversation_id>/export.<fmt>", views.conversation_export, name="conversation-export"),
    # The old paths, unnamed, for one release: during a rolling upgrade (several Daphnes, docs/deployment.md) a
    # page served by the previous release still asks for them, and saved export links keep working. Remove
    # them in the release after the one that moved the endpoints.
    path("api/quota/", views.quota),
    path("api/conversations/", views.conversation_list),
    path("api/conversations/<int:conversation_id>/", views.conversation_detail),
    path("api/conversations/<int:conversation_id>/export.<fmt>", views.conversation_export),
]
