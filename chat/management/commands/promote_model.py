"""``manage.py promote_model MODEL --user NAME``: make a served model, or a finished adapter, the site's default
for new conversations — as the panel's *Promote* does for an experiment's candidate, audited the same way
(``model_promoted``). Its use: undoing a promotion (promote the earlier default again) without running an
experiment for it. Refused while an experiment runs: its control is the default it was started against."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.errors import ChatError
from chat.experiments import services
from chat.models import Experiment
from chat.replies import catalog


class Command(BaseCommand):
    help = "Make a served model or a finished adapter the default for new conversations (audited)."

    def add_arguments(self, parser):
        parser.add_argument("model", help="a served model's name, or <base>+<run> of a finished adapter")
        parser.add_argument("--user", required=True, help="the staff account (with chat.train_model) it is done as")

    def handle(self, *args, model, user, **options):
        actor = get_user_model().objects.filter(username=user).first()
        if actor is None:
            raise CommandError(f"No user named {user!r}.")
        running = Experiment.objects.filter(state=Experiment.State.RUNNING).first()
        if running is not None:
            raise CommandError(
                f"An experiment is running ({running}): end or promote it on its page in the panel first."
            )
        before = catalog.site_default()
        try:
            services.model_promote(actor=actor, model=model)
        except ChatError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None
        self.stdout.write(f"{model} is now the default model for new conversations (it was {before}).")
