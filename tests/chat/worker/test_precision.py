"""A worker loads its model at the configured precision before its engine is built: CHAT_MODEL_PRECISION, or the
model's own ``precision`` option over it. A real worker runtime over a tiny random Llama saved to a folder, as an
operator's own model is served; its engine's warm-up reply proves the model generates at that precision."""

import pytest
import torch

from chat import served
from chat.worker import runtime as worker_runtime
from inference import precision


@pytest.fixture(scope="module")
def folder(tiny_llama, tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-worker-model")
    tiny_llama.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "site, option, int8, dtype",
    [("int8", None, True, torch.float32), ("int8", "bfloat16", False, torch.bfloat16), ("auto", None, False, None)],
)
def test_the_worker_loads_its_model_at_the_configured_precision(settings, folder, site, option, int8, dtype):
    options = {"tiny": {"precision": option}} if option else {}
    settings.CHAT_SERVED_MODELS = served.parse(f"tiny={folder}", "", options)
    settings.CHAT_WORKER_MODEL = "tiny"
    settings.CHAT_MODEL_PRECISION = site
    settings.CHAT_DEVICE = "cpu"
    settings.CHAT_PREFIX_CACHE_MB = 0
    runtime = worker_runtime.Runtime(background=False)
    try:
        model = runtime.engine.model
        assert model is runtime.loaded.model and runtime.engine.steps > 0  # built over it; the warm-up ran
        assert runtime.loaded.precision.name == (option or site)
        quantised, linears = precision.int8_linears(model)
        assert quantised == (linears if int8 else 0) and linears == 15
        assert model.model.embed_tokens.weight.dtype == (dtype or torch.float32)  # auto: float32 on the CPU
    finally:
        runtime.close()


@pytest.mark.parametrize(
    "setting, decoding, chunk, chunk_decoding, direct",
    [(None, None, 512, 32, None), (0, None, 0, 32, False), (128, 0, 128, 0, True), (128, 32, 128, 32, None)],
)
def test_the_worker_computes_at_most_its_prefill_chunk_per_round_and_keeps_its_kv_budget(
    settings, folder, setting, decoding, chunk, chunk_decoding, direct
):
    """CHAT_PREFILL_CHUNK unset: the device's default (a CPU's here); 0: whole prompts; CHAT_PREFILL_CHUNK_DECODING
    unset: the device's default, 0: the same as the round's; CHAT_KV_BUDGET_MB reaches the engine in bytes; fused
    chunks on by default; CHAT_DECODE_DIRECT unset: on, as on every CPU."""
    settings.CHAT_SERVED_MODELS = served.parse(f"tiny={folder}", "", {})
    settings.CHAT_WORKER_MODEL = "tiny"
    settings.CHAT_DEVICE = "cpu"
    settings.CHAT_PREFIX_CACHE_MB = 0
    settings.CHAT_PREFILL_CHUNK = setting
    settings.CHAT_PREFILL_CHUNK_DECODING = decoding
    settings.CHAT_KV_BUDGET_MB = 3
    settings.CHAT_DECODE_DIRECT = direct
    runtime = worker_runtime.Runtime(background=False)
    try:
        assert runtime.engine.prefill_chunk == chunk
        assert runtime.engine.prefill_chunk_decoding == chunk_decoding
        assert runtime.engine.stats()["kv_budget_bytes"] == 3 * 2**20
        assert runtime.engine.fuse_chunks  # the tiny model is a Llama
        assert runtime.engine.direct_decode is (direct is not False)
    finally:
        runtime.close()
