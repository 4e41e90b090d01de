"""A tiny on-device robot app: spoken command -> shadow model -> action call.

Runtime-only: this module imports ``runtime`` (onnxruntime, numpy, tokenizers, jinja2) and
the standard library, never torch or transformers, so it runs on a device with only
``pip install shadow-edge``.

    python -m examples.robot_intent.app out/robot-intent-generation-int8 --grammar \\
        "turn on the lights in the nursery" "set a timer for 5 minutes"

A generation export yields ``HassLightSet area: nursery; brightness: 40``: the intent picks a
handler and the slots become its keyword arguments. A classification export yields only
the intent, so its handler is called without slots.

The app knows its home (``--home``, default ``home.json``: the areas, floors and device
names it can act on). With ``--grammar`` the model is constrained to actions over those
entities, and the entities a command names must appear in its action (:mod:`grammar`,
:func:`grammar.command_grammar`; needs ``pip install 'shadow-edge[grammar]'``;
``--home-grammar-only`` drops the second rule). Without it, an action that names an entity
the home does not have is refused before any handler runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from .action import parse_action

SYSTEM_PROMPT = "Home assistant."  # must match examples/robot_intent/data.py


@dataclass
class Action:
    """A parsed action: the intent name and its slots (strings)."""

    intent: str
    slots: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Action:
        """Parse ``Intent key: value; key: two words`` (:mod:`action`); raises ValueError
        on malformed text."""
        return cls(*parse_action(text))


class Dispatcher:
    """Maps intent names to handlers: ``handler(**slots) -> str``."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[..., str]] = {}

    def on(self, *intents: str):
        def register(fn: Callable[..., str]):
            for intent in intents:
                self.handlers[intent] = fn
            return fn
        return register

    def dispatch(self, action: Action) -> str:
        handler = self.handlers.get(action.intent, _unknown(action.intent))
        return handler(**action.slots)


def _unknown(intent: str) -> Callable[..., str]:
    def handler(**slots: str) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in slots.items())
        return f"call {intent}({args})"
    return handler


def _where(slots: dict[str, str]) -> str:
    place = slots.get("name") or slots.get("area") or slots.get("floor")
    what = slots.get("domain", "")
    return " ".join(x for x in (what, f"in/at {place}" if place else "everywhere") if x)


robot = Dispatcher()


@robot.on("HassTurnOn", "HassTurnOff")
def _switch(**slots: str) -> str:
    return f"switch {_where(slots)} -> {slots.get('state', 'on')}"


@robot.on("HassLightSet")
def _light(**slots: str) -> str:
    settings = {k: v for k, v in slots.items() if k not in ("area", "name", "floor", "domain")}
    return f"light {_where(slots)}: {settings}"


@robot.on("HassStartTimer", "HassCancelTimer", "HassCancelAllTimers", "HassPauseTimer",
          "HassUnpauseTimer", "HassIncreaseTimer", "HassDecreaseTimer", "HassTimerStatus")
def _timer(**slots: str) -> str:
    return f"timer: {slots or 'default'}"


@robot.on("HassVacuumStart", "HassVacuumReturnToBase", "HassVacuumCleanArea",
          "HassLawnMowerStartMowing", "HassLawnMowerDock")
def _robot(**slots: str) -> str:
    return f"robot task {_where(slots)}"


@robot.on("none")
def _nothing(**slots: str) -> str:
    return "no action (not a smart-home command)"


