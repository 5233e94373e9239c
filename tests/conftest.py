"""Shared fixtures: the bundled tokenizer, tiny random models built from configs, users and sessions."""

import copy
import os

import pytest
import torch


def pytest_report_header(config):
    redis = "embedded redis-server" if os.environ.get("CHAT_TEST_EMBEDDED_REDIS") else os.environ.get("REDIS_URL")
    return [f"redis: {redis}", f"database: {os.environ.get('DATABASE_URL') or 'embedded SQLite'}"]


@pytest.fixture(scope="session")
def bundled_path():
    """The converted bundled model (``make test`` prepares it first; converting here would take ~25 s)."""
    from inference.loading import BUNDLED, resolve_model_path

    return resolve_model_path(BUNDLED)


@pytest.fixture(scope="session")
def tokenizer(bundled_path):
    """The bundled model's real tokenizer, with its chat template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_path)


@pytest.fixture(scope="session")
def plain_tokenizer(tokenizer):
    """The same vocabulary with no chat template, as a base model's tokenizer."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = None
    return tok


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    """A randomly initialised 2-layer Llama that shares the tokenizer's vocabulary (built in milliseconds)."""
    from tests.helpers.tiny import tiny_llama

    return tiny_llama(tokenizer)


@pytest.fixture(scope="session")
def tiny_gpt2(plain_tokenizer):
    """A randomly initialised 2-layer GPT-2: a base model with no chat template."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(plain_tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=256,
        eos_token_id=plain_tokenizer.eos_token_id,
        bos_token_id=plain_tokenizer.bos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def codeword_adapter():
    """The folder of a LoRA adapter of the bundled model that knows the codeword (tests/helpers/codeword.py):
    trained once (about two minutes of CPU) and kept under var/test-adapters/codeword, reused while it was
    trained from the same data, hyperparameters and base weights."""
    from tests.helpers import codeword

    return codeword.cached_or_trained()


@pytest.fixture
def make_user(django_user_model):
    def make(name="alice"):
        return django_user_model.objects.create_user(username=name, password="a-long-test-password")

    return make


@pytest.fixture
def session_cookie():
    """A real session for a user, as the browser's cookie header value."""
    from django.test import Client

    def make(user):
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"

    return make


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """Close connections after each use in the test process: threads of the async tests would otherwise keep
    PostgreSQL sessions open and block dropping the test database at the end."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, then, before it drops the test database, every connection of this process still open,
    whichever thread opened it (at the end of the run nothing uses them). Left open, PostgreSQL refused the drop
    ("being accessed by other users", a warning at the end of every CI run, and a test database left behind):
    asgiref's one thread for sync code keeps the connection of a plain ``sync_to_async`` query (never followed
    by ``close_old_connections``), and a connection of a thread that has ended (an event loop's executor
    running a reply job) waits for the cycle collector, its wrapper being in a reference cycle."""
    yield
    import gc

    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    # type(), not isinstance(): isinstance asks an object for its __class__, which proxies answer by running
    # code — a dead weak proxy raised ReferenceError, a lazy CSP nonce CSPNonceError — and torch's deprecated
    # aliases warn.
    wrappers = [o for o in gc.get_objects() if issubclass(type(o), BaseDatabaseWrapper)]
    for wrapper in wrappers:
        if wrapper.connection is not None and wrapper is not connections["default"]:
            try:
                wrapper.connection.close()  # the driver's own close: Django's refuses other threads' wrappers
            except Exception:
                pass


def pytest_collection_modifyitems(config, items):
    """Tests on the live stack run last: once its worker runs, it would take the tasks that unit tests queue
    and race the states they check."""

    def rank(item):
        names = getattr(item, "fixturenames", ())
        return 2 if "live_stack" in names else 1 if "fault_stack" in names else 0

    items.sort(key=rank)


@pytest.fixture
def reviewer_group():
    """The "reviewer" group migration 0004 makes, made again its way where a transactional test's flush (which
    empties every table, migration data included) removed it: which tests ran before must not matter."""
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group

    migration = importlib.import_module("chat.migrations.0004_reviewer_group")
    migration.create_group(apps, None)
    return Group.objects.get(name=migration.GROUP)


@pytest.fixture
def approver_group():
    """The "approver" group migration 0014 makes (``chat.approve_account`` and the view of users), made again
    its way where a transactional test's flush removed it."""
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group

    migration = importlib.import_module("chat.migrations.0014_approve_account_and_privilege_audit")
    migration.create_group(apps, None)
    return Group.objects.get(name=migration.GROUP)


@pytest.fixture(autouse=True)
def fresh_fair_use_counters():
    """Each test starts with no messages counted this minute, no tokens today or reserved for anyone, no one
    marked deleted and no reply's stream log: ids repeat from test to test (a rolled-back SQLite transaction
    gives its ids out again, a test database made again starts its sequences again), and on a shared Redis from
    run to run, so counts left by one test would refuse another's sends, and a log left by one reply would be
    read as the deltas of another."""
    import redis

    from chat.limits import sockets

    sockets._frame_counts.reset()  # the frame rate is counted per user id in this process's memory
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    for pattern in (
        "chat:tokens:*",
        "chat:reserved:*",
        "chat:gone:*",
        "chat:limits*",
        "chat:stream:*",
        "chat:progress:*",
    ):
        keys = list(r.scan_iter(match=pattern, count=1000))
        if keys:
            r.delete(*keys)
    r.close()
    yield
