"""``shadow-edge train``: the command line of :func:`shadow_edge.training.train`.

The base is frozen; the shadow, the injection and update adapters and the shadow head train
jointly on ``base_loss + shadow_loss_weight * shadow_loss`` (FORMAT.md step 5). The result
is a checkpoint folder that ``shadow-edge export`` accepts. Several processes: run it under
``torchrun --nproc_per_node=N`` or ``accelerate launch`` (the library's ``Trainer`` sets up
DDP); only the main process writes the checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from shadow_edge.config import ShadowConfig
from shadow_edge.task_types import CLASSIFICATION
from shadow_edge.training_data import encode_rows, infer_task, label_map

from . import console
from .inputs import read_jsonl
from .options import Task, below, greater_than, usage_error

logger = logging.getLogger(__name__)

_DEFAULTS = ShadowConfig()
SHADOW_OPTIONS = (
    "num_shadow_layers", "injection_hidden_size", "gate_hidden_size", "alpha", "dropout",
    "shadow_intermediate_size", "shadow_num_attention_heads", "shadow_num_key_value_heads",
    "shadow_head_dim", "modules_to_save",
)


@dataclass
class TrainSettings:
    """Everything the ``train`` command needs (its options, validated)."""

    data: Path
    base: str
    output: Path
    task: str | None = None
    shadow: dict[str, Any] = field(default_factory=dict)  # ShadowConfig fields
    shadow_loss_weight: float = 0.05
    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 8
    max_steps: int | None = None
    max_length: int = 512
    gradient_accumulation_steps: int = 1
    seed: int = 42
    chat_template: bool | None = None
    logging_steps: int = 10
    force: bool = False


@dataclass
class TrainResult:
    """What a finished run returns: the trained task model and where it was saved."""

    model: Any
    output: Path | None  # None on processes other than the main one
    task: str
    num_examples: int
    steps: int
    train_loss: float | None
    adapter_sha256: str


def adapter_digest(model) -> str:
    """SHA-256 over the trainable parameters (sorted names, float32 bytes).

    Equal digests on every DDP rank prove the ranks hold the same weights.
    """
    digest = hashlib.sha256()
    named = sorted((n, p) for n, p in model.named_parameters() if p.requires_grad)
    for name, parameter in named:
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_base(base: str) -> None:
    """A base given as a local path (absolute, ./, ../ or ~) must exist; Hub ids pass."""
    if base.startswith(("/", "./", "../", "~", ".\\")) and not Path(base).expanduser().exists():
        raise usage_error(f"base folder '{base}' does not exist. Pass the base model's folder "
                          "(config.json + weights + tokenizer) or a Hub id.",
                          param_hint="'--base'")


def _resolve_base(base: str) -> str:
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


def check_output(output: Path, force: bool) -> None:
    """Refuse an existing output folder without ``force`` (before anything loads)."""
    if output.exists() and not force:
        raise usage_error(
            f"'{output}' already exists. Pass --force to replace it, or choose another -o.",
            param_hint="'-o'",
        )


def _save_atomically(model, output: Path, force: bool) -> Path:
    """Write the checkpoint to a temporary sibling and rename it into place."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        model.save_pretrained(staging)
        if output.exists():
            check_output(output, force)
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
            staging.rename(output)
            shutil.rmtree(old)
        else:
            staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return output


def _load_model(settings: TrainSettings, task: str, labels):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from shadow_edge import ShadowForCausalLM, ShadowForSequenceClassification, get_shadow_model

    # an absolute path, so the checkpoint's base_model_name_or_path works from any folder
    base_ref = _resolve_base(settings.base)
    if task == CLASSIFICATION:
        base = AutoModelForSequenceClassification.from_pretrained(
            base_ref, num_labels=labels.num_labels, id2label=labels.id2label,
            label2id=labels.label2id, dtype=torch.float32,
        )
        wrapper = ShadowForSequenceClassification
    else:
        base = AutoModelForCausalLM.from_pretrained(base_ref, dtype=torch.float32)
        wrapper = ShadowForCausalLM
    shadow_config = ShadowConfig(**settings.shadow, base_model_name_or_path=base_ref)
    peft = get_shadow_model(base, shadow_config)
    return wrapper(peft, shadow_loss_weight=settings.shadow_loss_weight)


