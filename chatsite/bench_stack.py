"""Part 3 of ``inference.bench``: end to end through the running product (``python -m chatsite.bench_stack``).

It lives in ``chatsite`` because it starts the whole stack with the launcher's functions, as ``make run`` does;
``inference.bench`` runs it in a child process, so the engine's benchmark stays free of Django.

Starts Redis (embedded unless REDIS_URL is set), one Celery worker and Daphne, then for each concurrency opens
one websocket per user, sends the benchmark prompts from all of them at once (the fixed one from everyone, then
one each, as ``inference.bench.level_prompts`` says) and times what the browser would see: first delta, deltas
per second, the done frame. Every stream is checked: contiguous seqs, deltas
joined equal to the stored reply, no error frames.

The ``tabs`` row (``chatsite.bench_tabs``): 8 people with 5 tabs each, every tab sending at once: delta frames
delivered per token, and first-token quartiles.

The ``api`` rows send the same prompts through ``POST /v1/chat/completions`` (streamed, one key per user) in
the same run, timed the same way from the client's side: first content chunk, chunks per second, ``[DONE]``.

The ``two_models`` rows restart the stack serving the same model under two names (``CHAT_MODELS``), one worker
each, and split each level's streams between them (every other stream asks for the second); the
``two_workers`` rows, its yardstick, serve one model with two workers. Each stream's reply must have been written
by a worker of the model it asked for. ``memory`` gives each phase's worker processes' resident memory.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from chatsite import bench_tabs, stack
from inference.bench import level_prompts, measure_level, percentile


def main(argv=None) -> int:
    """Start the stack, measure every level, print one JSON line per row and write them to ``--out``."""
    parser = argparse.ArgumentParser(
        description="Benchmark chat end to end (websocket → Daphne → Celery → worker → Redis → websocket)."
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--out", default="bench-results/stack.json")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this host (WORKERS: each gets its share of the cores)",
    )
    parser.add_argument("--paths", default="stack,stack_distinct,api,tabs,two_models", help="which rows to measure")
    parser.add_argument("--tabs", default="8x5", help="the tabs row: people × tabs each, all sending at once")
    parser.add_argument(
        "--worker-threads", type=int, default=0, help="Celery threads per worker (default: twice the largest level)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.conf import settings

    tokens, out = args.tokens, args.out
    levels = [int(c) for c in args.concurrency.split(",")]
    people, tabs_each = (int(n) for n in args.tabs.split("x"))
    env = bench_env(max(levels), args.workers, CHAT_MAX_ACTIVE_PER_USER=str(tabs_each))
    paths = args.paths.split(",")
    logs = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    results = {}
    with bench_site(env, logs):
        cookies, keys = bench_users(max(levels + [people]))
        model = settings.CHAT_MODEL
        threads = args.worker_threads or 2 * max(levels)
        with _stack(env, [model] * args.workers, logs, "one", threads) as (port, workers):
            url, origin = f"ws://127.0.0.1:{port}/ws/chat/", f"http://127.0.0.1:{port}"
            asyncio.run(_level(url, origin, cookies[:1], level_prompts("warm", 1, False), 8))
            for name, distinct in (("stack", False), ("stack_distinct", True)):
                if name not in paths:
                    continue
                results[name] = [
                    measure_level(
                        lambda k: asyncio.run(
                            _level(url, origin, cookies[:c], level_prompts(f"{name}.{c}.{k}", c, distinct), tokens)
                        ),
                        c,
                    )
                    for c in levels
                ]
            if "api" in paths:
                results["api"] = [
                    measure_level(
                        lambda k: _api_level(port, keys[:c], level_prompts(f"api.{c}.{k}", c, False), tokens, model),
                        c,
                    )
                    for c in levels
                ]
            if "tabs" in paths:
                prompts = level_prompts("tabs", people * tabs_each, False)
                results["tabs"] = asyncio.run(
                    bench_tabs.tabs_level(url, origin, cookies[:people], tabs_each, prompts, tokens)
                )
            results["workers"] = _worker_shares()
            results["memory"] = {"stack": _memory(workers)}
        if "two_models" in paths:
            spec = next(m.spec for m in settings.CHAT_SERVED_MODELS if m.name == model)
            results.update(_two_models(env, spec, levels, tokens, cookies, logs, results["memory"]))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
    for name, rows in results.items():
        for r in rows if isinstance(rows, list) else [rows]:
            print(json.dumps({"path": name, **r}))
    return 0


def bench_env(max_batch: int, workers: int, **more: str) -> dict:
    """The stack's environment for a benchmark: every reply does the same work — exactly the asked tokens,
    end-of-turn ignored (benchmark only) — and the benchmark users, who send far more than a person's fair use,
    meet no per-person limits; ``more`` adds to it."""
    return {
        **os.environ,
        "CHAT_BENCH_IGNORE_EOS": "1",
        "CHAT_MAX_BATCH": str(max_batch),
        "LOG_LEVEL": "WARNING",
        "CHAT_MESSAGES_PER_MINUTE": "0",
        "CHAT_TOKENS_PER_DAY": "0",
        "CHAT_AUTO_TITLE": "false",
        "WORKERS": str(workers),
        **more,
    }


@contextmanager
def bench_site(env: dict, logs: Path):
    """Redis for the run (an embedded one unless REDIS_URL is set: ``env`` and Django's settings then point at
    it), stopped afterwards, and the benchmark users' conversations and keys deleted whatever happened."""
    from django.conf import settings

    from chat.models import ApiKey, Conversation

    redis_proc = None
    try:
        if not os.environ.get("REDIS_URL"):
            redis_proc, env["REDIS_URL"] = stack.start_redis(logs / "redis", persist=False, stdout=subprocess.DEVNULL)
            settings.REDIS_URL = env["REDIS_URL"]
        yield
    finally:
        stack.stop(redis_proc)
        Conversation.objects.filter(owner__username__startswith="bench-").delete()
        ApiKey.objects.filter(owner__username__startswith="bench-").delete()


