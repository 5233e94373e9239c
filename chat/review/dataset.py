"""Reads for the dataset export: conversations as JSONL lines, SFT transcripts or preference pairs.

Only reads live here; the export's audit rows are written first by ``chat.review.services.export_record``. The lines
are built a chunk of conversations at a time, each chunk a fixed number of queries, so an export of the
whole table holds one chunk in memory, never the table. The format is documented in docs/dataset-export.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from uuid import UUID

from django.db.models import Exists, OuterRef, QuerySet, Sum

from chat.models import AuditEvent, Conversation, Feedback, Message
from chat.replies.selectors import prompt_turns
from chat.review.selectors import id_chunks

SFT = "sft"
PAIRS = "pairs"
KINDS = (SFT, PAIRS)
CHUNK = 200  # conversations per chunk: their rows are in memory at once, and each chunk costs a few queries

Status = Message.Status
ROW_FIELDS = (
    "id",
    "conversation_id",
    "parent_id",
    "role",
    "content",
    "status",
    "supplied",
    "model_name",
    "gold_answer__content",
)
# A user message answered by Compare carries its comparison (a LEFT JOIN on the one-to-one, in the same query):
# which two replies, which one the person picked (None: not yet), and whether the names were hidden.
COMPARISON_FIELDS = ("comparison__first", "comparison__second", "comparison__chosen", "comparison__blind")


def export_lines(*, kind: str, conversations: QuerySet, export_id: UUID, upto: int) -> Iterator[str]:
    """The JSONL text of an export, one string per chunk of conversations.

    ``conversations`` is walked again as it was when the audit rows were written (up to ``upto``, the last id
    then), and each chunk keeps only the conversations audited under ``export_id``: one whose filter state
    changed meanwhile may be audited and left out, but no transcript leaves without its audit row."""
    build = sft_records if kind == SFT else pair_records
    for ids in id_chunks(conversations.filter(pk__lte=upto), size=CHUNK):
        audited = _audited(export_id=export_id, conversation_ids=ids)
        records = build(conversation_ids=[pk for pk in ids if pk in audited]) if audited else []
        text = "".join(map(jsonl_line, records))
        if text:
            yield text


# Characters JSON may leave raw but that str.splitlines() and some readers take for a line end.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def jsonl_line(record: dict) -> str:
    """One record as one line of UTF-8 JSON: every line break inside the text escaped, whoever splits it."""
    return json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"


def _audited(*, export_id: UUID, conversation_ids: list[int]) -> set[int]:
    return set(
        AuditEvent.objects.filter(
            action=AuditEvent.Action.EXPORTED, conversation_id__in=conversation_ids, details__export=str(export_id)
        ).values_list("conversation_id", flat=True)
    )


def _conversations(conversation_ids: list[int]) -> list[dict]:
    return list(
        Conversation.objects.filter(pk__in=conversation_ids).order_by("pk").values("id", "model_name", "system_prompt")
    )


def _by_conversation(messages: QuerySet, *extra: str) -> dict[int, list[dict]]:
    # A reply a reviewer stopped (review.services.reply_cancel) is known by its audit row, in the same query.
    stopped_by_review = AuditEvent.objects.filter(
        action=AuditEvent.Action.CANCELLED_GENERATION,
        conversation_id=OuterRef("conversation_id"),
        message_id=OuterRef("pk"),
    )
    rows = (
        messages.order_by("conversation_id", "id")
        .annotate(stopped_by_review=Exists(stopped_by_review))
        .values(*ROW_FIELDS, "stopped_by_review", *extra)
    )
    return {pk: list(group) for pk, group in groupby(rows, key=lambda row: row["conversation_id"])}


def _model(row: dict, conversation: dict) -> str | None:
    """The model that wrote a reply: its own name (a Compare reply's differs from its conversation's, and a
    conversation's model may have changed since), else its conversation's; None when neither is known."""
    return row["model_name"] or conversation["model_name"] or None


def _finished_text(row: dict) -> str | None:
    """A reply's own text when it is a usable answer: complete, or stopped by its reader after some text. A
    reply a reviewer stopped is none: they stop one that should not go on (it can still be corrected by a gold
    answer, and be the rejected side of a pair)."""
    return None if _stopped_by_review(row) else _comparable_text(row)


def _stopped_by_review(row: dict) -> bool:
    # Its audit row is written when the stop is asked; a reply whose worker finished it first is complete.
    return row["stopped_by_review"] and row["status"] == Status.STOPPED


def _comparable_text(row: dict) -> str | None:
    """A reply's text when it may be a side of a pair: finished text, a reviewer's stopped reply included."""
    if row["status"] in (Status.COMPLETE, Status.STOPPED) and row["content"]:
        return row["content"]
    return None


# --- SFT transcripts


def sft_records(*, conversation_ids: list[int]) -> list[dict]:
    """One transcript per conversation that has an assistant turn to learn from: two queries."""
    messages = _by_conversation(Message.objects.filter(conversation_id__in=conversation_ids, is_current=True))
    records = []
    for conversation in _conversations(conversation_ids):
        record = sft_record(conversation=conversation, messages=messages.get(conversation["id"], []))
        if record is not None:
            records.append(record)
    return records


def sft_record(*, conversation: dict, messages: list[dict]) -> dict | None:
    """The shown branch as OpenAI-style messages, or None when no assistant turn is left.

    A reply with a gold answer counts as its gold text. The transcript ends before the first reply with no
    text to learn from (failed, still queued or streaming, or empty), and so before the user turn it answers:
    skipping that reply would leave two user turns in a row, which most chat templates refuse. A conversation
    with an assistant turn an API caller supplied is no transcript of this model: none is made."""
    if any(row["supplied"] for row in messages):
        return None
    turns, models, gold = [], [], 0
    for row in messages:
        if row["role"] == Message.Role.USER:
            turns.append({"role": "user", "content": row["content"]})
            continue
        text = row["gold_answer__content"] or _finished_text(row)
        if text is None:
            break
        gold += bool(row["gold_answer__content"])
        turns.append({"role": "assistant", "content": text})
        models.append(_model(row, conversation))
    while turns and turns[-1]["role"] == "user":
        turns.pop()
    if not models:
        return None
    system = conversation["system_prompt"]
    return {
        "conversation": conversation["id"],
        # One model wrote every reply (the usual case), or None: the conversation switched models, or a Compare
        # pick put the other model's reply on the shown branch. ``models`` says which wrote each turn.
        "model": models[0] if len(set(models)) == 1 else None,
        "models": models,
        "messages": ([{"role": "system", "content": system}] if system else []) + turns,
        "gold_answers": gold,
    }


# --- Preference pairs


def pair_records(*, conversation_ids: list[int]) -> list[dict]:
    """Every preference pair of these conversations, all branches: three queries (the comparisons come with
    the messages)."""
    messages = _by_conversation(Message.objects.filter(conversation_id__in=conversation_ids), *COMPARISON_FIELDS)
    scores = dict(
        Feedback.objects.filter(message__conversation_id__in=conversation_ids)
        .order_by()
        .values("message_id")
        .annotate(score=Sum("rating"))
        .values_list("message_id", "score")
    )
    records = []
    for conversation in _conversations(conversation_ids):
        records += conversation_pairs(
            conversation=conversation, messages=messages.get(conversation["id"], []), scores=scores
        )
    return records


def _rating(score: int | None) -> int:
    """+1 👍, -1 👎, 0 unrated (or rated both ways by different people, which says nothing)."""
    return (score > 0) - (score < 0) if score else 0


@dataclass(frozen=True)
class _Candidate:
    source: str
    parent_id: int  # the user turn both replies answer
    chosen: dict | None  # the chosen reply's row; None for a gold answer
    chosen_text: str
    rejected: dict
    blind: bool | None = None  # a Compare pick's: whether the person saw the models' names before picking

    @property
    def key(self) -> tuple:
        return (self.parent_id, self.chosen_text, self.rejected["content"])


def _compare_picks(messages: list[dict], replies: dict[int, dict]) -> list[_Candidate]:
    """The picked reply of each Compare over the other one, when both have finished text. A comparison not
    picked yet says nothing."""
    picks = []
    for row in messages:
        chosen_id = row.get("comparison__chosen")
        if chosen_id is None:
            continue
        first, second = row["comparison__first"], row["comparison__second"]
        chosen, rejected = replies.get(chosen_id), replies.get(second if chosen_id == first else first)
        if chosen and rejected:
            picks.append(
                _Candidate("compare", row["id"], chosen, chosen["content"], rejected, row["comparison__blind"])
            )
    return picks


def conversation_pairs(*, conversation: dict, messages: list[dict], scores: dict[int, int]) -> list[dict]:
    """The pairs of one conversation: gold answers over the replies they correct; the reply a person picked in
    a Compare over the other one; then, among replies to the same user turn, a 👍 one over an unrated or 👎
    sibling and an unrated one over a 👎 sibling. Only finished text is compared, and a reply a reviewer stopped
    is never the chosen side; a pair whose texts repeat one
    already made (same prompt, chosen, rejected) is left out, and so is one that reverses a Compare pick (the
    person chose between those two texts side by side: a rating elsewhere does not overturn it)."""
    rows = {row["id"]: row for row in messages}
    # Turns an API caller supplied are neither chosen nor rejected: they are not this model's answers.
    replies = {
        row["id"]: row
        for row in messages
        if row["role"] == Message.Role.ASSISTANT and _comparable_text(row) and not row["supplied"]
    }
    candidates = [
        _Candidate("gold", row["parent_id"], None, row["gold_answer__content"], row)
        for row in replies.values()
        if row["gold_answer__content"]
    ]
    picks = _compare_picks(messages, replies)
    candidates += picks
    reversed_picks = {(p.parent_id, p.rejected["content"], p.chosen_text) for p in picks}
    siblings = defaultdict(list)
    for row in replies.values():
        siblings[row["parent_id"]].append(row)
    for parent_id, group in siblings.items():
        for chosen in group:
            for rejected in group:
                up, down = _rating(scores.get(chosen["id"])), _rating(scores.get(rejected["id"]))
                if up > down:  # 👍 over unrated or 👎, unrated over 👎
                    source = "rating" if up and down else "alternatives"
                    candidates.append(_Candidate(source, parent_id, chosen, chosen["content"], rejected))
    pairs, seen, prompts = [], set(reversed_picks), {}
    for c in candidates:
        if c.chosen_text == c.rejected["content"] or c.key in seen:
            continue
        if c.chosen is not None and _stopped_by_review(c.chosen):  # never learnt towards (_finished_text)
            continue
        seen.add(c.key)
        if c.parent_id not in prompts:
            prompts[c.parent_id] = prompt_turns(
                rows=rows, parent_id=c.parent_id, system_prompt=conversation["system_prompt"]
            )
        pairs.append(
            {
                "prompt": prompts[c.parent_id],
                "chosen": [{"role": "assistant", "content": c.chosen_text}],
                "rejected": [{"role": "assistant", "content": c.rejected["content"]}],
                "source": c.source,
                "conversation": conversation["id"],
                "message": c.rejected["id"],
                "chosen_message": c.chosen["id"] if c.chosen else None,
                "chosen_model": _model(c.chosen, conversation) if c.chosen else None,
                "rejected_model": _model(c.rejected, conversation),
                "blind": c.blind,
            }
        )
    return pairs
