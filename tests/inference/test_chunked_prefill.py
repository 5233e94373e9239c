"""Chunked prefill and the KV memory budget, with tiny random models: the same tokens as ``generate``; every
round computes at most its budget of prompt tokens before a decode step; long prompts arriving together start
in turn; the batch's keys and values never pass the memory budget, and what waits is told its place.

Each rule is checked by counting what the model was asked to compute (a forward pre-hook notes every forward's
input ids), never by timing."""

import time

import pytest
import torch

from inference.budget import cache_bytes, grown_width, token_bytes
from inference.engine import BatchEngine, GenerationRequest
from inference.output import Finished, Piece, Queued
from inference.sampling import SamplingParams
from tests.helpers.tiny import tiny_llama as build_tiny_llama
from tests.inference.test_engine import greedy_reference


class ForwardLog:
    """Every forward the engine runs, in order: its input ids (rows × tokens) and, taken at that moment on the
    engine's own thread, the bytes the running batch's keys and values hold."""

    def __init__(self, engine: BatchEngine):
        self.forwards: list[list[list[int]]] = []
        self.kv_bytes: list[int] = []
        self._hook = engine.model.register_forward_pre_hook(self._note, with_kwargs=True)
        self._engine = engine
        # The log sees the model's own forward: decode steps go through it, not through the engine's own
        # (fused.py, whose steps test_fused.py checks); these tests are about which forwards run when.
        engine.direct_decode = False

    def _note(self, module, args, kwargs):
        self.forwards.append(kwargs["input_ids"].tolist())
        self.kv_bytes.append(cache_bytes(self._engine._batch.cache))

    def close(self):
        self._hook.remove()

    def is_decode(self, i: int) -> bool:
        """A decode step feeds one token per running row; a prefill forward feeds prompt tokens."""
        return all(len(r) == 1 for r in self.forwards[i])

    def prefill_tokens_between_decodes(self) -> list[int]:
        """Prompt tokens computed in each stretch between two decode steps (what running streams waited for)."""
        stretches, tokens = [], 0
        for i, rows in enumerate(self.forwards):
            if self.is_decode(i):
                stretches.append(tokens)
                tokens = 0
            else:
                tokens += sum(len(r) for r in rows)
        stretches.append(tokens)
        return stretches

    def chunks_of(self, prompt: list[int]) -> list[int]:
        """Indexes of the forwards that computed part of ``prompt`` (one row whose ids are a run of it)."""
        found = []
        for i, rows in enumerate(self.forwards):
            if len(rows) == 1 and len(rows[0]) > 1 and _is_run_of(rows[0], prompt):
                found.append(i)
        return found


def _is_run_of(ids: list[int], prompt: list[int]) -> bool:
    n = len(ids)
    return any(prompt[s : s + n] == ids for s in range(len(prompt) - n + 1))


def long_prompt(tokenizer, n: int, salt: int) -> list[int]:
    """``n`` distinct-looking token ids (a different run for each ``salt``), within the tokenizer's vocabulary."""
    g = torch.Generator().manual_seed(salt)
    return torch.randint(100, len(tokenizer) - 100, (n,), generator=g).tolist()


def start_streams(engine, tokenizer, count: int, max_new_tokens: int, name: str = "Stream {i}") -> list:
    """``count`` short requests, returned once every one of them is decoding (has written its first piece)."""
    handles = [
        engine.submit(
            GenerationRequest(tokenizer.encode(name.format(i=i)), SamplingParams(max_new_tokens=max_new_tokens))
        )
        for i in range(count)
    ]
    assert all(isinstance(h.get(timeout=30), Piece) for h in handles)
    return handles


def events(handle) -> list:
    return list(handle)


def text_of(evts) -> str:
    done = evts[-1]
    assert isinstance(done, Finished), done
    return done.text


@pytest.mark.parametrize("prefix_cache", [0, 2**24])
def test_chunked_prefill_gives_the_tokens_of_generate(tiny_llama, tokenizer, prefix_cache):
    engine = BatchEngine(
        tiny_llama, tokenizer, max_batch_size=4, eos_ids=set(), prefill_chunk=16, prefix_cache_bytes=prefix_cache
    ).start()
    try:
        base = long_prompt(tokenizer, 70, salt=1)
        prompts = [base, base[:50] + long_prompt(tokenizer, 33, salt=2), long_prompt(tokenizer, 9, salt=3)]
        expected = [
            tokenizer.decode(greedy_reference(tiny_llama, tokenizer, p, 10), skip_special_tokens=True) for p in prompts
        ]
        log = ForwardLog(engine)
        starts = []  # where each prompt's forwards begin in the log
        for prompt, text in zip(prompts, expected):  # one after another: the second starts from the first's states
            starts.append(len(log.forwards))
            assert text_of(events(engine.submit(GenerationRequest(prompt, SamplingParams(max_new_tokens=10))))) == text
        assert log.chunks_of(prompts[0])  # the long one was computed in chunks …
        assert all(len(log.forwards[i][0]) <= 16 for i in log.chunks_of(prompts[0]))  # … of at most 16 tokens
        if prefix_cache:  # the second computed only what the cache did not hold: its last 33 tokens, in chunks
            second = [i for i in log.chunks_of(prompts[1]) if starts[1] <= i < starts[2]]
            assert [len(log.forwards[i][0]) for i in second] == [16, 16]  # and the last token …
            assert log.forwards[second[-1] + 1] == [[prompts[1][-1]]]  # … alone, its first logits
        assert engine.stats()["prefill_chunks"] >= 5 + 3
        log.close()
    finally:
        engine.shutdown()


