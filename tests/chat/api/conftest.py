import pytest


@pytest.fixture
def api(live_stack, transactional_db, make_user):
    """A factory: ``api("alice")`` → (the user, their new key, an ``openai.OpenAI`` client on the live stack)."""
    import openai

    from chat.api import services

    def make(name="alice", store_conversations=True, **client_options):
        user = make_user(name)
        new = services.api_key_create(owner=user, name=f"{name}'s key", store_conversations=store_conversations)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{live_stack.port}/v1", api_key=new.plaintext, max_retries=0, **client_options
        )
        return user, new, client

    return make


def forget_allowances():
    """Today's tokens and the messages-a-minute windows are kept in Redis by user id, and ids come back after
    each test's flush: without this, one test's requests would count against the next test's user."""
    from chat.store import client

    r = client()
    for pattern in ("chat:limits*", "chat:tokens*", "chat:reserved*", "chat:gone*"):
        keys = list(r.scan_iter(pattern))
        if keys:
            r.delete(*keys)


@pytest.fixture(autouse=True)
def fresh_allowances():
    forget_allowances()
    yield
