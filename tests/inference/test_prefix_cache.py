"""The prefix cache: reused states give exactly the tokens a fresh computation gives, and the cache stays
within its budget. Real tiny models, compared with ``generate``."""

import time

import pytest
import torch

from inference.engine import BatchEngine, GenerationRequest
from inference.prefix_cache import PrefixCache
from inference.sampling import SamplingParams
from tests.inference.test_engine import greedy_reference

N = 8


def chat_ids(tokenizer, *turns):
    """Token ids of a conversation through the bundled chat template (system prompt included)."""
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture
def cached_engine(tiny_llama, tokenizer):
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=8, eos_ids=set(), prefix_cache_bytes=2**24).start()
    yield eng
    eng.shutdown()


def reply(engine, ids, n=N):
    return list(engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=n))))[-1]


def expected(model, tokenizer, ids, n=N):
    return tokenizer.decode(greedy_reference(model, tokenizer, ids, n), skip_special_tokens=True)


def kv(n, value=0.0, layers=2):
    return lambda: [(torch.full((1, 2, n, 4), value), torch.full((1, 2, n, 4), value)) for _ in range(layers)]


def test_lookup_finds_the_longest_cached_prefix_and_checks_the_tokens():
    cache = PrefixCache(budget_bytes=10**6)
    cache.insert([1, 2, 3, 4, 5, 6], kv(6, 1.0))
    cache.insert([1, 2, 3, 9, 9, 9, 9], kv(7, 2.0))
    entry, n = cache.lookup([1, 2, 3, 4, 5, 7, 8])
    assert n == 5 and entry.tokens[:5] == (1, 2, 3, 4, 5) and float(entry.layers[0][0][0, 0, 0, 0]) == 1.0
    assert cache.lookup([1, 2, 3, 9, 9, 9, 9, 1])[1] == 7
    assert cache.lookup([7, 1, 2, 3, 4]) == (None, 0)
    assert cache.lookup([1, 2, 3]) == (None, 0)  # shorter than min_tokens: not worth a copy
    assert cache.stats.hits == 2 and cache.stats.tokens_reused == 12


def test_a_longer_sequence_replaces_its_own_prefix_and_duplicates_are_not_stored():
    cache = PrefixCache(budget_bytes=10**6)
    cache.insert([1, 2, 3, 4, 5], kv(5))
    cache.insert([1, 2, 3, 4, 5, 6, 7, 8], kv(8))  # e.g. prompt, then prompt + reply
    assert len(cache) == 1 and cache.lookup([1, 2, 3, 4, 5, 6, 7, 8, 9])[1] == 8
    cache.insert([1, 2, 3, 4, 5, 6], kv(6))  # already held as the start of the longer one
    assert len(cache) == 1


def test_least_recently_used_entries_leave_first_and_the_budget_holds():
    one = sum(k.numel() * 4 + v.numel() * 4 for k, v in kv(10)())
    cache = PrefixCache(budget_bytes=3 * one)
    for start in range(4):
        if start == 3:
            cache.lookup([0] + list(range(1, 10)))  # touch the oldest: it stays
        cache.insert([start] + list(range(1, 10)), kv(10))
    assert cache.bytes <= 3 * one and len(cache) == 3 and cache.stats.evicted == 1
    assert cache.lookup([0] + list(range(1, 10)))[1] == 10
    assert cache.lookup([1] + list(range(1, 10))) == (None, 0)  # the least recently used went
    cache.insert(list(range(100, 200)), kv(100))  # larger than the whole budget: not kept, nothing evicted
    assert len(cache) == 3


def test_regenerate_and_same_prompt_reuse_the_prompt_and_give_the_same_tokens(cached_engine, tiny_llama, tokenizer):
    ids = chat_ids(tokenizer, "What is the capital of France? Answer briefly.")
    first = reply(cached_engine, ids)
    again = reply(cached_engine, ids)
    stats = cached_engine.prefix_cache.stats
    assert first.text == again.text == expected(tiny_llama, tokenizer, ids)
    assert stats.tokens_reused >= len(ids) - 1  # the second run computed one prompt token


