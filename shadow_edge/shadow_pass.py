"""``ShadowPass``: the per-call state of one base forward with the shadow adapter.

HF decoder models loop over their layers internally, so the injection (FORMAT.md step 2)
and the update (step 3) are applied through forward hooks. The hooks exist only inside a
``with ShadowPass(...)`` block, and the shadow state lives on the ``ShadowPass`` object, not
on the model: nothing persists on the base between calls.

Threads: hooks are registered on the shared layer modules, so while one thread is inside a
pass another thread calling the same layers would meet them. Each hook therefore acts only
in the thread that opened its pass and is a no-op elsewhere: several threads may run
forwards of one model (or of its plain base) at the same time, each seeing only its own
pass. The hooks also accept being called with or without ``kwargs``, since another thread
may snapshot a layer's hook table between the two steps of a registration.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn


class ShadowPass:
    """Per-call state of one base forward: the current shadow state and the layer hooks.

    Used as a context manager around the base model's forward. On entry it registers, on
    each base layer ``i >= 1`` (adapter slot ``j = i - 1``), a forward pre-hook that injects
    the shadow state into the layer input and a forward hook that updates the shadow state
    from the layer output. On exit the hooks are removed. Hooks run outside HF's gradient
    checkpointing (transformers checkpoints ``forward``, not ``__call__``), so a backward
    recompute does not apply them twice.
    """

    def __init__(
        self,
        injection: nn.Module,
        update: nn.Module,
        layers: nn.ModuleList,
        shadow_start: torch.Tensor,
    ) -> None:
        self.injection = injection
        self.update = update
        self.layers = layers
        #: the current shadow state ``[batch, seq, H]`` (the start state until layer 1 returns)
        self.state = shadow_start
        self._handles: list[Any] = []
        self._owner: int | None = None  # the thread that opened the pass

    def _is_foreign_thread(self) -> bool:
        return threading.get_ident() != self._owner

    def _inject(self, slot: int):
        def pre_hook(module, args, kwargs=None):
            if self._is_foreign_thread():
                return None
            if args:
                hidden = self.injection(args[0], self.state, slot)
                return (hidden, *args[1:]), kwargs
            if kwargs and "hidden_states" in kwargs:
                hidden = self.injection(kwargs["hidden_states"], self.state, slot)
                return args, {**kwargs, "hidden_states": hidden}
            raise TypeError(
                f"{type(module).__name__} was called without hidden states as its first argument "
                "or as hidden_states=; this decoder layer is not supported."
            )

        return pre_hook

    def _update(self, slot: int):
        def post_hook(module, args, *kwargs_and_output):
            if self._is_foreign_thread():
                return
            output = kwargs_and_output[-1]
            hidden_out = output if isinstance(output, torch.Tensor) else output[0]
            self.state = self.update(hidden_out, self.state, slot)

        return post_hook

    def __enter__(self):
        self._owner = threading.get_ident()
        for layer_index, layer in enumerate(self.layers):
            if layer_index == 0:
                continue  # layer 0 has no adapter slot
            slot = layer_index - 1
            self._handles.append(layer.register_forward_pre_hook(self._inject(slot), with_kwargs=True))
            self._handles.append(layer.register_forward_hook(self._update(slot), with_kwargs=True))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
