"""Session fixtures for the CLI tests: a tiny base (with a real tokenizer), tiny ShadowPEFT
checkpoints built with the core API, and tiny exports built with the exporters API.

Everything is random-weight and offline; sizes come from ``tests.tiny_models.tiny_config``
(vocab 256, hidden 64, 4 layers). The tokenizer is character-level over printable ASCII with
``<pad>``=0, ``<s>``=1, ``</s>``=2 (the tiny configs' pad/bos/eos ids) and a small chat
template, so chat rendering is exercised too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_models import tiny_config

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)
LABELS = {0: "off", 1: "on", 2: "dim"}


def tiny_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` (99 ids) with a chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for code in range(32, 127):
        vocab[chr(code)] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(["<pad>", "<s>", "</s>", "<unk>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _save_base(folder: Path, model) -> Path:
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory) -> dict[str, Path]:
    """{"lm": LlamaForCausalLM folder, "cls": LlamaForSequenceClassification folder (3 labels)}."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bases")
    lm = LlamaForCausalLM(tiny_config("llama"))
    cls_config = tiny_config("llama", num_labels=3, id2label=LABELS,
                             label2id={v: k for k, v in LABELS.items()})
    cls = LlamaForSequenceClassification(cls_config)
    return {"lm": _save_base(root / "lm", lm), "cls": _save_base(root / "cls", cls)}


@pytest.fixture(scope="session")
def tiny_checkpoints(tiny_bases, tmp_path_factory) -> dict[str, Path]:
    """Core-API checkpoints (implicit 1-layer shadow) recording their base's path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from shadow_edge import (
        ShadowConfig,
        ShadowForCausalLM,
        ShadowForSequenceClassification,
        get_shadow_model,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for kind, loader, wrapper in (
        ("lm", AutoModelForCausalLM, ShadowForCausalLM),
        ("cls", AutoModelForSequenceClassification, ShadowForSequenceClassification),
    ):
        base = loader.from_pretrained(str(tiny_bases[kind]))
        config = ShadowConfig(num_shadow_layers=1, base_model_name_or_path=str(tiny_bases[kind]))
        model = wrapper(get_shadow_model(base, config))
        out[kind] = model.save_pretrained(root / kind)
    return out


@pytest.fixture(scope="session")
def tiny_exports(tiny_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """fp32 exports (verified) of both checkpoints, through the exporters API."""
    import exporters

    root = tmp_path_factory.mktemp("exports")
    out = {}
    for kind, checkpoint in tiny_checkpoints.items():
        exporters.export(checkpoint, root / kind)
        out[kind] = root / kind
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def assert_one_line_error(result, exit_code: int, *fragments: str) -> str:
    """The command failed with ``exit_code`` and exactly one line on stderr starting with
    "Error: " (no traceback); the line contains every fragment. Returns the line."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
