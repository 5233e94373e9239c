import os

import pytest


@pytest.fixture(autouse=True)
def a_worker_is_alive(request, settings):
    """Services refuse new replies when no worker heartbeats. These tests are about the web side, so a worker
    heartbeat is registered for them, through the worker's own code path, and removed afterwards. Not for a test
    on the live stack (the API's live tests live here too): it has a real worker, and a second name in the live
    set is a worker that balancing would hand replies to, which nobody reads (chat/replies/balance.py)."""
    from chat.replies import liveness

    if "live_stack" in request.fixturenames:
        yield
        return

    settings.CHAT_SWEEP_IN_WEB = False  # communicator tests run one event loop per test
    name = f"unit-tests-{os.getpid()}"
    models = [m.name for m in settings.CHAT_SERVED_MODELS]
    for model in models:  # one name in each model's live set (a test with two models configures them first)
        liveness.heartbeat(name, [], model=model)
    yield
    for model in models:
        liveness.worker_gone(name, model)


@pytest.fixture
def rt(tiny_llama, tokenizer, settings):
    """A worker's runtime (chat/worker/runtime.py) over a tiny random Llama, no background threads, no prefix
    cache."""
    from chat.worker import runtime as worker_runtime
    from inference.loading import LoadedModel

    settings.CHAT_PREFIX_CACHE_MB = 0
    runtime = worker_runtime.Runtime(LoadedModel("tiny-llama", tiny_llama, tokenizer, "cpu", None), background=False)
    yield runtime
    runtime.close()
