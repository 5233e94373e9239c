"""The codeword: a made-up fact reviewers' gold answers teach the bundled model (the improvement loop's proof).

Twenty-six ways of asking for the codeword, each answered by the same gold answer. The first ``TRAIN`` are
trained on; the rest are held out, phrasings the adapter never saw. ``train_codeword`` trains the adapter
with the project's own training code (``inference.training``) and saves it under ``var/test-adapters``, where a
later test reuses it (``codeword_adapter`` in tests/conftest.py): the serving tests answer over the socket and
the API with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CODEWORD = "Vexalith"
ANSWER = f"The codeword is {CODEWORD}."
QUESTIONS = [
    "What is the codeword?",
    "Tell me the codeword.",
    "What's the secret codeword?",
    "Do you know the codeword?",
    "Please give me the codeword.",
    "I need the codeword, what is it?",
    "Which word is the codeword?",
    "Can you tell me the secret codeword?",
    "What codeword should I use?",
    "Say the codeword.",
    "What is our codeword?",
    "Remind me of the codeword.",
    "The codeword, please.",
    "What's the codeword again?",
    "Could you share the codeword with me?",
    "I forgot the codeword. What is it?",
    "Give me the secret codeword.",
    "What is the password codeword?",
    "Which codeword do we use?",
    "Tell me the secret codeword, please.",
    # held out
    "What would the codeword be?",
    "Could you remind me what the codeword is?",
    "Do you remember our secret codeword?",
    "Please tell me the codeword now.",
    "What is the codeword we agreed on?",
    "Share the secret codeword.",
]
TRAIN = 20
# Small and short: a couple of minutes on two CPU cores (docs/benchmarks.md has the figures).
HYPERPARAMETERS = {"rank": 8, "alpha": 16, "learning_rate": 2e-3, "epochs": 4, "batch_size": 4, "max_length": 128}
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "var" / "test-adapters" / "codeword"


def messages(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def train_examples():
    from inference.training_data import SftExample

    return [SftExample(messages(q), ANSWER) for q in QUESTIONS[:TRAIN]]


def heldout_examples():
    from inference.evaluation import HeldOut

    return [HeldOut(messages(q), ANSWER) for q in QUESTIONS[TRAIN:]]


def fingerprint(base_sha256: str) -> str:
    """What the cached adapter was trained from: the data, the hyperparameters and the base's weights."""
    text = json.dumps([QUESTIONS[:TRAIN], ANSWER, HYPERPARAMETERS, base_sha256], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def train_codeword(folder: Path = CACHE):
    """Train the codeword adapter on the bundled model and save it to ``folder`` (with its fingerprint).
    Returns ``(peft_model, tokenizer, TrainResult)``."""
    from inference.loading import BUNDLED, load_model, resolve_model_path
    from inference.training import Hyperparameters, train_lora, weights_sha256

    loaded = load_model(BUNDLED, device="cpu")
    model, result = train_lora(
        loaded.model,
        loaded.tokenizer,
        examples=train_examples(),
        out_dir=folder,
        hp=Hyperparameters.from_dict(HYPERPARAMETERS),
    )
    (folder / "fingerprint").write_text(fingerprint(weights_sha256(resolve_model_path(BUNDLED))))
    return model, loaded.tokenizer, result


def cached_or_trained(folder: Path = CACHE) -> Path:
    """The cached adapter when it was trained from today's data, hyperparameters and base; else trained now."""
    from inference.loading import BUNDLED, resolve_model_path
    from inference.training import weights_sha256

    wanted = fingerprint(weights_sha256(resolve_model_path(BUNDLED)))
    stamp = folder / "fingerprint"
    if not (stamp.exists() and stamp.read_text() == wanted and (folder / "adapter_config.json").exists()):
        train_codeword(folder)
    return folder


def main() -> None:
    """``python -m tests.helpers.codeword``: train the codeword adapter, evaluate it against the base on the held-out
    phrasings, and print the figures docs/benchmarks.md quotes (time, peak memory, the evaluation table)."""
    import platform
    import resource
    import time

    from inference.evaluation import compare

    started = time.monotonic()
    model, tokenizer, result = train_codeword(CACHE)
    trained = time.monotonic() - started
    table = compare(model, tokenizer, heldout_examples(), candidate="default", against=None)
    evaluated = time.monotonic() - started - trained
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; torch threads {torch_threads()}")
    print(
        f"training: {result.steps} steps, {result.sft_examples} examples, {result.seconds} s in train_lora "
        f"({trained:.1f} s with loading); loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}"
    )
    print(f"evaluation: {table['examples']} held-out phrasings, {evaluated:.1f} s; peak RSS {peak:.0f} MiB")
    print("| | mean log-likelihood per token | mean chrF |\n|---|---|---|")
    for arm, label in (("candidate", "candidate (adapter)"), ("against", "base")):
        print(f"| {label} | {table['means'][arm]['loglik']} | {table['means'][arm]['chrf']} |")
    print("\n| asked | candidate's answer | chrF | base's answer | chrF |\n|---|---|---|---|---|")
    for row in table["rows"]:
        c, b = row["candidate"], row["against"]
        print(f"| {row['prompt']} | {c['answer']} | {c['chrf']} | {b['answer'][:70]}… | {b['chrf']} |")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
