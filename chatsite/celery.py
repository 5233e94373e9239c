"""The Celery app. Settings come from Django's (``CELERY_*``)."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

app = Celery("chatsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The task lives in chat/worker/tasks.py (the Django side uses the engine; inference never imports Django).
app.autodiscover_tasks(["chat.worker"])
# And the training task (chat/worker/training.py), which only the training worker's queue carries.
app.autodiscover_tasks(["chat.worker"], related_name="training")


@worker_init.connect
def _json_shutdown_lines(**kwargs):
    """LOG_FORMAT=json: the worker's shutdown lines are JSON like every other (chat.logs.celery_say_as_json)."""
    from django.conf import settings

    if settings.LOG_FORMAT == "json":
        from chat.logs import celery_say_as_json

        celery_say_as_json()
