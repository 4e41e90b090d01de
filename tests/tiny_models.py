"""Tiny configs for the supported architectures (random weights, offline).

``ARCHITECTURES``: the decoders (causal LM and classification); ``ENCODER_ARCHITECTURES``:
the encoders (classification only).
"""

from __future__ import annotations

ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma3_text", "gpt2")
ENCODER_ARCHITECTURES = ("bert", "distilbert", "roberta")


def tiny_config(arch: str, *, num_hidden_layers: int = 4, hidden_size: int = 64, **overrides):
    """Return a tiny HF config for ``arch``.

    Decoders: vocab 256, hidden 64, 4 layers, 4 heads (2 KV heads), head_dim 16, FFN 128.
    Qwen3 and Gemma get an explicit ``head_dim`` of 16 as well; GPT-2 has no GQA; Gemma 3
    has a sliding window of 8 on every other layer (``layer_types`` sliding, full, ...).
    Encoders (BERT, DistilBERT, RoBERTa): the same sizes, no dropout, pad id 0; BERT has two
    token types, RoBERTa one (as its checkpoints).
    """
    import transformers as tf

    # imported here: this module is loaded by conftest.py, which must not need torch
    from exporters.testing import TINY_SLIDING_WINDOW, alternating_layer_types, tiny_encoder_config

    common = {"vocab_size": 256, "max_position_embeddings": 128}
    if arch == "gpt2":
        cfg = tf.GPT2Config(
            n_embd=hidden_size, n_layer=num_hidden_layers, n_head=4, n_inner=2 * hidden_size,
            n_positions=128, vocab_size=256, bos_token_id=1, eos_token_id=2,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )
    elif arch in ENCODER_ARCHITECTURES:
        cfg = tiny_encoder_config(arch, num_layers=num_hidden_layers, hidden_size=hidden_size,
                                  vocab_size=256)
    else:
        cls = {
            "llama": tf.LlamaConfig,
            "qwen2": tf.Qwen2Config,
            "qwen3": tf.Qwen3Config,
            "mistral": tf.MistralConfig,
            "gemma": tf.GemmaConfig,
            "gemma3_text": tf.Gemma3TextConfig,
        }[arch]
        extra = {}
        if arch == "gemma3_text":
            extra = {"sliding_window": TINY_SLIDING_WINDOW,
                     "layer_types": alternating_layer_types(num_hidden_layers)}
        cfg = cls(
            hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
            num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
            intermediate_size=2 * hidden_size, bos_token_id=1, eos_token_id=2, pad_token_id=0,
            **common, **extra,
        )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg
