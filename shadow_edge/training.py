"""Joint ShadowPEFT training: one loop (HF ``Trainer``) for the CLI, the examples and users.

The base stays frozen; the shadow, the injection and update adapters and any trainable task
heads learn ``base_loss + shadow_loss_weight * shadow_loss`` (FORMAT.md step 5).

What this adds to a bare ``Trainer`` (each piece is a ``TrainerCallback`` or an argument):

- **Shadow warm-up** (``shadow_only_steps``): the first steps run the task wrapper in
  ``"shadow_only"`` mode, so the loss is the shadow's alone and the base does not run (a
  step is 10-30x cheaper). Then joint training in ``"base_shadow"`` mode. The warm-up
  gives the shadow a head start; the joint phase is what trains the injection and update
  adapters, so it must not be skipped when the attached model (``base_shadow``) matters.
- **Learning rates per group**: trainable task heads may use ``head_lr``, and the shadow
  transformer itself ``shadow_lr`` (e.g. lower, for an explicit shadow copied from
  pretrained layers, next to freshly initialised adapters).
- **Supervised logits only** for causal LM: the collator passes the positions that
  have targets as ``logits_to_keep``, so the vocabulary-sized heads skip the prompt.
- **A wall-clock budget** (``max_minutes``): training stops when it is spent (the
  schedule still follows ``max_steps``/epochs, so set those to fit).
- **Validation with the best model kept**: ``evaluate(model) -> (score, details)`` runs
  every ``eval_steps`` and at the end; the trainable weights with the best score (higher is
  better) are restored when training ends, and ``TrainingResult.history`` holds every
  evaluation.

Several processes: run under ``torchrun --nproc_per_node=N`` or ``accelerate launch``;
``Trainer`` sets up DDP (gloo on CPU). ``ddp_find_unused_parameters`` is on because the last
update slot's output never reaches a loss (the shadow head reads the start state, FORMAT.md
step 4), so its parameters get no gradient. Only the main process should save.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ConfigError
from .task_types import CAUSAL_LM
from .training_data import PadCollator

logger = logging.getLogger(__name__)

LR_SCHEDULERS = ("linear", "cosine", "constant_with_warmup")

Evaluate = Callable[[Any], "tuple[float, dict[str, Any]]"]


@dataclass
class TrainingSettings:
    """How to train (every field has the default of ``shadow-edge train``).

    Attributes:
        epochs: passes over the data (ignored when ``max_steps`` is set).
        max_steps: optimizer steps in total, warm-up included.
        max_minutes: wall-clock budget in minutes; training stops when it is spent.
        lr: peak learning rate of the adapters, and of the shadow and the heads unless
            ``shadow_lr`` / ``head_lr`` are set (AdamW).
        head_lr: peak learning rate of trainable task heads (default: ``lr``).
        shadow_lr: peak learning rate of the shadow transformer's own parameters
            (``peft_model.shadow_model``: its layers and any embedding block; not the
            adapters, the hidden projection or the heads). Default: ``lr``.
        batch_size: examples per step and process (before gradient accumulation).
        gradient_accumulation_steps: batches per optimizer step.
        warmup_steps: linear learning-rate warm-up, in optimizer steps.
        lr_scheduler: ``"linear"`` (decay to 0), ``"cosine"`` or ``"constant_with_warmup"``.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping (L2 norm over the trainable parameters).
        shadow_only_steps: steps of shadow warm-up before joint training (see module doc).
        eval_steps: evaluate every this many steps (with an ``evaluate`` function).
        logging_steps: log the loss every this many steps.
        seed: initialisation, shuffling and dropout.
        threads: torch intra-op threads (None: torch's default).
        supervised_logits_only: causal LM: compute the heads only where there are targets.
        bf16: mixed precision: the forward and backward passes run under
            ``torch.autocast(dtype=torch.bfloat16)`` (transformers' ``bf16=True``); weights,
            optimizer state and the loss stay float32. Worth it where the CPU has bf16
            instructions (AVX-512 BF16 or AMX; ``lscpu``): a robot-intent step (6-layer
            shadow, batch 16) took 1.11 s instead of 1.70 s on an AMD EPYC with AVX-512 BF16.
    """

    epochs: float = 1.0
    max_steps: int | None = None
    max_minutes: float | None = None
    lr: float = 1e-4
    head_lr: float | None = None
    shadow_lr: float | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    warmup_steps: int = 0
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    shadow_only_steps: int = 0
    eval_steps: int | None = None
    logging_steps: int = 10
    seed: int = 42
    threads: int | None = None
    supervised_logits_only: bool = True
    bf16: bool = False

    def __post_init__(self):
        problems = []
        if self.epochs <= 0:
            problems.append(f"epochs must be > 0, got {self.epochs}")
        for name in ("max_steps", "eval_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1, got {value}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            problems.append(f"max_minutes must be > 0, got {self.max_minutes}")
        for name in ("lr", "head_lr", "shadow_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name} must be > 0, got {value}")
        for name in ("batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.shadow_only_steps < 0:
            problems.append("warmup_steps and shadow_only_steps must be >= 0")
        if self.lr_scheduler not in LR_SCHEDULERS:
            problems.append(f"lr_scheduler must be one of {list(LR_SCHEDULERS)}, got "
                            f"{self.lr_scheduler!r}")
        if problems:
            raise ConfigError("invalid training settings: " + "; ".join(problems) + ".")


@dataclass
class TrainingResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained task model (the best evaluated weights when ``evaluate`` ran).
        steps: optimizer steps taken; ``steps_by_phase`` splits them into ``shadow_only``
            and ``base_shadow``.
        train_loss: mean training loss over all steps (None when no step ran).
        seconds: wall-clock training time; ``steps_per_second`` = steps / seconds.
        history: one dict per evaluation (``step``, ``phase``, ``minutes``, ``score`` and
            the details ``evaluate`` returned); ``best`` is the kept one (or None).
    """

    model: Any
    steps: int
    steps_by_phase: dict[str, int]
    train_loss: float | None
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Copies of the trainable parameters (name -> tensor), for keeping the best model."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restore_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (from :func:`trainable_state`) back into ``model``'s parameters."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            named[name].copy_(value)


def _callbacks(settings: TrainingSettings, evaluate: Evaluate | None, record: dict):
    """The TrainerCallbacks of the module docstring (built here: transformers is imported
    only when training)."""
    from transformers import TrainerCallback

    class ShadowWarmup(TrainerCallback):
        """Shadow-only mode for the first ``shadow_only_steps`` steps, then joint."""

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            mode = "shadow_only" if state.global_step < settings.shadow_only_steps else "base_shadow"
            target = _task_model(model)
            if target.inference_mode != mode:
                logger.info("step %d: %s training", state.global_step, mode)
                target.set_inference_mode(mode)
            record["steps_by_phase"][mode] = record["steps_by_phase"].get(mode, 0) + 1

    class Budget(TrainerCallback):
        """Stop when ``max_minutes`` of wall-clock time are spent."""

        def on_step_end(self, args, state, control, **kwargs):
            spent = (time.monotonic() - record["start"]) / 60
            if settings.max_minutes is not None and spent >= settings.max_minutes:
                logger.info("time budget of %.1f min spent at step %d", settings.max_minutes,
                            state.global_step)
                control.should_training_stop = True

    class KeepBest(TrainerCallback):
        """Evaluate every ``eval_steps`` and at the end; keep the best trainable weights."""

        def _run(self, state, model):
            target = _task_model(model)
            mode, was_training = target.inference_mode, target.training
            target.eval()
            try:
                with torch.no_grad():
                    score, details = evaluate(target)
            finally:
                target.set_inference_mode(mode)
                target.train(was_training)
            entry = {"step": state.global_step, "phase": mode,
                     "minutes": round((time.monotonic() - record["start"]) / 60, 2),
                     "score": float(score), **details}
            record["history"].append(entry)
            logger.info("evaluation at step %d (%s): %.4f %s", state.global_step, mode, score,
                        details)
            # a warm-up model has untrained adapters: only joint models compete when there
            # is a joint phase
            joint_phase = record["total_steps"] > settings.shadow_only_steps
            eligible = mode == "base_shadow" or not joint_phase
            if eligible and (record["best"] is None or score > record["best"]["score"]):
                record["best"] = entry
                record["best_state"] = trainable_state(target)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if settings.eval_steps and state.global_step % settings.eval_steps == 0:
                self._run(state, model)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if not record["history"] or record["history"][-1]["step"] != state.global_step:
                self._run(state, model)

    class LogToLogger(TrainerCallback):
        """Trainer's logs (loss, learning rate, ...) as one ``logging`` line each."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                logger.info("step %d: %s", state.global_step, format_logs(logs))

    callbacks = [ShadowWarmup(), LogToLogger()]
    if settings.max_minutes is not None:
        callbacks.append(Budget())
    if evaluate is not None:
        callbacks.append(KeepBest())
    return callbacks


def format_logs(logs: dict[str, Any]) -> str:
    """``{"loss": 2.31234, "epoch": 0.5}`` -> ``"loss 2.312, epoch 0.5"`` (pure)."""
    return ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in logs.items())


def _task_model(model):
    """The task wrapper inside a DDP/accelerate wrapper, or the model itself."""
    return getattr(model, "module", model)


def _optimizer(model, settings: TrainingSettings) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters in three groups: heads (``head_lr``), the shadow
    transformer (``shadow_lr``), the rest (``lr``); a head tied to the shadow is a head."""
    heads = {id(p) for name in model.head_names for p in getattr(model, name).parameters()}
    shadow = {id(p) for p in model.peft_model.shadow_model.parameters()} - heads
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("the model has no trainable parameters; build it with "
                          "get_shadow_model (the adapter trains) before training.")
    groups = [
        {"params": [p for p in trainable if id(p) not in heads and id(p) not in shadow],
         "lr": settings.lr},
        {"params": [p for p in trainable if id(p) in shadow],
         "lr": settings.shadow_lr or settings.lr},
        {"params": [p for p in trainable if id(p) in heads],
         "lr": settings.head_lr or settings.lr},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)


def train(model, train_dataset, settings: TrainingSettings | None = None, *,
          pad_token_id: int, evaluate: Evaluate | None = None,
          callbacks: list | None = None) -> TrainingResult:
    """Train a ShadowPEFT task model (``ShadowForCausalLM`` / ``ShadowForSequenceClassification``).

    Args:
        model: the task wrapper; its base is frozen, and what ``requires_grad`` trains.
        train_dataset: a sequence of ``{"input_ids": [...], "labels": [...] | int}`` examples
            (``training_data.encode_rows`` makes them).
        settings: :class:`TrainingSettings` (defaults when None).
        pad_token_id: the id that pads batches (attention mask 0 there).
        evaluate: ``evaluate(model) -> (score, details)``, called with the model in eval
            mode (any inference mode may be set inside; it is restored), higher is better.
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        :class:`TrainingResult`; ``result.model`` is ``model`` (best evaluated weights).

    Raises:
        ConfigError: invalid settings, or nothing to train.
    """
    from transformers import Trainer, TrainingArguments, get_scheduler, set_seed
    from transformers.trainer_callback import PrinterCallback

    settings = settings or TrainingSettings()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    set_seed(settings.seed)
    causal = getattr(model, "task_type", None) == CAUSAL_LM
    collator = PadCollator(pad_token_id,
                           supervised_logits_only=causal and settings.supervised_logits_only)
    record: dict[str, Any] = {"history": [], "best": None, "best_state": None,
                              "steps_by_phase": {}, "start": time.monotonic()}
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by torchrun / accelerate
    with tempfile.TemporaryDirectory(prefix="shadow-edge-train-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps if settings.max_steps is not None else -1,
            learning_rate=settings.lr,
            per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            max_grad_norm=settings.max_grad_norm,
            logging_steps=settings.logging_steps,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            label_names=["labels"],
            seed=settings.seed,
            data_seed=settings.seed,
            ddp_find_unused_parameters=True,
            ddp_backend="gloo" if distributed and not torch.cuda.is_available() else None,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            use_cpu=not torch.cuda.is_available(),
            bf16=settings.bf16,
            disable_tqdm=True,
        )
        optimizer = _optimizer(model, settings)
        total = settings.max_steps or _steps_for_epochs(len(train_dataset), settings, args)
        record["total_steps"] = total
        scheduler = get_scheduler(settings.lr_scheduler, optimizer,
                                  num_warmup_steps=settings.warmup_steps,
                                  num_training_steps=total)
        trainer = Trainer(model=model, args=args, train_dataset=train_dataset,
                          data_collator=collator, optimizers=(optimizer, scheduler),
                          callbacks=_callbacks(settings, evaluate, record) + list(callbacks or ()))
        trainer.remove_callback(PrinterCallback)  # logs go through logging, not stdout
        model.train()
        output = trainer.train()
    seconds = time.monotonic() - record["start"]
    task_model = _task_model(model)
    task_model.set_inference_mode("base_shadow")
    if record["best_state"] is not None:
        restore_trainable_state(task_model, record["best_state"])
    task_model.eval()
    return TrainingResult(
        model=task_model, steps=output.global_step, steps_by_phase=record["steps_by_phase"],
        train_loss=output.training_loss if output.global_step else None, seconds=seconds,
        history=record["history"], best=copy.deepcopy(record["best"]),
    )


def _steps_for_epochs(examples: int, settings: TrainingSettings, args) -> int:
    per_step = settings.batch_size * settings.gradient_accumulation_steps * args.world_size
    return max(1, int(settings.epochs * -(-examples // per_step)))


__all__ = ["TrainingResult", "TrainingSettings", "restore_trainable_state",
           "train", "trainable_state"]
