"""The review panel: staff read transcripts, never rewrite them.

Transcripts are read-only for everyone, superusers included; opening one needs the
``chat.review_conversation`` permission (the "reviewer" group), and every open, review change and deletion
leaves an ``AuditEvent``. Writes go through ``chat.review.services``; list pages read through ``chat.review.selectors``.

- ``common``: the permission mixins and list filters the screens share;
- ``conversations``: conversations (list, transcript page, review form, gold answers) and the review queue;
- ``messages``: messages, feedback and gold answers as lists;
- ``comparisons``: Compares (two models answering one message) as a list: the models, blind or not, the pick;
- ``export``: the dataset export (SFT transcripts, preference pairs) of the conversation lists;
- ``usage``: messages, tokens, speed and failures per day and per person, with a chart (reads: ``chat.review.usage``);
- ``live``: replies queued or streaming right now, with a Cancel that works as the owner's Stop;
- ``quotas``: per-person allowances (messages per minute, tokens per day, replies at once), edited by staff;
- ``accounts``: people (approval to chat) and invite links;
- ``experiments``: A/B experiments between the default model and a candidate, and promotion (``chat.train_model``);
- ``audit``: the audit trail, superusers only;
- ``api_keys``: people's API keys, viewed and revoked (never edited);
- ``prompts``: prompts published to everyone, taken back by staff with ``chat.publish_prompt``;
- ``training``: training runs (list, a run's page with its evaluation, Cancel) and the conversation list's
  "Train an adapter" action (docs/improvement-loop.md).
"""

from django.contrib import admin as _admin
from django.utils.translation import gettext_lazy as _

from chat.admin import (  # noqa: F401  (each registers its screens)
    accounts,
    api_keys,
    audit,
    comparisons,
    conversations,
    experiments,
    live,
    messages,
    prompts,
    quotas,
    training,
    usage,
)

# No navigation column beside every page: it took 300 px of a 1280 px screen from the lists (the message list's
# sixteen columns could not fit beside it and the filters); the index and the breadcrumbs lead everywhere.
_admin.site.enable_nav_sidebar = False
# The product's own name on every panel page (Django's "Django administration" told staff nothing).
_admin.site.site_header = _("Chat · review panel")
_admin.site.site_title = _("Review panel")
_admin.site.index_title = _("The review panel")
