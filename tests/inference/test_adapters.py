"""Adapters served by their base model's engine (inference/adapters.py), with a tiny random Llama and random LoRA
adapters saved to folders as peft saves them (``init_lora_weights=False``: they change the model's output).

A base row and an adapter row share every decode step (the engine's own counts), each writes exactly the greedy
text it writes alone — the adapter's equal to peft's own ``generate`` — the prefix cache never serves one model's
states to another, and adapters load on first use, stay within their budget and leave when idle."""

import copy
import time

import pytest
import torch

from inference.adapters import ADAPTER_UNAVAILABLE, Adapter
from inference.engine import BatchEngine, GenerationRequest
from inference.sampling import SamplingParams
from tests.inference.test_engine import greedy_reference, run
from tests.inference.test_prefix_cache import chat_ids

N = 10
PROMPT = "Tell me about the sea"


def save_lora(model, folder, seed: int, targets=("q_proj", "v_proj")) -> Adapter:
    """A random LoRA adapter of ``model`` saved to ``folder`` (adapter_config.json + weights)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    get_peft_model(copy.deepcopy(model), config).save_pretrained(folder)
    return Adapter(f"tiny+{folder.name}", str(folder))


def lora_modules(model) -> int:
    return sum("lora" in name for name, _ in model.named_modules())


@pytest.fixture(scope="module")
def base(tiny_llama):
    """This module's own copy of the tiny model: loading adapters changes a model's modules (undone on unload,
    yet never on the session's shared one)."""
    return copy.deepcopy(tiny_llama)


@pytest.fixture(scope="module")
def adapters(tiny_llama, tiny_gpt2, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    return {
        "a": save_lora(tiny_llama, folder / "a", seed=1),
        "b": save_lora(tiny_llama, folder / "b", seed=2),
        "gpt2": save_lora(tiny_gpt2, folder / "gpt2", seed=3, targets=("c_attn",)),  # another architecture's
    }


@pytest.fixture
def make_engine(base, tokenizer):
    engines = []

    def make(**options):
        engines.append(BatchEngine(base, tokenizer, max_batch_size=8, eos_ids=set(), **options).start())
        return engines[-1]

    yield make
    for engine in engines:
        engine.shutdown()
    assert lora_modules(base) == 0  # a stopped engine leaves the model as it was given


def text(engine, ids, adapter=None, n=N):
    return run(engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=n), adapter=adapter)))[1]


