from django.urls import path

from chat import keys_views, ops, views

app_name = "chat"
urlpatterns = [
    path("", views.chat_page, name="index"),
    path("settings/api-keys/", keys_views.api_keys, name="api-keys"),
    path("settings/api-keys/<int:key_id>/revoke", keys_views.api_key_revoke, name="api-key-revoke"),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
    path("api/quota/", views.quota, name="quota"),
    path("api/conversations/", views.conversation_list, name="conversation-list"),
    path("api/conversations/<int:conversation_id>/", views.conversation_detail, name="conversation-detail"),
    path("api/conversations/<int:conversation_id>/export.<fmt>", views.conversation_export,
         name="conversation-export"),
]
