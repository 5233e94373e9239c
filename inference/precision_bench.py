"""The precision benchmark: ``python -m inference.precision_bench``.

For each precision asked for (``--precisions``, default float32, bfloat16 and int8), one after another in this
process: load the model at it (``load_model``), score it on the fixed text (``quality.log_likelihood``: the
quality it costs), and time ``BatchEngine`` on the bench's fixed prompt at each ``--concurrency`` (default 1 and
8 streams; greedy, exactly ``--tokens`` new tokens, no prefix cache, so every level does the same work as the
last). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import gc
import sys
from datetime import datetime, timezone

from inference import precision as precisions
from inference.bench import PROMPT, bench_engine, machine, measure_level
from inference.bench_report import write_report
from inference.engine import BatchEngine
from inference.loading import configure_threads, default_model, in_passing_thread, load_model, pick_device
from inference.prompt import build_prompt, context_window
from inference.quality import log_likelihood


def measure(name: str, precision: str, device: str, tokens: int, levels: list[int]) -> dict:
    """One precision's row: its weights' bytes, log-likelihood of the fixed text and the engine's speed."""
    lm = load_model(name, device=device, precision=precision)
    model, tokenizer = lm.model, lm.tokenizer
    score = in_passing_thread(log_likelihood, model, tokenizer)  # no OpenMP team left here to slow the engine
    ids = build_prompt(
        tokenizer, [{"role": "user", "content": PROMPT}], max_new_tokens=tokens, window=context_window(model.config)
    ).input_ids
    engine = BatchEngine(model, tokenizer, max_batch_size=max(levels), eos_ids=set()).start()
    try:
        bench_engine(engine, [ids], 8)  # warm-up: lazy kernel setup is not this precision's speed
        speed = [measure_level(lambda k, c=c: bench_engine(engine, [ids] * c, tokens), c) for c in levels]
    finally:
        engine.shutdown()
    quantised, linears = precisions.int8_linears(model)
    return {
        "precision": precision,
        "resolved": str(lm.precision),
        "weight_bytes": precisions.weight_bytes(model),
        "int8_linears": f"{quantised}/{linears}",
        "scored_tokens": score.tokens,
        "log_likelihood": score.mean,
        "perplexity": score.perplexity,
        "engine": speed,
    }


def table(report: dict) -> str:
    levels = [r["concurrency"] for r in report["rows"][0]["engine"]]
    base = report["rows"][0]
    lines = [
        f"machine: {report['machine']}",
        f"model: {report['model']} ({report['device']}), fixed text {base['scored_tokens']} tokens scored; "
        f"engine: {report['tokens']} new tokens, greedy, no prefix cache",
        "",
        "| precision | weights MiB | log-likelihood / token | perplexity | Δ log-lik vs "
        + base["precision"]
        + " | "
        + " | ".join(f"tok/s at {c} (per stream)" for c in levels)
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(levels),
    ]
    for r in report["rows"]:
        speeds = " | ".join(
            f"{e['aggregate_tokens_per_s']:.1f} ({e['per_stream_tokens_per_s']:.1f})" for e in r["engine"]
        )
        lines.append(
            f"| {r['resolved']} | {r['weight_bytes'] / 2**20:.0f} | {r['log_likelihood']:.4f} | "
            f"{r['perplexity']:.3f} | {r['log_likelihood'] - base['log_likelihood']:+.4f} | {speeds} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="float32,bfloat16,int8", help="of: " + ", ".join(precisions.PRECISIONS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--out", default="bench-results/precision.json")
    args = parser.parse_args(argv)
    asked = [precisions.check(p, "--precisions") for p in args.precisions.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    configure_threads(args.threads)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": args.model,
        "device": pick_device(args.device),
        "tokens": args.tokens,
        "rows": [],
    }
    for precision in asked:
        report["rows"].append(measure(args.model, precision, report["device"], args.tokens, levels))
        gc.collect()  # the last precision's model goes before the next one loads
    write_report(args.out, report, table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
