"""Precisions a deployment can choose (inference/precision.py): each loads through ``load_model`` and generates
through the engine; int8 really swaps the linear weights for int8 ones (and adapters still load on them); an
unknown precision is refused with a sentence before anything is read.

A tiny random Llama saved to a folder, as an operator's own model would be: quality does not matter here, only
what each precision does to the weights, counted."""

import copy
import json

import pytest
import torch

from inference import precision
from inference.engine import BatchEngine, GenerationRequest
from inference.loading import load_model
from inference.precision_bench import main as precision_bench
from inference.sampling import SamplingParams
from tests.inference.test_adapters import lora_modules, save_lora
from tests.inference.test_engine import greedy_reference, run

N = 8
DTYPES = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@pytest.fixture(scope="module")
def folder(tiny_llama, tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_llama.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def linears(model) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def generate(model, tokenizer, ids, adapter=None) -> tuple[str, int, int]:
    """Greedy text of exactly N tokens through the engine, its completion tokens and the decode steps run."""
    engine = BatchEngine(model, tokenizer, max_batch_size=4, eos_ids=set()).start()
    try:
        _, done = run(engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=N), adapter=adapter)))
        return done.text, done.completion_tokens, engine.steps
    finally:
        engine.shutdown()


@pytest.mark.parametrize("name", ["auto", "float32", "bfloat16", "float16", "int8"])
def test_each_precision_loads_and_generates_through_the_engine(folder, tokenizer, name):
    loaded = load_model(str(folder), device="cpu", precision=name)
    model = loaded.model
    assert loaded.precision.name == name
    n_linear = len(linears(model))
    if name == "int8":
        # Activations, embeddings and norms stay in auto's dtype on the CPU; every linear weight is int8.
        assert loaded.dtype == torch.float32 and precision.int8_linears(model) == (n_linear, n_linear)
        assert model.model.embed_tokens.weight.dtype == torch.float32
    else:
        assert {p.dtype for p in model.parameters()} == {DTYPES[name]}  # every parameter, none left behind
        assert precision.int8_linears(model) == (0, n_linear)
    text, tokens, steps = generate(model, tokenizer, tokenizer.encode("Tell me about the sea"))
    assert tokens == N and steps == N - 1 and text


def test_int8_replaces_every_linear_weight_with_int8_data_and_a_quarter_of_the_bytes(tiny_llama):
    model = copy.deepcopy(tiny_llama)
    before = {name: m.weight.detach().clone() for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    float_bytes = precision.weight_bytes(model)
    precision.apply(model, precision.resolve("int8", "cpu"))
    after = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert after.keys() == before.keys() and len(after) == 15  # 7 per layer, 2 layers, and the head
    linear_bytes = 0
    for name, module in after.items():
        weight = module.weight
        assert type(weight).__name__ == "Int8Tensor" and weight.qdata.dtype == torch.int8
        assert weight.qdata.shape == before[name].shape  # one int8 per weight, one float scale per output row
        assert weight.scale.numel() == before[name].shape[0]
        linear_bytes += before[name].numel() * 4
        # De-quantised, it is the float weight to within half a step of its row's scale.
        error = (weight.dequantize() - before[name]).abs()
        assert bool((error <= weight.scale.reshape(-1, 1) / 2 + 1e-6).all())
    saved = float_bytes - precision.weight_bytes(model)
    scales = sum(m.weight.scale.nbytes for m in after.values())
    assert saved == linear_bytes * 3 // 4 - scales


def test_the_float_precisions_leave_the_weights_alone(tiny_llama):
    model = copy.deepcopy(tiny_llama)
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert precision.apply(model, precision.resolve("float32", "cpu")) is model
    assert model.model.layers[0].self_attn.q_proj.weight is weight


def test_an_adapter_loads_on_an_int8_base_and_writes_what_peft_writes_with_it(folder, tiny_llama, tokenizer, tmp_path):
    """The engine's adapters (peft's per-row mixed batches) run over int8 linear layers: an adapter row writes
    what peft's own generate writes with that adapter on the same int8 base, beside a base row in the same
    steps, and the base is left int8 and adapter-free afterwards."""
    from peft import PeftModel

    adapter = save_lora(tiny_llama, tmp_path / "a", seed=1)  # trained on a float base, as runs are
    base = load_model(str(folder), device="cpu", precision="int8").model
    reference_base = copy.deepcopy(base)
    ids = tokenizer.encode("Tell me about the sea")
    engine = BatchEngine(base, tokenizer, max_batch_size=4, eos_ids=set()).start()
    try:
        handles = engine.submit_many(
            [
                GenerationRequest(list(ids), SamplingParams(max_new_tokens=N)),
                GenerationRequest(list(ids), SamplingParams(max_new_tokens=N), adapter=adapter),
            ]
        )
        plain, tuned = [run(h)[1].text for h in handles]
        stats = engine.stats()
        assert type(engine.adapters.peft.base_model.model.model.layers[0].self_attn.q_proj).__name__ == (
            "TorchaoLoraLinear"
        )
    finally:
        engine.shutdown()
    assert stats["adapter_loads"] == 1 and stats["mixed_adapter_steps"] == stats["decode_steps"] == N - 1
    peft_model = PeftModel.from_pretrained(copy.deepcopy(reference_base), adapter.path).eval()
    assert tuned == tokenizer.decode(greedy_reference(peft_model, tokenizer, ids, N), skip_special_tokens=True)
    assert plain == tokenizer.decode(greedy_reference(reference_base, tokenizer, ids, N), skip_special_tokens=True)
    assert tuned != plain  # the adapter really changed what was written
    assert lora_modules(base) == 0 and precision.int8_linears(base) == (15, 15)


def test_an_unknown_precision_is_refused_with_a_sentence_before_anything_is_read(tmp_path):
    sentence = "CHAT_MODEL_PRECISION is 'int4': use one of auto, float32, bfloat16, float16, int8."
    with pytest.raises(precision.PrecisionError) as caught:
        load_model(str(tmp_path / "no-such-model"), device="cpu", precision="int4")  # no folder read: refused first
    assert str(caught.value) == sentence
    with pytest.raises(precision.PrecisionError, match=r"^--precisions is 'fp8': use one of"):
        precision.check("fp8", "--precisions")
    assert [precision.check(v) for v in ("", " INT8 ", "bfloat16")] == ["auto", "int8", "bfloat16"]


def test_the_precision_bench_scores_and_times_each_precision(folder, tmp_path, capsys):
    out = tmp_path / "precision.json"
    args = ["--model", str(folder), "--device", "cpu", "--precisions", "float32,int8", "--tokens", "4"]
    assert precision_bench([*args, "--concurrency", "1,2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    f32, int8 = report["rows"]
    assert [f32["int8_linears"], int8["int8_linears"]] == ["0/15", "15/15"]
    assert int8["weight_bytes"] < f32["weight_bytes"] and f32["scored_tokens"] == int8["scored_tokens"] > 700
    assert [e["concurrency"] for e in int8["engine"]] == [1, 2]
    printed = capsys.readouterr().out
    assert "| float32 |" in printed and "| int8 weights, float32 activations |" in printed
