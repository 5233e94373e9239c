"""``manage.py train_adapter NAME --base MODEL [selection flags] [--wait]``: start a training run (a LoRA adapter
of MODEL) on the conversations the flags select — the conversation list's filters, as the dataset export uses
them; by default every conversation of MODEL with a gold answer. With ``--wait`` it returns when the run has
ended, exit status 0 only if it is done; the served model name, ``<base>+<name>``, is always the last line.
docs/improvement-loop.md tells the loop."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from datetime import time as day_start

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat.errors import ChatError
from chat.models import Conversation, TrainingRun
from chat.training import liveness, selectors, services


# Argument types raise argparse's own error: the command then prints its usage and the sentence, not a traceback.
def _date(text: str) -> datetime:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write it as YYYY-MM-DD.") from None
    return timezone.make_aware(datetime.combine(day, day_start.min))


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({exc.msg}): write e.g. '{{\"epochs\": 2}}'.") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object: write e.g. '{{\"epochs\": 2}}'.")
    return value


class Command(BaseCommand):
    help = "Train a LoRA adapter of a served model on reviewed conversations (a training run)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the run's name: the adapter is served as <base>+<name>")
        parser.add_argument("--base", required=True, help="the served model to adapt (a name in CHAT_MODELS)")
        selection = parser.add_argument_group("selection (the conversation list's filters; default: the base's)")
        selection.add_argument("--model", help="conversations of this model (default: the base)")
        selection.add_argument("--all-models", action="store_true", help="conversations of every model")
        selection.add_argument("--review-state", choices=Conversation.ReviewState.values)
        selection.add_argument("--reply-model", help="conversations with a reply written by this model")
        selection.add_argument("--owner", help="conversations of this username")
        selection.add_argument("--source", choices=Conversation.Source.values)
        selection.add_argument("--since", type=_date, help="created on or after this day (YYYY-MM-DD)")
        selection.add_argument("--until", type=_date, help="created before this day (YYYY-MM-DD)")
        selection.add_argument(
            "--without-gold", action="store_true", help="keep conversations with no gold answer (for their pairs)"
        )
        parser.add_argument("--hyperparameters", type=_json_object, default={}, help='JSON, e.g. {"epochs": 2}')
        parser.add_argument("--user", help="the staff account the run is started as (default: the command line)")
        parser.add_argument("--wait", action="store_true", help="return when the run has ended (0 only if done)")
        parser.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)

    def handle(self, *args, name, base, user, wait, poll, hyperparameters, **flags):
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"No user named {user!r}.")
        if flags["owner"] and not get_user_model().objects.filter(username=flags["owner"]).exists():
            raise CommandError(f"No user named {flags['owner']!r} (--owner): no conversation of theirs to select.")
        filters = {
            "model": flags["model"],
            "all_models": flags["all_models"],
            "review_state": flags["review_state"],
            "reply_model": flags["reply_model"],
            "owner": flags["owner"],
            "source": flags["source"],
            "since": flags["since"],
            "until": flags["until"],
            "with_gold": not flags["without_gold"],
        }
        selection = {k: (v.date().isoformat() if isinstance(v, datetime) else v) for k, v in filters.items() if v}
        try:
            run = services.run_start(
                actor=actor,
                name=name,
                base=base,
                conversations=selectors.conversations_selected(base=base, **filters),
                selection={"command": selection},
                hyperparameters=hyperparameters,
            )
        except ChatError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None
        counts = selectors.example_counts(run_id=run.pk)
        self.stdout.write(
            f"training run {run.name} (#{run.pk}) queued: {counts['conversations']} conversations, "
            f"{counts['train']} gold answers to learn from, {counts['heldout']} held out, {counts['pairs']} pairs"
        )
        if wait:
            run = self._wait(run, poll)
        self.stdout.write(run.served_name)
        if wait and run.state != TrainingRun.State.DONE:
            raise CommandError(f"training run {run.name} {run.state}: {run.reason}")

    def _wait(self, run: TrainingRun, poll: float) -> TrainingRun:
        """Follow the run until it ends, a line each time its state or step changes."""
        if not liveness.alive():
            self.stderr.write("No training worker is alive: the run waits in the queue until one starts.")
        shown = None
        while True:
            run.refresh_from_db()
            p = run.progress or {}
            line = f"{run.state}" + (
                f": step {p.get('step')}/{p.get('steps')}, loss {p.get('loss')}" if p.get("steps") else ""
            )
            if line != shown:
                self.stdout.write(line)
                shown = line
            if run.state in TrainingRun.ENDED:
                return run
            time.sleep(poll)
