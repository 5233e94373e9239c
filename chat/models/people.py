"""What belongs to a person beside their chats: API keys, their account's approval, invitations, allowances
and their own defaults.
"""

from django.conf import settings
from django.db import models


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
    # The pages' language, one of settings.LANGUAGES; empty: the browser's. Set on the Account page, given to
    # every device the person logs in on (chat/accounts/language.py).
    language = models.CharField(max_length=16, blank=True, help_text="the pages' language; empty: the browser's")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "chat defaults"
        verbose_name_plural = "chat defaults"

    def __str__(self):
        return f"defaults of user {self.user_id}"


def lock_person(user_id: int) -> None:
    """Lock a person's user row until the transaction ends. What one person may hold is bounded by counts (active
    replies, folders, prompts, share links, imported messages); counting and writing under this lock means two
    tabs or sockets of one person acting at once are counted one after another and cannot pass a bound together.
    Other people's rows are untouched, so nobody else waits."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.select_for_update().only("pk").filter(pk=user_id).first()
