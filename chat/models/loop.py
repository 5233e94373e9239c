"""The improvement loop's rows: a training run (a LoRA adapter of a served model, trained on reviewed
conversations) and the examples it used, an A/B experiment between the default model and a candidate, and
the site's default model as staff last promoted it.

An adapter is a model name, ``<base>+<run name>``, served by its base model's workers (``chat/served.py``,
``chat/replies/catalog.py``): a finished run is what makes that name exist.
"""

from django.conf import settings
from django.db import models


class TrainingRun(models.Model):
    """One training of a LoRA adapter: what it was trained on, how, by whom, and how it went. Everything needed to
    trace an adapter to its data and reproduce it is here (``selection``, the examples, ``hyperparameters``,
    ``library_versions``, ``base_weights_sha256``)."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ENDED = (State.DONE, State.FAILED, State.CANCELLED)

    name = models.CharField(max_length=60, unique=True, help_text="the adapter's name: served as <base>+<name>")
    base_model = models.CharField(max_length=200, help_text="the served model it adapts")
    base_weights_sha256 = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    reason = models.TextField(blank=True, help_text="why it failed or was cancelled, in a sentence")
    cancel_requested = models.BooleanField(default=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_by_name = models.CharField(max_length=150, blank=True, help_text="kept when the account goes")
    selection = models.JSONField(default=dict, blank=True, help_text="the conversation filters it was started with")
    hyperparameters = models.JSONField(default=dict, blank=True)
    library_versions = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="step, steps, loss, examples, seconds left")
    metrics = models.JSONField(default=dict, blank=True, help_text="training and held-out evaluation figures")
    adapter_path = models.CharField(max_length=500, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="the training worker running it")
    uses_deleted_data = models.BooleanField(
        default=False, help_text="a person whose conversations it used has since deleted them or their account"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("train_model", "Can train, evaluate, experiment with and promote adapters")]

    def __str__(self):
        return f"training run {self.name}"

    @property
    def served_name(self) -> str:
        return f"{self.base_model}+{self.name}"


class TrainingExample(models.Model):
    """One conversation's part in a run: which reply (its gold answer, or a preference pair's chosen reply) was a
    target, and whether it was trained on or held out for the evaluation. Ids are kept when the rows go (a
    deleted conversation leaves the run flagged, not silently changed)."""

    class Split(models.TextChoices):
        TRAIN = "train"
        HELDOUT = "heldout"

    class Kind(models.TextChoices):
        SFT = "sft"
        PREFERENCE = "preference"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="examples")
    conversation = models.ForeignKey(
        "chat.Conversation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    conversation_ref = models.PositiveBigIntegerField(help_text="the conversation's id, kept after it is deleted")
    message_ref = models.PositiveBigIntegerField(help_text="the target reply's id")
    split = models.CharField(max_length=8, choices=Split.choices)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.SFT)

    class Meta:
        indexes = [models.Index(fields=["run", "split"], name="example_run_split")]


class Experiment(models.Model):
    """An A/B test: a share of new conversations of the control (the default model) goes to the candidate
    instead, blind to the people in it. Ended by staff, or by promoting the candidate."""

    class State(models.TextChoices):
        RUNNING = "running"
        ENDED = "ended"
        PROMOTED = "promoted"

    control = models.CharField(max_length=200)
    candidate = models.CharField(max_length=200)
    share = models.FloatField(help_text="the share of new conversations sent to the candidate, 0 to 1")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="running"), name="one_running_experiment"
            ),
            models.CheckConstraint(condition=models.Q(share__gte=0, share__lte=1), name="experiment_share_0_1"),
        ]

    def __str__(self):
        return f"{self.candidate} against {self.control}"


class SiteDefault(models.Model):
    """The default model as staff last promoted it (one row at most): it overrides ``CHAT_DEFAULT_MODEL`` while it
    names a model still served."""

    model_name = models.CharField(max_length=200)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    promoted_at = models.DateTimeField(auto_now=True)
