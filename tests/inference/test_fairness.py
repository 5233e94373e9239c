"""Fair admission between people (inference/fairness.py): the waiting list on its own — order by person, tokens
counted, arrival within a person, places — then inside the engine with a tiny random Llama, where fairness
changes only who gets a free row, never what a request computes. Order is read from admissions, never clocks."""

import pytest

from inference.detok import Detokenizer
from inference.engine import BatchEngine, GenerationRequest
from inference.fairness import PROMPT_WEIGHT, REPLY_WEIGHT, FairQueue
from inference.output import Finished, Piece, Queued, RequestHandle
from inference.preemption import victim
from inference.request import Request
from inference.sampling import SamplingParams
from tests.inference.test_engine import greedy_reference


def req(name: str, key: str, prompt_len: int = 4) -> Request:
    generation = GenerationRequest(list(range(1, prompt_len + 1)), request_id=name, fair_key=key)
    return Request(generation, RequestHandle(name, engine=None), Detokenizer(None, ()))


def names(requests) -> list[str]:
    return [r.request_id for r in requests]


def test_a_person_arriving_behind_another_persons_five_gets_the_first_free_row():
    q = FairQueue()
    a = [req(f"a{i}", "A") for i in range(1, 7)]
    b = req("b1", "B")
    q.put_many([*a, b])  # A,A,A,A,A,A,B in arrival order
    assert names(q.take(1)) == ["a1"]  # one row: A's first (nobody served yet, A came first)
    assert names(q.take(1)) == ["b1"]  # the next free row: B, served least — not after A's five
    assert names(q.take(5)) == ["a2", "a3", "a4", "a5", "a6"]  # within a person, arrival order


def test_free_rows_go_round_robin_by_person_then_by_arrival():
    q = FairQueue()
    q.put_many([req("a1", "A"), req("a2", "A"), req("a3", "A"), req("b1", "B"), req("b2", "B"), req("c1", "C")])
    q.put_many([req("b3", "B")])
    assert names(q.take(7)) == ["a1", "b1", "c1", "a2", "b2", "a3", "b3"]


def test_a_person_running_six_long_replies_waits_behind_one_who_has_none():
    q = FairQueue()
    running = [req(f"a{i}", "A") for i in range(6)]
    q.put_many(running)
    q.take(6)
    for r in running:  # they decode: A is served
        q.charge([r], 10)
    q.put_many([req("a6", "A"), req("b1", "B")])
    q.done(running[0])  # a row frees
    assert names(q.take(1)) == ["b1"]
    # B came in at the least counter in service (A's), not at 0: its turn, not a banked head start; the tie on
    # the counter goes to the person with fewer rows running.
    served_a = 6 * 4 * PROMPT_WEIGHT + 6 * 10 * REPLY_WEIGHT
    assert (q.served("A"), q.served("B")) == (served_a, served_a + 4 * PROMPT_WEIGHT)


def test_the_counter_counts_prompt_and_reply_tokens_served():
    q = FairQueue()
    long = req("a1", "A", prompt_len=100)
    q.put_many([long, *[req(f"b{i}", "B", prompt_len=10) for i in range(1, 13)], req("a2", "A", prompt_len=10)])
    assert names(q.take(1)) == ["a1"]
    assert q.served("A") == 100 * PROMPT_WEIGHT
    q.charge([long], 5)  # five reply tokens
    assert q.served("A") == 100 * PROMPT_WEIGHT + 5 * REPLY_WEIGHT
    # B catches up token for token: eleven 10-token prompts reach A's 110, and on the tie A (one row running
    # against B's eleven) goes first.
    assert names(q.take(13)) == [f"b{i}" for i in range(1, 12)] + ["a2", "b12"]


def test_a_key_with_nothing_waiting_or_running_is_forgotten_and_comes_back_at_the_least_counter():
    q = FairQueue()
    a1, b1 = req("a1", "A", prompt_len=50), req("b1", "B", prompt_len=5)
    q.put_many([a1, b1])
    q.take(2)
    q.done(b1)
    assert q.served("B") is None  # idle: no credit or debt kept
    q.put_many([req("b2", "B")])
    assert q.served("B") == q.served("A") == 50  # joins at the least counter in service
    q.done(a1)
    q.done(a1)  # a second end does nothing
    assert q.served("A") is None


