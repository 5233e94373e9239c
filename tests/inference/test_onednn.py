"""Linear layers packed for oneDNN on the CPU (inference/onednn.py): the same products as torch's path, every
decode-step product through oneDNN and none through MKL's ``mm``, torch's path wherever oneDNN must not be used
(gradients, another dtype, a weight changed since packing), and an adapter served over a packed base writes what
peft writes over a plain one."""

import copy

import pytest
import torch

from inference import onednn
from inference.engine import BatchEngine, GenerationRequest
from inference.onednn import PackedLinear, pack_linears, packed_bytes
from inference.sampling import SamplingParams
from tests.inference.test_adapters import peft_text, save_lora
from tests.inference.test_engine import greedy_reference, run

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN linear operators")


def packed_copy(model):
    model = copy.deepcopy(model)
    pack_linears(model)
    return model


def linears(model) -> list:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def test_every_float_linear_is_packed_and_gives_the_same_products(tiny_llama):
    model = packed_copy(tiny_llama)
    assert all(type(m) is PackedLinear for m in linears(model)) and len(linears(model)) == 2 * 7 + 1
    assert packed_bytes(model) == sum(m.weight.numel() * 4 for m in linears(model))
    ids = torch.randint(3, 1000, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain, fast = tiny_llama(ids).logits, model(ids).logits
    assert torch.allclose(plain, fast, atol=1e-5, rtol=1e-4)
    layer = torch.nn.Linear(16, 8, bias=True)
    packed = copy.deepcopy(layer)
    pack_linears(packed)
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        assert torch.allclose(packed(x), layer(x), atol=1e-6)  # a bias, and a 3-dimensional input


def test_bfloat16_is_packed_and_quantised_or_other_weights_are_left_alone(tiny_llama):
    model = copy.deepcopy(tiny_llama).to(torch.bfloat16)
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():  # such a CPU keeps bfloat16 on torch's path
        assert pack_linears(model) == 0
        return
    assert pack_linears(model) == 15
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        ref = copy.deepcopy(tiny_llama).to(torch.bfloat16)(ids).logits.float()
        assert torch.allclose(model(ids).logits.float(), ref, atol=0.05)
    assert pack_linears(copy.deepcopy(tiny_llama).to(torch.float16)) == 0

    from inference import precision

    int8 = copy.deepcopy(tiny_llama)
    precision.apply(int8, precision.resolve("int8", "cpu"))
    assert pack_linears(int8) == 0 and not any(isinstance(m, PackedLinear) for m in int8.modules())


def test_a_decode_step_multiplies_through_onednn_only(tiny_llama, tokenizer):
    """Counted with the profiler: every linear of the model is one oneDNN call per decode step, and no product
    goes through MKL's ``mm``/``addmm`` (the lm_head too). Without packing the same step has them all as ``mm``."""
    from torch.profiler import ProfilerActivity, profile

    from inference.stepprof import fill

    def step_ops(model) -> dict:
        engine = BatchEngine(model, tokenizer, max_batch_size=4, eos_ids=set())
        with torch.no_grad():  # as in the engine's thread
            fill(engine, 4, 20)
            engine._decode_step()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                engine._decode_step()
        return {e.key: e.count for e in prof.key_averages()}

    plain, fast = step_ops(tiny_llama), step_ops(packed_copy(tiny_llama))
    assert plain.get("aten::mm", 0) == 15
    assert fast.get("mkldnn::_linear_pointwise", 0) == 15
    assert fast.get("aten::mm", 0) == fast.get("aten::addmm", 0) == 0


def test_greedy_tokens_equal_generate_on_the_plain_model(tiny_llama, tokenizer):
    ids = tokenizer("The history of the sea", add_special_tokens=False).input_ids
    engine = BatchEngine(packed_copy(tiny_llama), tokenizer, max_batch_size=4, eos_ids=set()).start()
    try:
        got = "".join(run(engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=24))))[0])
        want = tokenizer.decode(greedy_reference(tiny_llama, tokenizer, ids, 24), skip_special_tokens=True)
        assert got == want and got
    finally:
        engine.shutdown()


def test_with_gradients_a_packed_layer_is_torchs_own_and_its_gradients_are_right():
    """oneDNN's operator has no backward: a LoRA trained over a packed base would get wrong gradients silently.
    With gradients on, the layer takes torch's path (and its gradients are nn.Linear's)."""
    layer = torch.nn.Linear(8, 4)
    packed = copy.deepcopy(layer)
    pack_linears(packed)
    x = torch.randn(3, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    layer(x).square().sum().backward()
    packed(x2).square().sum().backward()
    assert torch.allclose(x.grad, x2.grad) and torch.allclose(layer.weight.grad, packed.weight.grad)


def test_a_packed_model_can_be_copied_and_its_copy_packs_on_first_use(tiny_llama):
    model = packed_copy(tiny_llama)
    twin = copy.deepcopy(model)
    assert all(type(m) is PackedLinear for m in linears(twin)) and packed_bytes(twin) == 0
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(twin(ids).logits, model(ids).logits)
    assert packed_bytes(twin) == packed_bytes(model) > 0


def test_unpacked_layers_are_plain_linears_again(tiny_llama):
    from inference.onednn import unpack_linears

    model = packed_copy(tiny_llama)
    unpack_linears(model)
    assert all(type(m) is torch.nn.Linear and not hasattr(m, "_packed") for m in linears(model))
    assert packed_bytes(model) == 0 and pack_linears(model) == 15


def test_a_weight_changed_in_place_or_replaced_is_packed_again():
    layer = torch.nn.Linear(8, 4, bias=False)
    pack_linears(layer)
    x = torch.randn(2, 8)
    with torch.no_grad():
        layer.weight.mul_(2)  # in place
        assert torch.allclose(layer(x), x @ layer.weight.T, atol=1e-6)
        layer.weight = torch.nn.Parameter(torch.ones(4, 8))  # replaced
        assert torch.allclose(layer(x), x.sum(-1, keepdim=True).expand(2, 4), atol=1e-5)


def test_an_adapter_over_a_packed_base_writes_what_peft_writes_over_a_plain_one(tiny_llama, tokenizer, tmp_path):
    """peft wraps the packed layers as it wraps any ``nn.Linear`` and adds its LoRA products to theirs."""
    adapter = save_lora(tiny_llama, tmp_path / "a", seed=1)
    ids = tokenizer("Tell me about the sea", add_special_tokens=False).input_ids
    engine = BatchEngine(packed_copy(tiny_llama), tokenizer, max_batch_size=4, eos_ids=set()).start()
    try:
        handle = engine.submit(GenerationRequest(list(ids), SamplingParams(max_new_tokens=10), adapter=adapter))
        got = "".join(run(handle)[0])
    finally:
        engine.shutdown()
    assert got == peft_text(tiny_llama, tokenizer, adapter, ids) and got


def test_load_model_packs_on_the_cpu_unless_told_not_to(monkeypatch, tmp_path, tiny_llama, tokenizer):
    from inference.loading import load_model

    folder = tmp_path / "tiny"
    tiny_llama.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert isinstance(load_model(str(folder), device="cpu").model.lm_head, PackedLinear)
    assert type(load_model(str(folder), device="cpu", packed=False).model.lm_head) is torch.nn.Linear
    monkeypatch.setenv("CHAT_CPU_PACKED_LINEARS", "0")
    assert type(load_model(str(folder), device="cpu").model.lm_head) is torch.nn.Linear
