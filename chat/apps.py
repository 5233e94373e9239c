from django.apps import AppConfig


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"

    def ready(self):
        # Importing them registers the system checks and connects the session receivers.
        from chat.accounts import language, signals  # noqa: F401
        from chat.documents.search import index_sweep
        from chat.ops import checks  # noqa: F401
        from chat.replies import sweep
        from chat.training.sweep import sweep_runs

        sweep.also(sweep_runs)  # every process that sweeps dead workers' replies sweeps dead training runs too
        sweep.also(index_sweep)  # and merges SQLite's passage index after deletions (chat/documents/search.py)
