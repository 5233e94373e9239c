from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("", views.chat_page, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("api/conversations/", views.conversation_list, name="conversation-list"),
    path("api/conversations/<int:conversation_id>/", views.conversation_detail, name="conversation-detail"),
    path("api/conversations/<int:conversation_id>/export.<fmt>", views.conversation_export,
         name="conversation-export"),
]
