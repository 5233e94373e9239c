"""One forward for a round's decode step and a chunk of a long prompt, as vLLM and TGI schedule them.

Why: run as two forwards, a round with a chunk reads every weight twice and pays a forward's fixed cost twice; on
a CPU a decode step of a few rows is mostly that cost (docs/benchmarks.md), so every round a long prompt is
computed in widened the running streams' gaps by a whole extra step before its chunk's own work. Here the decode
rows' tokens and the chunk's tokens go through each linear layer together — one product over ``rows + chunk``
token rows, the weights read once — and only attention runs per part, each over its own cache: the decode rows
over the running batch's (left-padded, growing in place), the chunk over the prompt's own cache (causal, after
its past). The chunk then costs a round only its own tokens' arithmetic.

It is written against the Llama layout of transformers' modelling code (``model.model.layers[i]`` with
``self_attn.{q,k,v,o}_proj``, ``mlp``, the norms and ``model.model.rotary_emb``), calling those modules as
transformers does, so the products, norms and rotary embedding are transformers' own; ``fusable`` says when a
model has that layout. Another architecture, or rows taking LoRA adapters (peft's layers apply an adapter per
call, not per row here), keep the two forwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_LAYOUTS = ("llama",)  # model types whose decoder layers this module computes as transformers does


def fusable(model) -> bool:
    """Whether ``model`` has the layout this module computes: a Llama-type causal LM, full attention throughout,
    SiLU-gated MLP, no tensor-parallel split of its projections."""
    config = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    if config is None or inner is None or getattr(config, "model_type", None) not in _LAYOUTS:
        return False
    if getattr(config, "pretraining_tp", 1) != 1 or getattr(config, "sliding_window", None):
        return False
    layers = getattr(inner, "layers", None)
    return (
        bool(layers)
        and all(
            hasattr(layer, "self_attn") and hasattr(layer.self_attn, "q_proj") and hasattr(layer, "mlp")
            for layer in layers
        )
        and hasattr(inner, "rotary_emb")
    )


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
        # the decode rows: token j of the flat sequence is row j's one new token
        kd, vd = batch_cache.layers[index].update(_rows(k[:, :, :rows]), _rows(v[:, :, :rows]))
        out_d = F.scaled_dot_product_attention(
            _rows(q[:, :, :rows]), kd, vd, attn_mask=decode_mask, scale=attn.scaling, enable_gqa=True
        )  # [B, heads, 1, d]
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
