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
from transformers.modeling_outputs import CausalLMOutputWithPast

from .errors import ConfigError

# transformers 5.24 renamed the output field `past_key_values` to `cache` (the old name is a
# deprecated property); use whichever the installed version declares.
OUTPUT_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


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
        """An empty cache for a ``ShadowPeftModel`` (without the base half when ``shadow_only``).

        Raises:
            ConfigError: the base is an encoder (bidirectional attention cannot be cached).
        """
        if getattr(peft_model, "is_encoder", False):
            raise ConfigError(
                f"{type(peft_model.base_model).__name__} is an encoder: every token attends to every "
                "other one, so there is no KV cache; call it without use_cache / past_key_values."
            )
        base_config = None if shadow_only else peft_model.base_model.config
        return cls(base_config, peft_model.shadow_model.config)

    def get_seq_length(self) -> int:
        """Number of cached positions (``past_sequence_length``)."""
        return self.shadow.get_seq_length()

    def __repr__(self) -> str:
        return f"ShadowCache(seq_length={self.get_seq_length()}, base={'yes' if self.base is not None else 'no'})"


def resolve_shadow_cache(
    past_key_values: object = None,
    cache: object = None,
    *,
    use_cache: bool | None,
    new_cache,
    need_base: bool,
) -> ShadowCache | None:
    """The ``ShadowCache`` a forward call extends, or ``None`` for an uncached call.

    Args:
        past_key_values, cache: the cache under either name (transformers 5.24 renamed the
            argument to ``cache``); at most one may be given.
        use_cache: ``True`` creates a cache when none is given; ``None`` means "cache iff one
            was given".
        new_cache: a callable returning an empty ``ShadowCache`` for this model and mode.
        need_base: the call runs the base (``"base_shadow"``), so the cache needs its base half.

    Raises:
        ConfigError: both names given, a cache that is not a ``ShadowCache`` (e.g. a plain
            ``DynamicCache`` or a legacy tuple), or a shadow-only cache in a base call.
    """
    if past_key_values is not None and cache is not None and past_key_values is not cache:
        raise ConfigError("Pass the KV cache once, as past_key_values= or as cache=, not both.")
    given = past_key_values if past_key_values is not None else cache
    if given is None:
        return new_cache() if use_cache else None
    if not isinstance(given, ShadowCache):
        raise ConfigError(
            f"The KV cache must be a shadow_edge ShadowCache (base and shadow caches paired), got "
            f"{type(given).__name__}. Call with use_cache=True and pass back the output's "
            "past_key_values, or create one with ShadowCache.for_model(peft_model)."
        )
    if need_base and given.base is None:
        raise ConfigError(
            "This ShadowCache has no base half (it was made for shadow_only decoding); create it "
            "with ShadowCache.for_model(peft_model) for base_shadow calls."
        )
    return None if use_cache is False else given
