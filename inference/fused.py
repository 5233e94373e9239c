"""One forward for a round's decode step and a chunk of a long prompt, as vLLM and TGI schedule them.

Why: run as two forwards, a round with a chunk reads every weight twice and pays a forward's fixed cost twice; on
a CPU a decode step of a few rows is mostly that cost (docs/benchmarks.md), so every round a long prompt is
computed in widened the running streams' gaps by a whole extra step before its chunk's own work. Here the decode
rows' tokens and the chunk's tokens go through each linear layer together — one product over ``rows + chunk``
token rows, the weights read once — and only attention runs per part, each over its own cache: the decode rows
over the running batch's (left-padded, growing in place), the chunk over the prompt's own cache (causal, after
its past). The chunk then costs a round only its own tokens' arithmetic.

It is written against transformers' ``LlamaForCausalLM`` (``model.model.layers[i]`` with
``self_attn.{q,k,v,o}_proj``, ``mlp``, the norms and ``model.model.rotary_emb``), calling those modules as
transformers does, so the products, norms and rotary embedding are transformers' own; ``fusable`` says when a
model is one. Another architecture, or rows taking LoRA adapters (peft's layers apply an adapter per call, not
per row here), keep the two forwards. Measured on the CPU only: on a GPU the chunk's attention (a mask and
grouped heads) may take a slower kernel than a forward of its own would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rotary embeddings whose frequencies depend on the longest position in the call: fused, the chunk's keys (cached
# for good) would depend on the decode rows' positions.
_ROPE_BY_LENGTH = ("dynamic", "longrope")


def fusable(model) -> bool:
    """Whether ``model`` is transformers' own ``LlamaForCausalLM`` (the layout this module computes: full attention
    throughout, no tensor-parallel split of its projections) with a rotary embedding that depends on positions
    alone."""
    from transformers import LlamaForCausalLM

    if type(model) is not LlamaForCausalLM:  # a subclass, or a remote-code model calling itself "llama"
        return False
    config = model.config
    if getattr(config, "pretraining_tp", 1) != 1 or getattr(config, "sliding_window", None):
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return rope.get("rope_type", rope.get("type", "default")) not in _ROPE_BY_LENGTH


def forward(model, decode: dict, chunk_ids: torch.Tensor, chunk_positions: torch.Tensor, chunk_cache) -> torch.Tensor:
    """The round's one forward. ``decode``: the running batch's ``decode_inputs()`` (``input_ids [B, 1]``,
    ``attention_mask [B, T]`` with this step's column set, ``position_ids [B, 1]``, ``past_key_values``);
    the chunk: ``chunk_ids [1, n]`` at ``chunk_positions [1, n]`` after the ``chunk_cache``'s past (one row, no
    padding: a chunk's cache is built that way). Both caches take this round's keys and values. Returns logits
    ``[B + 1, vocab]``: each decode row's, then the chunk's last token's."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    inner = model.model
    rows = decode["input_ids"].shape[0]
    n = chunk_ids.shape[1]
    ids = torch.cat([decode["input_ids"].reshape(1, rows), chunk_ids], dim=1)  # [1, rows + n]
    positions = torch.cat([decode["position_ids"].reshape(1, rows), chunk_positions], dim=1)
    hidden = inner.embed_tokens(ids)  # [1, rows + n, H]
    cos, sin = inner.rotary_emb(hidden, positions)
    batch_cache, mask = decode["past_key_values"], decode["attention_mask"]
    decode_mask = mask.bool()[:, None, None, :]  # [B, 1, 1, T]
    past = chunk_cache.get_seq_length()
    # query i of the chunk (position past + i) sees keys 0 … past + i
    chunk_mask = torch.ones(n, past + n, dtype=torch.bool, device=ids.device).tril(diagonal=past)[None, None]
    for index, layer in enumerate(inner.layers):
        attn = layer.self_attn
        x = layer.input_layernorm(hidden)
        shape = (1, rows + n, -1, attn.head_dim)
        q = attn.q_proj(x).view(shape).transpose(1, 2)  # [1, heads, rows + n, d]
        k = attn.k_proj(x).view(shape).transpose(1, 2)
        v = attn.v_proj(x).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        # the decode rows: token j of the flat sequence is row j's one new token. Their query heads go as the
        # "queries" of their key/value head ([B, kv heads, heads per kv head, d], as transformers' SDPA path does
        # for one token): no copy of the keys per query head, and a kernel that takes a mask without GQA.
        kd, vd = batch_cache.layers[index].update(_rows(k[:, :, :rows]), _rows(v[:, :, :rows]))
        qd = _rows(q[:, :, :rows]).reshape(rows, kd.shape[1], -1, attn.head_dim)
        out_d = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=decode_mask, scale=attn.scaling)
        out_d = out_d.reshape(rows, -1, 1, attn.head_dim)  # [B, heads, 1, d]
        kc, vc = chunk_cache.layers[index].update(k[:, :, rows:], v[:, :, rows:])
        out_c = F.scaled_dot_product_attention(
            q[:, :, rows:], kc, vc, attn_mask=chunk_mask, scale=attn.scaling, enable_gqa=True
        )  # [1, heads, n, d]
        out = torch.cat([out_d.transpose(0, 2), out_c], dim=2)  # [1, heads, rows + n, d]
        hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(1, rows + n, -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    last = torch.cat([hidden[0, :rows], hidden[0, -1:]])  # each decode row, the chunk's last token
    return model.lm_head(inner.norm(last))


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``[1, heads, rows, d]`` (one token per row, side by side) → ``[rows, heads, 1, d]`` (a row each)."""
    return t.transpose(0, 2)