def bench_users(n: int) -> tuple[list[str], list[str]]:
    """``n`` benchmark users (``bench-0`` …, made once): a signed-in session cookie and a fresh API key each.
    Their conversations and keys are deleted after each benchmark (``bench-`` names)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from chat.api import services

    cookies, keys = [], []
    for i in range(n):
        user = get_user_model().objects.get_or_create(username=f"bench-{i}")[0]
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}")
        keys.append(services.api_key_create(owner=user, name="bench").plaintext)
    return cookies, keys


@contextmanager
def _stack(env: dict, plan: list[str], logs: Path, phase: str, threads: int):
    """Daphne and a worker per entry of ``plan`` (the model it holds), started for one phase and stopped after
    it; yields Daphne's port and the workers, once every worker's model is loaded."""
    workers, daphne = [], None
    try:
        for i, model in enumerate(plan):
            workers.append(
                stack.start_worker(
                    stack.worker_env(env, stack.LauncherSettings.from_env(env), i, model),
                    concurrency=threads,
                    name=f"{phase}{i + 1}",
                    stdout=open(logs / f"{phase}-worker{i + 1}.log", "w"),
                    stderr=subprocess.STDOUT,
                )
            )
        port = stack.free_port()
        daphne = stack.start_daphne(port, env, stdout=open(logs / f"{phase}-daphne.log", "w"), stderr=subprocess.STDOUT)
        for worker in workers:  # a worker's model is loaded once it heartbeats
            stack.wait_for_worker(env["REDIS_URL"], worker, name=f"{socket.gethostname()}-{worker.pid}")
        yield port, workers
    finally:
        stack.stop(daphne, *workers)


def _memory(workers) -> dict:
    """Each worker process's resident memory now and at its peak (MiB, from /proc): what holding a model costs."""
    out = {}
    for i, proc in enumerate(workers):
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if ":" in line
        )
        out[f"worker{i + 1}"] = {k: round(int(status[k].split()[0]) / 1024) for k in ("VmRSS", "VmHWM")}
    return out


def _two_models(env, spec, levels, tokens, cookies, logs, memory) -> dict:
    """Two models served together (the benchmarked model under two names, a worker each) beside its yardstick,
    one model with two workers: the same processes and threads, one queue instead of two. Levels of one stream
    are left out: they cannot be split."""
    two = {**env, "CHAT_MODELS": f"bench-a={spec},bench-b={spec}", "CHAT_DEFAULT_MODEL": "bench-a", "WORKERS": "1"}
    one = {**env, "CHAT_MODELS": f"bench-a={spec}", "CHAT_DEFAULT_MODEL": "bench-a", "WORKERS": "2"}
    levels = [c for c in levels if c >= 2]
    results = {}
    for name, phase_env, plan in (("two_workers", one, ["bench-a"] * 2), ("two_models", two, ["bench-a", "bench-b"])):
        with _stack(phase_env, plan, logs, name, 2 * max(levels)) as (port, workers):
            url, origin = f"ws://127.0.0.1:{port}/ws/chat/", f"http://127.0.0.1:{port}"
            owners = {}
            for m, proc in zip(plan, workers):
                owners.setdefault(m, set()).add(f"{socket.gethostname()}-{proc.pid}")
            models = sorted(owners)

            def run(tag: str, asked: list[str]) -> dict:
                prompts = level_prompts(tag, len(asked), False)
                return asyncio.run(_level(url, origin, cookies[: len(asked)], prompts, tokens, asked, owners))

            def even(c: int) -> list[str]:  # every other stream asks for the second model
                return [models[i % len(models)] for i in range(c)]

            run("warm", even(2))
            results[name] = [measure_level(lambda k: run(f"{name}.{c}.{k}", even(c)), c) for c in levels]
            if name == "two_models":
                # Does a busy model slow the other's stream? One stream of bench-b alone, then beside c - 1 of
                # bench-a: separate processes and queues, but the same cores.
                results["two_models_skewed"] = [measure_level(lambda k: run(f"alone.{k}", ["bench-b"]), 1)] + [
                    measure_level(lambda k: run(f"skewed.{c}.{k}", ["bench-b"] + ["bench-a"] * (c - 1)), c)
                    for c in levels
                ]
            memory[name] = _memory(workers)
    return results


