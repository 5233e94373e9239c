"""Reads for the review panel's usage page: messages, tokens, speed and failures per day, per person and per
model (and per model per day, for the chart).

Everything is counted by the database. A page costs eleven queries whatever the table holds: per day and model
(the per-day and the per-model rows are its sums), the top people, the totals, and two medians (time to first
token, tokens/s) for each of days, people, models and the whole range. Python never holds more than one row
per day and model (at most ``MAX_DAYS`` times the models), one per listed person (``TOP_PEOPLE`` + "others")
and two values per median.

Medians: PostgreSQL has ``percentile_cont`` but SQLite has no median at all, so both use the same plain SQL
instead — window functions, which both have (SQLite since 3.25). Each value gets its rank in its group and the
group's size; only the one or two middle rows (``2·rank − size`` in 0, 1, 2) come back, and Python averages
those. The database sorts (spilling to disk if it must); one code path, tested on both databases, with no
vendor switch that one of them would leave untested.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Case, Count, F, Q, QuerySet, Sum, Value, When, Window
from django.db.models.functions import RowNumber, TruncDate
from django.utils import timezone

from chat.models import Message

MAX_DAYS = 366
TOP_PEOPLE = 50
DEFAULT_DAYS = 30
OTHERS = -1  # the group of everyone outside the top people, in the per-person median queries
WHOLE = 0  # the one group of a median over the whole range

_REPLY = Q(role=Message.Role.ASSISTANT)
# Names differ from the model's fields: an annotation may not shadow a field.
_AGGREGATES = {
    "user_messages": Count("id", filter=Q(role=Message.Role.USER)),
    "replies": Count("id", filter=_REPLY),
    "prompt_sum": Sum("prompt_tokens", filter=_REPLY, default=0),
    "completion_sum": Sum("completion_tokens", filter=_REPLY, default=0),
    "failed": Count("id", filter=_REPLY & Q(status=Message.Status.FAILED)),
    "stopped": Count("id", filter=_REPLY & Q(status=Message.Status.STOPPED)),
}


@dataclass(kw_only=True)
class Figures:
    """One row of the page: what was sent and generated, at what speed, and how much of it failed."""

    user_messages: int = 0
    replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: int = 0
    stopped: int = 0
    median_ttft_ms: float | None = None
    median_tokens_per_s: float | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_counts(self, row: dict) -> None:
        """Add one aggregate row (``_AGGREGATES``'s names) to this one's counts."""
        self.user_messages += row["user_messages"]
        self.replies += row["replies"]
        self.prompt_tokens += row["prompt_sum"]
        self.completion_tokens += row["completion_sum"]
        self.failed += row["failed"]
        self.stopped += row["stopped"]


@dataclass(kw_only=True)
class DayFigures(Figures):
    day: dt.date


@dataclass(kw_only=True)
class PersonFigures(Figures):
    user_id: int | None  # None: the "others" row
    username: str = ""
    people: int = 1  # how many people the row sums (more than one only for "others")


@dataclass(kw_only=True)
class ModelFigures(Figures):
    """The replies one model wrote (a reply's own model: a Compare's two replies count one for each model).
    Messages sent have no model (a Compare's one message is answered by two), so ``user_messages`` stays 0."""

    model: str  # "" for replies stored without a name
    per_day: dict[dt.date, Figures] = field(default_factory=dict)  # days with a reply only


@dataclass(kw_only=True)
class UsageReport:
    start: dt.date
    end: dt.date
    days: list[DayFigures]
    people: list[PersonFigures]  # the top people by tokens, then "others" when there are more
    total: PersonFigures
    others: PersonFigures | None = field(default=None)
    models: list[ModelFigures] = field(default_factory=list)  # by tokens, most first


def default_range(*, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The last ``DEFAULT_DAYS`` days, ending today in the site's time zone."""
    today = today or timezone.localdate()
    return today - dt.timedelta(days=DEFAULT_DAYS - 1), today


def _messages_between(start: dt.date, end: dt.date) -> QuerySet:
    """Messages created on the days ``start`` to ``end`` (inclusive) in the site's time zone."""
    tz = timezone.get_current_timezone()
    since = timezone.make_aware(dt.datetime.combine(start, dt.time.min), tz)
    until = timezone.make_aware(dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min), tz)
    return Message.objects.filter(created_at__gte=since, created_at__lt=until).order_by()


def _day():
    return TruncDate("created_at", tzinfo=timezone.get_current_timezone())


def _medians(messages: QuerySet, column: str, group=None) -> dict:
    """The median of ``column`` over the replies in ``messages``, per value of the expression ``group``
    (None: one group, keyed ``WHOLE``). NULLs (a reply that produced no token) are left out."""
    partition = [group] if group is not None else None
    rows = (
        messages.filter(_REPLY, **{f"{column}__isnull": False})
        .annotate(
            median_group=group if group is not None else Value(WHOLE),
            median_rank=Window(RowNumber(), partition_by=partition, order_by=F(column).asc()),
            median_size=Window(Count("id"), partition_by=partition),
        )
        .annotate(median_offset=F("median_rank") * 2 - F("median_size"))
        .filter(median_offset__in=(0, 1, 2))  # the middle row (odd size) or the two middle rows (even)
        .values_list("median_group", column)
    )
    middles = defaultdict(list)
    for key, value in rows:
        middles[key].append(value)
    return {key: sum(values) / len(values) for key, values in middles.items()}


def _with_medians(figures: Figures, ttft: dict, speed: dict, key) -> Figures:
    figures.median_ttft_ms = ttft.get(key)
    figures.median_tokens_per_s = speed.get(key)
    return figures


def _per_day_and_model(messages: QuerySet) -> list[dict]:
    """The counts per day and model name, one query for both breakdowns: a day's figures are the sum of its
    rows, a model's those of its rows (a message sent has no model name, so it lands in the row of ""; its
    reply in its model's)."""
    return list(messages.annotate(day=_day()).values("day", "model_name").annotate(**_AGGREGATES))


def _by_day(messages: QuerySet, rows: list[dict], start: dt.date, end: dt.date) -> list[DayFigures]:
    """Every day of the range, days without a message included (as zeros: the chart has no holes)."""
    ttft, speed = (_medians(messages, column, _day()) for column in ("ttft_ms", "tokens_per_s"))
    days = {
        start + dt.timedelta(days=n): DayFigures(day=start + dt.timedelta(days=n))
        for n in range((end - start).days + 1)
    }
    for row in rows:
        days[row["day"]].add_counts(row)
    return [_with_medians(figures, ttft, speed, day) for day, figures in days.items()]


def _by_person(messages: QuerySet, total: PersonFigures) -> tuple[list[PersonFigures], PersonFigures | None]:
    """The ``TOP_PEOPLE`` people with the most tokens, and everyone else summed in one row (None if nobody)."""
    top = list(
        messages.values(person=F("conversation__owner_id"), name=F("conversation__owner__username"))
        .annotate(**_AGGREGATES)
        .order_by((F("prompt_sum") + F("completion_sum")).desc(), "-replies", "-user_messages", "name")[:TOP_PEOPLE]
    )
    ids = [row["person"] for row in top]
    group = Case(When(conversation__owner_id__in=ids, then=F("conversation__owner_id")), default=Value(OTHERS))
    ttft, speed = (_medians(messages, column, group) for column in ("ttft_ms", "tokens_per_s"))
    people = []
    for row in top:
        figures = PersonFigures(user_id=row["person"], username=row["name"])
        figures.add_counts(row)
        people.append(_with_medians(figures, ttft, speed, row["person"]))
    if total.people <= len(people):
        return people, None
    # The totals minus the listed rows: no query over the long tail beyond its medians.
    others = PersonFigures(user_id=None, username="others", people=total.people - len(people))
    for name in ("user_messages", "replies", "prompt_tokens", "completion_tokens", "failed", "stopped"):
        setattr(others, name, getattr(total, name) - sum(getattr(p, name) for p in people))
    return people, _with_medians(others, ttft, speed, OTHERS)


def _by_model(messages: QuerySet, rows: list[dict]) -> list[ModelFigures]:
    """Each model's replies per day and over the range (from ``_per_day_and_model``'s rows), with its medians
    over the range: two queries."""
    models: dict[str, ModelFigures] = {}
    for row in rows:
        if not row["replies"]:
            continue  # messages sent alone
        counts = {**row, "user_messages": 0}  # a message sent is no model's, even beside unnamed replies
        figures = models.setdefault(row["model_name"], ModelFigures(model=row["model_name"]))
        figures.add_counts(counts)
        figures.per_day.setdefault(row["day"], Figures()).add_counts(counts)
    ttft, speed = (_medians(messages, column, F("model_name")) for column in ("ttft_ms", "tokens_per_s"))
    ranked = sorted(models.values(), key=lambda m: (-m.tokens, -m.replies, m.model))
    return [_with_medians(m, ttft, speed, m.model) for m in ranked]


def usage_report(*, start: dt.date, end: dt.date) -> UsageReport:
    """Messages, tokens, median speed and failures from ``start`` to ``end`` (inclusive, site time zone):
    per day, per person (the top ``TOP_PEOPLE`` by tokens plus "others"), per model and in total. Eleven
    queries."""
    if end < start or (end - start).days + 1 > MAX_DAYS:
        raise ValueError(f"a usage range is 1 to {MAX_DAYS} days, start before end")  # the form checked it
    messages = _messages_between(start, end)
    counted = messages.aggregate(**_AGGREGATES, people=Count("conversation__owner_id", distinct=True))
    total = PersonFigures(user_id=None, username="total", people=counted["people"])
    total.add_counts(counted)
    ttft, speed = (_medians(messages, column) for column in ("ttft_ms", "tokens_per_s"))
    _with_medians(total, ttft, speed, WHOLE)
    people, others = _by_person(messages, total)
    rows = _per_day_and_model(messages)
    return UsageReport(
        start=start,
        end=end,
        days=_by_day(messages, rows, start, end),
        people=people,
        total=total,
        others=others,
        models=_by_model(messages, rows),
    )


def chart_data(report: UsageReport) -> dict:
    """The per-day series the page's charts draw (plain JSON, for ``json_script``): replies by status and
    completion tokens, then each model's replies and completion tokens (zeros on its days without a reply)."""
    days = [d.day for d in report.days]
    return {
        "days": [day.isoformat() for day in days],
        "replies": [d.replies for d in report.days],
        "failed": [d.failed for d in report.days],
        "stopped": [d.stopped for d in report.days],
        "completion_tokens": [d.completion_tokens for d in report.days],
        "models": [
            {
                "model": m.model,
                "replies": [m.per_day.get(day, Figures()).replies for day in days],
                "completion_tokens": [m.per_day.get(day, Figures()).completion_tokens for day in days],
            }
            for m in report.models
        ],
    }
