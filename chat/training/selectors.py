"""Reads of the improvement loop: which conversations a run may use and what it takes from each (its plan), the
texts of a run's examples when its worker trains (read then, never copied into the run), and the panel's reads.

A conversation whose API key kept no text (``content_kept=False``) is never used, whatever the selection says:
its messages are emptied when their reply ends, and the key's owner asked for no copy.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, QuerySet

from chat.models import Conversation, GoldAnswer, Message, TrainingExample, TrainingRun
from chat.replies.selectors import prompt_turns
from chat.review.dataset import pair_records
from chat.review.selectors import id_chunks

Split = TrainingExample.Split
Kind = TrainingExample.Kind


def with_gold_answer() -> Exists:
    """Whether a conversation holds a reply with a reviewer's gold answer (an EXISTS per row)."""
    return Exists(GoldAnswer.objects.filter(message__conversation=OuterRef("pk")))


def conversations_selected(
    *,
    base: str,
    model: str | None = None,
    all_models: bool = False,
    review_state: str | None = None,
    reply_model: str | None = None,
    owner: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    with_gold: bool = True,
) -> QuerySet:
    """The conversations ``manage.py train_adapter`` selects, by the conversation list's own filters (the
    export's): by default every conversation of the base model with a gold answer."""
    qs = Conversation.objects.all()
    if not all_models:
        qs = qs.filter(model_name=model or base)
    if review_state:
        qs = qs.filter(review_state=review_state)
    if reply_model:
        qs = qs.filter(
            Exists(
                Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.ASSISTANT, model_name=reply_model)
            )
        )
    if owner:
        qs = qs.filter(owner__username__iexact=owner)
    if source:
        qs = qs.filter(source=source)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if with_gold:
        qs = qs.filter(with_gold_answer())
    return qs


def usable(conversations: QuerySet) -> QuerySet:
    """Of these conversations, the ones a run may read: never one whose API key kept no text."""
    return conversations.filter(content_kept=True)


@dataclass(frozen=True)
class PlannedExample:
    conversation_id: int
    message_id: int
    split: str
    kind: str


def _rank(seed: int, conversation_id: int) -> str:
    """A conversation's place in the held-out draw: a hash of the seed and its id, so the same conversations
    with the same seed are held out by every run (runs compared on the same held-out set)."""
    return hashlib.sha256(f"{seed}:{conversation_id}".encode()).hexdigest()


def heldout_count(n: int, share: float) -> int:
    """How many of ``n`` conversations with gold answers are held out: ``share`` of them, rounded, at least one
    and never all (one at least is left to learn from)."""
    return min(max(1, round(n * share)), n - 1)


def plan(conversations: QuerySet, *, heldout_share: float, seed: int) -> list[PlannedExample]:
    """What a run takes from these conversations: every gold answer (an SFT example; the conversations holding
    one are split into training and held-out, ``heldout_share`` of them held out, drawn by ``_rank``), and the
    preference pairs of the training conversations (the export's pairs: gold over the reply, Compare picks,
    ratings). Reads a chunk of conversations at a time."""
    gold: dict[int, list[int]] = defaultdict(list)
    ids: list[int] = []
    for chunk in id_chunks(usable(conversations)):
        ids += chunk
        rows = (
            GoldAnswer.objects.filter(
                message__conversation_id__in=chunk, message__role=Message.Role.ASSISTANT, message__supplied=False
            )
            .order_by("message__conversation_id", "message_id")
            .values_list("message__conversation_id", "message_id")
        )
        for conversation_id, message_id in rows:
            gold[conversation_id].append(message_id)
    with_gold = sorted(gold, key=lambda pk: _rank(seed, pk))
    if len(with_gold) < 2:
        return []
    heldout = set(with_gold[: heldout_count(len(with_gold), heldout_share)])
    planned = [
        PlannedExample(pk, message_id, Split.HELDOUT if pk in heldout else Split.TRAIN, Kind.SFT)
        for pk in sorted(gold)
        for message_id in gold[pk]
    ]
    training = [pk for pk in ids if pk not in heldout]
    for chunk in id_chunks(training):
        for pair in pair_records(conversation_ids=chunk):
            planned.append(PlannedExample(pair["conversation"], pair["message"], Split.TRAIN, Kind.PREFERENCE))
    return planned


# --- the texts, read by the training worker


