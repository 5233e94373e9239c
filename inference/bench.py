"""The benchmark: ``python -m inference.bench`` (``make bench``).

One run, one machine, the same fixed prompt, greedy decoding, exactly ``--tokens`` new tokens (end-of-turn is
ignored so every row does the same work):
  1. raw ``model.generate`` in-process — time to first token and tokens/s;
  2. the engines in-process — ``BatchEngine`` (continuous batching) and ``SerialEngine`` (one at a time) at
     each concurrency: aggregate and per-stream tokens/s, p50/p95 time to first token;
  3. with ``--stack``: the same through the running product (websocket → Daphne → Celery → worker → Redis →
     websocket), measured by ``manage.py bench_stack`` in a child process (this module stays Django-free).
Prints a table and writes JSON. ``--model random:llama-1b`` benchmarks a random ~1B Llama (for GPUs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from .engine import BatchEngine, GenerationRequest
from .events import Finished
from .loading import BUNDLED, configure_threads, load_model, pick_device, pick_dtype
from .prompt import build_prompt, context_window
from .sampling import SamplingParams
from .serial import SerialEngine

PROMPT = "Write a detailed essay about the history of the Roman Empire, from its founding to its fall."


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def random_llama_1b(tokenizer, device, dtype):
    """A randomly initialised ~1.1B-parameter Llama (weights do not matter for speed)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


class _Clock:
    """A streamer that only notes when each token arrives."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt = True

    def put(self, value):
        if self._prompt:
            self._prompt = False
        else:
            self.times.append(time.perf_counter())

    def end(self):
        pass


def bench_generate(model, tokenizer, ids: list[int], n: int, repeats: int = 2) -> dict:
    """Raw ``generate``: the baseline every other figure is compared with."""
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    runs = []
    for i in range(repeats + 1):
        clock = _Clock()
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id, streamer=clock)
        end = time.perf_counter()
        if i:  # the first run warms up
            runs.append({"ttft_ms": (clock.times[0] - start) * 1000, "tokens_per_s": n / (end - start),
                         "decode_tokens_per_s": (n - 1) / (end - clock.times[0])})
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def bench_hf_continuous_batching(model, ids: list[int], n: int, concurrency: int) -> dict:
    """Transformers' own continuous batching (``generate_batch``), for the choice of engine: aggregate only."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=-1,
                              pad_token_id=0)
    model.generate_batch(inputs=[list(ids)], generation_config=config, progress_bar=False)  # warm-up
    start = time.perf_counter()
    outputs = model.generate_batch(inputs=[list(ids) for _ in range(concurrency)], generation_config=config,
                                   progress_bar=False)
    wall = time.perf_counter() - start
    tokens = sum(len(o.generated_tokens) for o in outputs.values())
    return {"concurrency": concurrency, "aggregate_tokens_per_s": tokens / wall, "wall_s": wall,
            "tokens": tokens}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_engine(engine, ids: list[int], n: int, concurrency: int) -> dict:
    """All requests arrive together; the figures a user of a busy server would see."""
    start = time.perf_counter()
    handles = [engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=n)))
               for _ in range(concurrency)]
    done: list[Finished] = [[e for e in h][-1] for h in handles]
    wall = time.perf_counter() - start
    assert all(d.completion_tokens == n for d in done), [d.reason for d in done]
    ttfts = [d.ttft_s * 1000 for d in done]
    return {"concurrency": concurrency, "aggregate_tokens_per_s": concurrency * n / wall,
            "per_stream_tokens_per_s": statistics.median(d.tokens_per_s for d in done),
            "ttft_p50_ms": percentile(ttfts, 0.5), "ttft_p95_ms": percentile(ttfts, 0.95), "wall_s": wall}


def bandwidth(model, result: dict, prompt_len: int, n: int) -> dict:
    """Bytes of weights and KV cache read per decode step, and the rate that implies."""
    cfg = model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_per_token = 2 * cfg.num_hidden_layers * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) * \
        (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads) * \
        next(model.parameters()).element_size()
    mean_len = prompt_len + n / 2
    per_step = weight_bytes + result["concurrency"] * mean_len * kv_per_token
    steps_per_s = result["aggregate_tokens_per_s"] / result["concurrency"]
    return {"bytes_per_step": per_step, "achieved_gb_per_s": per_step * steps_per_s / 1e9}


