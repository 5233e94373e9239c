"""A request's own state: how each sampled token is accepted and why the request ends, and its final event."""

import json
import queue

import pytest

from inference.detok import Detokenizer
from inference.engine import GenerationRequest
from inference.output import Finished, Piece, RequestHandle
from inference.request import FinishReason, Request, RequestStatus
from inference.sampling import SamplingParams


def make(tokenizer, prompt_len=3, max_new_tokens=50, stop_strings=()):
    generation = GenerationRequest(
        list(range(100, 100 + prompt_len)),
        SamplingParams(max_new_tokens=max_new_tokens),
        stop_strings=stop_strings,
        request_id="x",
    )
    return Request(generation, RequestHandle("x", engine=None), Detokenizer(tokenizer, stop_strings))


def events(req):
    """Everything the request has put on its handle so far."""
    out = []
    while True:
        try:
            out.append(req.handle.get(timeout=0))
        except queue.Empty:
            return out


def test_status_maps_to_the_public_finish_reasons():
    assert [s.reason for s in RequestStatus if s.finished] == list(FinishReason)
    assert not RequestStatus.WAITING.finished and RequestStatus.RUNNING.reason is None
    assert RequestStatus.for_reason(FinishReason.LENGTH) is RequestStatus.FINISHED_LENGTH
    assert RequestStatus.for_reason("length") is RequestStatus.FINISHED_LENGTH  # as stored or sent
    with pytest.raises(ValueError):
        RequestStatus.for_reason("running")


def test_finish_reasons_keep_their_wire_values():
    """Stored in the database and sent to the browser: the enum must read, compare and serialise as before."""
    assert [r.value for r in FinishReason] == ["stop", "length", "cancelled", "error"]
    assert FinishReason.STOP == "stop" and f"{FinishReason.CANCELLED}" == "cancelled"
    assert {"stop": 1}[FinishReason.STOP] == 1
    assert json.dumps({"reason": FinishReason.LENGTH}) == '{"reason": "length"}'


def test_accept_counts_tokens_releases_text_and_ends_at_max_new_tokens(tokenizer):
    tokens = tokenizer.encode(" one two three", add_special_tokens=False)
    req = make(tokenizer, max_new_tokens=len(tokens))
    reasons = [req.accept(t, eos_ids=set(), context_window=1000) for t in tokens]
    assert reasons == [None] * (len(tokens) - 1) + [FinishReason.LENGTH]
    assert req.completion_tokens == len(tokens) and req.sampled == tokens and req.first_token_at is not None
    assert "".join(e.text for e in events(req)) == " one two three"
    assert not req.status.finished  # ending it is the engine's call


def test_end_of_turn_token_stops_without_counting_and_context_window_ends_by_length(tokenizer):
    req = make(tokenizer)
    eos = tokenizer.eos_token_id
    assert req.accept(eos, eos_ids={eos}, context_window=1000) is FinishReason.STOP
    assert req.completion_tokens == 0 and req.sampled == [eos]
    capped = make(tokenizer, prompt_len=3)
    word = tokenizer.encode(" a", add_special_tokens=False)[0]
    assert [capped.accept(word, eos_ids=set(), context_window=5) for _ in range(2)] == [None, FinishReason.LENGTH]


def test_stop_string_ends_the_request_and_is_not_released(tokenizer):
    req = make(tokenizer, stop_strings=("\nUser:",))
    tokens = iter(tokenizer.encode("Sure.\nUser: more", add_special_tokens=False))
    while (reason := req.accept(next(tokens), eos_ids=set(), context_window=1000)) is None:
        pass
    assert reason is FinishReason.STOP and list(tokens)  # ended at the stop string, before the text ran out
    req.finish(reason)
    *pieces, done = events(req)
    assert "".join(p.text for p in pieces) == done.text == "Sure."


def test_finish_sends_the_held_back_text_and_one_finished_event_with_timings(tokenizer):
    req = make(tokenizer, stop_strings=("\nUser:",))
    for t in tokenizer.encode("Hi\nUs", add_special_tokens=False):  # "\nUs" may start the stop string: held
        req.accept(t, eos_ids=set(), context_window=1000)
    req.finish(FinishReason.CANCELLED)
    req.finish(FinishReason.ERROR, error="too late")  # ignored: a request ends once
    got = events(req)
    assert isinstance(got[-1], Finished) and sum(isinstance(e, Finished) for e in got) == 1
    done = got[-1]
    assert "".join(e.text for e in got if isinstance(e, Piece)) == done.text == "Hi\nUs"
    assert done.reason is FinishReason.CANCELLED and req.status is RequestStatus.FINISHED_CANCELLED
    assert done.prompt_tokens == 3 and done.completion_tokens == req.completion_tokens
    assert done.ttft_s is not None and done.ttft_s >= 0 and req.handle.finished


def test_a_request_that_never_produced_a_token_has_no_timings(tokenizer):
    req = make(tokenizer)
    req.finish(FinishReason.ERROR, error="boom")
    (done,) = events(req)
    assert done.reason is FinishReason.ERROR and done.error == "boom"
    assert done.ttft_s is None and done.tokens_per_s is None
