"""The MiniLM intent classifier: a frozen all-MiniLM-L6-v2 base and a 2-layer shadow.

- **Base**: ``BertForSequenceClassification`` on the installed all-MiniLM-L6-v2
  (``shadow_edge.assets.minilm_dir()``: 6 layers, hidden 384, 22.7M parameters), frozen; its
  pretrained pooler feeds a new classifier with one output per label of ``labels.json``.
- **Shadow** (``init="base"``, the default): explicit, the base's own embedding block
  (positions, token types, LayerNorm) and first two layers, copied and trainable, fed the
  base's word embeddings. Two MiniLM layers hold 3.55M parameters, the size of the SmolLM2
  classifier's one-layer shadow (3.54M), so the two examples compare at equal shadow size.
  ``init="random"`` builds the implicit 2-layer shadow (random weights) instead.
- **Heads**: BERT's pooler + classifier for the base and (a copy) for the shadow, both
  trainable; ``shadow_loss_weight=1.0``, because the shadow ships alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from shadow_edge import (
    ShadowConfig,
    ShadowForSequenceClassification,
    get_shadow_model,
    prepare_shadow_model,
)
from shadow_edge.assets import minilm_dir
from shadow_edge.backbone import get_backbone, shrink_config
from shadow_edge.encoders import drop_pooler

SHADOW_LAYERS = 2
SHADOW_LOSS_WEIGHT = 1.0
MAX_LENGTH = 64
INITS = ("base", "random")


def explicit_shadow_from_base(base, num_layers: int = SHADOW_LAYERS):
    """A ``num_layers`` copy of the base backbone: its embedding block and first layers
    (the pooler stays with the classifier head), with the base's weights."""
    backbone = get_backbone(base)
    shadow = type(backbone)(shrink_config(backbone.config, num_layers))
    drop_pooler(shadow)
    wanted = shadow.state_dict().keys()
    shadow.load_state_dict({k: v for k, v in backbone.state_dict().items() if k in wanted},
                           strict=True)
    return shadow


def load_base(labels: list[str], base_dir: Path | None = None):
    """The frozen MiniLM base with a ``len(labels)``-way classifier (new, random)."""
    return AutoModelForSequenceClassification.from_pretrained(
        str(base_dir or minilm_dir()), dtype=torch.float32, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
    )


def build_model(labels: list[str], *, init: str = "base", shadow_layers: int = SHADOW_LAYERS,
                dropout: float = 0.1, shadow_loss_weight: float = SHADOW_LOSS_WEIGHT):
    """A trainable ``ShadowForSequenceClassification`` on MiniLM (module docstring)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    base = load_base(labels)
    if init == "base":
        shadow = prepare_shadow_model(explicit_shadow_from_base(base, shadow_layers),
                                      remove_embed_tokens=True)
        peft = get_shadow_model(base, ShadowConfig(dropout=dropout), shadow_model=shadow)
    else:
        peft = get_shadow_model(base, ShadowConfig(num_shadow_layers=shadow_layers, dropout=dropout))
    return ShadowForSequenceClassification(peft, shadow_loss_weight=shadow_loss_weight)


def load_model(checkpoint: Path, labels: list[str]):
    """A saved checkpoint on the installed MiniLM base, frozen, in eval mode."""
    return ShadowForSequenceClassification.from_pretrained(load_base(labels), checkpoint)


def tokenizer():
    """MiniLM's tokenizer (uncased WordPiece; [CLS] ... [SEP], token_type_ids)."""
    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def features(tok, examples) -> list[dict]:
    """Tokenized rows (ids, mask, token types, label) for a padding collator
    (``shadow_edge.training_data.PadCollator`` or ``transformers.DataCollatorWithPadding``)."""
    encoded = tok([e.text for e in examples], truncation=True, max_length=MAX_LENGTH)
    return [{**{k: encoded[k][i] for k in encoded}, "labels": e.label}
            for i, e in enumerate(examples)]
