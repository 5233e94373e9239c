"""Share links: the owner's endpoints beside the conversation's own (``/conversations/<id>/shares/``), revoking
(``/shares/<id>/revoke/``), and the public page (``/s/<token>/``: short, and saying nothing of the conversation)."""

from django.urls import path

from chat.sharing import views

urlpatterns = [
    path("conversations/<int:conversation_id>/shares/", views.conversation_shares, name="conversation-shares"),
    path("shares/<int:share_id>/revoke/", views.share_revoke, name="share-revoke"),
    path("s/<str:token>/", views.shared_page, name="shared"),
]
