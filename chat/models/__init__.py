"""The app's rows, by what they are about (one Django app: ``chat``; Django finds them through this package):

- ``chats``: conversations, messages (a tree), feedback, Compare picks, gold answers;
- ``documents``: files attached to messages, as extracted text and its passages;
- ``people``: API keys, accounts' approval, invitations, allowances, a person's defaults;
- ``panel``: the review panel's pages (proxies) and the audit trail;
- ``loop``: the improvement loop: training runs and their examples, A/B experiments, the promoted default.
"""

from chat.models.chats import Comparison, Conversation, Feedback, GoldAnswer, Message
from chat.models.documents import Attachment, Passage
from chat.models.loop import Experiment, SiteDefault, TrainingExample, TrainingRun
from chat.models.panel import AuditEvent, LiveGeneration, ReviewQueue, UsageReport
from chat.models.people import Account, ApiKey, ChatDefaults, Invite, QuotaOverride

__all__ = [
    "Account",
    "ApiKey",
    "Attachment",
    "AuditEvent",
    "ChatDefaults",
    "Comparison",
    "Conversation",
    "Experiment",
    "Feedback",
    "GoldAnswer",
    "Invite",
    "LiveGeneration",
    "Message",
    "Passage",
    "QuotaOverride",
    "ReviewQueue",
    "SiteDefault",
    "TrainingExample",
    "TrainingRun",
    "UsageReport",
]
