"""An adapter served by its base model's worker, on the live stack (tests/helpers/live.py): a finished training run
of the bundled model is the model `<base>+<run>`, listed in /v1/models and the page's picker to staff who may
train models and to no one else, and a reply of it and a base reply sent together over the API are written by the
same worker process in shared forward passes — its /metrics count the mixed-adapter steps."""

import html
import json
import re
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chat.models import Message, TrainingRun
from tests.e2e.test_metrics import samples, scrape, value
from tests.e2e.test_models_api_live import listed, openai_client
from tests.helpers.live import DEFAULT_MODEL

pytestmark = pytest.mark.e2e

# The adapter trained on the codeword (the improvement loop's proof) where a checkout saved it; else a random one.
TRAINED = Path(__file__).resolve().parents[2] / "var" / "test-adapters" / "codeword"
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory) -> Path:
    """A LoRA adapter of the bundled model as peft saves it: the trained one if there is one, else a random
    rank-8 LoRA of the attention projections (quality does not matter here: who writes it, and how)."""
    if (TRAINED / "adapter_config.json").is_file():
        return TRAINED
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from inference.loading import BUNDLED, resolve_model_path

    folder = tmp_path_factory.mktemp("adapter") / "random"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(BUNDLED))
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def page_models(live_stack, user, session_cookie) -> list[str]:
    """The model names in the chat page's config (the picker's), as Daphne serves the page to ``user``."""
    request = urllib.request.Request(f"{live_stack.origin}/", headers={"Cookie": session_cookie(user)})
    with urllib.request.urlopen(request, timeout=30) as response:
        page = response.read().decode()
    config = json.loads(html.unescape(re.search(r'data-config="([^"]*)"', page).group(1)))
    return [m["name"] for m in config["models"]]


def mixed_steps(live_stack, worker: str) -> float:
    status, text = scrape(live_stack.port)
    assert status == 200
    return value(samples(text), "chat_worker_mixed_adapter_steps_total", worker=worker, model=DEFAULT_MODEL)


def test_an_adapter_is_listed_to_staff_only_and_shares_the_base_workers_batches(
    live_stack, transactional_db, make_user, session_cookie, adapter_folder
):
    import openai
    from django.contrib.auth.models import Permission

    run = TrainingRun.objects.create(
        name="live-adapter", base_model=DEFAULT_MODEL, state=TrainingRun.State.DONE, adapter_path=str(adapter_folder)
    )
    name = run.served_name
    staff, plain = make_user("staff"), make_user("plain")
    staff.is_staff = True  # who may try adapters: active staff with chat.train_model (accounts.selectors.may_train)
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="train_model"))
    staff_api, staff_key = openai_client(live_stack, staff)
    plain_api, plain_key = openai_client(live_stack, plain)

    # Listed to staff who may train (the API and the page's picker), to no one else; refused to others by name.
    assert name in [m["id"] for m in listed(live_stack, staff_key)]
    assert name in page_models(live_stack, staff, session_cookie)
    assert name not in [m["id"] for m in listed(live_stack, plain_key)]
    assert name not in page_models(live_stack, plain, session_cookie)
    with pytest.raises(openai.NotFoundError) as refused:
        plain_api.chat.completions.create(model=name, max_tokens=4, messages=STORY)
    assert refused.value.body["code"] == "model_not_found"

    # A base reply and an adapter reply sent together: one worker writes both, in mixed-adapter steps.
    worker = f"{socket.gethostname()}-{live_stack.worker.pid}"
    before = mixed_steps(live_stack, worker)

    def complete(model):
        return staff_api.chat.completions.create(model=model, max_tokens=40, temperature=0, messages=STORY)

    with ThreadPoolExecutor(2) as pool:
        base, adapted = pool.map(complete, [DEFAULT_MODEL, name])
    assert (base.model, adapted.model) == (DEFAULT_MODEL, name)
    replies = Message.objects.filter(pk__in=[int(c.id.removeprefix("chatcmpl-")) for c in (base, adapted)])
    assert {(m.model_name, m.status, m.worker) for m in replies} == {
        (DEFAULT_MODEL, "complete", worker),
        (name, "complete", worker),
    }
    assert adapted.choices[0].message.content != base.choices[0].message.content  # the adapter wrote its own
    deadline = time.monotonic() + 30  # the worker's figures reach /metrics with its next heartbeat
    while mixed_steps(live_stack, worker) <= before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert mixed_steps(live_stack, worker) > before
    status, text = scrape(live_stack.port)
    figures = samples(text)
    assert value(figures, "chat_worker_adapters_loaded", worker=worker, model=DEFAULT_MODEL) >= 1
    assert value(figures, "chat_worker_adapter_decode_rows_total", worker=worker, adapter=name) > 0
