"""Django's ``makemessages``, set up for this project so the plain command finds every string (docs/translating.md).

- The page's scripts mark their words with ``t("…")`` and ``tn("…", "…", n)`` (``static/chat/page/i18n.js``), which
  xgettext does not know: they are added to its keywords for the ``djangojs`` domain.
- Only the project's own sources are read: not the vendored libraries (their ``gettext`` is not ours), not the
  tests, not ``var/`` (collected static files, models) nor the docs.
"""

from django.core.management.commands import makemessages

JS_KEYWORDS = ["--keyword=t", "--keyword=tn:1,2"]
IGNORED = ["var/*", "static/vendor/*", "tests/*", "docs/*", "deploy/*", "node_modules/*", "locale/*"]


class Command(makemessages.Command):
    def handle(self, *args, **options):
        options["ignore_patterns"] = [*(options.get("ignore_patterns") or []), *IGNORED]
        if options.get("domain") == "djangojs":
            self.xgettext_options = [*self.xgettext_options, *JS_KEYWORDS]
        return super().handle(*args, **options)
