"""Build the two robot-intent shadow models on the real SmolLM2 base, and encode examples.

- Generation (causal LM): an explicit ``LlamaModel`` shadow initialised from chosen base
  decoder layers and the final norm, fed the base's (frozen) input embeddings; the shadow
  head is the base's tied ``lm_head`` (frozen).
- Classification: an implicit 1-layer shadow (random init) on
  ``LlamaForSequenceClassification`` with 36 labels (35 intents and ``none``); both
  classifier heads train.

Both use ``shadow_loss_weight=1.0``: the shadow ships alone, so its loss counts fully.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .data import SYSTEM_PROMPT, Example

#: The base layers the committed generation shadow copies (see explicit_shadow_from_base).
GENERATION_SHADOW_LAYERS = (0, 1, 15, 16, 17, 18)
SHADOW_LOSS_WEIGHT = 1.0
IGNORE_INDEX = -100


def messages_for(command: str) -> list[dict]:
    """The chat messages a command is sent as (system + user)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": command}]


def prompt_ids(tokenizer, command: str) -> list[int]:
    """Token ids of the chat prompt for ``command`` (ending with the assistant header)."""
    text = tokenizer.apply_chat_template(
        messages_for(command), tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def generation_features(tokenizer, example: Example) -> tuple[list[int], list[int]]:
    """(input_ids, labels): prompt + action + eos; labels are -100 on the prompt."""
    prompt = prompt_ids(tokenizer, example.text)
    target = tokenizer(example.action, add_special_tokens=False)["input_ids"]
    target = target + [tokenizer.eos_token_id]
    return prompt + target, [IGNORE_INDEX] * len(prompt) + target


def classification_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a command for the classifier (no eos: the pooled token is the last word)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def pad_batch(rows: list[list[int]], pad_id: int, labels: list[list[int]] | None = None):
    """Right-pad to the longest row: (input_ids, attention_mask[, labels]) int64 tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    lab = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        if labels is not None:
            lab[i, : len(row)] = torch.tensor(labels[i])
    return (ids, mask, lab) if labels is not None else (ids, mask)


def explicit_shadow_from_base(base, layers=GENERATION_SHADOW_LAYERS):
    """A copy of some of the base backbone's layers (+ its final norm), without embeddings.

    ``layers``: a count (the first layers) or the base layer indices to copy, in order
    (e.g. ``(0, 1, 15, 16, 17, 18)``: early layers plus a previous-token head (15-16) and
    the induction heads of 17-18, which let the shadow copy names from the command).
    """
    from shadow_edge.backbone import get_backbone, shrink_config

    chosen = list(range(layers)) if isinstance(layers, int) else list(layers)
    backbone = get_backbone(base)
    config = shrink_config(copy.deepcopy(backbone.config), len(chosen))
    shadow = type(backbone)(config)
    source = backbone.state_dict()
    wanted = {k: v for k, v in source.items() if not k.startswith("layers.")}
    for new, old in enumerate(chosen):
        prefix = f"layers.{old}."
        wanted.update({f"layers.{new}.{k[len(prefix):]}": v for k, v in source.items()
                       if k.startswith(prefix)})
    shadow.load_state_dict(wanted, strict=True)
    return shadow


def build_generation_model(base_dir: Path, *, shadow_loss_weight: float = SHADOW_LOSS_WEIGHT,
                           layers=GENERATION_SHADOW_LAYERS):
    """A trainable ``ShadowForCausalLM`` (explicit shadow of the base's ``layers``, see
    :func:`explicit_shadow_from_base`) on the cached base."""
    from transformers import AutoModelForCausalLM

    from shadow_edge import ShadowConfig, ShadowForCausalLM, get_shadow_model, prepare_shadow_model

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    shadow = prepare_shadow_model(explicit_shadow_from_base(base, layers),
                                  remove_embed_tokens=True)
    peft = get_shadow_model(base, ShadowConfig(), shadow_model=shadow)
    return ShadowForCausalLM(peft, shadow_loss_weight=shadow_loss_weight)


def build_classification_model(base_dir: Path, labels: list[str], *,
                               shadow_loss_weight: float = SHADOW_LOSS_WEIGHT):
    """A trainable ``ShadowForSequenceClassification`` (implicit 1-layer shadow)."""
    from transformers import AutoModelForSequenceClassification

    from shadow_edge import ShadowConfig, ShadowForSequenceClassification, get_shadow_model

    base = AutoModelForSequenceClassification.from_pretrained(
        str(base_dir), dtype=torch.float32, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
    )
    peft = get_shadow_model(base, ShadowConfig(num_shadow_layers=1))
    return ShadowForSequenceClassification(peft, shadow_loss_weight=shadow_loss_weight)
