"""KV-cached decoding for ``ShadowForCausalLM.generate`` in both inference modes.

The prompt is run once (prefill) and each step then feeds only the new token, extending a
``ShadowCache`` (base + shadow caches in ``"base_shadow"``, shadow only in ``"shadow_only"``).
This is valid because every ShadowPEFT step is per-position or causal (FORMAT.md).
Positions are ``cumsum(attention_mask) - 1`` (clipped at 0), so a left-padded batch decodes
as each row would alone. ``use_cache=False`` recomputes the whole sequence at every step
(the reference the cached path is tested against).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .cache import ShadowCache
from .errors import ConfigError
from .pooling import positions_from_mask

logger = logging.getLogger(__name__)


def _as_list(token_ids: int | Iterable[int] | None) -> list[int]:
    if token_ids is None:
        return []
    if isinstance(token_ids, int):
        return [token_ids]
    return [int(t) for t in token_ids]


def build_logits_processors(
    *,
    do_sample: bool,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float | None,
) -> LogitsProcessorList:
    """HF logits processors for the sampling settings (warpers only when ``do_sample``)."""
    processors = LogitsProcessorList()
    if repetition_penalty is not None and repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(penalty=repetition_penalty))
    if do_sample:
        if temperature is not None and temperature != 1.0:
            processors.append(TemperatureLogitsWarper(temperature))
        if top_k:
            processors.append(TopKLogitsWarper(top_k=top_k))
        if top_p is not None and top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=top_p))
    return processors


#: Arguments of transformers' generate that decoder-only models ignore; dropped silently.
_IGNORED_ARGUMENTS = ("token_type_ids",)
_DEFAULTS = {"max_new_tokens": 20, "do_sample": False, "temperature": 1.0, "top_k": None, "top_p": None,
             "repetition_penalty": None}


def _resolve_settings(explicit: dict, generation_config, prompt_length: int, max_length: int | None) -> dict:
    """Explicit arguments win, then ``generation_config`` (when passed), then ``_DEFAULTS``."""
    settings = {}
    for name, default in _DEFAULTS.items():
        value = explicit[name]
        if value is None and generation_config is not None:
            value = getattr(generation_config, name, None)
        settings[name] = default if value is None else value
    if explicit["max_new_tokens"] is None:
        if max_length is None and generation_config is not None and generation_config.max_new_tokens is None:
            max_length = generation_config.max_length
        if max_length is not None:
            settings["max_new_tokens"] = max(int(max_length) - prompt_length, 0)
    return settings


@torch.no_grad()
def generate(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    generation_config: GenerationConfig | None = None,
    max_length: int | None = None,
    num_beams: int | None = None,
    **unsupported,
) -> torch.LongTensor:
    """Decode up to ``max_new_tokens`` tokens after a (left-padded) prompt batch.

    Args:
        model: a ``ShadowForCausalLM``; its ``inference_mode`` chooses the path and head.
        input_ids: int64 ``[batch, prompt]``, left-padded for batches of unequal length.
        attention_mask: ``[batch, prompt]`` (default: all ones).
        max_new_tokens: new tokens per row at most (default 20).
        do_sample: sample (with ``temperature``/``top_k``/``top_p``) instead of greedy argmax.
        repetition_penalty: HF's ``RepetitionPenaltyLogitsProcessor`` when not 1.
        eos_token_id: stop ids (default: the base's generation config). A row that emitted
            one continues with ``pad_token_id``; decoding stops when every row has.
        pad_token_id: filler after EOS (default: the generation config's, else the first EOS).
        use_cache: KV-cached decoding (default) or full recomputation at every step.
        generator: a ``torch.Generator`` for reproducible sampling.
        generation_config: a transformers ``GenerationConfig`` supplying any of the settings
            above that are not passed explicitly (explicit arguments win).
        max_length: prompt + new tokens, used when ``max_new_tokens`` is not given (HF's).
        num_beams: only 1 (beam search is not implemented).

    Returns:
        int64 ``[batch, prompt + n]`` with ``n <= max_new_tokens``: the prompt and new tokens.

    Raises:
        ConfigError: a 1-D prompt, a negative ``max_new_tokens``, ``num_beams > 1``, or an
            argument this loop does not implement (named in the message).
    """
    unsupported = {k: v for k, v in unsupported.items() if k not in _IGNORED_ARGUMENTS}
    if unsupported:
        raise ConfigError(
            f"generate() does not support {sorted(unsupported)}. It takes input_ids, attention_mask, "
            "max_new_tokens (or max_length), do_sample, temperature, top_k, top_p, "
            "repetition_penalty, eos_token_id, pad_token_id, use_cache, generator and "
            "generation_config; drop the others."
        )
    if num_beams not in (None, 1):
        raise ConfigError(f"num_beams={num_beams} is not supported: generate does greedy or sampled "
                          "decoding only; drop num_beams or set it to 1.")
    if input_ids is None or input_ids.dim() != 2:
        raise ConfigError("generate needs input_ids of shape [batch, prompt_length]; add a batch "
                          "dimension (input_ids[None]) to a single prompt.")
    explicit = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "temperature": temperature,
                "top_k": top_k, "top_p": top_p, "repetition_penalty": repetition_penalty}
    settings = _resolve_settings(explicit, generation_config, input_ids.shape[1], max_length)
    max_new_tokens, do_sample = int(settings["max_new_tokens"]), bool(settings["do_sample"])
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    config = model.generation_config
    for source in (generation_config, config):
        if source is not None:
            eos_token_id = source.eos_token_id if eos_token_id is None else eos_token_id
            pad_token_id = source.pad_token_id if pad_token_id is None else pad_token_id
    eos = _as_list(eos_token_id)
    if pad_token_id is None:
        pad_token_id = eos[0] if eos else 0
    device = input_ids.device
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device).long()
    processors = build_logits_processors(
        do_sample=do_sample, temperature=settings["temperature"], top_k=settings["top_k"],
        top_p=settings["top_p"], repetition_penalty=settings["repetition_penalty"],
    )
    eos_tensor = torch.tensor(eos, dtype=torch.long, device=device)
    sequences = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=device)
    cache = None
    if use_cache:
        cache = ShadowCache.for_model(model.peft_model, shadow_only=model.inference_mode == "shadow_only")
    step_ids, step_positions = input_ids, positions_from_mask(mask)
    for _ in range(max_new_tokens):
        if use_cache:
            output = model(
                input_ids=step_ids, attention_mask=mask, position_ids=step_positions,
                past_key_values=cache, use_cache=True,
            )
        else:
            output = model(
                input_ids=sequences, attention_mask=mask, position_ids=positions_from_mask(mask),
                use_cache=False,
            )
        scores = processors(sequences, output.logits[:, -1, :].float())
        if do_sample:
            probs = torch.softmax(scores, dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_token_id), next_tokens)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if eos:
            finished |= torch.isin(next_tokens, eos_tensor)
        if bool(finished.all()):
            break
        step_ids = next_tokens[:, None]
        step_positions = mask.sum(dim=-1, keepdim=True) - 1
    return sequences
