"""``shadow-edge generate`` and ``shadow-edge chat``: text generation with an exported model.

Torch-free: only ``runtime`` is imported, inside the commands. By default the prompt goes
through the model's chat template as one user turn (with ``--system`` before it) when the
tokenizer has one, as for an instruct model; ``--no-chat-template`` feeds the raw text.
``--grammar``/``--regex``/``--json-schema``/``--choice`` constrain the output (llguidance,
the ``grammar`` extra).
Escapes in the prompt, ``--system`` and ``--stop`` are processed as llama.cpp does
(``--no-escape`` keeps them as typed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .loading import load_for_task
from .options import (
    ChoiceOpt,
    EscapeOpt,
    GrammarFileOpt,
    JsonSchemaOpt,
    MaxNewTokensOpt,
    ModelDirArg,
    NumBeamsOpt,
    OrtFormatOpt,
    ProviderOpt,
    RegexOpt,
    RepetitionPenaltyOpt,
    SeedOpt,
    StopOpt,
    SystemOpt,
    TemperatureOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    process_escapes,
    usage_error,
)

ChatTemplateOpt = Annotated[
    bool | None,
    typer.Option(
        "--chat-template/--no-chat-template",
        help="Wrap the prompt in the model's chat template as a user turn. Default: when the "
        "tokenizer has a template.",
        show_default=False,
    ),
]
TruncateOpt = Annotated[
    bool,
    typer.Option("--truncate", help="Keep only the last tokens of a prompt that does not fit "
                 "the model's context (default: refuse it)."),
]

EXIT_WORDS = {"/exit", "/quit", "/bye"}
RESET_WORDS = {"/reset", "/clear"}


def _check_prompt(prompt: str) -> str:
    if not prompt.strip():
        raise usage_error(
            "the prompt is empty. Pass the text to answer or continue, e.g. "
            "shadow-edge generate OUT \"Turn on the kitchen light\".",
            param_hint="'PROMPT'",
        )
    return prompt


def _unescape(value: str | None, param_hint: str) -> str | None:
    """:func:`process_escapes` with its error as a usage error (exit 2) on ``param_hint``."""
    if value is None:
        return None
    try:
        return process_escapes(value)
    except ValueError as error:
        raise usage_error(f"{error}.", param_hint=param_hint) from None


def _messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": prompt}]


def _use_template(model, chat_template: bool | None, system: str | None) -> bool:
    has_template = model.tokenizer.chat_template is not None
    if chat_template and not has_template:
        raise usage_error(
            "this model's tokenizer has no chat template. Drop --chat-template (and --system).",
            param_hint="'--chat-template'",
        )
    use = has_template if chat_template is None else chat_template
    if system and not use:
        raise usage_error(
            "--system needs the chat template, which is "
            + ("off (--no-chat-template)." if has_template else "missing in this model.")
            + " Drop --system or use --chat-template.",
            param_hint="'--system'",
        )
    return use


def sampling_settings(*, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
                      repetition_penalty: float, seed: int | None) -> dict[str, Any]:
    """The runtime's generate() keyword arguments for the CLI options.

    Sampling happens iff ``temperature > 0`` (llama.cpp and HF ``do_sample`` semantics);
    top_k 0 and top_p 1 mean "off", repetition_penalty 1 means "off".
    """
    sample = temperature > 0
    if not sample and (top_k or top_p < 1.0):
        typer.echo("note: --top-k/--top-p apply only when sampling (--temperature > 0); "
                   "decoding greedily.", err=True)
    return {
        "max_new_tokens": max_new_tokens,
        "do_sample": sample,
        "temperature": temperature if sample else None,
        "top_k": top_k if sample and top_k else None,
        "top_p": top_p if sample and top_p < 1.0 else None,
        "repetition_penalty": repetition_penalty if repetition_penalty != 1.0 else None,
        "seed": seed,
    }


def grammar_from_options(grammar_file: Path | None, regex: str | None,
                         json_schema: Path | None, choice: list[str] | None):
    """The ``runtime.Grammar`` the constraint options ask for, or None without any.

    Raises:
        typer.BadParameter: more than one kind given, or a JSON schema file that is not JSON.
        OSError: a file cannot be read (the CLI prints it as one line).
    """
    from runtime.grammar import Grammar

    given = {name: value for name, value in (("--grammar", grammar_file), ("--regex", regex),
                                             ("--json-schema", json_schema),
                                             ("--choice", choice or None)) if value is not None}
    if len(given) > 1:
        raise usage_error(f"{' and '.join(given)} cannot be combined; pass one constraint "
                          "(--choice may be repeated).", param_hint=f"'{next(iter(given))}'")
    if grammar_file is not None:
        return Grammar(lark=grammar_file.read_text(encoding="utf-8"))
    if regex is not None:
        return Grammar(regex=regex)
    if json_schema is not None:
        try:
            schema = json.loads(json_schema.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise usage_error(f"'{json_schema}' is not valid JSON ({exc}). Pass a JSON schema "
                              "file.", param_hint="'--json-schema'") from None
        return Grammar(json_schema=schema)
    if choice:
        return Grammar(choice=choice)
    return None


def generate_command(
    model_dir: ModelDirArg,
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The prompt text.",
                                          show_default=False)],
    max_new_tokens: MaxNewTokensOpt = 128,
    temperature: TemperatureOpt = 0.0,
    top_k: TopKOpt = 0,
    top_p: TopPOpt = 1.0,
    repetition_penalty: RepetitionPenaltyOpt = 1.0,
    seed: SeedOpt = None,
    num_beams: NumBeamsOpt = 1,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they come.")] = False,
    system: SystemOpt = None,
    chat_template: ChatTemplateOpt = None,
    stop: StopOpt = None,
    escape: EscapeOpt = True,
    truncate: TruncateOpt = False,
    grammar_file: GrammarFileOpt = None,
    regex: RegexOpt = None,
    json_schema: JsonSchemaOpt = None,
    choice: ChoiceOpt = None,
    provider: ProviderOpt = None,
    threads: ThreadsOpt = None,
    ort: OrtFormatOpt = False,
) -> None:
    """Generate text with an exported model.

    Runs on onnxruntime only (no torch). Greedy by default; --temperature > 0 samples.
    Example: shadow-edge generate out "Turn on the kitchen light" --stream --stop '\\n'
    """
    if escape:
        prompt = _unescape(prompt, "'PROMPT'")
        system = _unescape(system, "'--system'")
        stop = [_unescape(s, "'--stop'") for s in stop or []]
    _check_prompt(prompt)
    clashes = [flag for flag, used in (
        ("--temperature", temperature > 0), ("--repetition-penalty", repetition_penalty != 1.0),
        ("--seed", seed is not None), ("--stop", bool(stop)), ("--stream", stream)) if used]
    if num_beams > 1 and clashes:
        raise usage_error(
            f"--num-beams cannot be combined with {', '.join(clashes)}: beam search does not "
            "sample, and its best beam is known only at the end. Drop those options or "
            "--num-beams.", param_hint="'--num-beams'")
    grammar = grammar_from_options(grammar_file, regex, json_schema, choice)
    model = load_for_task(model_dir, "text-generation", provider, threads, ort)
    settings = sampling_settings(max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_k=top_k, top_p=top_p,
                                 repetition_penalty=repetition_penalty, seed=seed)
    settings["stop"] = stop or None
    settings["truncate"] = truncate
    settings["grammar"] = grammar
    if num_beams > 1:
        settings["num_beams"] = num_beams
    request: Any = (_messages(prompt, system) if _use_template(model, chat_template, system)
                    else prompt)
    if stream:
        for piece in model.stream(request, **settings):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        result = model.generate(request, **settings)
        typer.echo(result.text)
        if grammar is not None and result.finish_reason == "length":
            typer.echo(f"note: the output was cut at --max-new-tokens {max_new_tokens} (or the "
                       "context end) before the grammar was complete.", err=True)


def chat_command(
    model_dir: ModelDirArg,
    system: SystemOpt = None,
    max_new_tokens: MaxNewTokensOpt = 256,
    temperature: TemperatureOpt = 0.0,
    top_k: TopKOpt = 0,
    top_p: TopPOpt = 1.0,
    repetition_penalty: RepetitionPenaltyOpt = 1.0,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    escape: EscapeOpt = True,
    truncate: TruncateOpt = False,
    grammar_file: GrammarFileOpt = None,
    regex: RegexOpt = None,
    json_schema: JsonSchemaOpt = None,
    choice: ChoiceOpt = None,
    provider: ProviderOpt = None,
    threads: ThreadsOpt = None,
    ort: OrtFormatOpt = False,
) -> None:
    """Chat with an exported model (reads stdin).

    One message per line; /reset clears the history, /exit or end of input (Ctrl-D) ends.
    Uses the model's chat template; no torch needed.
    """
    from runtime.errors import PromptTooLongError

    grammar = grammar_from_options(grammar_file, regex, json_schema, choice)
    if escape:
        system = _unescape(system, "'--system'")
        stop = [_unescape(s, "'--stop'") for s in stop or []]
    model = load_for_task(model_dir, "text-generation", provider, threads, ort)
    if model.tokenizer.chat_template is None:
        raise usage_error(
            "this model's tokenizer has no chat template, so it cannot chat. Use "
            f"'shadow-edge generate {model_dir} PROMPT --no-chat-template' instead.",
            param_hint="'MODEL_DIR'",
        )
    settings = sampling_settings(max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_k=top_k, top_p=top_p,
                                 repetition_penalty=repetition_penalty, seed=seed)
    settings["truncate"] = truncate
    settings["grammar"] = grammar  # every reply follows it
    if grammar is not None:  # a bad grammar fails now, not at the first message
        model.grammars.compile(grammar)
    settings["stop"] = stop or None
    interactive = sys.stdin.isatty()
    history: list[dict[str, str]] = []
    if interactive:
        typer.echo("Chat with the model. /reset clears the history, /exit (or Ctrl-D) ends.",
                   err=True)
    while True:
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:  # EOF
            break
        text = line.strip()
        if not text:
            continue
        if text in EXIT_WORDS:
            break
        if text in RESET_WORDS:
            history.clear()
            typer.echo("(history cleared)", err=True)
            continue
        messages = _messages(text, system)[:-1] + history + [{"role": "user", "content": text}]
        pieces: list[str] = []
        try:
            for piece in model.stream(messages, **settings):
                pieces.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except PromptTooLongError as exc:
            typer.echo(f"Error: {' '.join(str(exc).split())} Use /reset to start over.", err=True)
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
        history += [{"role": "user", "content": text},
                    {"role": "assistant", "content": "".join(pieces)}]
