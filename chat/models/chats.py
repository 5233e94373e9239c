"""Conversations and their messages as a tree, people's feedback and Compare picks on replies, reviewers'
gold answers.

A message's ``parent`` is the message it follows, so a conversation is a tree: a regenerated reply is a
sibling of the one it replaces (alternatives), and the branch on show is the chain of ``is_current`` rows.
"""

from django.conf import settings
from django.db import models


class Folder(models.Model):
    """A person's named folder ("project") of conversations. Deleting one keeps its conversations: they leave
    it (``SET_NULL``) and go back to the plain list."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_folders")
    name = models.CharField(max_length=60)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="folder_owner_name_unique")]

    def __str__(self):
        return self.name


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
        IMPORT = "import"  # a file the person uploaded (chat/conversations/imports.py)

    class ExperimentArm(models.TextChoices):
        CONTROL = "control"
        CANDIDATE = "candidate"

    class ReviewState(models.TextChoices):
        UNREVIEWED = "unreviewed"
        APPROVED = "approved"
        NEEDS_ATTENTION = "needs_attention", "needs attention"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    # An A/B experiment's conversation (chat/models/loop.py): which arm it was sent to. The person is not told;
    # their page shows the control's name (the review panel shows the real one).
    experiment = models.ForeignKey(
        "chat.Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    experiment_arm = models.CharField(max_length=10, blank=True, choices=ExperimentArm.choices)
    params = models.JSONField(default=dict, blank=True, help_text="default generation params for this chat")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    review_state = models.CharField(max_length=16, choices=ReviewState.choices, default=ReviewState.UNREVIEWED)
    review_note = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # Where it came from: the chat page, an imported file, or the OpenAI-compatible API (with the key's name
    # copied, so a revoked or deleted key still says which one it was).
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CHAT)
    api_key = models.ForeignKey("ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key_name = models.CharField(max_length=100, blank=True)
    api_user = models.CharField(max_length=256, blank=True, help_text="the API request's `user` field")
    content_kept = models.BooleanField(
        default=True,
        help_text="false: the key keeps no text; messages are emptied when the reply ends and only counts remain",
    )
    # The person's own organising (chat/conversations/organise.py): on top of the list, out of it, in a folder.
    # Written with update(), which leaves ``updated_at`` (the last activity) alone: pinning is not activity.
    pinned = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)
    folder = models.ForeignKey(
        "chat.Folder", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conv_owner_updated"),
            models.Index(fields=["review_state", "-updated_at"], name="conv_review_state"),
            models.Index(fields=["owner", "-pinned", "-updated_at"], name="conv_owner_pinned"),
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
    shown_model_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="the model the person is shown, when not model_name: an A/B candidate's reply shows the control's",
    )
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
    sources = models.JSONField(
        default=list,
        blank=True,
        help_text="the attached documents' passages its prompt quoted: [{attachment, name, passage, page}]",
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
