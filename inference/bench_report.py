"""The in-process benchmark's report (``python -m inference.bench``): its figures as a Markdown table beside raw
``generate``, and the JSON kept under ``bench-results/``. Shared by the benchmarks that write the same way
(``precision_bench.py``)."""

from __future__ import annotations

import json
from pathlib import Path


def table(report: dict) -> str:
    raw = report["raw_generate"]
    lines = [
        f"machine: {report['machine']}",
        f"model: {report['model']} ({report['device']}, {report['dtype']}), "
        f"prompt {report['prompt_tokens']} tokens, {report['tokens']} new tokens, greedy",
        "",
        f"raw generate: ttft {raw['ttft_ms']:.0f} ms, {raw['tokens_per_s']:.1f} tok/s",
        "",
        "| path | concurrent | aggregate tok/s | per-stream tok/s | ttft p50 ms | ttft p95 ms | × raw |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in (
        "static_batch",
        "engine",
        "engine_distinct",
        "engine_no_cache",
        "serial",
        "stack",
        "stack_distinct",
        "api",
        "two_workers",
        "two_models",
        "two_models_skewed",
    ):
        for r in report.get(name, []):
            lines.append(
                f"| {name} | {r['concurrency']} | {r['aggregate_tokens_per_s']:.1f} | "
                f"{r['per_stream_tokens_per_s']:.1f} | {r['ttft_p50_ms']:.0f} | {r['ttft_p95_ms']:.0f} | "
                f"{r['aggregate_tokens_per_s'] / raw['tokens_per_s']:.2f} |"
            )
    hf = report.get("hf_continuous_batching")
    if isinstance(hf, list):
        lines += [
            f"| transformers generate_batch | {r['concurrency']} | {r['aggregate_tokens_per_s']:.1f} | | | | "
            f"{r['aggregate_tokens_per_s'] / raw['tokens_per_s']:.2f} |"
            for r in hf
        ]
    elif hf:
        lines.append(f"transformers generate_batch: {hf['error']}")
    static = {r["concurrency"]: r["aggregate_tokens_per_s"] for r in report.get("static_batch", [])}
    lines.append("")
    lines += [  # the engine's own cost: the same prompt, no prefix cache, against one static batch of it
        f"engine_no_cache ÷ static_batch at {r['concurrency']}: {r['aggregate_tokens_per_s'] / static[c]:.2f}"
        for r in report.get("engine_no_cache", [])
        if (c := r["concurrency"]) in static
    ]
    return "\n".join(lines)


def write_report(out: str, report: dict, text: str) -> None:
    """Print a benchmark's table and keep its figures as JSON at ``out``."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
    print(text)
    print(f"\nwritten to {out}")
