"""The ``tabs`` rows of ``chatsite.bench_stack``: many people, each with several tabs open, every tab sending at
once — what reaches the sockets, and when each first token comes.

Each tab is one websocket of its person, and sends its own new chat. A socket receives a reply's frames only for
the conversation it shows (``chat/realtime/showing.py``), so a token should reach one tab, not each of its
person's: the row counts every delta frame every tab received (its own reply's and any other's) against the delta
frames the replies were sent as, and keeps listening after its own reply ended until every reply has, so a copy
sent late is counted too. First tokens are given as quartiles over all replies, and as the slowest person's
first reply (with more replies than rows, people are taken in turn: ``inference/fairness.py``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections import Counter

from inference.bench import percentile

QUIET_S = 1.0  # once every reply has ended, a tab stops after this long without a frame


def new_chat(content: str, tokens: int, **extra) -> str:
    """The ``send`` frame of a benchmark's new chat: greedy, exactly ``tokens`` new tokens (end of turn ignored
    by the benchmark's worker)."""
    frame = {"type": "send", "conversation": None, "content": content}
    frame["params"] = {"max_new_tokens": tokens, "temperature": 0}
    return json.dumps({**frame, **extra})


async def _tab(url, origin, cookie, content, tokens, everyone: dict, deadline: float) -> dict:
    import websockets

    client_id = uuid.uuid4().hex
    own_conversation = own_message = first = end = None
    frames: Counter = Counter()
    deltas = completion = 0
    own: list[dict] = []  # the own reply's delta frames, in the order received
    stored = None  # the reply's text, from its done frame
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        sent = time.perf_counter()
        await ws.send(new_chat(content, tokens, client_id=client_id))
        while True:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), QUIET_S))
            except asyncio.TimeoutError:
                if everyone["done"].is_set():
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError("a tab's reply did not end in time") from None
                continue
            kind = frame["type"]
            frames[kind] += 1
            if kind == "error":
                raise RuntimeError(frame)
            if kind == "message":
                info = frame["message"]
                if frame.get("client_id") == client_id:  # the tab's own message, or its reply
                    own_conversation = info["conversation"]
                if info["role"] == "assistant" and info["conversation"] == own_conversation:
                    own_message = info["id"]
            elif kind == "delta":
                deltas += 1
                if frame["message"] == own_message:
                    own.append(frame)
                    first = first or time.perf_counter()
            elif kind == "done" and frame["message"] == own_message:
                end, completion = time.perf_counter(), frame["usage"]["completion_tokens"]
                stored = frame["content"]
                everyone["ended"] += 1
                if everyone["ended"] == everyone["replies"]:
                    everyone["done"].set()
    if first is None or end is None:
        raise RuntimeError(f"a tab saw no reply of its own: {dict(frames)}")
    return {
        "ttft_ms": (first - sent) * 1000,
        "tokens": completion,
        "deltas_received": deltas,
        "own_deltas": len(own),
        # every delta of its reply, in order, none missing: they join to the text its done frame carries
        "intact": [d["seq"] for d in own] == list(range(len(own))) and "".join(d["text"] for d in own) == stored,
        "frames": frames,
        "sent": sent,
        "end": end,
    }


async def tabs_level(url, origin, cookies, tabs: int, prompts, tokens) -> dict:
    """Every person (a cookie) opens ``tabs`` sockets and each sends one of ``prompts`` (people × tabs of them),
    all at once."""
    everyone = {"done": asyncio.Event(), "ended": 0, "replies": len(cookies) * tabs}
    deadline = time.perf_counter() + 900
    start = time.perf_counter()
    runs = await asyncio.gather(
        *(
            _tab(url, origin, cookie, prompts[p * tabs + t], tokens, everyone, deadline)
            for p, cookie in enumerate(cookies)
            for t in range(tabs)
        )
    )
    wall = max(r["end"] for r in runs) - start
    ttfts = [r["ttft_ms"] for r in runs]
    firsts = [min(ttfts[p * tabs : (p + 1) * tabs]) for p in range(len(cookies))]  # each person's first reply
    # The delta frames the replies were streamed as: each tab's own, checked complete (``replies_intact``).
    sent_as = sum(r["own_deltas"] for r in runs)
    received = sum(r["deltas_received"] for r in runs)
    tokens_out = sum(r["tokens"] for r in runs)
    frames = sum((r["frames"] for r in runs), Counter())
    return {
        "people": len(cookies),
        "tabs_each": tabs,
        "replies": len(runs),
        "aggregate_tokens_per_s": tokens_out / wall,
        "wall_s": wall,
        "delta_deliveries": received,
        "delta_frames_sent": sent_as,
        "deliveries_per_delta": received / sent_as,
        "replies_intact": sum(r["intact"] for r in runs),
        "deliveries_per_token": received / tokens_out,
        "frames_per_tab": {k: round(v / len(runs), 1) for k, v in sorted(frames.items())},
        "ttft_p25_ms": percentile(ttfts, 0.25),
        "ttft_p50_ms": percentile(ttfts, 0.5),
        "ttft_p75_ms": percentile(ttfts, 0.75),
        "ttft_max_ms": max(ttfts),
        "person_first_ttft_p50_ms": statistics.median(firsts),
        "person_first_ttft_max_ms": max(firsts),
    }