def run_training(settings: TrainSettings) -> TrainResult:
    """Read the data, load the base, train with :func:`shadow_edge.training.train`, save the
    checkpoint on the main process.

    Raises:
        typer.BadParameter: unreadable data file or an existing output without ``force``.
        shadow_edge.errors.DataError: rows that do not fit (shape, labels, length).
        shadow_edge.errors.ConfigError: invalid ShadowConfig values.
        OSError: the base cannot be loaded.
    """
    check_output(settings.output, settings.force)
    rows = read_jsonl(settings.data, param_hint="'DATA'")
    task = infer_task(rows, settings.task)
    check_base(settings.base)
    labels = label_map(rows) if task == CLASSIFICATION else None
    ShadowConfig(**settings.shadow)  # validate before loading anything heavy

    from transformers import AutoTokenizer

    from shadow_edge.training import TrainingSettings, train

    console.quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(settings.base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat = settings.chat_template
    if chat is None:
        chat = getattr(tokenizer, "chat_template", None) is not None
    examples = encode_rows(rows, tokenizer, task=task, max_length=settings.max_length,
                           chat_template=chat, labels=labels)
    model = _load_model(settings, task, labels)
    if task == CLASSIFICATION:
        model.peft_model.base_model.config.pad_token_id = tokenizer.pad_token_id
    training = TrainingSettings(
        epochs=settings.epochs, max_steps=settings.max_steps, lr=settings.lr,
        batch_size=settings.batch_size, seed=settings.seed, logging_steps=settings.logging_steps,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
    )
    result = train(model, examples, training, pad_token_id=tokenizer.pad_token_id,
                   callbacks=[logs_to_stderr()])
    saved = None
    if int(os.environ.get("RANK", "0")) == 0:
        saved = _save_atomically(model, settings.output, settings.force)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed

        torch.distributed.barrier()
    return TrainResult(
        model=model, output=saved, task=task, num_examples=len(examples),
        steps=result.steps, train_loss=result.train_loss, adapter_sha256=adapter_digest(model),
    )


def logs_to_stderr():
    """A ``TrainerCallback`` that writes Trainer's logs (loss, learning rate, ...) as one line
    on stderr, on the main process only (built here: transformers is imported lazily)."""
    from transformers import TrainerCallback

    from shadow_edge.training import format_logs

    class LogsToStderr(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                console.note(f"step {state.global_step}: {format_logs(logs)}")

    return LogsToStderr()


def train_command(
    data: Annotated[Path, typer.Argument(
        metavar="DATA", show_default=False,
        help='JSONL training file: rows {"text"}, {"prompt", "completion"} (loss on the '
        'completion only) or {"text", "label"} (classification).')],
    base: Annotated[str, typer.Option(
        "--base", help="Base model folder or Hub id (frozen during training).",
        show_default=False)],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Checkpoint folder to write (refused if it exists, see --force).",
        show_default=False)],
    task: Annotated[Task | None, typer.Option(
        "--task", help="Task; default: inferred from the rows (labels -> text-classification).",
        show_default=False)] = None,
    num_shadow_layers: Annotated[int, typer.Option(
        help="Decoder layers of the implicit shadow.", min=1)] = _DEFAULTS.num_shadow_layers,
    injection_hidden_size: Annotated[int, typer.Option(
        help="Bottleneck k of the injection adapter.", min=1)] = _DEFAULTS.injection_hidden_size,
    gate_hidden_size: Annotated[int, typer.Option(
        help="Hidden size g of the update gate and transform.", min=1,
    )] = _DEFAULTS.gate_hidden_size,
    alpha: Annotated[float, typer.Option(
        help="Scale of the injection delta.")] = _DEFAULTS.alpha,
    dropout: Annotated[float, typer.Option(
        help="Adapter dropout probability, in [0, 1).", min=0.0, callback=below(1.0),
    )] = _DEFAULTS.dropout,
    shadow_intermediate_size: Annotated[int | None, typer.Option(
        help="MLP size of the implicit shadow; default: the base's.", min=1,
        show_default=False)] = None,
    shadow_num_attention_heads: Annotated[int | None, typer.Option(
        help="Attention heads of the implicit shadow; default: the base's.", min=1,
        show_default=False)] = None,
    shadow_num_key_value_heads: Annotated[int | None, typer.Option(
        help="KV heads of the implicit shadow; default: the base's.", min=1,
        show_default=False)] = None,
    shadow_head_dim: Annotated[int | None, typer.Option(
        help="Head dimension of the implicit shadow; default: the base's.", min=1,
        show_default=False)] = None,
    modules_to_save: Annotated[list[str] | None, typer.Option(
        "--modules-to-save", metavar="HEAD",
        help="Task head to train and save (repeatable): lm_head, shadow_lm_head, "
        "classifier_head, shadow_classifier_head. Default: none for text-generation (heads "
        "stay frozen), both heads for text-classification.", show_default=False)] = None,
    shadow_loss_weight: Annotated[float, typer.Option(
        help="Weight of the shadow loss: loss = base_loss + w * shadow_loss. Use ~1 for a "
        "shadow that will ship alone.", min=0.0)] = 0.05,
    epochs: Annotated[float, typer.Option(help="Training epochs.",
                                          callback=greater_than(0.0))] = 1.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear decay).",
                                      callback=greater_than(0.0))] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Batch size per process.", min=1)] = 8,
    max_steps: Annotated[int | None, typer.Option(
        help="Stop after this many optimizer steps (overrides --epochs).", min=1,
        show_default=False)] = None,
    max_length: Annotated[int, typer.Option(help="Truncate rows to this many tokens.",
                                            min=2)] = 512,
    gradient_accumulation_steps: Annotated[int, typer.Option(
        help="Batches per optimizer step.", min=1)] = 1,
    seed: Annotated[int, typer.Option(help="Random seed (init, shuffling, dropout).")] = 42,
    chat_template: Annotated[bool | None, typer.Option(
        "--chat-template/--no-chat-template",
        help="Render prompts of {prompt, completion} rows with the tokenizer's chat template "
        "(as 'generate' does). Default: when the tokenizer has one.", show_default=False,
    )] = None,
    logging_steps: Annotated[int, typer.Option(help="Log the loss every N steps.", min=1)] = 10,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing output folder (only after training succeeds).")
    ] = False,
) -> None:
    """Train a ShadowPEFT adapter with HF Trainer.

    Joint training on a JSONL file with the base frozen; writes a checkpoint that
    'shadow-edge export' accepts. Several processes: torchrun --nproc_per_node=N
    $(which shadow-edge) train ... (or accelerate launch).
    """
    shadow = {name: value for name, value in locals().items() if name in SHADOW_OPTIONS}
    shadow = {k: v for k, v in shadow.items() if v not in (None, [])}
    settings = TrainSettings(
        data=data, base=base, output=output, task=task.value if task else None, shadow=shadow,
        shadow_loss_weight=shadow_loss_weight, epochs=epochs, lr=lr, batch_size=batch_size,
        max_steps=max_steps, max_length=max_length,
        gradient_accumulation_steps=gradient_accumulation_steps, seed=seed,
        chat_template=chat_template, logging_steps=logging_steps, force=force,
    )
    result = run_training(settings)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # every rank reports its weights: equal digests mean the ranks agree
        rank = int(os.environ.get("RANK", "0"))
        console.note(f"rank {rank}/{world}: adapter sha256 {result.adapter_sha256}")
    if result.output is None:  # not the main process: it saved nothing
        return
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "-"
    console.note(f"trained {result.task} on {result.num_examples} examples: {result.steps} steps, "
                 f"mean loss {loss}, {trainable:,} trainable parameters")
    typer.echo(f"checkpoint: {result.output}")
    typer.echo(f"adapter sha256: {result.adapter_sha256}")
    typer.echo(f"next: shadow-edge export {result.output} -o OUT")
