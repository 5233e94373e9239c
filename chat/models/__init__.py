"""The app's rows, by what they are about (one Django app: ``chat``; Django finds them through this package):

- ``chats``: conversations, messages (a tree), feedback, Compare picks, gold answers, a person's folders;
- ``people``: API keys, accounts' approval, invitations, allowances, a person's defaults;
- ``panel``: the review panel's pages (proxies) and the audit trail;
- ``loop``: the improvement loop: training runs and their examples, A/B experiments, the promoted default.
"""

from chat.models.chats import Comparison, Conversation, Feedback, Folder, GoldAnswer, Message
from chat.models.loop import Experiment, SiteDefault, TrainingExample, TrainingRun
from chat.models.panel import AuditEvent, LiveGeneration, ReviewQueue, UsageReport
from chat.models.people import Account, ApiKey, ChatDefaults, Invite, QuotaOverride

__all__ = [
    "Account",
    "ApiKey",
    "AuditEvent",
    "ChatDefaults",
    "Comparison",
    "Conversation",
    "Experiment",
    "Feedback",
    "Folder",
    "GoldAnswer",
    "Invite",
    "LiveGeneration",
    "Message",
    "QuotaOverride",
    "ReviewQueue",
    "SiteDefault",
    "TrainingExample",
    "TrainingRun",
    "UsageReport",
]