def test_cancelled_waiting_requests_leave_and_the_token_budget_bounds_a_round():
    q = FairQueue()
    q.put_many([req("a1", "A", 30), req("a2", "A", 30), req("b1", "B", 30), req("c1", "C", 30)])
    assert names(q.remove(lambda r: r.request_id == "a2")) == ["a2"]
    assert names(q.take(3, token_budget=70)) == ["a1", "b1"]  # a third prompt would pass the budget
    assert names(q.take(3, token_budget=10)) == ["c1"]  # the first is always taken, however long
    assert len(q) == 0


def test_places_are_the_order_the_waiting_list_would_admit_in():
    q = FairQueue()
    a = [req(f"a{i}", "A") for i in range(4)]
    q.put_many([*a, req("b1", "B"), req("c1", "C")])
    q.take(1)  # a0 runs
    places = {r.request_id: n for r, n in q.ahead().items()}
    assert places == {"b1": 0, "c1": 1, "a1": 2, "a2": 3, "a3": 4}
    assert names(q.take(5)) == sorted(places, key=places.get)


# --- inside the engine ---------------------------------------------------------------------------------------
def note_admissions(engine) -> list[str]:
    """The engine's admissions in order, noted from its waiting list's own ``take`` (which still does the work)."""
    admitted = []
    take = engine._waiting.take

    def noting(*args, **kwargs):
        got = take(*args, **kwargs)
        admitted.extend(r.request_id for r in got)
        return got

    engine._waiting.take = noting
    return admitted


@pytest.fixture
def one_row(tiny_llama, tokenizer):
    """An engine with one row, whose admissions are noted in order."""
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=1, eos_ids=set())
    eng.admitted = note_admissions(eng)
    yield eng
    eng.shutdown()


def submit_all(engine, tokenizer, specs, max_new_tokens=6):
    ids = tokenizer.encode("Once upon a time")
    requests = [
        GenerationRequest(ids + [i], SamplingParams(max_new_tokens=max_new_tokens), request_id=name, fair_key=key)
        for i, (name, key) in enumerate(specs)
    ]
    return requests, engine.submit_many(requests)


def test_the_engine_admits_the_waiting_person_served_least_at_each_free_row(one_row, tokenizer):
    _, handles = submit_all(one_row, tokenizer, [(f"a{i}", "7") for i in range(1, 7)] + [("b1", "8")])
    for handle in handles:
        assert isinstance(list(handle)[-1], Finished)
    assert one_row.admitted == ["a1", "b1", "a2", "a3", "a4", "a5", "a6"]


def test_waiting_requests_are_told_their_place_when_it_changes(one_row, tokenizer):
    _, handles = submit_all(one_row, tokenizer, [("a1", "7"), ("a2", "7"), ("a3", "7"), ("b1", "8")])
    events = {h.request_id: list(h) for h in handles}
    places = {rid: [e.ahead for e in got if isinstance(e, Queued)] for rid, got in events.items()}
    assert places == {"a1": [], "b1": [0], "a2": [1, 0], "a3": [2, 1, 0]}
    for got in events.values():  # every place comes before the reply's first text
        kinds = [type(e) for e in got]
        assert Queued not in kinds[kinds.index(Piece) :]
    assert one_row.stats()["waiting"] == 0


def test_a_request_cancelled_while_waiting_ends_at_once_and_those_behind_move_up(one_row, tokenizer):
    _, handles = submit_all(one_row, tokenizer, [("a1", "7"), ("b1", "8"), ("c1", "9")], max_new_tokens=64)
    assert handles[1].get(timeout=30) == Queued(0)  # b1 waits behind a1's reply, next in line
    one_row.cancel("b1")
    b_events = list(handles[1])
    assert not handles[0].finished  # b1 ended while a1 still ran, not when its turn came
    assert b_events[-1].reason == "cancelled" and b_events[-1].completion_tokens == 0
    c_places = [e.ahead for e in handles[2] if isinstance(e, Queued)]
    assert c_places == [1, 0]
    assert one_row.admitted == ["a1", "c1"]
    assert list(handles[0])[-1].completion_tokens == 64


def test_fair_order_changes_who_goes_first_never_the_tokens(tiny_llama, tokenizer):
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set())
    try:
        specs = [("a1", "7"), ("a2", "7"), ("a3", "7"), ("a4", "7"), ("b1", "8"), ("c1", "9")]
        requests, handles = submit_all(eng, tokenizer, specs, max_new_tokens=8)
        for request, handle in zip(requests, handles):
            done = list(handle)[-1]
            reference = greedy_reference(tiny_llama, tokenizer, request.input_ids, 8)
            want = tokenizer.decode(reference, skip_special_tokens=True)
            assert done.reason == "length" and done.text == want, request.request_id
    finally:
        eng.shutdown()