def test_a_seeded_reply_samples_the_same_tokens_chunked_or_whole(tiny_llama, tokenizer):
    prompt = long_prompt(tokenizer, 60, salt=4)
    texts = []
    for chunk in (0, 8):
        engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set(), prefill_chunk=chunk).start()
        params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
        texts.append(text_of(events(engine.submit(GenerationRequest(prompt, params)))))
        engine.shutdown()
    assert texts[0] == texts[1]


def test_running_streams_wait_for_at_most_one_chunk_while_a_long_prompt_arrives(tiny_llama, tokenizer):
    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=8, eos_ids=set(), prefill_chunk=24).start()
    log = ForwardLog(engine)
    try:
        running = start_streams(engine, tokenizer, 4, 60)
        prompt = long_prompt(tokenizer, 300, salt=5)
        late = engine.submit(GenerationRequest(prompt, SamplingParams(max_new_tokens=5)))
        assert len(text_of(events(late))) > 0
        for h in running:
            assert isinstance(events(h)[-1], Finished)
        chunks = log.chunks_of(prompt)
        assert len(chunks) == 300 // 24 + 1  # 13 chunks: 12 of 24 tokens and one of 12
        # Between two of its chunks the running streams got a decode step every time …
        assert all(any(log.is_decode(i) for i in range(a + 1, b)) for a, b in zip(chunks, chunks[1:]))
        # … and no stretch between decode steps computed more prompt tokens than the round's budget.
        assert max(log.prefill_tokens_between_decodes()[1:]) <= 24
    finally:
        log.close()
        engine.shutdown()


def test_while_replies_decode_a_round_computes_at_most_the_smaller_budget(tiny_llama, tokenizer):
    """The whole budget with nothing decoding (no one waits), the decoding budget while replies stream."""
    engine = BatchEngine(
        tiny_llama, tokenizer, max_batch_size=8, eos_ids=set(), prefill_chunk=64, prefill_chunk_decoding=16
    ).start()
    log = ForwardLog(engine)
    try:
        alone = long_prompt(tokenizer, 200, salt=11)
        assert len(text_of(events(engine.submit(GenerationRequest(alone, SamplingParams(max_new_tokens=3)))))) > 0
        assert [len(log.forwards[i][0]) for i in log.chunks_of(alone)] == [64, 64, 64, 8]  # idle: whole budget
        running = start_streams(engine, tokenizer, 4, 300)
        mark = len(log.forwards)
        late = long_prompt(tokenizer, 100, salt=12)
        assert len(text_of(events(engine.submit(GenerationRequest(late, SamplingParams(max_new_tokens=3)))))) > 0
        for h in running:
            assert isinstance(events(h)[-1], Finished)
        chunks = [i for i in log.chunks_of(late) if i >= mark]
        assert [len(log.forwards[i][0]) for i in chunks] == [16] * 6 + [4]  # decoding: the smaller budget
        assert all(any(log.is_decode(i) for i in range(a + 1, b)) for a, b in zip(chunks, chunks[1:]))
    finally:
        log.close()
        engine.shutdown()


def test_while_replies_decode_a_prompt_within_the_whole_budget_is_computed_whole(tiny_llama, tokenizer):
    """Only a long prompt is held to the decoding budget: it needs many rounds, each widening the running streams'
    gaps. One that fits the round's whole budget costs them one wider gap, and its own first token would wait
    for several rounds of everyone's decoding if it were cut (a person's usual message: the fairness goal)."""
    engine = BatchEngine(
        tiny_llama, tokenizer, max_batch_size=8, eos_ids=set(), prefill_chunk=64, prefill_chunk_decoding=16
    ).start()
    log = ForwardLog(engine)
    try:
        running = start_streams(engine, tokenizer, 4, 300)
        short = long_prompt(tokenizer, 50, salt=13)
        assert len(text_of(events(engine.submit(GenerationRequest(short, SamplingParams(max_new_tokens=3)))))) > 0
        for h in running:
            assert isinstance(events(h)[-1], Finished)
        assert [len(log.forwards[i][0]) for i in log.chunks_of(short)] == [50]  # one forward, not 16 + 16 + …
    finally:
        log.close()
        engine.shutdown()


