"""The review panel's own rows: its pages over conversations and messages (proxies), and the audit trail."""

from django.conf import settings
from django.db import models

from chat.models.chats import Conversation, Message


class ReviewQueue(Conversation):
    """The review panel's queue: unreviewed conversations, the ones most likely to need a look first."""

    class Meta:
        proxy = True
        verbose_name = "review queue entry"
        verbose_name_plural = "review queue"


class LiveGeneration(Message):
    """The review panel's live page: replies queued or streaming right now."""

    class Meta:
        proxy = True
        verbose_name = "live generation"
        verbose_name_plural = "live generations"


class UsageReport(Message):
    """The review panel's usage page: messages, tokens, speed and failures per person and per day."""

    class Meta:
        proxy = True
        verbose_name = "usage"
        verbose_name_plural = "usage"


class AuditEvent(models.Model):
    """Who looked at or changed whose transcript, and when.

    Targets are plain ids, not foreign keys: a deleted conversation keeps the record of its deletion. The
    actor's name is copied for the same reason.
    """

    class Action(models.TextChoices):
        OPENED_TRANSCRIPT = "opened_transcript", "opened transcript"
        EXPORTED = "exported"
        REVIEW_CHANGED = "review_changed", "review changed"
        GOLD_ANSWER_CHANGED = "gold_answer_changed", "gold answer changed"
        DELETED = "deleted"
        CANCELLED_GENERATION = "cancelled_generation", "cancelled generation"
        SEARCHED = "searched"
        # A training run used the conversation (chat/training/services.py): ``details`` has the run's id and name,
        # the split (train or heldout) and how many examples it took from it.
        TRAINED = "trained"
        # Who may do what (admin: people and groups): a staff or superuser flag, a group membership or a
        # permission given or taken away; ``details`` says whom (``user``/``user_id`` or ``group``/``group_id``),
        # ``what`` and its ``name``.
        PRIVILEGE_GRANTED = "privilege_granted", "privilege granted"
        PRIVILEGE_REMOVED = "privilege_removed", "privilege removed"
        # The improvement loop (chat/experiments/): an A/B experiment started, its share changed, ended; a model
        # promoted to the site's default. ``details`` names the models and the share.
        EXPERIMENT_STARTED = "experiment_started", "experiment started"
        EXPERIMENT_CHANGED = "experiment_changed", "experiment changed"
        EXPERIMENT_ENDED = "experiment_ended", "experiment ended"
        MODEL_PROMOTED = "model_promoted", "model promoted"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=32, choices=Action.choices)
    conversation_id = models.BigIntegerField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["action", "-created_at"], name="audit_action_time"),
            models.Index(fields=["conversation_id"], name="audit_conversation"),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.actor_name} {self.action} {self.conversation_id or ''}".strip()
