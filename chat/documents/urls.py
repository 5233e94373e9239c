"""The chat page's attachments (chat/documents/views.py)."""

from django.urls import path

from chat.documents import views

urlpatterns = [
    path("attachments/", views.attachment_upload, name="attachment-upload"),
    path("attachments/pending/", views.attachment_pending, name="attachment-pending"),
    path("attachments/<int:attachment_id>/", views.attachment_remove, name="attachment-remove"),
]
