"""The quality figure precisions are compared by (inference/quality.py): the model's log-likelihood of a fixed
text — the same number every time, every token after the first scored once, and worse for the same words
shuffled (on the bundled model, which knows English; on the text's first paragraphs, to stay quick)."""

import math
import random

import pytest
import torch

from inference.quality import fixed_text, log_likelihood


@pytest.fixture(scope="module")
def bundled_model(bundled_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(bundled_path, dtype=torch.float32).eval()


def opening(paragraphs: int = 2) -> str:
    return "\n\n".join(fixed_text().split("\n\n")[:paragraphs])


def test_the_same_text_gives_the_same_figure_and_shuffled_words_a_worse_one(bundled_model, tokenizer):
    text = opening()
    first, again = log_likelihood(bundled_model, tokenizer, text), log_likelihood(bundled_model, tokenizer, text)
    assert first == again
    words = text.split()
    random.Random(0).shuffle(words)
    shuffled = log_likelihood(bundled_model, tokenizer, " ".join(words))
    assert shuffled.mean < first.mean - 1.0  # a nat a token worse, at least: the model knows word order
    assert shuffled.perplexity > first.perplexity and math.isclose(first.perplexity, math.exp(-first.mean))


def test_every_token_after_the_first_of_each_window_is_scored_once(tiny_llama, tokenizer):
    ids = tokenizer(fixed_text(), add_special_tokens=False)["input_ids"]
    assert len(ids) > 700
    assert log_likelihood(tiny_llama, tokenizer, window=2048).tokens == len(ids) - 1  # one window: all but the first
    # By default the model's context window (512 here): two windows, each one's first token unscored.
    assert log_likelihood(tiny_llama, tokenizer).tokens == len(ids) - 2
    windows = math.ceil((len(ids) - 1) / 100)
    assert log_likelihood(tiny_llama, tokenizer, window=100).tokens == len(ids) - windows
    with pytest.raises(ValueError, match="at least two tokens"):
        log_likelihood(tiny_llama, tokenizer, "a")
