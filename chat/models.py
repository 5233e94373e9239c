"""Conversations and messages, as rows the admin can filter on.

A message's ``parent`` is the message it follows, so a conversation is a tree: a regenerated reply is a
sibling of the one it replaces (alternatives), and the branch on show is the chain of ``is_current`` rows.
"""
from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """One chat of one user."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="default generation params for this chat")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conv_owner_updated")]
        ordering = ["-updated_at"]

    def __str__(self):
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    """One turn, with what it cost to generate."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        QUEUED = "queued"
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        FAILED = "failed"

    ACTIVE_STATUSES = (Status.QUEUED, Status.STREAMING)

    class FinishReason(models.TextChoices):
        STOP = "stop"
        LENGTH = "length"
        CANCELLED = "cancelled"
        ERROR = "error"

    # How a reply that ended for this reason is stored.
    STATUS_FOR_REASON = {FinishReason.STOP: Status.COMPLETE, FinishReason.LENGTH: Status.COMPLETE,
                         FinishReason.CANCELLED: Status.STOPPED, FinishReason.ERROR: Status.FAILED}

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    is_current = models.BooleanField(default=True, help_text="on the branch the user sees")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    finish_reason = models.CharField(max_length=16, choices=FinishReason.choices, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="time to first token")
    tokens_per_s = models.FloatField(null=True, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="generation params used")
    error = models.TextField(blank=True)
    stop_requested = models.BooleanField(default=False, help_text="Stop was pressed; the worker checks this "
                                         "at its checkpoints in case the broadcast stop was lost")
    dropped_messages = models.PositiveIntegerField(default=0, help_text="oldest messages left out of the "
                                                   "prompt to fit the model's context window")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "is_current", "id"], name="msg_conv_current"),
            models.Index(fields=["status"], name="msg_status"),
        ]
        ordering = ["id"]

    def __str__(self):
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES
