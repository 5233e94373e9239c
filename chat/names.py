"""Every name another process sees, in one place: Redis keys, the Celery task and its queues, the channel-layer
names the worker side shares with Daphne.

Django-free and import-free, so the launcher (``chatsite/stack.py``) and settings can read the same names before
Django is set up. Changing a value here is a wire change: a running Daphne, a worker of the previous release or a
task already queued still uses the old one. Several values say "inference" for that reason only — they predate
the module layout and are kept so a rolling upgrade keeps its queued tasks and its workers' cancels.

Redis keys (``chat:`` prefix; the channel layer and Celery keep their own):

| key | type | what |
|---|---|---|
| ``chat:workers`` | sorted set | live workers, score = when their heartbeat expires |
| ``chat:workers:model:<model>`` | sorted set | the live workers of one served model (``chat/served.py``) |
| ``chat:lease:<message>`` | string | the worker holding a streaming reply; expires with its heartbeat |
| ``chat:progress:<message>`` | string | reply tokens so far, written with the lease by the heartbeat (not per token) |
| ``chat:stream:<message>`` | list | a reply's delta texts, index = seq (the stream log) |
| ``chat:sockets:<user>`` | sorted set | a user's open sockets, score = last refresh |
| ``chat:sessions:<user>`` | sorted set | a person's session keys, score = login time (``accounts/session_index.py``) |
| ``chat:tokens:<user>:<day>`` | string | tokens a person's replies used that day (``chat/limits/quotas.py``) |
| ``chat:reserved:<user>`` | hash | tokens held for a person's replies and titles not yet ended (``<n>:<expiry>``) |
| ``chat:experiment:<id>:n`` | string | new conversations counted in an A/B experiment (``experiments/assignment.py``) |
| ``chat:gone:<user>`` | string | a deleted person, for two days: nothing is charged to them (``limits/quotas.py``) |
| ``chat:limits/...`` | (``limits``) | the moving windows of ``chat/limits/quotas.py``, listed below the table |
| ``chat:wstats:<worker>`` | string | the worker's engine figures (JSON), written by its heartbeat, expiring with it |
| ``chat:load`` | hash | replies each worker has taken and not yet ended, field = worker (``chat/replies/balance.py``) |
| ``chat:handed:<message>`` | string | the worker a queued reply was handed to (``replies/balance.py``), for the sweep |
| ``chat:training:workers`` | sorted set | live training workers, score = heartbeat expiry (``training/liveness.py``) |
| ``chat:metrics:counters`` | hash | Prometheus counters of every process (``chat/metrics.py``) |
| ``chat:metrics:hist:<name>`` | hash | a histogram's bucket counts and sum |

The ``chat:limits/...`` windows: a person's messages a minute; a client address's accounts made, sign-up forms
and password reset requests an hour; an email address's reset requests an hour (keyed by its SHA-256, never the
address itself).
"""

from __future__ import annotations

# --- Celery ---------------------------------------------------------------------------------------------------
# The task that writes a reply (``chat/worker/tasks.py``, ``generate_reply``). Web processes send it by this name
# and never import the worker's model code; tasks queued by an older release carry it, so it never changes.
GENERATE_REPLY_TASK = "inference.tasks.generate_reply"
# The queue every worker reads; each worker also reads its own (``worker_queue``), where a busier worker hands
# it a task (``chat/replies/balance.py``).
SHARED_QUEUE = "inference"


def worker_queue(worker: str) -> str:
    """The queue only ``worker`` reads (added to its ``-Q`` at start, ``chat/worker/tasks.py``)."""
    return f"{SHARED_QUEUE}.{worker}"


def model_queue(model: str) -> str:
    """The queue every worker of ``model`` reads: a reply is sent to its model's queue. (The shared queue
    above is read by the default model's workers too: tasks an earlier release queued, before models had
    queues of their own, still find a worker.)"""
    return f"{SHARED_QUEUE}.model.{model}"


# The task that trains an adapter (``chat/worker/training.py``, ``train_adapter``), sent by name like the reply's,
# to the queue only training workers read (``make run`` starts one with CHAT_TRAINING=true).
TRAIN_ADAPTER_TASK = "chat.training.train_adapter"
TRAINING_QUEUE = "training"

# --- Channel layer: the worker side ---------------------------------------------------------------------------
# The group every worker's link joins, the prefix of a link's own channel, and the event that asks the worker
# holding a reply to stop it (``chat/events.py`` sends it, ``chat/worker/link.py`` receives it).
WORKERS_GROUP = "inference.workers"
WORKER_CHANNEL_PREFIX = "inference.worker."
REPLY_CANCEL_EVENT = "inference.cancel"

# --- The browser ------------------------------------------------------------------------------------------------
# The chat page's websocket (no URL name: Channels' routing is not Django's). The page gets it from its config.
SOCKET_PATH = "ws/chat/"

# --- Redis keys -----------------------------------------------------------------------------------------------
WORKERS_KEY = "chat:workers"


def model_workers_key(model: str) -> str:
    """The live workers of one model (a sorted set like ``WORKERS_KEY``, which holds every model's)."""
    return f"chat:workers:model:{model}"


LOAD_KEY = "chat:load"
# Training workers heartbeat apart from serving ones: they hold no served model, and counting them as its workers
# would send replies to a process that never reads their queue.
TRAINING_WORKERS_KEY = "chat:training:workers"


# Set when passages were deleted on SQLite: the sweep then merges the full-text index (chat/documents/search.py).
PASSAGES_DELETED_KEY = "chat:passages:deleted"


def lease_key(message_id: int) -> str:
    return f"chat:lease:{int(message_id)}"


def progress_key(message_id: int) -> str:
    return f"chat:progress:{int(message_id)}"


def worker_stats_key(worker: str) -> str:
    return f"chat:wstats:{worker}"


def handed_key(message_id: int) -> str:
    return f"chat:handed:{int(message_id)}"


def stream_key(message_id: int) -> str:
    return f"chat:stream:{int(message_id)}"


def place_key(message_id: int) -> str:
    """A waiting reply's last published place (chat/replies/streamlog.py)."""
    return f"chat:place:{int(message_id)}"


def sockets_key(user_id: int) -> str:
    return f"chat:sockets:{int(user_id)}"


def sessions_key(user_id: int) -> str:
    return f"chat:sessions:{int(user_id)}"


def tokens_key(user_id: int, day) -> str:
    return f"chat:tokens:{int(user_id)}:{day.isoformat()}"


def experiment_counter_key(experiment_id: int) -> str:
    return f"chat:experiment:{int(experiment_id)}:n"


def reserved_key(user_id: int) -> str:
    return f"chat:reserved:{int(user_id)}"


def uploading_key(user_id: int) -> str:
    """Held while one of the person's attachments is being read (chat/documents/views.py): one at a time each."""
    return f"chat:uploading:{int(user_id)}"


def gone_key(user_id: int) -> str:
    return f"chat:gone:{int(user_id)}"


def reply_keys(message_id: int) -> tuple[str, ...]:
    """Every key Redis keeps about one reply: its stream log (its text), progress (its tokens so far), lease and
    the worker it was handed to. A deletion deletes them all (``chat/accounts/erasure.py``)."""
    return (stream_key(message_id), progress_key(message_id), lease_key(message_id), handed_key(message_id))
