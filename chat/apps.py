from django.apps import AppConfig


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"

    def ready(self):
        from chat import checks, signals  # noqa: F401  (registers the system checks, connects the session receivers)