class RobotApp:
    """Load an export folder with the runtime and turn commands into handler calls.

    Args:
        folder: a ``shadow-edge export`` folder (text-generation or text-classification).
        threads: onnxruntime intra-op threads.
        home: the entities the app may act on (default: ``home.json``).
        grammar: constrain generation to the home's actions, with the entities each
            command names required (see the module docstring).
        named: with ``grammar``, require the named entities (False: the home grammar
            alone, :func:`grammar.home_grammar`).
        num_beams: beams of the search (1 = greedy); default ``grammar.GRAMMAR_BEAMS`` with
            the grammar, 1 without (see ``grammar.GRAMMAR_BEAMS`` for why).
    """

    def __init__(self, folder: str, threads: int | None = 1, dispatcher: Dispatcher = robot,
                 home=None, grammar: bool = False, num_beams: int | None = None,
                 named: bool = True):
        import runtime

        from .grammar import GRAMMAR_BEAMS, LENGTH_PENALTY, Home, home_grammar, load_schema

        self.model = runtime.load(folder, threads=threads)
        self.generative = self.model.manifest.is_generation
        self.dispatcher = dispatcher
        self.home = home or Home.load()
        self.grammar = grammar and self.generative
        self.named = named
        self.schema = load_schema() if self.grammar else None
        # building the home grammar checks the home's entity names now, not at a command
        home_only = home_grammar(self.home, self.schema) if self.grammar else None
        self.shared = None if named else home_only  # one grammar for all commands, or None
        if num_beams is None:
            num_beams = GRAMMAR_BEAMS if self.grammar else 1
        self.decoding = {"num_beams": num_beams, "length_penalty": LENGTH_PENALTY}

    def understand(self, commands: list[str]) -> list[Action]:
        """The action for each command (batched, but one command per call with each
        command's own grammar)."""
        from .grammar import command_grammar

        if self.generative:
            prompts = [[{"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": c}] for c in commands]
            if self.grammar and self.named:
                results = [self.model.generate(prompt, max_new_tokens=32, **self.decoding,
                                               grammar=command_grammar(c, self.home, self.schema))
                           for prompt, c in zip(prompts, commands, strict=True)]
            else:
                results = self.model.generate(prompts, max_new_tokens=32, grammar=self.shared,
                                              **self.decoding)
            actions = []
            for r in results:
                try:
                    actions.append(Action.parse(r.text))
                except ValueError:
                    actions.append(Action(r.text.split()[0] if r.text.split() else "", {}))
            return actions
        return [Action(r.label) for r in self.model.classify(list(commands))]

    def unknown_entities(self, action: Action) -> list[str]:
        """The slot values of ``action`` that name an area, floor or device the home lacks."""
        return [f"{key}={value!r}" for key, value in action.slots.items()
                if key in ("area", "floor", "name") and value not in self.home.values(key)]

    def __call__(self, commands: list[str]) -> list[tuple[str, Action, str]]:
        """(command, action, handler result) for each command."""
        out = []
        for command, action in zip(commands, self.understand(commands), strict=True):
            unknown = self.unknown_entities(action)
            result = (f"refused: this home has no {', '.join(unknown)}" if unknown
                      else self.dispatcher.dispatch(action))
            out.append((command, action, result))
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Map commands to actions with an exported shadow.")
    p.add_argument("folder")
    p.add_argument("commands", nargs="*", help="commands (default: read lines from stdin)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--home", default=None, help="JSON file of the home's areas, floors and "
                   "device names (default: examples/robot_intent/home.json)")
    p.add_argument("--grammar", action="store_true",
                   help="constrain generation to actions over the home's entities")
    p.add_argument("--home-grammar-only", action="store_true",
                   help="with --grammar: do not require the entities a command names")
    p.add_argument("--num-beams", type=int, default=None,
                   help="beam search width (default: 4 with --grammar, 1 = greedy without)")
    args = p.parse_intermixed_args(argv)
    if args.home_grammar_only and not args.grammar:
        p.error("--home-grammar-only only applies with --grammar; add --grammar")
    commands = args.commands or [line.strip() for line in sys.stdin if line.strip()]
    from runtime.errors import ShadowRuntimeError

    from .grammar import Home

    try:
        home = Home.load(args.home) if args.home else None
        app = RobotApp(args.folder, threads=args.threads, home=home, grammar=args.grammar,
                       num_beams=args.num_beams, named=not args.home_grammar_only)
        for command, action, result in app(commands):
            print(f"{command!r} -> {action.intent} {action.slots} -> {result}")
    except (ShadowRuntimeError, ValueError, OSError) as err:  # bad folder, home or setting
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