def _rows(conversation_ids: list[int]) -> dict[int, dict[int, dict]]:
    """Every message of these conversations by id, per conversation, a gold answer's text in place of its
    reply's (the prompt of a later reply shows earlier replies as reviewers corrected them)."""
    out: dict[int, dict[int, dict]] = defaultdict(dict)
    rows = Message.objects.filter(conversation_id__in=conversation_ids).values(
        "id", "conversation_id", "parent_id", "role", "content", "status", "gold_answer__content"
    )
    for row in rows:
        if row["gold_answer__content"]:
            row = {**row, "content": row["gold_answer__content"], "status": Message.Status.COMPLETE}
        out[row["conversation_id"]][row["id"]] = row
    return out


def training_data(*, run_id: int, pairs: bool = True) -> dict:
    """The texts of a run's examples as they are now, for its worker: ``train`` and ``heldout`` (prompt
    messages, the gold answer, the reply's and conversation's ids) and ``pairs`` (prompt, chosen, rejected).
    A conversation deleted since the run was started, or whose gold answer was removed, gives nothing; one whose
    key has since stopped keeping text neither."""
    examples = list(
        TrainingExample.objects.filter(run_id=run_id, conversation__content_kept=True).values(
            "conversation_id", "message_ref", "split", "kind"
        )
    )
    out = {"train": [], "heldout": [], "pairs": []}
    sft = [e for e in examples if e["kind"] == Kind.SFT]
    for chunk in id_chunks({e["conversation_id"] for e in sft}):
        rows = _rows(chunk)
        systems = dict(Conversation.objects.filter(pk__in=chunk).values_list("pk", "system_prompt"))
        for e in sft:
            reply = rows.get(e["conversation_id"], {}).get(e["message_ref"])
            if e["conversation_id"] not in systems or reply is None or not reply.get("gold_answer__content"):
                continue
            messages = prompt_turns(
                rows=rows[e["conversation_id"]],
                parent_id=reply["parent_id"],
                system_prompt=systems[e["conversation_id"]],
            )
            out[e["split"]].append(
                {
                    "messages": messages,
                    "answer": reply["gold_answer__content"],
                    "conversation": e["conversation_id"],
                    "message": e["message_ref"],
                }
            )
    wanted = {(e["conversation_id"], e["message_ref"]) for e in examples if pairs and e["kind"] == Kind.PREFERENCE}
    for chunk in id_chunks({conversation for conversation, _ in wanted}):
        for pair in pair_records(conversation_ids=chunk):
            if (pair["conversation"], pair["message"]) in wanted:
                out["pairs"].append(
                    {
                        "messages": pair["prompt"],
                        "chosen": pair["chosen"][0]["content"],
                        "rejected": pair["rejected"][0]["content"],
                    }
                )
    for key in ("train", "heldout"):
        out[key].sort(key=lambda e: (e["conversation"], e["message"]))
    return out


# --- runs


def cancel_requested(*, run_id: int) -> bool:
    """Whether staff asked this run to stop (the worker asks between steps; one indexed row read)."""
    return TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists()


def runs_running() -> QuerySet:
    return TrainingRun.objects.filter(state=TrainingRun.State.RUNNING)


def runs_queued() -> QuerySet:
    return TrainingRun.objects.filter(state=TrainingRun.State.QUEUED)


def example_counts(*, run_id: int) -> dict[str, int]:
    """A run's examples by split and kind: ``train``, ``heldout``, ``pairs``, and ``conversations`` used."""
    qs = TrainingExample.objects.filter(run_id=run_id)
    return {
        "train": qs.filter(split=Split.TRAIN, kind=Kind.SFT).count(),
        "heldout": qs.filter(split=Split.HELDOUT).count(),
        "pairs": qs.filter(kind=Kind.PREFERENCE).count(),
        "conversations": qs.order_by().values("conversation_ref").distinct().count(),
    }


def heldout_texts(*, run_id: int) -> dict[int, dict]:
    """The held-out examples' prompts (the last user turn) and gold answers as they are now, by reply id: what
    the run page shows beside the stored answers. A deleted conversation's are gone (not in the result)."""
    data = training_data(run_id=run_id, pairs=False)["heldout"]
    out = {}
    for e in data:
        asked = next((m["content"] for m in reversed(e["messages"]) if m["role"] == "user"), "")
        out[e["message"]] = {"prompt": asked, "gold": e["answer"], "conversation": e["conversation"]}
    return out


def heldout_conversations(*, run_id: int) -> list[int]:
    """The held-out conversations of a run that still exist (whose texts a reader of the run page sees)."""
    return list(
        TrainingExample.objects.filter(run_id=run_id, split=Split.HELDOUT, conversation__isnull=False)
        .order_by("conversation_id")
        .values_list("conversation_id", flat=True)
        .distinct()
    )
