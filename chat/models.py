"""Conversations and messages, as rows the admin can filter on; people's feedback on replies; the review
panel's own rows (review state, gold answers, the audit trail).

A message's ``parent`` is the message it follows, so a conversation is a tree: a regenerated reply is a
sibling of the one it replaces (alternatives), and the branch on show is the chain of ``is_current`` rows.
"""

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """One chat of one user, with its review state.

    The review state lives on the conversation rather than in a one-to-one ``Review`` row: every conversation
    has exactly one state, so the admin filters and the review queue orders on plain columns with no outer
    join, and "unreviewed" cannot mean either "no row" or "a row saying unreviewed". Review writes go through
    ``chat.review.services`` with ``update()``, which leaves ``updated_at`` (the owner's last activity) alone.
    """

    class Source(models.TextChoices):
        CHAT = "chat"
        API = "api"

    class ReviewState(models.TextChoices):
        UNREVIEWED = "unreviewed"
        APPROVED = "approved"
        NEEDS_ATTENTION = "needs_attention", "needs attention"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="default generation params for this chat")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    review_state = models.CharField(max_length=16, choices=ReviewState.choices, default=ReviewState.UNREVIEWED)
    review_note = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # Where it came from: the chat page, or the OpenAI-compatible API (with the key's name copied, so a revoked
    # or deleted key still says which one it was).
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CHAT)
    api_key = models.ForeignKey("ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key_name = models.CharField(max_length=100, blank=True)
    api_user = models.CharField(max_length=256, blank=True, help_text="the API request's `user` field")
    content_kept = models.BooleanField(
        default=True,
        help_text="false: the key keeps no text; messages are emptied when the reply ends and only counts remain",
    )

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conv_owner_updated"),
            models.Index(fields=["review_state", "-updated_at"], name="conv_review_state"),
        ]
        ordering = ["-updated_at"]
        # Staff status alone opens no transcript: this permission (the "reviewer" group has it) is the one way.
        permissions = [("review_conversation", "Can review other people's conversations")]

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
    STATUS_FOR_REASON = {
        FinishReason.STOP: Status.COMPLETE,
        FinishReason.LENGTH: Status.COMPLETE,
        FinishReason.CANCELLED: Status.STOPPED,
        FinishReason.ERROR: Status.FAILED,
    }

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
    worker = models.CharField(max_length=200, blank=True, help_text="the worker process that wrote this reply")
    params = models.JSONField(default=dict, blank=True, help_text="generation params used")
    error = models.TextField(blank=True)
    error_code = models.CharField(
        max_length=40,
        blank=True,
        help_text="why it failed, as a stable code (the API's error code): context_length_exceeded, or empty",
    )
    stop_requested = models.BooleanField(
        default=False,
        help_text="Stop was pressed; the worker checks this at its checkpoints in case the broadcast stop was lost",
    )
    dropped_messages = models.PositiveIntegerField(
        default=0, help_text="oldest messages left out of the prompt to fit the model's context window"
    )
    supplied = models.BooleanField(
        default=False,
        help_text="an assistant turn written by the program calling the "
        "API, not generated here: never a training target",
    )
    reservation = models.CharField(
        max_length=32,
        blank=True,
        help_text="the name of the tokens reserved in Redis for this reply until it ends (chat/limits/quotas.py)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "is_current", "id"], name="msg_conv_current"),
            models.Index(fields=["status"], name="msg_status"),
            models.Index(fields=["created_at"], name="msg_created"),  # the usage page's date range
        ]
        ordering = ["id"]

    def __str__(self):
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class ApiKey(models.Model):
    """A person's key to the OpenAI-compatible API. The secret is never stored: only its SHA-256, found by the
    key's public ``prefix`` and compared in constant time (``chat.api.auth``). A key has 256 random bits, so
    a fast hash is enough: nobody can guess their way through 2**256 candidates, however fast each is."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="the public part that finds the key")
    secret_hash = models.CharField(max_length=64, help_text="SHA-256 of the secret part, hex")
    store_conversations = models.BooleanField(default=True, help_text="keep the text of its conversations")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


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


class Feedback(models.Model):
    """A person's thumb up or down on a reply in their own conversation, with an optional comment."""

    class Rating(models.IntegerChoices):
        UP = 1, "👍"
        DOWN = -1, "👎"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="feedback_one_per_user"),
            models.CheckConstraint(condition=models.Q(rating__in=[1, -1]), name="feedback_rating_pm1"),
        ]
        indexes = [models.Index(fields=["message", "rating"], name="feedback_msg_rating")]

    def __str__(self):
        return f"{self.get_rating_display()} on #{self.message_id}"


