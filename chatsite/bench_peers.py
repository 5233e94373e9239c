"""The peers benchmark (``python -m chatsite.bench_peers``, ``make bench-peers``): this project beside
llama.cpp's ``llama-server`` and ``transformers serve --continuous-batching``, on the same machine, the same weights.

Every server gets the same levels — 1 stream, 8 at once, 16 at once (everyone the fixed prompt), 8 distinct
prompts (``inference.bench.level_prompts``) — greedy, exactly ``--tokens`` new tokens (end of turn ignored, each
server in its own way), measured by ONE OpenAI streaming client (``inference.bench_openai``): aggregate tokens/s,
per-stream tokens/s, time to first token p50/p95. The servers, one at a time, each on 127.0.0.1 only:
  ``llama.cpp``     llama-server with 16 slots on the F32 GGUF of the bundled model (``chatsite.peers_llama``
                    builds and converts it once under var/llama.cpp);
  ``transformers``  ``transformers serve --continuous-batching`` on the bundled model's folder, float32 on CPU
                    (its FastAPI and Uvicorn are not in requirements.txt: installed at bench time into
                    var/peers-pylib, never into the venv, pinned in requirements-bench.txt);
  ``stack /v1``     this project's whole stack (Redis, Daphne, one Celery worker) as ``chatsite.bench_stack``
                    starts it, through ``/v1/chat/completions`` with one API key per stream; ``stack websocket``
                    is the same stack over the chat websocket, measured by bench_stack's own websocket client.

Measuring waits (bounded) for a quiet machine (1-minute load below ``--max-load``) and stops at ``--deadline``
(UTC ``HH:MM``): a level not measured by then is recorded as skipped. Each level is bounded in time
(``--level-timeout``); every server is stopped at the end, and dies with this process in any case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from chatsite import peers_llama
from chatsite.processes import free_port, popen, stop
from inference import bench_openai
from inference.bench import level_prompts, machine

LEVELS = (("1", 1, False), ("8", 8, False), ("16", 16, False), ("8 distinct", 8, True))
# The order they are measured in: the slowest last, so a deadline cuts where it costs least.
SERVERS = ("llama.cpp", "stack", "transformers")
PYLIB = Path("var/peers-pylib")
REQUIREMENTS = Path("requirements-bench.txt")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def wait_quiet(max_load: float, max_wait_s: float, poll_s: float = 15) -> dict:
    """Poll the 1-minute load until it is below ``max_load`` or ``max_wait_s`` passed; say which."""
    start = time.monotonic()
    while load1() >= max_load and time.monotonic() - start < max_wait_s:
        time.sleep(poll_s)
    return {"waited_s": round(time.monotonic() - start), "load1": load1(), "quiet": load1() < max_load}


def past(deadline: str | None) -> bool:
    if not deadline:
        return False
    h, m = (int(x) for x in deadline.split(":"))
    t = datetime.now(timezone.utc)
    return (t.hour, t.minute) >= (h, m)


def install_pylib() -> Path:
    """transformers serve's web server (FastAPI, Uvicorn and theirs) and the converter's sentencepiece, pinned,
    into var/peers-pylib only."""
    if not (PYLIB / "fastapi").is_dir() or not (PYLIB / "sentencepiece").is_dir():
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(PYLIB)]
        subprocess.run([*cmd, "-r", str(REQUIREMENTS)], check=True)
    return PYLIB


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Until ``url`` answers 200 (the model is loaded), the process dies or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@contextmanager
def llama_server(model_dir: Path, logs: Path, threads: int):
    gguf = peers_llama.convert(model_dir)
    port = free_port()
    proc = peers_llama.serve(gguf, port, slots=16, threads=threads, ctx_per_slot=512, log=open(logs / "llama.log", "w"))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, 300)
        # ignore_eos: every stream writes exactly max_tokens tokens, as CHAT_BENCH_IGNORE_EOS does for ours.
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "keys": ["none"], "model": "smollm2"}, {"ignore_eos": True}
    finally:
        stop(proc)


@contextmanager
def transformers_server(model_dir: Path, logs: Path):
    pylib = install_pylib()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(pylib.resolve()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "transformers"), "serve", "--continuous-batching"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    # Its paged KV cache sized for this benchmark (16 streams of at most two 256-token pages) rather than from the
    # machine's memory, as it would be on CPU; and a prefill of every level's prompts fits one batch.
    cmd += ["--cb-block-size", "256", "--cb-num-blocks", "16", "--cb-max-batch-tokens", "256"]
    cmd += ["--log-level", "warning", str(model_dir.resolve())]
    proc = popen(cmd, env=env, stdout=open(logs / "transformers.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, 300)
        # Its continuous batching stops at the generation config's eos_token_id; -1 turns that off.
        extra = {"generation_config": json.dumps({"eos_token_id": -1, "do_sample": False})}
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "keys": ["none"], "model": str(model_dir.resolve())}, extra
    finally:
        stop(proc)


def run_levels(name: str, server: dict, extra: dict, args, ws=None) -> list[dict]:
    """Warm the server with one short stream, then every level. A single stream's level is run up to three times
    (as ``inference.bench.measure_level``: the run with the median time to first token kept), fewer where the
    runs would pass ``--level-timeout`` together. A level that times out ends this server's measurement: the
    larger ones would too."""
    bench_openai.measure(**server, prompts=["warm"], tokens=8, extra_body=extra, timeout_s=args.level_timeout)
    rows, stopped = [], None
    for label, c, distinct in LEVELS:
        if stopped or past(args.deadline):
            stopped = stopped or f"not started: past the deadline {args.deadline} UTC"
            rows.append({"server": name, "level": label, "skipped": stopped})
            continue
        load, began, runs = load1(), time.monotonic(), []
        try:
            for k in range(3 if c == 1 else 1):
                if runs and (time.monotonic() - began) * (k + 1) / k > args.level_timeout:
                    break
                prompts = level_prompts(f"{name}.{label}.{k}", c, distinct)
                if ws:
                    runs.append(ws(prompts))
                else:
                    keys = server["keys"][:c]
                    t = args.level_timeout
                    runs.append(
                        bench_openai.measure(server["base_url"], keys, server["model"], prompts, args.tokens, extra, t)
                    )
        except TimeoutError:
            stopped = f"timed out: {c} streams of {args.tokens} tokens took over {args.level_timeout:.0f} s"
            rows.append({"server": name, "level": label, "skipped": stopped})
            continue
        row = sorted(runs, key=lambda r: r["ttft_p50_ms"])[len(runs) // 2]
        rows.append({"server": name, "level": label, "at": now(), "load1_before": load, "runs": len(runs), **row})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"which of {','.join(SERVERS)}")
    parser.add_argument("--prepare", action="store_true", help="only build, convert and install, then exit")
    parser.add_argument("--max-load", type=float, default=2.0, help="wait for a 1-minute load below this")
    parser.add_argument("--max-wait", type=float, default=1800, help="seconds to wait for it at most")
    parser.add_argument("--deadline", default=None, help="UTC HH:MM after which no level is started")
    parser.add_argument("--level-timeout", type=float, default=300)
    parser.add_argument("--out", default="bench-results/peers.json")
    args = parser.parse_args(argv)
    from inference.loading import BUNDLED, configure_threads, resolve_model_path

    model_dir = Path(resolve_model_path(BUNDLED))
    threads = os.cpu_count() or 1
    peers_llama.build()
    install_pylib()  # first: the converter imports sentencepiece from it
    peers_llama.convert(model_dir)
    if args.prepare:
        return 0
    configure_threads(threads)
    report = {"machine": machine(), "tokens": args.tokens, "started": now(), "load1_at_start": load1()}
    report["quiet"] = wait_quiet(args.max_load, args.max_wait)
    logs = Path(tempfile.mkdtemp(prefix="chat-peers-"))
    rows = []
    servers = args.servers.split(",")
    if "llama.cpp" in servers:
        with llama_server(model_dir, logs, threads) as (server, extra):
            rows += run_levels("llama.cpp", server, extra, args)
    if "stack" in servers:
        from chatsite.bench_peers_stack import measure_stack

        rows += measure_stack(args, run_levels)
    if "transformers" in servers:
        with transformers_server(model_dir, logs) as (server, extra):
            rows += run_levels("transformers serve", server, extra, args)
    report.update({"finished": now(), "load1_at_end": load1(), "rows": rows, "logs": str(logs)})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(table(report))
    return 0


def table(report: dict) -> str:
    lines = [
        f"{report['started']} – {report['finished']}; machine: {report['machine']}; load {report['load1_at_start']}"
        f" at start, {report['quiet']} after waiting, {report['load1_at_end']} at the end",
        "",
        "| server | level | aggregate tok/s | per-stream tok/s | ttft p50 ms | ttft p95 ms | tokens/stream | prompt "
        "tokens | load before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['server']} | {r['level']} | {r['skipped']} | | | | | | |")
            continue
        n = r["tokens_min"] if r["tokens_min"] == r["tokens_max"] else f"{r['tokens_min']}–{r['tokens_max']}"
        lines.append(
            f"| {r['server']} | {r['level']} | {r['aggregate_tokens_per_s']:.1f} | {r['per_stream_tokens_per_s']:.1f}"
            f" | {r['ttft_p50_ms']:.0f} | {r['ttft_p95_ms']:.0f} | {n} | {r.get('prompt_tokens')} | "
            f"{r['load1_before']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