def test_a_person_with_six_long_replies_running_does_not_hold_back_anothers_first(tiny_llama, tokenizer):
    """The issue's crowd: A keeps six replies running and six more waiting; B's one reply, sent while A's run, is
    admitted at the first free row — before A's six waiting, which all came first."""
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=6, eos_ids=set(), preempt=False)  # rows as they free
    admitted = note_admissions(eng)
    try:
        _, a_handles = submit_all(eng, tokenizer, [(f"a{i}", "7") for i in range(12)], max_new_tokens=16)
        assert isinstance(a_handles[0].get(timeout=30), Piece)  # A's first six are decoding
        _, [b] = submit_all(eng, tokenizer, [("b1", "8")], max_new_tokens=4)
        assert list(b)[-1].completion_tokens == 4
        for handle in a_handles:
            assert list(handle)[-1].reason == "length"
    finally:
        eng.shutdown()
    assert admitted == [f"a{i}" for i in range(6)] + ["b1"] + [f"a{i}" for i in range(6, 12)]


# --- preemption (inference/preemption.py) -----------------------------------------------------------------------
def test_a_preempted_request_waits_again_in_its_persons_line_by_arrival_and_is_not_charged_twice():
    q = FairQueue()
    a1, a2, a3, a4, b1 = req("a1", "A"), req("a2", "A"), req("a3", "A"), req("a4", "A"), req("b1", "B")
    q.put_many([a1, a2, a3, a4])
    assert names(q.take(3)) == ["a1", "a2", "a3"]
    assert q.starving() is None  # A is next in line, and runs three already
    q.put_many([b1])
    assert q.starving() == (b1, q.served("A"))  # B is next (it joins at the least counter), with nothing running
    a3.sampled, a2.sampled = [7], [7, 8]  # each has written when its row is taken back
    served = q.served("A")
    q.requeue(a3)
    q.requeue(a2)  # taken back later, but it came first: back before a3
    assert q.ahead() == {b1: 0, a2: 1, a3: 2, a4: 3}
    assert names(q.take(3)) == ["b1", "a2", "a3"]
    assert q.served("A") == served  # taken up again: their prompts were charged the first time
    q.requeue(req("x", "A"))  # never taken: nothing happens
    assert len(q) == 1 and q.starving() is None


def test_the_victim_is_the_youngest_row_of_whoever_holds_most_never_a_persons_last_nor_a_row_just_joined():
    rows = [req(n, k) for n, k in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("a3", "A"), ("b2", "B"), ("c1", "C")]]
    for r, written in zip(rows, [50, 40, 9, 30, 20, 5]):
        r.completion_tokens, r.sampled = written, [1] * written
    served = {"A": 500, "B": 300, "C": 10}.get

    def pick(at_least, among=rows):
        i = victim(among, served, at_least)
        return None if i is None else among[i].request_id

    assert pick(100) == "a2"  # A holds most; a2 has written least
    assert pick(400) == "a2"
    assert pick(501) is None  # the newcomer has been served more than anyone holding two: the row would go back
    assert pick(100, [r for r in rows if r.request_id != "a3"]) == "a2"  # A and B hold two each: the first's
    assert pick(0, [rows[0], rows[5]]) is None  # everyone keeps one
    rows[2].sampled = []  # a2 joined this round and has written nothing yet: its person's next youngest
    assert pick(100) == "a3"


def stream(handle, until_piece=False) -> list:
    """A handle's events so far (up to its first piece), or all of them."""
    events = []
    for event in handle:
        events.append(event)
        if until_piece and isinstance(event, Piece):
            break
    return events