def test_next_turn_reuses_the_previous_prompt_and_reply(cached_engine, tiny_llama, tokenizer):
    question = "Tell me a story about a cat"
    ids = chat_ids(tokenizer, question)
    answer_ids = greedy_reference(tiny_llama, tokenizer, ids, N)
    first = reply(cached_engine, ids)
    # The next turn as the chat template renders it: the reply's tokens follow the previous prompt.
    turn2 = (
        ids
        + answer_ids
        + tokenizer.encode(
            "<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
        )
    )
    before = cached_engine.prefix_cache.stats.tokens_reused
    second = reply(cached_engine, turn2)
    reused = cached_engine.prefix_cache.stats.tokens_reused - before
    assert first.text == tokenizer.decode(answer_ids, skip_special_tokens=True)
    assert reused == len(ids) + N - 1  # the prompt and every reply token that went through the model
    assert second.text == expected(tiny_llama, tokenizer, turn2)


def test_requests_arriving_together_share_their_common_start(cached_engine, tiny_llama, tokenizer):
    prompts = [
        chat_ids(tokenizer, q)
        for q in ("Hello there", "Hello there", "A different question entirely", "Hello there, and more")
    ]
    common = min(len(p) for p in prompts) - 1
    common = next((i for i in range(common) if any(p[i] != prompts[0][i] for p in prompts)), common)
    handles = cached_engine.submit_many([GenerationRequest(p, SamplingParams(max_new_tokens=N)) for p in prompts])
    results = [list(h)[-1] for h in handles]
    for p, r in zip(prompts, results):
        assert r.text == expected(tiny_llama, tokenizer, p) and r.completion_tokens == N
    # Admitted in one round: the system prompt and the template's opening were computed once and every one of
    # the four started from it.
    assert cached_engine.prefix_cache.stats.hits == 4
    assert cached_engine.prefix_cache.stats.tokens_reused == 4 * common


def test_warm_and_cold_requests_in_one_prefill_and_joining_a_running_batch(cached_engine, tiny_llama, tokenizer):
    warm = chat_ids(tokenizer, "Warm question")
    reply(cached_engine, warm, 2)
    long_cold = chat_ids(tokenizer, "A long cold prompt " * 20)
    running = cached_engine.submit(
        GenerationRequest(chat_ids(tokenizer, "Keep going"), SamplingParams(max_new_tokens=40))
    )
    running.get(timeout=30)  # the batch is decoding when the others join
    batch = [warm, long_cold, warm + tokenizer.encode(" extra", add_special_tokens=False), chat_ids(tokenizer, "x")]
    handles = [cached_engine.submit(GenerationRequest(p, SamplingParams(max_new_tokens=N))) for p in batch]
    for p, h in zip(batch, handles):
        assert list(h)[-1].text == expected(tiny_llama, tokenizer, p)
    assert list(running)[-1].completion_tokens == 40


def test_cancelled_and_cached_requests_leave_the_engine_clean(cached_engine, tokenizer):
    ids = chat_ids(tokenizer, "Go on forever")
    handle = cached_engine.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=300)))
    handle.get(timeout=30)
    handle.cancel()
    assert list(handle)[-1].reason == "cancelled"
    again = reply(cached_engine, ids, 3)
    assert again.completion_tokens == 3
    deadline = time.monotonic() + 10  # the engine drops the finished row just after handing out its end
    while (cached_engine.active or cached_engine._batch.cache is not None) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cached_engine.active == 0 and cached_engine._batch.cache is None
    assert cached_engine.prefix_cache.bytes <= cached_engine.prefix_cache.budget_bytes


@pytest.fixture(scope="module")
def lively_gpt2(plain_tokenizer):
    """A random GPT-2 with large weights: the default init repeats one token whatever it reads, which would hide
    a wrong cache; this one's tokens depend on every position."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(plain_tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=256,
        initializer_range=0.3,
        eos_token_id=plain_tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


def test_base_model_with_learned_positions_gives_the_same_tokens_from_the_cache(lively_gpt2, plain_tokenizer):
    eng = BatchEngine(lively_gpt2, plain_tokenizer, eos_ids=set(), prefix_cache_bytes=2**24).start()
    try:
        ids = plain_tokenizer.encode("System: be brief\nUser: hello\nAssistant:")
        more = ids + plain_tokenizer.encode(" hi\nUser: again\nAssistant:")
        results = [reply(eng, p) for p in (ids, ids, more)]
        assert eng.prefix_cache.stats.tokens_reused >= len(ids) * 2 - 1
    finally:
        eng.shutdown()
    for p, r in zip((ids, ids, more), results):
        assert r.text == expected(lively_gpt2, plain_tokenizer, p)