def _worker_shares() -> list[dict]:
    """How the run's work fell to each worker (from their heartbeats, warm-up included): decode steps, rows
    decoded (tokens), the mean batch and rows taken back (preemptions). With several workers, an even split is
    what the queue should give."""
    from chat import metrics

    shares = []
    for name, stats in sorted(metrics.read_all({})["workers"].items()):
        steps, rows = stats.get("decode_steps", 0), stats.get("decode_rows", 0)
        shares.append(
            {
                "worker": name,
                "decode_steps": steps,
                "decode_rows": rows,
                "mean_batch": round(rows / steps, 2) if steps else 0.0,
                "preemptions": stats.get("preemptions", 0),  # rows taken back for a person with none running
            }
        )
    return shares


async def _one(url, origin, cookie, content, tokens, model=None):
    import websockets

    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        sent = time.perf_counter()
        await ws.send(bench_tabs.new_chat(content, tokens, **({"model": model} if model else {})))
        first = None
        deltas = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 600))
            if frame["type"] == "error":
                raise RuntimeError(frame)
            if frame["type"] == "delta":
                first = first or time.perf_counter()
                deltas.append(frame)
            if frame["type"] == "done":
                end = time.perf_counter()
                break
    ok = [d["seq"] for d in deltas] == list(range(len(deltas))) and "".join(d["text"] for d in deltas) == frame[
        "content"
    ]
    from channels.db import database_sync_to_async

    from chat.models import Message

    stored, wrote = await database_sync_to_async(
        lambda: Message.objects.filter(pk=frame["message"]).values_list("content", "worker").get()
    )()
    return {
        "worker": wrote,
        "ttft_ms": (first - sent) * 1000,
        "tokens": frame["usage"]["completion_tokens"],
        "tokens_per_s": (frame["usage"]["completion_tokens"] - 1) / (end - first),
        "frames": len(deltas),
        "intact": ok and stored == frame["content"],
        "end": end,
        "sent": sent,
    }


async def _level(url, origin, cookies, prompts, tokens, asked=(), owners=None):
    """One level: a stream per cookie; with ``asked``, stream *i* asks for model ``asked[i]``, and its reply must
    have been written by one of ``owners[model]`` (worker names); the figures then also come per model."""
    start = time.perf_counter()
    runs = await asyncio.gather(
        *(
            _one(url, origin, c, p, tokens, asked[i] if asked else None)
            for i, (c, p) in enumerate(zip(cookies, prompts))
        )
    )
    wall = max(r["end"] for r in runs) - start
    ttfts = [r["ttft_ms"] for r in runs]
    split = {}
    for model in sorted(set(asked)):
        mine = [r for r, m in zip(runs, asked) if m == model]
        split[model] = {
            "streams": len(mine),
            "by_its_workers": sum(r["worker"] in owners[model] for r in mine),
            "per_stream_tokens_per_s": statistics.median(r["tokens_per_s"] for r in mine),
            "ttft_p50_ms": percentile([r["ttft_ms"] for r in mine], 0.5),
        }
    return {
        **({"models": split} if asked else {}),
        "concurrency": len(cookies),
        "aggregate_tokens_per_s": sum(r["tokens"] for r in runs) / wall,
        "per_stream_tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "ttft_p50_ms": percentile(ttfts, 0.5),
        "ttft_p95_ms": percentile(ttfts, 0.95),
        "wall_s": wall,
        "delta_frames_per_stream": statistics.median(r["frames"] for r in runs),
        "streams_intact": sum(r["intact"] for r in runs),
    }


def _api_level(port, keys, prompts, tokens, model):
    """One level through ``/v1`` with the peers benchmark's client (``inference/bench_openai.py``): the same
    requests, one key per stream, and the same arithmetic as the peers table."""
    from inference.bench_openai import measure

    row = measure(f"http://127.0.0.1:{port}/v1", keys, model, prompts, tokens)
    return {**row, "delta_frames_per_stream": row["chunks_per_stream"], "streams_intact": row["streams_with_usage"]}


if __name__ == "__main__":
    raise SystemExit(main())
