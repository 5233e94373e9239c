"""The batching engine with tiny random models: same tokens as ``generate``, joins and leaves, stops."""

import queue
import time

import pytest
import torch

from inference.engine import BatchEngine, GenerationRequest
from inference.output import Finished, Piece, coalesce
from inference.sampling import SamplingParams

PROMPTS = [
    "Hello there",
    "What is the capital of France? Answer briefly.",
    "One",
    "Tell me a story about a cat",
    "2+2=",
]


def greedy_reference(model, tokenizer, prompt_ids, n):
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            min_new_tokens=n,
        )
    return out[0, ids.shape[1] :].tolist()


def run(handle):
    events = list(handle)
    pieces = [e.text for e in events if isinstance(e, Piece)]
    return pieces, events[-1]


@pytest.fixture
def engine(tiny_llama, tokenizer):
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=8, eos_ids=set()).start()
    yield eng
    eng.shutdown()


def test_batched_requests_that_join_midway_match_generate(engine, tiny_llama, tokenizer):
    n = 12
    ids = [tokenizer.encode(p) for p in PROMPTS]
    first = [engine.submit(GenerationRequest(i, SamplingParams(max_new_tokens=n))) for i in ids[:2]]
    head = first[0].get(timeout=30)
    assert isinstance(head, Piece)  # the batch is running when the others join
    later = [engine.submit(GenerationRequest(i, SamplingParams(max_new_tokens=n))) for i in ids[2:]]
    results = [run(h) for h in first] + [run(h) for h in later]
    results[0] = ([head.text] + results[0][0], results[0][1])
    for prompt_ids, (pieces, done) in zip(ids, results):
        expected = tokenizer.decode(greedy_reference(tiny_llama, tokenizer, prompt_ids, n), skip_special_tokens=True)
        assert done.reason == "length" and done.completion_tokens == n
        assert "".join(pieces) == done.text == expected
    assert engine.steps < len(ids) * n  # shared steps: fewer forward passes than one request after another
    assert engine.active == 0
    by_size = engine.stats()["decode_steps_at_batch_size"]
    assert sum(by_size) == engine.steps and by_size[len(ids)] > 0  # all five shared some steps


def test_cancel_ends_within_a_step_keeps_text_and_frees_the_row(engine, tokenizer):
    handle = engine.submit(GenerationRequest(tokenizer.encode("Go on"), SamplingParams(max_new_tokens=400)))
    other = engine.submit(GenerationRequest(tokenizer.encode("Other"), SamplingParams(max_new_tokens=30)))
    got = [handle.get(timeout=30) for _ in range(3)]
    handle.cancel()
    pieces, done = run(handle)
    assert done.reason == "cancelled"
    assert 3 <= done.completion_tokens < 400
    assert "".join(e.text for e in got) + "".join(pieces) == done.text
    assert run(other)[1].completion_tokens == 30  # the neighbour in the batch is untouched
    assert engine.active == 0


def test_cancel_that_overtakes_its_request_still_wins(engine, tokenizer):
    engine.cancel("early")
    handle = engine.submit(
        GenerationRequest(tokenizer.encode("Hi"), SamplingParams(max_new_tokens=50), request_id="early")
    )
    pieces, done = run(handle)
    assert done.reason == "cancelled" and done.completion_tokens == 0 and pieces == []


def test_eos_token_ends_the_reply_and_is_not_shown(tiny_llama, tokenizer):
    prompt = tokenizer.encode("Hello there")
    tokens = greedy_reference(tiny_llama, tokenizer, prompt, 6)
    eos = tokens[3]
    expected_tokens = tokens[: tokens.index(eos)]
    eng = BatchEngine(tiny_llama, tokenizer, eos_ids={eos}).start()
    try:
        pieces, done = run(eng.submit(GenerationRequest(prompt, SamplingParams(max_new_tokens=50))))
    finally:
        eng.shutdown()
    assert done.reason == "stop"
    assert done.completion_tokens == len(expected_tokens)
    assert done.text == tokenizer.decode(expected_tokens, skip_special_tokens=True)


