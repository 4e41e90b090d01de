"""Tiny decoder configs for the six supported architectures (random weights, offline)."""

from __future__ import annotations

ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gpt2")


def tiny_config(arch: str, *, num_hidden_layers: int = 4, hidden_size: int = 64, **overrides):
    """Return a tiny HF config for ``arch``.

    Sizes: vocab 256, hidden 64, 4 layers, 4 heads (2 KV heads), head_dim 16, FFN 128.
    Qwen3 and Gemma get an explicit ``head_dim`` of 16 as well; GPT-2 has no GQA.
    """
    import transformers as tf

    common = {"vocab_size": 256, "max_position_embeddings": 128}
    if arch == "gpt2":
        cfg = tf.GPT2Config(
            n_embd=hidden_size, n_layer=num_hidden_layers, n_head=4, n_inner=2 * hidden_size,
            n_positions=128, vocab_size=256, bos_token_id=1, eos_token_id=2,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )
    else:
        cls = {
            "llama": tf.LlamaConfig,
            "qwen2": tf.Qwen2Config,
            "qwen3": tf.Qwen3Config,
            "mistral": tf.MistralConfig,
            "gemma": tf.GemmaConfig,
        }[arch]
        cfg = cls(
            hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
            num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
            intermediate_size=2 * hidden_size, bos_token_id=1, eos_token_id=2, pad_token_id=0,
            **common,
        )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg
