"""The training and evaluation library, Django-free.

The proof: gold answers teach the bundled SmolLM2 a made-up codeword (tests/helpers/codeword.py), asked in
twenty phrasings; a LoRA adapter trained on this machine's CPU, saved and loaded again beside a fresh base,
answers six phrasings it never saw with the codeword, and the held-out evaluation shows it ahead of the base
(log-likelihood of the gold answers and chrF of its answers), while the base never says the codeword. The other
tests use a tiny random model: which layers an adapter targets, a cancel between steps, DPO's reference copy
left out of the saved adapter, the hyperparameters' checks.
"""

from __future__ import annotations

import copy
import json

import pytest

from inference.evaluation import HeldOut, chrf, compare, with_adapters
from inference.loading import BUNDLED, load_model
from inference.training import Cancelled, Hyperparameters, lora_targets, train_lora, weights_sha256
from inference.training_data import PreferencePair, SftExample
from tests.helpers import codeword


def test_the_codeword_is_learnt_from_gold_answers_and_the_heldout_evaluation_shows_it(tmp_path):
    _, _, result = codeword.train_codeword(codeword.CACHE)  # trained now; cached for the serving tests
    assert result.steps == 20 and result.sft_examples == 20 and not result.dpo_ran
    assert result.losses[-1] < result.losses[0] / 4
    print(f"\ncodeword adapter: {result.steps} steps in {result.seconds} s, peak RSS {result.peak_rss_bytes >> 20} MiB")

    base = load_model(BUNDLED, device="cpu")  # a fresh base, and the saved adapter loaded beside it
    model = with_adapters(base.model, {"codeword": str(codeword.CACHE)})
    table = compare(model, base.tokenizer, codeword.heldout_examples(), candidate="codeword", against=None)
    print(json.dumps(table["means"]))
    for row in table["rows"]:
        print(f"{row['prompt']!r}: candidate {row['candidate']['answer']!r} · base {row['against']['answer']!r}")
    assert table["examples"] == 6 and table["candidate_ahead"]
    means = table["means"]
    assert means["candidate"]["loglik"] > means["against"]["loglik"] + 1.0
    assert means["candidate"]["chrf"] > means["against"]["chrf"] + 30
    for row in table["rows"]:
        assert codeword.CODEWORD in row["candidate"]["answer"], row
        assert codeword.CODEWORD.lower() not in row["against"]["answer"].lower(), row


@pytest.fixture
def tiny(tiny_llama):
    """A copy of the session's tiny Llama: an adapter wraps the model it trains, which must not be the shared one."""
    return copy.deepcopy(tiny_llama)


EXAMPLES = [SftExample([{"role": "user", "content": f"Question {i}?"}], f"Answer {i}.") for i in range(6)]


def test_targets_are_every_linear_projection_of_the_blocks(tiny, tiny_gpt2):
    assert lora_targets(tiny) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert lora_targets(tiny_gpt2) == ["c_attn", "c_fc", "c_proj"]


def test_progress_is_reported_every_step_and_a_cancel_between_steps_saves_nothing(tiny, tokenizer, tmp_path):
    seen = []

    def should_cancel():
        return len(seen) >= 2

    with pytest.raises(Cancelled):
        train_lora(
            tiny,
            tokenizer,
            examples=EXAMPLES,
            out_dir=tmp_path / "adapter",
            hp=Hyperparameters(epochs=10, batch_size=2, max_length=64),
            on_progress=seen.append,
            should_cancel=should_cancel,
        )
    assert [p.step for p in seen] == [1, 2] and {p.steps for p in seen} == {30} and seen[0].examples == 6
    assert seen[1].loss is not None and seen[1].seconds_left is not None
    assert not (tmp_path / "adapter").exists()


def test_dpo_follows_sft_on_enough_pairs_and_is_seeded(tiny, tokenizer, tmp_path):
    pairs = [PreferencePair(e.messages, e.answer, "No idea.") for e in EXAMPLES]
    hp = Hyperparameters(epochs=1, batch_size=2, max_length=64, dpo_min_pairs=6)
    results = []
    for name in ("one", "two"):
        _, result = train_lora(
            copy.deepcopy(tiny), tokenizer, examples=EXAMPLES, pairs=pairs, out_dir=tmp_path / name, hp=hp
        )
        results.append(result)
    assert results[0].dpo_ran and results[0].steps == 3 + 3 and results[0].pairs == 6
    saved = {p.name for p in (tmp_path / "one").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "ref" not in saved
    # the same data, hyperparameters and seed: the same adapter
    assert weights_sha256(tmp_path / "one") == weights_sha256(tmp_path / "two")
    assert results[0].losses == results[1].losses
    _, fewer = train_lora(tiny, tokenizer, examples=EXAMPLES, pairs=pairs[:5], out_dir=tmp_path / "three", hp=hp)
    assert not fewer.dpo_ran and fewer.steps == 3


def test_hyperparameters_refuse_unknown_names_and_round_trip():
    hp = Hyperparameters.from_dict({"rank": 4, "target_modules": ["q_proj"]})
    assert hp.rank == 4 and hp.target_modules == ("q_proj",)
    assert Hyperparameters.from_dict(hp.as_dict()) == hp
    with pytest.raises(ValueError, match="unknown hyperparameters: bogus"):
        Hyperparameters.from_dict({"bogus": 1})


def test_chrf_and_an_evaluation_of_a_model_without_adapters(tiny, tokenizer):
    assert chrf("The codeword is Vexalith.", "The codeword is Vexalith.") == 100.0
    assert chrf("", "The codeword is Vexalith.") == 0.0
    examples = [HeldOut([{"role": "user", "content": "Hi?"}], "Hello.", ref=7)]
    table = compare(tiny, tokenizer, examples, candidate=None, against=None, max_new_tokens=3)
    assert table["rows"][0]["ref"] == 7 and table["rows"][0]["gold"] == "Hello."
    assert table["means"]["candidate"] == table["means"]["against"] and not table["candidate_ahead"]
