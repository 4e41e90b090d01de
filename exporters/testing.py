"""Tiny, offline, deterministic models and export folders for tests (ours and the runtime's).

- :func:`tiny_tokenizer_files` writes a byte-level BPE tokenizer (no merges) with three
  special tokens: ``<|endoftext|>`` = 0 (pad), ``<|im_start|>`` = 1 (bos),
  ``<|im_end|>`` = 2 (eos), then the 256 byte symbols -> vocab 259. Any UTF-8 text encodes;
  multi-byte characters span several tokens. A ChatML chat template is included.
- :func:`tiny_model` builds a random-weight HF causal LM / classifier of a supported
  architecture (decoders, and the encoders ``bert``, ``distilbert``, ``roberta`` as
  classifiers); :func:`tiny_model_folder` saves it with the tokenizer.
- :func:`tiny_export` exports such a folder with :func:`exporters.export`.
- :func:`copying_export` stands in for the (slow) dynamo export in pipeline tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from .spec import TEXT_CLASSIFICATION, TEXT_GENERATION, normalize_task

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: Tiny encoder configs (classification only): hidden 64, 4 heads, FFN 2 x hidden. BERT has
#: two token types (so its graph takes token_type_ids); RoBERTa one, as its checkpoints.
ENCODER_ARCHITECTURES = ("bert", "distilbert", "roberta")
#: Gemma 3's sliding window in tiny configs: short, so a parity probe crosses it.
TINY_SLIDING_WINDOW = 8


def alternating_layer_types(num_layers: int) -> list[str]:
    """Gemma 3 style ``layer_types`` for tiny configs: sliding, full, sliding, ..."""
    return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
TINY_VOCAB = len(SPECIAL_TOKENS) + 256
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_tokenizer_files(folder: str | Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json (with chat_template) and
    special_tokens_map.json into ``folder``; return the folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL_TOKENS[BOS_ID], "eos_token": SPECIAL_TOKENS[EOS_ID],
        "pad_token": SPECIAL_TOKENS[PAD_ID], "unk_token": None,
        "add_bos_token": False, "add_eos_token": False,
        "model_max_length": 128, "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": SPECIAL_TOKENS[BOS_ID], "eos_token": SPECIAL_TOKENS[EOS_ID],
               "pad_token": SPECIAL_TOKENS[PAD_ID]}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return folder


def tiny_config(arch: str = "llama", *, num_layers: int = 2, hidden_size: int = 64,
                vocab_size: int = TINY_VOCAB, num_labels: int = 3, head_dim: int | None = None,
                tie_word_embeddings: bool | None = None):
    """A tiny HF config: 4 heads (2 KV heads), FFN 2 x hidden, ``head_dim`` default hidden/4
    (a different ``head_dim`` exercises Qwen3/Gemma-style configs; ignored for GPT-2).
    ``tie_word_embeddings`` overrides the architecture's default (one table for the input
    embedding and the LM head)."""
    import transformers as tf

    tokens = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}
    if arch in ENCODER_ARCHITECTURES:
        config = tiny_encoder_config(arch, num_layers=num_layers, hidden_size=hidden_size,
                                     vocab_size=vocab_size)
    elif arch == "gpt2":
        config = tf.GPT2Config(n_embd=hidden_size, n_layer=num_layers, n_head=4,
                               n_inner=2 * hidden_size, n_positions=128, vocab_size=vocab_size,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **tokens)
    else:
        window = {"sliding_window": TINY_SLIDING_WINDOW,
                  "layer_types": alternating_layer_types(num_layers)} if arch == "gemma3_text" else {}
        config = tf.AutoConfig.for_model(
            arch, hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=4,
            num_key_value_heads=2, head_dim=head_dim or hidden_size // 4, intermediate_size=2 * hidden_size,
            vocab_size=vocab_size, max_position_embeddings=128, **tokens, **window)
    if tie_word_embeddings is not None:
        config.tie_word_embeddings = tie_word_embeddings
    config.num_labels = num_labels
    config.id2label = {i: f"label_{i}" for i in range(num_labels)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    return config


def tiny_encoder_config(arch: str, *, num_layers: int = 2, hidden_size: int = 64,
                        vocab_size: int = TINY_VOCAB):
    """A tiny BERT / DistilBERT / RoBERTa config (dropout 0; pad id :data:`PAD_ID`)."""
    import transformers as tf

    if arch == "distilbert":
        return tf.DistilBertConfig(
            vocab_size=vocab_size, dim=hidden_size, n_layers=num_layers, n_heads=4,
            hidden_dim=2 * hidden_size, max_position_embeddings=128, pad_token_id=PAD_ID,
            dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
    cls = {"bert": tf.BertConfig, "roberta": tf.RobertaConfig}[arch]
    return cls(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=4, intermediate_size=2 * hidden_size, max_position_embeddings=130,
        type_vocab_size=2 if arch == "bert" else 1, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
        eos_token_id=EOS_ID, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_model(arch: str = "llama", task: str = TEXT_GENERATION, *, seed: int = 0,
               head_std: float = 0.2, **sizes):
    """A random-weight (seeded) HF ``*ForCausalLM`` or ``*ForSequenceClassification``.

    Heads get a larger init than HF's 0.02 (classifier std 1, LM head std ``head_std``) so
    logits are peaked like a trained model's, not near-uniform: top-1 comparisons between
    torch and ONNX are then meaningful instead of decided by ties.
    """
    import torch
    import transformers as tf

    task = normalize_task(task)
    torch.manual_seed(seed)
    config = tiny_config(arch, **sizes)
    auto = tf.AutoModelForCausalLM if task == TEXT_GENERATION else (
        tf.AutoModelForSequenceClassification)
    model = auto.from_config(config).eval()
    with torch.no_grad():
        if task == TEXT_CLASSIFICATION and arch in ENCODER_ARCHITECTURES:
            from shadow_edge.encoder_heads import encoder_classifier_head

            head = encoder_classifier_head(model)
            head.get_submodule(head.last_linear).weight.normal_(0.0, 1.0)
        elif task == TEXT_CLASSIFICATION:
            head = model.score if hasattr(model, "score") else model.classifier
            head.weight.normal_(0.0, 1.0)
        else:
            model.get_output_embeddings().weight.normal_(0.0, head_std)
    return model


def tiny_model_folder(folder: str | Path, arch: str = "llama", task: str = TEXT_GENERATION, *,
                      seed: int = 0, **sizes) -> Path:
    """Save :func:`tiny_model` (safetensors) plus the tiny tokenizer into ``folder``."""
    folder = Path(folder)
    model = tiny_model(arch, task, seed=seed, **sizes)
    model.save_pretrained(str(folder))
    tiny_tokenizer_files(folder)
    return folder


def tiny_export(tmp_path: str | Path, arch: str = "llama", task: str = TEXT_GENERATION,
                precision: str = "fp32", *, seed: int = 0, name: str | None = None,
                sizes: dict | None = None, **export_kwargs) -> Path:
    """Build a tiny model folder under ``tmp_path`` and export it; return the export folder.

    The export folder is ``tmp_path / (name or f"{arch}-{task}-{precision}")`` and holds
    model.onnx, config.json, generation_config.json (text-generation), tokenizer files and
    shadow_edge.json (verified by the parity gate unless ``verify=False`` is passed).
    ``sizes`` go to :func:`tiny_config` (e.g. ``{"num_layers": 1, "head_dim": 32}``); extra
    keyword arguments go to :func:`exporters.export` (e.g. ``ort=True``).
    """
    from .api import export

    task = normalize_task(task)
    tmp_path = Path(tmp_path)
    stem = name or f"{arch}-{task}-{precision}"
    source = tiny_model_folder(tmp_path / f"{stem}-source", arch, task, seed=seed,
                               **(sizes or {}))
    return export(source, tmp_path / stem, precision=precision, **export_kwargs).output_dir


def copying_export(source: str | Path, perturb=None):
    """A stand-in for :func:`exporters.onnx.export_onnx` that copies the fp32 ONNX file
    ``source`` (an export of the same model) instead of tracing, optionally editing the copy
    with ``perturb(model_proto)``. Tests patch it over ``exporters.api.onnx_export.export_onnx``
    so the rest of the pipeline (quantize, verify, ORT, packaging) runs for real in
    milliseconds. ``source`` and ``perturb`` may be changed on the returned function.
    """
    import shutil

    from .onnx import OnnxExport
    from .spec import task_spec

    def export_onnx(model, output, *, opset=None, external_data=None, **kwargs):
        import onnx

        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export_onnx.source, output)
        if export_onnx.perturb is not None:
            proto = onnx.load(str(output))
            export_onnx.perturb(proto)
            onnx.save(proto, str(output))
        spec, dims = task_spec(model.task), model.dims()
        return OnnxExport(path=output, task=model.task, opset=18, inputs=spec.inputs(dims),
                          outputs=spec.outputs(dims), external_data=False, files=[output])

    export_onnx.source, export_onnx.perturb = source, perturb
    return export_onnx