def test_stop_string_of_a_base_model_truncates_the_reply(tiny_gpt2, plain_tokenizer):
    from inference.prompt import build_prompt

    prompt = build_prompt(plain_tokenizer, [{"role": "user", "content": "Hi"}], max_new_tokens=20, window=256)
    eng = BatchEngine(tiny_gpt2, plain_tokenizer, eos_ids=set()).start()
    try:
        _, free = run(eng.submit(GenerationRequest(prompt.input_ids, SamplingParams(max_new_tokens=20))))
        # Whatever this random model writes, a stop string taken from the middle of it must cut it there.
        stop = free.text[len(free.text) // 2 :][:3]
        assert stop.strip()
        pieces, done = run(
            eng.submit(GenerationRequest(prompt.input_ids, SamplingParams(max_new_tokens=20), stop_strings=(stop,)))
        )
    finally:
        eng.shutdown()
    assert done.reason == "stop"
    assert done.text == free.text[: free.text.index(stop)]
    assert "".join(pieces) == done.text


def test_a_failing_step_fails_its_requests_and_the_engine_keeps_serving(engine, tokenizer):
    bad = engine.submit(GenerationRequest([len(tokenizer) + 10_000], SamplingParams(max_new_tokens=5)))
    _, done = run(bad)
    assert done.reason == "error" and "IndexError" in done.error
    _, ok = run(engine.submit(GenerationRequest(tokenizer.encode("Fine"), SamplingParams(max_new_tokens=4))))
    assert ok.reason == "length" and ok.completion_tokens == 4


def test_prompt_filling_the_context_window_is_refused(tiny_llama, tokenizer):
    eng = BatchEngine(tiny_llama, tokenizer, context_window=8, eos_ids=set()).start()
    try:
        _, done = run(eng.submit(GenerationRequest(list(range(100, 110)), SamplingParams(max_new_tokens=4))))
        _, capped = run(eng.submit(GenerationRequest(list(range(100, 105)), SamplingParams(max_new_tokens=50))))
    finally:
        eng.shutdown()
    assert done.reason == "error" and "context window" in done.error
    assert capped.reason == "length" and capped.completion_tokens == 3


def test_coalesce_sends_the_first_piece_at_once_and_groups_the_rest(engine, tokenizer):
    handle = engine.submit(GenerationRequest(tokenizer.encode("Count"), SamplingParams(max_new_tokens=20)))
    chunks = list(coalesce(handle, flush_interval=60))
    assert chunks[0].finished is None and chunks[0].text  # first token alone, immediately
    assert len(chunks) == 2 and isinstance(chunks[-1].finished, Finished)  # the rest waited for the end
    assert "".join(c.text for c in chunks) == chunks[-1].finished.text


class ScriptedHandle:
    """A request's events at set times on a clock of its own (``now``): ``get`` returns the next event, moving the
    clock to its time, or moves the clock by ``timeout`` and raises ``queue.Empty`` when it comes later (a wake-up
    of the caller's thread for nothing but a timer, counted in ``timeouts``)."""

    def __init__(self, events: list[tuple[float, object]]):
        self.events, self.now, self.timeouts = list(events), 0.0, 0

    def monotonic(self) -> float:
        return self.now

    def get(self, timeout: float | None = None):
        at, event = self.events[0]
        if timeout is not None and at > self.now + timeout:
            self.now += timeout
            self.timeouts += 1
            raise queue.Empty
        self.now = max(self.now, at)
        return self.events.pop(0)[1]


def test_coalesce_sends_a_piece_at_once_after_a_quiet_interval_and_groups_only_a_burst(monkeypatch):
    """At most one chunk per interval (40 ms): a piece made after a quiet interval goes at once, with no timer (as
    each token of a CPU serving many streams, 60–100 ms apart); one that comes sooner waits for the interval's end,
    with the pieces of its burst."""
    import inference.output as output

    done = Finished("length", "abcdef", 5, 6)
    handle = ScriptedHandle(
        [(0.0, Piece("a", 1)), (0.1, Piece("b", 2)), (0.12, Piece("c", 3)), (0.13, Piece("d", 4))]
        + [(0.5, Piece("e", 5)), (0.6, Piece("f", 6)), (0.61, done)]
    )
    monkeypatch.setattr(output, "time", handle)
    chunks = [(c.text, round(handle.now, 3)) for c in coalesce(handle, flush_interval=0.04)]
    assert chunks == [("a", 0.0), ("b", 0.1), ("cd", 0.14), ("e", 0.5), ("f", 0.6), ("", 0.61)]
    assert handle.timeouts == 1  # only the burst's: the pieces that came alone each went with their arrival


def test_coalesce_asks_a_changing_interval_when_a_piece_comes_with_nothing_waiting(monkeypatch):
    """The worker widens the interval while it streams many replies: asked as a piece arrives with nothing
    buffered (a piece that joins a waiting burst goes at that burst's time)."""
    import inference.output as output

    handle = ScriptedHandle(
        [(0.0, Piece("a", 1)), (0.1, Piece("b", 2)), (0.15, Piece("c", 3)), (0.25, Piece("d", 4))]
        + [(0.3, Piece("e", 5)), (0.45, Piece("f", 6)), (0.5, Finished("length", "abcdef", 5, 6))]
    )
    monkeypatch.setattr(output, "time", handle)
    intervals = iter([0.2, 0.2, 0.04, 0.04, 0.04, 0.04])
    chunks = [(c.text, round(handle.now, 3)) for c in coalesce(handle, flush_interval=lambda: next(intervals))]
    assert chunks == [("a", 0.0), ("bc", 0.2), ("d", 0.25), ("e", 0.3), ("f", 0.45), ("", 0.5)]


def test_pieces_and_chunks_count_the_tokens_generated_so_far(engine, tokenizer):
    """The worker publishes this count as the reply's progress (the review panel's live page)."""
    handle = engine.submit(GenerationRequest(tokenizer.encode("Count to ten"), SamplingParams(max_new_tokens=12)))
    events = list(handle)
    counts = [e.tokens for e in events if isinstance(e, Piece)]
    assert counts[0] >= 1 and counts == sorted(counts) and counts[-1] <= events[-1].completion_tokens
    handle = engine.submit(GenerationRequest(tokenizer.encode("Count to ten"), SamplingParams(max_new_tokens=12)))
    chunks = list(coalesce(handle, flush_interval=0))
    assert chunks[0].tokens >= 1 and chunks[-1].tokens == chunks[-1].finished.completion_tokens
    assert [c.tokens for c in chunks] == sorted(c.tokens for c in chunks)


def test_sampled_requests_differ_but_stay_within_bounds(engine, tokenizer):
    prompt = tokenizer.encode("Say something")
    params = SamplingParams(temperature=1.5, top_p=0.95, max_new_tokens=10)
    texts = {run(engine.submit(GenerationRequest(prompt, params)))[1].text for _ in range(3)}
    assert len(texts) > 1
    # top_p so small that only the best token survives is greedy, whatever the temperature
    narrow = run(
        engine.submit(GenerationRequest(prompt, SamplingParams(temperature=2.0, top_p=1e-9, max_new_tokens=10)))
    )[1]
    greedy = run(engine.submit(GenerationRequest(prompt, SamplingParams(max_new_tokens=10))))[1]
    assert narrow.text == greedy.text


def test_a_seeded_request_samples_the_same_tokens_alone_or_batched_and_another_seed_differs(engine, tokenizer):
    prompt = tokenizer.encode("Say something")
    seeded = SamplingParams(temperature=1.0, max_new_tokens=12, seed=1234)
    alone = run(engine.submit(GenerationRequest(prompt, seeded)))[1].text
    # The same request again, joining a running batch of unseeded sampled and greedy rows midway.
    others = [
        engine.submit(GenerationRequest(tokenizer.encode(p), SamplingParams(temperature=t, max_new_tokens=30)))
        for p, t in zip(PROMPTS, (1.0, 0.0, 1.5))
    ]
    others[0].get(timeout=30)
    batched = engine.submit(GenerationRequest(prompt, seeded))
    again = run(batched)[1].text
    for handle in others:
        run(handle)
    other_seed = run(
        engine.submit(GenerationRequest(prompt, SamplingParams(temperature=1.0, max_new_tokens=12, seed=4321)))
    )[1].text
    unseeded = {
        run(engine.submit(GenerationRequest(prompt, SamplingParams(temperature=1.0, max_new_tokens=12))))[1].text
        for _ in range(2)
    }
    assert again == alone and other_seed != alone
    assert len(unseeded) == 2 and alone not in unseeded  # without a seed: the shared generator, as before


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -0.1}, {"temperature": 2.5}, {"top_p": 0}, {"top_p": 1.2}, {"max_new_tokens": 0}]
)
def test_sampling_params_out_of_bounds_are_refused(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


def test_handle_get_times_out_when_nothing_comes(engine):
    from inference.output import RequestHandle

    with pytest.raises(queue.Empty):
        RequestHandle("x", engine).get(timeout=0.05)
    time.sleep(0)
