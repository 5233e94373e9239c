"""The peers benchmark's client (``inference.bench_openai``): its figures come out right.

The server here is a FAKE: a few lines of ``http.server`` on loopback that stream canned OpenAI chunks. It stands
in for llama-server, ``transformers serve`` and the stack's ``/v1`` ONLY to test the client's counting and
arithmetic (which chunks are tokens, where the usage comes from, what a level adds up to) — never a server's
behaviour; the real servers are measured by ``python -m chatsite.bench_peers``, never in the test suite.
No assertion here depends on how long anything took.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.bench_openai import measure, summarize


class FakeOpenAI(BaseHTTPRequestHandler):
    """Streams, per request: a role-only chunk, an empty-content chunk, then ``max_tokens`` one-word content
    chunks, the usage chunk (unless ``send_usage`` is off) and ``[DONE]``; records every request body."""

    protocol_version = "HTTP/1.0"  # the stream ends when the connection closes, as after [DONE]
    bodies: list = []
    send_usage = True

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def chunk(delta, usage=None, choices=True):
            payload = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if choices else [],
                "usage": usage,
            }
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        chunk({"content": ""})
        for i in range(body["max_tokens"]):
            chunk({"content": f"w{i} "})
        if self.send_usage:
            usage = {
                "prompt_tokens": 7,
                "completion_tokens": body["max_tokens"],
                "total_tokens": 7 + body["max_tokens"],
            }
            chunk({}, usage=usage, choices=False)
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def fake():
    FakeOpenAI.bodies = []
    FakeOpenAI.send_usage = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_a_level_counts_usage_tokens_and_content_chunks(fake):
    prompts = ["a", "b", "c"]
    r = measure(fake, ["k1", "k2"], "m", prompts, 5, extra_body={"ignore_eos": True}, timeout_s=60)
    assert r["concurrency"] == 3
    assert (r["tokens_min"], r["tokens_max"], r["counted_by"]) == (5, 5, ["usage"])
    assert r["chunks_per_stream"] == 5  # the role-only and empty chunks are not tokens
    assert r["prompt_tokens"] == 7
    assert r["aggregate_tokens_per_s"] * r["wall_s"] == pytest.approx(15)  # every stream's tokens over the wall
    assert 0 < r["ttft_p50_ms"] <= r["ttft_p95_ms"] <= r["wall_s"] * 1000
    # The same request for every stream: greedy, streamed with usage, the server-specific extras passed through.
    assert sorted(b["messages"][0]["content"] for b in FakeOpenAI.bodies) == prompts
    for b in FakeOpenAI.bodies:
        assert (b["stream"], b["max_tokens"], b["temperature"], b["ignore_eos"]) == (True, 5, 0, True)
        assert b["stream_options"] == {"include_usage": True}


def test_without_usage_the_content_chunks_are_counted_and_the_row_says_so(fake):
    FakeOpenAI.send_usage = False
    r = measure(fake, ["k"], "m", ["a", "b"], 4, timeout_s=60)
    assert (r["tokens_min"], r["tokens_max"], r["counted_by"], r["prompt_tokens"]) == (4, 4, ["chunks"], None)
    assert "ignore_eos" not in FakeOpenAI.bodies[0]


def test_level_arithmetic():
    """Made-up stream records (seconds): the figures are what the module's docstring says they are."""
    runs = [
        {"sent": 0.0, "first": 0.1, "end": 2.1, "tokens": 9, "chunks": 9, "counted": "usage", "prompt_tokens": 40},
        {"sent": 0.0, "first": 0.3, "end": 4.3, "tokens": 9, "chunks": 9, "counted": "usage", "prompt_tokens": 40},
        {"sent": 0.5, "first": 1.0, "end": 3.0, "tokens": 5, "chunks": 5, "counted": "usage", "prompt_tokens": 40},
    ]
    r = summarize(runs, start=0.0)
    assert r["wall_s"] == pytest.approx(4.3)
    assert r["aggregate_tokens_per_s"] == pytest.approx(23 / 4.3)
    # Per stream: tokens after the first over the time after the first: 8/2, 8/4, 4/2 -> median 2.0.
    assert r["per_stream_tokens_per_s"] == pytest.approx(2.0)
    assert r["ttft_p50_ms"] == pytest.approx(300) and r["ttft_p95_ms"] == pytest.approx(500)
    assert (r["tokens_min"], r["tokens_max"]) == (5, 9)
