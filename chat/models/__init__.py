"""The app's rows, by what they are about (one Django app: ``chat``; Django finds them through this package):

- ``chats``: conversations, messages (a tree), feedback, Compare picks, gold answers, a person's folders;
- ``documents``: files attached to messages, as extracted text and its passages;
- ``people``: API keys, accounts' approval, invitations, allowances, a person's defaults;
- ``panel``: the review panel's pages (proxies) and the audit trail;
- ``loop``: the improvement loop: training runs and their examples, A/B experiments, the promoted default;
- ``sharing``: read-only share links to a conversation's branch;
- ``prompts``: a person's saved prompts (the prompt library), some published to everyone.
"""

from chat.models.chats import Comparison, Conversation, Feedback, Folder, GoldAnswer, Message
from chat.models.documents import Attachment, Passage
from chat.models.loop import Experiment, SiteDefault, TrainingExample, TrainingRun
from chat.models.panel import AuditEvent, LiveGeneration, ReviewQueue, UsageReport
from chat.models.people import Account, ApiKey, ChatDefaults, Invite, QuotaOverride, lock_person
from chat.models.prompts import Prompt
from chat.models.sharing import ShareLink

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
    "Folder",
    "GoldAnswer",
    "Invite",
    "LiveGeneration",
    "Message",
    "Passage",
    "Prompt",
    "QuotaOverride",
    "ReviewQueue",
    "ShareLink",
    "SiteDefault",
    "lock_person",
    "TrainingExample",
    "TrainingRun",
    "UsageReport",
]
