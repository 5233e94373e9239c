"""The engine's own forward for a Llama-type model: every decode step (``CHAT_DECODE_DIRECT``) and, with it, a
round's chunk of a long prompt (``CHAT_PREFILL_FUSED``), as vLLM and TGI schedule them.

Why: run as two forwards, a round with a chunk reads every weight twice and pays a forward's fixed cost twice; on
a CPU a decode step of a few rows is mostly that cost (docs/benchmarks.md), so every round a long prompt is
computed in widened the running streams' gaps by a whole extra step before its chunk's own work. Here the decode
rows' tokens and the chunk's tokens go through each linear layer together — one product over ``rows + chunk``
token rows, the weights read once — and only attention runs per part, each over its own cache: the decode rows
over the running batch's (left-padded, growing in place), the chunk over the prompt's own cache (causal, after
its past). The chunk then costs a round only its own tokens' arithmetic. Without a chunk the same forward is
the decode step: transformers' modules spend a fifth of a one-row step on a CPU in per-call work
(docs/benchmarks.md), which one operator per step of a layer, over every row at once, does not.

It is written against transformers' ``LlamaForCausalLM`` (``model.model.layers[i]`` with
``self_attn.{q,k,v,o}_proj``, ``mlp``, the norms and ``model.model.rotary_emb``): its weights, rotary tables and
(outside float32) norm modules; the same arithmetic as its forward but for the order of float additions, and in
bfloat16 exactly its rounding (tests/inference/test_fused.py). ``fusable`` says when a model is one. Another
architecture, or rows taking LoRA adapters (peft's layers apply an adapter per call, not per row here), keep
transformers' forward. Measured on the CPU only: on a GPU the chunk's attention (a mask and grouped heads) may
take a slower kernel than a forward of its own would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inference.onednn import PackedLinear

_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None)

# Rotary embeddings whose frequencies depend on the longest position in the call: fused, the chunk's keys (cached
# for good) would depend on the decode rows' positions.
_ROPE_BY_LENGTH = ("dynamic", "longrope")


def fusable(model) -> bool:
    """Whether ``model`` is transformers' own ``LlamaForCausalLM`` (the layout this module computes: full attention
    throughout, no tensor-parallel split of its projections, SiLU in the MLP) with a rotary embedding that depends
    on positions alone."""
    from transformers import LlamaForCausalLM

    if type(model) is not LlamaForCausalLM:  # a subclass, or a remote-code model calling itself "llama"
        return False
    config = model.config
    if getattr(config, "pretraining_tp", 1) != 1 or getattr(config, "sliding_window", None):
        return False
    if getattr(config, "hidden_act", "silu") not in ("silu", "swish"):  # the MLP's activation ``forward`` applies
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return rope.get("rope_type", rope.get("type", "default")) not in _ROPE_BY_LENGTH


def forward(
    model,
    decode: dict,
    chunk_ids: torch.Tensor | None = None,
    chunk_positions: torch.Tensor | None = None,
    chunk_cache=None,
) -> torch.Tensor:
    """The round's one forward. ``decode``: the running batch's ``decode_inputs()`` (``input_ids [B, 1]``,
    ``attention_mask [B, T]`` with this step's column set, ``position_ids [B, 1]``, ``past_key_values``);
    the chunk, if any: ``chunk_ids [1, n]`` at ``chunk_positions [1, n]`` after the ``chunk_cache``'s past (one
    row, no padding: a chunk's cache is built that way). The caches take this round's keys and values. Returns
    logits ``[B, vocab]``, or ``[B + 1, vocab]`` with a chunk: each decode row's, then the chunk's last token's.

    The tokens go as one flat sequence ``[rows + n, hidden]`` (no batch dimension, no padding), so each step of a
    layer is one operator over all of them; where a linear layer is packed for oneDNN (``onednn.py``) the residual
    additions and the MLP's activation and product ride on its products as oneDNN post-operations (``_Product``)."""
    inner = model.model
    rows = decode["input_ids"].shape[0]
    ids, positions = decode["input_ids"].reshape(rows), decode["position_ids"].reshape(rows)
    n = 0
    if chunk_ids is not None:
        n = chunk_ids.shape[1]
        ids, positions = torch.cat([ids, chunk_ids[0]]), torch.cat([positions, chunk_positions[0]])
    tokens = rows + n
    hidden = inner.embed_tokens(ids)  # [tokens, H]
    cos, sin = inner.rotary_emb(hidden, positions[None])  # [1, tokens, d]
    half = cos.shape[-1] // 2
    # rotate_half(x) * sin == swap_halves(x) * (sin with its first half negated), exactly (negation is exact)
    cos, sin = cos[0, :, None, :], torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)[0, :, None, :]
    batch_cache = decode["past_key_values"]
    # The masks as the additive float masks attention turns a boolean one into, made once for the step rather than
    # once a layer.
    decode_mask = _additive(decode["attention_mask"].bool()[:, None, None, :], hidden.dtype)  # [B, 1, 1, T]
    chunk_mask = None
    if n:
        past = chunk_cache.get_seq_length()
        # query i of the chunk (position past + i) sees keys 0 … past + i
        causal = torch.ones(n, past + n, dtype=torch.bool, device=ids.device).tril(diagonal=past)[None, None]
        chunk_mask = _additive(causal, hidden.dtype)
    for index, layer in enumerate(inner.layers[: model.config.num_hidden_layers]):
        attn = layer.self_attn
        d = attn.head_dim
        x = _norm(layer.input_layernorm, hidden)
        q = _rope(_Product(attn.q_proj, x).plain().view(tokens, -1, d), cos, sin, half)  # [tokens, heads, d]
        k = _rope(_Product(attn.k_proj, x).plain().view(tokens, -1, d), cos, sin, half)  # [tokens, kv heads, d]
        v = _Product(attn.v_proj, x).plain().view(tokens, -1, d)
        kv_heads = k.shape[1]
        # the decode rows: one token each. Their query heads go as the "queries" of their key/value head
        # ([B, kv heads, heads per kv head, d], as transformers' SDPA path does for one token): no copy of the
        # keys per query head, and a kernel that takes a mask without GQA.
        kd, vd = batch_cache.layers[index].update(k[:rows, :, None], v[:rows, :, None])  # [B, kv heads, 1, d] in
        qd = q[:rows].view(rows, kv_heads, -1, d)
        out = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=decode_mask, scale=attn.scaling)
        out = out.reshape(rows, -1)  # [B, heads × d]
        if n:
            kc, vc = chunk_cache.layers[index].update(k[None, rows:].transpose(1, 2), v[None, rows:].transpose(1, 2))
            out_c = F.scaled_dot_product_attention(
                q[None, rows:].transpose(1, 2), kc, vc, attn_mask=chunk_mask, scale=attn.scaling, enable_gqa=True
            )  # [1, heads, n, d]
            out = torch.cat([out, out_c[0].transpose(0, 1).reshape(n, -1)])
        hidden = _Product(attn.o_proj, out).plus(hidden)
        x = _norm(layer.post_attention_layernorm, hidden)
        mlp = layer.mlp
        hidden = _Product(mlp.down_proj, _Product(mlp.up_proj, x).times(_Product(mlp.gate_proj, x).silu())).plus(hidden)
    last = hidden if not n else torch.cat([hidden[:rows], hidden[-1:]])  # each decode row, the chunk's last token
    return model.lm_head(_norm(inner.norm, last))