def test_eight_long_prompts_arriving_together_start_streaming_in_turn(tiny_llama, tokenizer):
    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=8, eos_ids=set(), prefill_chunk=32)
    log = ForwardLog(engine)
    try:
        prompts = [long_prompt(tokenizer, 100, salt=10 + i) for i in range(8)]
        handles = engine.submit_many([GenerationRequest(p, SamplingParams(max_new_tokens=40)) for p in prompts])
        for h in handles:
            assert isinstance(events(h)[-1], Finished)
        spans = [log.chunks_of(p) for p in prompts]
        assert all(len(s) == 4 for s in spans)  # 32 + 32 + 32 + 4
        # One prompt after another: each is computed whole before the next one's first chunk …
        assert all(a[-1] < b[0] for a, b in zip(spans, spans[1:]))
        # … and the first ones are decoding (their replies streaming) while the later ones are prefilled.
        first_decode_after = [next(i for i in range(s[-1] + 1, len(log.forwards)) if log.is_decode(i)) for s in spans]
        assert all(first_decode_after[i] < spans[i + 1][-1] for i in range(7))  # each streams before the next
        assert sum(log.is_decode(i) for i in range(spans[-1][0])) >= 2 * 6  # steps of the first ones meanwhile
    finally:
        log.close()
        engine.shutdown()


def test_a_prompt_cancelled_in_mid_chunks_ends_and_the_next_one_starts(tiny_llama, tokenizer):
    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set(), prefill_chunk=4)
    try:
        doomed = engine.submit(GenerationRequest(long_prompt(tokenizer, 400, salt=6), SamplingParams(max_new_tokens=5)))
        for _ in range(3000):  # at most 30 s
            if engine.stats()["prefill_chunks"] >= 3:
                break
            time.sleep(0.01)
        doomed.cancel()
        after = engine.submit(GenerationRequest(tokenizer.encode("Hello"), SamplingParams(max_new_tokens=3)))
        done = events(doomed)[-1]
        assert done.reason == "cancelled" and done.completion_tokens == 0
        assert events(after)[-1].completion_tokens == 3
        assert engine.stats()["prefill_chunks"] < 100  # it stopped long before its 100 chunks
    finally:
        engine.shutdown()


def test_a_prompt_failing_in_its_last_chunk_ends_with_an_error_and_the_engine_serves_on(tiny_llama, tokenizer):
    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set(), prefill_chunk=16)
    try:
        bad = long_prompt(tokenizer, 40, salt=8)
        bad[-1] = len(tokenizer) + 10_000  # no such token: the last chunk's forward fails
        done = events(engine.submit(GenerationRequest(bad, SamplingParams(max_new_tokens=5))))[-1]
        assert done.reason == "error" and "IndexError" in done.error
        assert engine.stats()["prefill_chunks"] == 2  # the two chunks before it went through
        ok = events(engine.submit(GenerationRequest(tokenizer.encode("Fine"), SamplingParams(max_new_tokens=4))))
        assert ok[-1].reason == "length" and ok[-1].completion_tokens == 4
        assert engine._waiting.served("") is None  # nothing is left counted as running for its person
    finally:
        engine.shutdown()


# --- the KV memory budget -----------------------------------------------------------------------------------
def test_the_batch_keeps_within_its_kv_budget_and_queues_the_rest_with_their_places(tokenizer):
    model = build_tiny_llama(tokenizer, max_positions=2048)
    per_token = token_bytes(model.config, 4)
    prompt_len, new = 1990, 10
    budget = 4 * grown_width(prompt_len + new) * per_token  # four rows of 2,000 tokens, and their spare room
    engine = BatchEngine(model, tokenizer, max_batch_size=16, eos_ids=set(), kv_budget_bytes=budget)
    log = ForwardLog(engine)
    try:
        prompts = [long_prompt(tokenizer, prompt_len, salt=20 + i) for i in range(16)]
        handles = engine.submit_many([GenerationRequest(p, SamplingParams(max_new_tokens=new)) for p in prompts])
        results = [events(h) for h in handles]
        assert all(r[-1].reason == "length" and r[-1].completion_tokens == new for r in results)
        assert engine.counts.peak_rows == 4  # never more rows than fit …
        # … and the cache's whole allocation, measured at every forward, stayed within it (and was used)
        assert 3 * budget // 4 < max(log.kv_bytes) <= budget
        assert sum(any(isinstance(e, Queued) for e in r) for r in results) == 12  # the rest were told their place
        assert engine.stats()["kv_budget_bytes"] == budget
    finally:
        log.close()
        engine.shutdown()


def test_a_request_larger_than_the_budget_runs_alone_rather_than_never(tiny_llama, tokenizer):
    per_token = token_bytes(tiny_llama.config, 4)
    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=4, eos_ids=set(), kv_budget_bytes=10 * per_token)
    try:
        handles = engine.submit_many(
            [GenerationRequest(tokenizer.encode(f"Tell me {i}"), SamplingParams(max_new_tokens=20)) for i in range(3)]
        )
        assert all(events(h)[-1].completion_tokens == 20 for h in handles)
        assert engine.counts.peak_rows == 1
    finally:
        engine.shutdown()
