"""Documents a person attaches to a message: the text extracted from the file (never the file itself) and that
text cut into passages, which the database's own full-text search ranks against each question (SQLite FTS5,
PostgreSQL ``tsvector``: chat/documents/search.py; the index is made by the migration, per database).

An attachment is uploaded before its message exists (a new chat has no conversation yet): it is the person's
*pending* attachment (no conversation, no message) until a ``send`` names it, which links it to the
conversation and to the person's message it came with. Deleting the conversation or the account deletes it.
"""

from django.conf import settings
from django.db import models


class Attachment(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text"
        PDF = "pdf"
        DOCX = "docx"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    conversation = models.ForeignKey(
        "chat.Conversation", null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.ForeignKey(
        "chat.Message",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
        help_text="the person's message it was sent with; empty while pending",
    )
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    size = models.PositiveIntegerField(help_text="the uploaded file's bytes (the file itself is not kept)")
    pages = models.PositiveIntegerField(null=True, blank=True, help_text="a PDF's pages")
    text = models.TextField(help_text="the text extracted from the file")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "conversation"], name="attach_owner_conv"),
            models.Index(fields=["conversation", "id"], name="attach_conv"),
        ]
        ordering = ["id"]

    def __str__(self):
        return self.name


class Passage(models.Model):
    """One piece of an attachment's text, within one page of a PDF: what retrieval ranks and the prompt quotes."""

    attachment = models.ForeignKey(Attachment, on_delete=models.CASCADE, related_name="passages")
    seq = models.PositiveIntegerField(help_text="its place in the document, from 1")
    page = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["attachment", "seq"], name="passage_attach_seq")]
        ordering = ["attachment_id", "seq"]

    def __str__(self):
        return f"{self.attachment_id} #{self.seq}"
