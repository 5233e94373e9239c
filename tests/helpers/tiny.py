"""A tiny random Llama for tests that need a model but not its quality: two layers, the bundled tokenizer's
vocabulary, seeded (the same weights every time), built in milliseconds."""


def tiny_llama(tokenizer, max_positions: int = 512, **layout):
    """``layout``: LlamaConfig fields over the defaults (biases, head sizes, rotary scaling...)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        **{
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": max_positions,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            **layout,
        }
    )
    return LlamaForCausalLM(config).eval()