@pytest.mark.parametrize("prefix_cache", [0, 2**24], ids=["recomputed", "from-the-prefix-cache"])
def test_a_person_with_nothing_running_takes_a_row_from_one_running_two_and_no_token_changes(
    tiny_llama, tokenizer, prefix_cache
):
    """Both rows are A's; B's one reply starts at once (A's youngest row waits again), and A's two replies are the
    tokens `generate` writes — whether the preempted one is prefilled again or taken up from the prefix cache."""
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set(), prefix_cache_bytes=prefix_cache)
    admitted = note_admissions(eng)
    try:
        a_requests, a_handles = submit_all(eng, tokenizer, [("a1", "7"), ("a2", "7")], max_new_tokens=400)
        a_events = [stream(h, until_piece=True) for h in a_handles]  # both decoding: every row is A's
        _, [b] = submit_all(eng, tokenizer, [("b1", "8")], max_new_tokens=4)
        b_events = list(b)
        assert not a_handles[0].finished and not a_handles[1].finished  # B ended while both of A's still ran
        for events, handle in zip(a_events, a_handles):
            events += list(handle)
        stats = eng.stats()
    finally:
        eng.shutdown()
    assert b_events[-1].completion_tokens == 4 and not any(isinstance(e, Queued) for e in b_events)
    assert stats["preemptions"] == 1
    assert admitted == ["a1", "a2", "b1", "a2"]  # a2 had written least (it came second): its row went to B
    kinds = [type(e) for e in a_events[1]]
    assert Queued in kinds[kinds.index(Piece) :]  # its person is told it waits again, under its text so far
    if prefix_cache:  # a1, a2, b1, then a2 again: each found all of its prompt but the last token cached — a2's
        # second time its prompt and what it had written, so it joined the batch computing nothing again
        assert stats["prefix_lookups"] == 4
        assert stats["prefix_tokens_looked_up"] - stats["prefix_tokens_reused"] == 4
    for request, events in zip(a_requests, a_events):
        done = events[-1]
        reference = greedy_reference(tiny_llama, tokenizer, request.input_ids, 400)
        assert done.reason == "length" and done.completion_tokens == 400
        assert done.text == tokenizer.decode(reference, skip_special_tokens=True), request.request_id
        assert "".join(e.text for e in events if isinstance(e, Piece)) == done.text


def test_a_preempted_seeded_reply_draws_one_number_per_token_from_its_own_generator(tiny_llama, tokenizer):
    """Taken back and taken up again, a seeded reply keeps its generator: it has drawn exactly one number per token
    sampled, as a reply never preempted, so it samples what it would have. (Its tokens equal a run alone only up to
    float rounding, as for any batching: the greedy test above checks the tokens themselves.)"""
    import torch

    ids = tokenizer.encode("Once upon a time")
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set())
    requests = {}
    take = eng._waiting.take

    def noting(*args, **kwargs):
        got = take(*args, **kwargs)
        requests.update({r.request_id: r for r in got})
        return got

    eng._waiting.take = noting
    try:
        first = eng.submit(GenerationRequest(ids + [5], SamplingParams(max_new_tokens=400), fair_key="A"))
        stream(first, until_piece=True)
        params = SamplingParams(max_new_tokens=300, temperature=1.0, top_p=0.9, seed=11)
        seeded = eng.submit(GenerationRequest(ids, params, request_id="s", fair_key="A"))  # joins later: the victim
        events = stream(seeded, until_piece=True)
        _, [b] = submit_all(eng, tokenizer, [("b1", "8")], max_new_tokens=4)
        list(b)
        events += list(seeded)
        list(first)
        preempted = eng.stats()["preemptions"]
    finally:
        eng.shutdown()
    kinds = [type(e) for e in events]
    assert preempted == 1 and Queued in kinds[kinds.index(Piece) :]  # the seeded one was taken back
    reply = requests["s"]
    assert len(reply.sampled) == 300
    fresh = torch.Generator().manual_seed(11)
    for _ in range(300):
        torch.rand(1, generator=fresh)
    assert torch.equal(reply.generator.get_state(), fresh.get_state())


def test_without_preemption_a_person_with_nothing_running_waits_for_a_free_row(tiny_llama, tokenizer):
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set(), preempt=False)
    admitted = note_admissions(eng)
    try:
        _, a_handles = submit_all(eng, tokenizer, [("a1", "7"), ("a2", "7")], max_new_tokens=400)
        for h in a_handles:
            stream(h, until_piece=True)
        _, [b] = submit_all(eng, tokenizer, [("b1", "8")], max_new_tokens=4)
        assert b.get(timeout=30) == Queued(0)
        eng.cancel("a1")  # a row frees: B's turn
        b_events = list(b)
        stats = eng.stats()
    finally:
        eng.shutdown()
    assert b_events[-1].completion_tokens == 4 and stats["preemptions"] == 0
    assert admitted == ["a1", "a2", "b1"]


def test_requests_still_waiting_end_when_the_engine_shuts_down(tiny_llama, tokenizer):
    eng = BatchEngine(tiny_llama, tokenizer, max_batch_size=1, eos_ids=set())
    _, [running, waiting] = submit_all(eng, tokenizer, [("a1", "7"), ("a2", "7")], max_new_tokens=400)
    assert waiting.get(timeout=30) == Queued(0)
    eng.shutdown()
    assert list(waiting)[-1].reason == "cancelled" and list(running)[-1].reason == "cancelled"