def peft_text(tiny_llama, tokenizer, adapter, ids, n=N):
    """What peft itself generates with the adapter on a fresh copy of the model, greedily (the reference for an
    adapter row)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(tiny_llama), adapter.path).eval()
    return tokenizer.decode(greedy_reference(model, tokenizer, ids, n), skip_special_tokens=True)


def test_a_base_row_and_an_adapter_row_share_every_step_and_each_writes_what_it_writes_alone(
    make_engine, base, tiny_llama, tokenizer, adapters
):
    engine = make_engine()
    ids = tokenizer.encode(PROMPT)
    alone_base = text(engine, ids)
    single_steps = engine.steps
    assert engine.adapters.peft is None and lora_modules(base) == 0  # never asked for one: the plain model
    reference = greedy_reference(tiny_llama, tokenizer, ids, N)
    assert alone_base.text == tokenizer.decode(reference, skip_special_tokens=True)

    alone_adapter = text(engine, ids, adapters["a"])
    assert alone_adapter.text == peft_text(tiny_llama, tokenizer, adapters["a"], ids)
    assert alone_adapter.text != alone_base.text  # the adapter really changes what is written
    assert engine.stats()["mixed_adapter_steps"] == 0  # alone: nothing mixed

    before = engine.stats()
    together = engine.submit_many(
        [
            GenerationRequest(list(ids), SamplingParams(max_new_tokens=N)),
            GenerationRequest(list(ids), SamplingParams(max_new_tokens=N), adapter=adapters["a"]),
        ]
    )
    both = [run(h)[1] for h in together]
    after = engine.stats()
    assert [d.text for d in both] == [alone_base.text, alone_adapter.text]
    # One forward pass per step for both rows: as many decode steps as one stream alone, every one of them mixed.
    steps = after["decode_steps"] - before["decode_steps"]
    assert steps == single_steps == N - 1
    assert after["mixed_adapter_steps"] - before["mixed_adapter_steps"] == steps
    assert after["decode_rows"] - before["decode_rows"] == 2 * steps
    rows = after["decode_rows_by_adapter"][adapters["a"].name] - before["decode_rows_by_adapter"][adapters["a"].name]
    assert rows == steps
    assert after["adapters_loaded"] == [adapters["a"].name] and after["adapter_loads"] == 1


def test_two_adapters_and_the_base_in_one_batch_joining_a_running_one(make_engine, tiny_llama, tokenizer, adapters):
    engine = make_engine()
    prompts = [tokenizer.encode(p) for p in ("Hello there", "What is two and two?", "One")]
    alone = [text(engine, prompts[0], adapters["a"]), text(engine, prompts[1], adapters["b"]), text(engine, prompts[2])]
    running = engine.submit(GenerationRequest(prompts[0], SamplingParams(max_new_tokens=N), adapter=adapters["a"]))
    running.get(timeout=30)  # decoding when the others join
    later = [
        engine.submit(GenerationRequest(prompts[1], SamplingParams(max_new_tokens=N), adapter=adapters["b"])),
        engine.submit(GenerationRequest(prompts[2], SamplingParams(max_new_tokens=N))),
    ]
    assert [d.text for d in [run(running)[1]] + [run(h)[1] for h in later]] == [d.text for d in alone]
    assert alone[1].text == peft_text(tiny_llama, tokenizer, adapters["b"], prompts[1])
    assert engine.stats()["mixed_adapter_steps"] > 0


def test_the_prefix_cache_never_serves_one_models_states_to_another(make_engine, tiny_llama, tokenizer, adapters):
    engine = make_engine(prefix_cache_bytes=2**24)
    cache = engine.prefix_cache
    ids = chat_ids(tokenizer, PROMPT)
    base_text = text(engine, ids).text
    hits = cache.stats.hits
    # The same prompt with the adapter: the base's states of it (and of its reply) are not the adapter's.
    first = text(engine, ids, adapters["a"])
    assert cache.stats.hits == hits
    assert first.text == peft_text(tiny_llama, tokenizer, adapters["a"], ids)
    # Its own states serve it next time, and the base's the base: each gives what it gave.
    assert text(engine, ids, adapters["a"]).text == first.text and cache.stats.hits == hits + 1
    assert text(engine, ids).text == base_text and cache.stats.hits == hits + 2
    # Arriving together: the common start is computed per adapter, and each row still writes its own text.
    together = engine.submit_many(
        [GenerationRequest(list(ids), SamplingParams(max_new_tokens=N), adapter=a) for a in (None, adapters["b"])]
    )
    assert [run(h)[1].text for h in together] == [base_text, peft_text(tiny_llama, tokenizer, adapters["b"], ids)]
    spaces = {entry.space for entry in cache._entries.values()}
    assert spaces == {None, adapters["a"], adapters["b"]}


def test_adapters_load_on_first_use_and_stay_within_the_budget_never_unloading_one_in_use(
    make_engine, tokenizer, adapters
):
    engine = make_engine(max_adapters=1)
    a, b = adapters["a"], adapters["b"]
    ids = tokenizer.encode(PROMPT)
    long = 300
    expected_a = text(engine, ids, a, n=long).text
    text(engine, ids, a)
    assert (engine.stats()["adapters_loaded"], engine.adapters.loads) == ([a.name], 1)  # loaded once
    text(engine, ids, b)  # beyond the budget of one: a, idle, leaves
    assert (engine.stats()["adapters_loaded"], engine.adapters.loads, engine.adapters.unloads) == ([b.name], 2, 1)

    long_a = engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=long), adapter=a))
    long_a.get(timeout=30)  # a is running: b (idle) leaves for it
    assert engine.stats()["adapters_loaded"] == [a.name]
    handle = engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=N), adapter=b))
    handle.get(timeout=30)
    assert engine.stats()["adapters_loaded"] == [a.name, b.name]  # both have rows: the budget waits
    run(handle)
    deadline = time.monotonic() + 10
    while engine.stats()["adapters_loaded"] != [a.name] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.stats()["adapters_loaded"] == [a.name] and engine.active == 1  # b left while a still runs
    assert run(long_a)[1].text == expected_a  # a's row never lost its adapter, beside b or after it
    engine.shutdown()  # one engine at a time on the model

    # A byte budget works the same way: room for one and a half adapters holds one.
    sized = make_engine()
    text(sized, ids, a)
    sized.adapters.budget_bytes = int(sized.adapters.bytes * 1.5)
    text(sized, ids, b)
    assert sized.stats()["adapters_loaded"] == [b.name] and sized.adapters.bytes <= sized.adapters.budget_bytes


def test_an_idle_adapter_is_unloaded_and_the_model_is_plain_again(make_engine, base, tokenizer, adapters):
    engine = make_engine(adapter_idle_s=1.0)
    ids = tokenizer.encode(PROMPT)
    plain = text(engine, ids).text
    first = text(engine, ids, adapters["a"]).text
    assert lora_modules(base) > 0
    deadline = time.monotonic() + 10
    while engine.stats()["adapters_loaded"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.stats()["adapters_loaded"] == [] and engine.adapters.unloads == 1
    assert engine.adapters.peft is None and lora_modules(base) == 0 and not hasattr(base, "peft_config")
    assert text(engine, ids).text == plain
    assert text(engine, ids, adapters["a"]).text == first and engine.adapters.loads == 2  # loaded again, the same


def test_an_adapter_that_cannot_be_loaded_fails_its_request_alone(make_engine, tokenizer, adapters, tmp_path):
    engine = make_engine()
    ids = tokenizer.encode(PROMPT)
    expected_a = text(engine, ids, adapters["a"]).text
    missing = Adapter("tiny+gone", str(tmp_path / "gone"))
    handles = engine.submit_many(
        [
            GenerationRequest(list(ids), SamplingParams(max_new_tokens=N), adapter=missing),
            GenerationRequest(list(ids), SamplingParams(max_new_tokens=N), adapter=adapters["gpt2"]),
            GenerationRequest(list(ids), SamplingParams(max_new_tokens=N)),
        ]
    )
    gone, foreign, plain = [run(h)[1] for h in handles]
    assert (gone.reason, gone.code) == ("error", ADAPTER_UNAVAILABLE)
    assert gone.error.startswith("The model tiny+gone could not be served: its adapter's files are missing")
    assert str(tmp_path) not in gone.error  # no server path in a sentence a person reads
    assert (foreign.reason, foreign.code) == ("error", ADAPTER_UNAVAILABLE)
    assert "its adapter does not fit the base model" in foreign.error
    assert plain.reason == "length" and plain.completion_tokens == N
    assert engine.stats()["adapters_loaded"] == [adapters["a"].name]  # the failed ones left nothing behind
    assert text(engine, ids, adapters["a"]).text == expected_a
