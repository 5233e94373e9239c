"""``manage.py evaluate CANDIDATE --against BASE``: the candidate adapter (``<base>+<run>``) and BASE (its base
model, or another adapter of it) scored on the candidate run's held-out gold answers — mean log-likelihood per
token of each gold answer, each greedy answer and its chrF — as JSON on stdout. Rows carry the reply's and
conversation's ids, never the prompt or the gold answer's text (docs/improvement-loop.md)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from chat.errors import ChatError
from chat.worker.training import evaluate_models


class Command(BaseCommand):
    help = "Evaluate an adapter against its base (or another adapter) on its run's held-out gold answers (JSON)."

    def add_arguments(self, parser):
        parser.add_argument("candidate", help="<base>+<run> of a finished training run")
        parser.add_argument("--against", required=True, help="the base model, or another adapter of it")

    def handle(self, *args, candidate, against, **options):
        try:
            result = evaluate_models(candidate=candidate, against=against)
        except ChatError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None
        self.stdout.write(json.dumps(result, indent=2, ensure_ascii=False))
