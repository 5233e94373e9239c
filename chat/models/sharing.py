"""Share links: a read-only snapshot of a conversation's shown branch, readable by anyone holding its link.

The snapshot is the list of the branch's message ids at the moment of sharing and their texts' lengths, not a
copy of their text: a message's text never changes once it has ended (an edit or a regenerate writes a new
message beside it) except by Continue, which only appends, so the ids and lengths are the snapshot, and deleting
the conversation (or the account) deletes the link with it.
"""

from django.conf import settings
from django.db import models


class ShareLink(models.Model):
    """One link to one conversation's branch as it was shown when the link was made.

    The token is the only thing in the link (``secrets.token_urlsafe``: 256 random bits), never the
    conversation's id. It is stored as it is, unlike an API key's secret: the owner copies the link again from
    the Account page, and the link grants reading one snapshot, nothing more. A revoked link keeps its row
    (``revoked_at``) so the hourly bound on new links counts it too."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey("chat.Conversation", on_delete=models.CASCADE, related_name="share_links")
    token = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=200, blank=True, help_text="the conversation's title when shared")
    message_ids = models.JSONField(default=list, help_text="the shared messages, oldest first: the snapshot")
    lengths = models.JSONField(
        default=dict, help_text="each shared message's text length then, by id: Continue later grows the same row"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_created")]

    def __str__(self):
        return f"share of conversation {self.conversation_id}"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None
