"""``ShadowCache``: the paired KV cache of the base and the shadow backbone.

Every ShadowPEFT step acts on each position independently or causally along the sequence
(FORMAT.md), so both stacks can cache keys and values: in ``"base_shadow"`` mode the base
and the shadow backbone each keep a ``transformers.DynamicCache``; in ``"shadow_only"`` mode
only the shadow one is used.
"""

from __future__ import annotations

import functools
import inspect

from torch import nn
from transformers import DynamicCache


@functools.cache
def _cache_argument_for(forward_type: type, forward_name: str) -> str:
    forward = getattr(forward_type, forward_name)
    parameters = inspect.signature(forward).parameters
    # transformers 5.24 renamed `past_key_values` to `cache` (the old name still warns).
    return "cache" if "cache" in parameters else "past_key_values"


def cache_argument_name(model: nn.Module) -> str:
    """The keyword ``model.forward`` takes its KV cache under: ``"cache"`` or ``"past_key_values"``."""
    return _cache_argument_for(type(model), "forward")


def _new_dynamic_cache(config) -> DynamicCache:
    try:
        return DynamicCache(config=config)
    except TypeError:  # older transformers without the config argument
        return DynamicCache()


class ShadowCache:
    """KV caches of one generation: ``base`` (``None`` in shadow-only mode) and ``shadow``.

    Args:
        base_config: the base model's config (``None`` for shadow-only decoding).
        shadow_config: the shadow backbone's config.

    Both caches grow by the same number of positions at each call, so
    ``get_seq_length()`` is the shadow's (equal to the base's when present).
    """

    def __init__(self, base_config=None, shadow_config=None) -> None:
        self.base: DynamicCache | None = None if base_config is None else _new_dynamic_cache(base_config)
        self.shadow: DynamicCache = _new_dynamic_cache(shadow_config)

    @classmethod
    def for_model(cls, peft_model, *, shadow_only: bool = False) -> ShadowCache:
        """An empty cache for a ``ShadowPeftModel`` (without the base half when ``shadow_only``)."""
        base_config = None if shadow_only else peft_model.base_model.config
        return cls(base_config, peft_model.shadow_model.config)

    def get_seq_length(self) -> int:
        """Number of cached positions (``past_sequence_length``)."""
        return self.shadow.get_seq_length()

    def __repr__(self) -> str:
        return f"ShadowCache(seq_length={self.get_seq_length()}, base={'yes' if self.base is not None else 'no'})"
