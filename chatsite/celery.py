"""The Celery app. Settings come from Django's (``CELERY_*``)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

app = Celery("chatsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The task lives in chat.worker (the Django side uses the engine; inference never imports Django).
app.autodiscover_tasks(["chat"], related_name="worker")
