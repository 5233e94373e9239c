"""The peers benchmark's rows for this project (``chatsite.bench_peers``): the whole stack started as
``chatsite.bench_stack`` starts it (embedded Redis unless REDIS_URL is set, one Celery worker with every core's
thread, Daphne on loopback), then every level through ``/v1/chat/completions`` with the peers' OpenAI client, one
API key per stream, and the same levels over the chat websocket with bench_stack's websocket client.

Kept apart from ``bench_peers`` because it needs Django (users, keys, the stored replies the websocket client
checks), and the other servers' rows do not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

from chatsite import bench_stack


def measure_stack(args, run_levels) -> list[dict]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    # Django's logging config says INFO at the root: the client's HTTP library would log every request.
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from django.conf import settings

    streams = 16
    # As bench_stack: exactly --tokens tokens a reply (end of turn ignored), no per-person limits, one worker.
    env = bench_stack.bench_env(streams, 1)
    logs = Path(tempfile.mkdtemp(prefix="chat-peers-stack-"))
    rows = []
    with bench_stack.bench_site(env, logs):
        cookies, keys = bench_stack.bench_users(streams)
        model = settings.CHAT_MODEL
        with bench_stack._stack(env, [model], logs, "peers", 2 * streams) as (port, _workers):
            server = {"base_url": f"http://127.0.0.1:{port}/v1", "keys": keys, "model": model}
            rows += run_levels("this project /v1", server, {}, args)
            url, origin = f"ws://127.0.0.1:{port}/ws/chat/", f"http://127.0.0.1:{port}"

            def ws(prompts):
                r = asyncio.run(bench_stack._level(url, origin, cookies[: len(prompts)], prompts, args.tokens))
                if r["streams_intact"] != len(prompts):
                    raise RuntimeError(f"websocket streams not intact: {r}")
                # bench_stack's client takes each reply's tokens from its done frame's usage, and gives their sum
                # only as the aggregate rate: the mean per stream is what comes back from it.
                mean = round(r["aggregate_tokens_per_s"] * r["wall_s"] / len(prompts), 1)
                return {**r, "tokens_min": mean, "tokens_max": mean, "prompt_tokens": None}

            rows += run_levels("this project websocket", server, {}, args, ws=ws)
    return rows
