"""A person's saved prompts (the prompt library): a name to type after ``/`` in the chat input, a title, and a text
that may hold ``{{variables}}`` the page asks for before it puts the text in the input. Staff with
``chat.publish_prompt`` may publish one of theirs to everyone (docs/chat-page.md, "The prompt library")."""

from django.conf import settings
from django.db import models


class Prompt(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prompts")
    name = models.SlugField(max_length=40, help_text="typed after / in the chat input: letters, digits, - and _")
    title = models.CharField(max_length=100)
    text = models.TextField()
    published = models.BooleanField(
        default=False, help_text="shown to everyone as shared (only staff with chat.publish_prompt may set it)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="prompt_owner_name")]
        indexes = [models.Index(fields=["published", "name"], name="prompt_published")]
        ordering = ["name"]
        permissions = [("publish_prompt", "Can publish prompts to everyone")]

    def __str__(self):
        return f"/{self.name}"
