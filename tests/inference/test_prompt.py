"""Prompts: chat template for instruct models, the documented plain format for base models, fitting."""
import pytest

from inference.detok import Detokenizer
from inference.prompt import PLAIN_STOP_STRINGS, PromptTooLong, build_prompt
from inference.sampling import resolve_params

HISTORY = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
           {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Who are you?"}]


def test_instruct_model_uses_its_chat_template_with_the_whole_history(tokenizer):
    prompt = build_prompt(tokenizer, HISTORY, max_new_tokens=16, window=2048)
    text = tokenizer.decode(prompt.input_ids)
    assert prompt.format == "chat_template" and prompt.stop_strings == ()
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "<|im_start|>assistant\nHello!<|im_end|>" in text
    assert text.endswith("<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n")


def test_base_model_gets_the_plain_role_prefixed_format(plain_tokenizer):
    prompt = build_prompt(plain_tokenizer, HISTORY, max_new_tokens=16, window=2048)
    assert prompt.format == "plain" and prompt.stop_strings == PLAIN_STOP_STRINGS
    assert plain_tokenizer.decode(prompt.input_ids, skip_special_tokens=True) == (
        "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Who are you?\nAssistant:")


def test_oldest_turns_are_dropped_to_fit_but_system_and_newest_stay(tokenizer):
    long_history = [HISTORY[0]] + [{"role": r, "content": f"turn {i} " + "word " * 30}
                                   for i, r in enumerate(["user", "assistant"] * 6)] + [HISTORY[-1]]
    full = build_prompt(tokenizer, long_history, max_new_tokens=16, window=4096)
    fitted = build_prompt(tokenizer, long_history, max_new_tokens=16, window=len(full.input_ids) - 50)
    text = tokenizer.decode(fitted.input_ids)
    assert fitted.dropped_messages >= 2 and fitted.dropped_messages % 2 == 0
    assert len(fitted.input_ids) + 16 <= len(full.input_ids) - 50
    assert "Be brief." in text and "Who are you?" in text and "turn 0 " not in text
    assert text.split("<|im_end|>")[1].startswith("\n<|im_start|>user")  # never starts on an assistant turn


def test_a_message_too_long_for_the_window_is_refused_in_words(tokenizer):
    with pytest.raises(PromptTooLong, match="too long for this model"):
        build_prompt(tokenizer, [{"role": "user", "content": "word " * 500}], max_new_tokens=16, window=200)


def test_detokenizer_never_splits_a_character_and_holds_back_stop_string_prefixes(tokenizer):
    text = "Héllo 😀 wörld — 漢字!"
    detok = Detokenizer(tokenizer)
    pieces = [detok.push(t) for t in tokenizer.encode(text, add_special_tokens=False)] + [detok.finish()]
    assert "".join(pieces) == text == detok.text
    assert not any("\ufffd" in p for p in pieces)

    detok = Detokenizer(tokenizer, stop_strings=("\nUser:",))
    out = [detok.push(t) for t in tokenizer.encode("Sure.\nUse it.\nUser: more", add_special_tokens=False)]
    assert "".join(out) == "Sure.\nUse it." and detok.stopped


class _Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_params_default_to_the_models_generation_config():
    greedy = resolve_params({}, _Config(do_sample=False), default_max_new_tokens=77)
    assert (greedy.temperature, greedy.top_p, greedy.max_new_tokens) == (0.0, 1.0, 77)
    sampled = resolve_params({}, _Config(do_sample=True, temperature=0.6, top_p=0.9, max_new_tokens=300),
                             max_new_tokens_cap=200)
    assert (sampled.temperature, sampled.top_p, sampled.max_new_tokens) == (0.6, 0.9, 200)
    chosen = resolve_params({"temperature": 0.0, "max_new_tokens": 5}, _Config(do_sample=True, temperature=0.6))
    assert (chosen.temperature, chosen.max_new_tokens) == (0.0, 5)