class Comparison(models.Model):
    """One message answered by two models at once (Compare): both replies are alternatives of the same message,
    and the person's pick of the better one is a preference (the dataset export's pairs include it). Blind: the
    page is not told which model wrote which reply until the pick."""

    prompt = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="comparison")
    first = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    second = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    blind = models.BooleanField(default=False)
    chosen = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    picked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"comparison on #{self.prompt_id}"

    def rejected_id(self) -> int | None:
        if self.chosen_id is None:
            return None
        return self.second_id if self.chosen_id == self.first_id else self.first_id


class GoldAnswer(models.Model):
    """A reviewer's corrected answer for an assistant reply (one per reply; a new one replaces it)."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="gold_answer")
    content = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"gold answer for #{self.message_id}"


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
        # Who may do what (admin: people and groups): a staff or superuser flag, a group membership or a
        # permission given or taken away; ``details`` says whom (``user``/``user_id`` or ``group``/``group_id``),
        # ``what`` and its ``name``.
        PRIVILEGE_GRANTED = "privilege_granted", "privilege granted"
        PRIVILEGE_REMOVED = "privilege_removed", "privilege removed"

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


class Account(models.Model):
    """A person's standing on this site, beside Django's user row: whether staff approved them to chat.

    Made at sign-up (approved at once unless ``CHAT_SIGNUP`` is ``approval``); accounts that existed before were
    approved by migration. A user with no row was made by staff (``createsuperuser``, the admin) and may chat,
    as may every staff member.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    created_at = models.DateTimeField(auto_now_add=True)
    approved_at = models.DateTimeField(null=True, blank=True, help_text="empty: awaiting approval by staff")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["approved_at"], name="account_approved")]
        # Approving sign-ups, apart from changing users: "may change users" let staff tick their own superuser box.
        permissions = [("approve_account", "Can approve people who signed up (CHAT_SIGNUP=approval)")]

    def __str__(self):
        return f"account of user {self.user_id}"


class Invite(models.Model):
    """A single-use sign-up link staff create in the admin (``CHAT_SIGNUP=invite``)."""

    token = models.CharField(max_length=64, unique=True, editable=False)
    email = models.EmailField(blank=True, help_text="optional: only this address may sign up with the link")
    note = models.CharField(max_length=200, blank=True, help_text="for staff: who it is for")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"invite {self.pk}" + (f" for {self.email}" if self.email else "")


class QuotaOverride(models.Model):
    """One person's own allowance where it differs from the site's (``chat/limits/quotas.py``); an empty field keeps
    the site's setting. Most people have no row."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_override")
    messages_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="empty: the site's CHAT_MESSAGES_PER_MINUTE; 0: no limit"
    )
    tokens_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="empty: the site's CHAT_TOKENS_PER_DAY; 0: no limit"
    )
    max_active = models.PositiveIntegerField(
        null=True, blank=True, help_text="replies at once; empty: the site's CHAT_MAX_ACTIVE_PER_USER"
    )
    note = models.CharField(max_length=200, blank=True, help_text="why this person has their own allowance")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"allowance of {self.user}"


class ChatDefaults(models.Model):
    """A person's own starting settings: a new conversation copies them (system prompt and generation params).

    A row per person rather than fields on the user model: the project keeps Django's own user, and a person
    who never changed anything has no row (the site's defaults apply)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_defaults")
    system_prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="temperature, top_p, max_new_tokens")
    model_name = models.CharField(max_length=200, blank=True, help_text="new conversations' model; empty: the site's")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "chat defaults"
        verbose_name_plural = "chat defaults"

    def __str__(self):
        return f"defaults of user {self.user_id}"