class _Product:
    """``linear(x)`` followed by one elementwise step: through oneDNN with the step as its post-operation where the
    layer is packed and works in float32 (one operator, the output written once), else the product and torch's
    operator one after the other. Not for bfloat16: a post-operation acts on the product's float32 sum before it
    is rounded, where transformers rounds the product first — measured on the bundled model, enough to change a
    greedy reply's 24th token."""

    __slots__ = ("linear", "x", "packed", "fuse")

    def __init__(self, linear, x: torch.Tensor):
        self.linear, self.x = linear, x
        self.packed = linear.packed_for(x) if type(linear) is PackedLinear else None
        self.fuse = self.packed is not None and x.dtype == torch.float32

    def plain(self) -> torch.Tensor:
        if self.packed is None:
            return self.linear(self.x)
        return _LINEAR(self.x, self.packed, self.linear.bias, "none", [], "")

    def silu(self) -> torch.Tensor:
        if not self.fuse:
            return F.silu(self.plain())
        return _LINEAR(self.x, self.packed, self.linear.bias, "swish", [], "")

    def plus(self, other: torch.Tensor) -> torch.Tensor:
        if not self.fuse:
            return other + self.plain()
        return _LINEAR.binary(self.x, other, self.packed, self.linear.bias, "add")

    def times(self, other: torch.Tensor) -> torch.Tensor:
        if not self.fuse:
            return self.plain() * other
        return _LINEAR.binary(self.x, other, self.packed, self.linear.bias, "mul")


def _additive(mask: torch.Tensor, dtype) -> torch.Tensor:
    """A boolean attention mask (True: attend) as 0 / -inf in ``dtype``."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _norm(norm, x: torch.Tensor) -> torch.Tensor:
    """transformers' ``LlamaRMSNorm`` as torch's one operator for float32 (the same arithmetic); as the module for
    another dtype (it computes in float32 and rounds before the weight)."""
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return torch.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)
    return norm(x)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, half: int) -> torch.Tensor:
    """The rotary embedding of ``x [tokens, heads, d]``: ``x * cos + rotate_half(x) * sin`` with ``sin``'s first
    half negated (``forward``), the halves swapped by one ``flip`` instead of two slices, a negation and a cat."""
    tokens, heads, d = x.shape
    swapped = x.reshape(tokens, heads, 2, half).flip(2).view(tokens, heads, d)
    return x * cos + swapped * sin
