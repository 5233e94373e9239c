"""``manage.py create_api_key <username> [--name NAME] [--no-store]``: a new key for an operator's scripts; the
key alone on the last line, so ``| tail -n 1`` captures it."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.api import services
from chat.errors import ChatError


class Command(BaseCommand):
    help = "Create an API key for a user and print it (shown once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")
        parser.add_argument("--no-store", action="store_true", help="keep no text of the key's conversations")

    def handle(self, *args, username, name, no_store, **options):
        try:
            user = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        try:
            new = services.api_key_create(owner=user, name=name, store_conversations=not no_store)
        except ChatError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(f"API key {new.key.name!r} for {username} (shown once):")
        self.stdout.write(new.plaintext)