def run_stack(args) -> list[dict]:
    """Part 3, in a child process that has Django."""
    out = Path(args.out).with_name("stack.json")
    cmd = [sys.executable, "manage.py", "bench_stack", "--tokens", str(args.tokens), "--concurrency",
           args.concurrency, "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.read_text())["stack"]


def table(report: dict) -> str:
    raw = report["raw_generate"]
    lines = [f"machine: {report['machine']}", f"model: {report['model']} ({report['device']}, {report['dtype']}), "
             f"prompt {report['prompt_tokens']} tokens, {report['tokens']} new tokens, greedy", "",
             f"raw generate: ttft {raw['ttft_ms']:.0f} ms, {raw['tokens_per_s']:.1f} tok/s", "",
             "| path | concurrent | aggregate tok/s | per-stream tok/s | ttft p50 ms | ttft p95 ms | × raw |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("engine", "serial", "stack"):
        for r in report.get(name, []):
            lines.append(f"| {name} | {r['concurrency']} | {r['aggregate_tokens_per_s']:.1f} | "
                         f"{r['per_stream_tokens_per_s']:.1f} | {r['ttft_p50_ms']:.0f} | {r['ttft_p95_ms']:.0f} | "
                         f"{r['aggregate_tokens_per_s'] / raw['tokens_per_s']:.2f} |")
    hf = report.get("hf_continuous_batching")
    if isinstance(hf, list):
        lines += [f"| transformers generate_batch | {r['concurrency']} | {r['aggregate_tokens_per_s']:.1f} | | | | "
                  f"{r['aggregate_tokens_per_s'] / raw['tokens_per_s']:.2f} |" for r in hf]
    elif hf:
        lines.append(f"transformers generate_batch: {hf['error']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("CHAT_MODEL") or BUNDLED)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--no-serial", action="store_true", help="skip the one-at-a-time engine")
    parser.add_argument("--hf-cb", action="store_true", help="also time transformers' continuous batching")
    parser.add_argument("--stack", action="store_true", help="also measure end to end through the running stack")
    parser.add_argument("--out", default="bench-results/engine.json")
    args = parser.parse_args(argv)

    configure_threads(args.threads)
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.model.startswith("random:"):
        from transformers import AutoTokenizer

        from .loading import resolve_model_path

        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED))
        device = pick_device(args.device)
        dtype = pick_dtype(device, args.dtype)
        model = random_llama_1b(tokenizer, device, dtype)
    else:
        lm = load_model(args.model, device=args.device, dtype=args.dtype)
        model, tokenizer, device, dtype = lm.model, lm.tokenizer, lm.device, lm.dtype
    ids = build_prompt(tokenizer, [{"role": "user", "content": PROMPT}], max_new_tokens=args.tokens,
                       window=context_window(model.config)).input_ids
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "model": args.model, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
              "prompt_tokens": len(ids), "tokens": args.tokens}
    report["raw_generate"] = bench_generate(model, tokenizer, ids, args.tokens)
    batch = BatchEngine(model, tokenizer, max_batch_size=max(levels), eos_ids=set()).start()
    bench_engine(batch, ids, 8, 1)  # warm-up
    report["engine"] = []
    for c in levels:
        result = bench_engine(batch, ids, args.tokens, c)
        result.update(bandwidth(model, result, len(ids), args.tokens))
        report["engine"].append(result)
    batch.shutdown()
    if not args.no_serial:
        serial = SerialEngine(model, tokenizer, eos_ids=set())
        report["serial"] = [bench_engine(serial, ids, args.tokens, c) for c in levels if c <= 8]
        serial.shutdown()
    if args.hf_cb:
        try:
            report["hf_continuous_batching"] = [bench_hf_continuous_batching(model, ids, args.tokens, c)
                                                for c in levels]
        except Exception as exc:  # an experimental API: report why it could not be measured
            report["hf_continuous_batching"] = {"error": f"{type(exc).__name__}: {exc}"}
    if args.stack:
        del model
        report["stack"] = run_stack(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
