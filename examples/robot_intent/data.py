"""Robot-intent data: Home Assistant intent templates -> (command, intent, slots, action).

Source: ``home_assistant_intents.get_intents("en")`` parsed with ``hassil.Intents.from_dict``
(home-assistant-intents==2026.11.25, hassil==3.13.0, Apache-2.0). Templates that need a
wildcard list (free text such as a shopping item or a broadcast message) are skipped, as
``hassil.sample.sample_intents`` does by default; 35 intents remain.

The split is fixed and seeded (``SEED``) and measures generalisation:

- whole sentence templates are held out per intent: about 20% of an intent's templates go
  to test and 10% to validation, but only templates whose *slot signature* (the set of
  slot lists and fixed slots it uses) stays covered by a training template of the same
  intent; so a test command may be phrased in a way never seen, but never asks for a slot
  combination the intent was never trained on (an intent whose templates all have
  different signatures, e.g. HassVacuumStart "clean the {floor}" / "start the {name}", is
  split by slot values only);
- validation and test commands use areas, floors, device names and numbers from pools
  disjoint from training (:mod:`slots`: thousands of values composed from word lists, so a
  model must copy names from the command rather than recall them);
- out-of-scope commands (small talk, questions, services, chores; :mod:`out_of_scope`)
  have the action ``none``, with a quarter of their phrasings held out for test;
- a command text that occurs in train is dropped from validation and test;
- per-intent counts are capped (``CAPS``) to balance the classes.

Action strings: :mod:`action` (``HassLightSet area: living room; brightness: 40``, keys
sorted, values bare so the model copies the command's own tokens). Fixed template slots
(e.g. ``domain: light`` for "turn on the kitchen lights") are part of the action, as Home
Assistant reports them.

Run ``python -m examples.robot_intent.data --out examples/robot_intent/data`` to write
``{train,validation,test}.jsonl`` (full records), ``*.generation.jsonl`` (TRL
conversational prompt/completion rows), ``*.classification.jsonl`` (``text``/``label``),
``labels.json`` and ``schema.json`` (per intent: the slot-key combinations its templates
produce and each slot's kind, for building action grammars).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .action import format_action, normalize_slots
from .out_of_scope import NO_ACTION

SEED = 1234
SPLITS = ("train", "validation", "test")
CAPS = {"train": 300, "validation": 20, "test": 40}
#: Out-of-scope commands per split (target action ``none``).
OUT_OF_SCOPE_CAPS = {"train": 800, "validation": 40, "test": 100}
#: Slots whose values name the home's own entities (the app's entity list constrains them).
ENTITY_SLOTS = ("area", "floor", "name")
SYSTEM_PROMPT = "Home assistant."
_DRAWS_PER_TARGET = 4  # random draws per wanted sample (duplicates are dropped)


@dataclass(frozen=True)
class Example:
    """One labelled command."""

    text: str
    intent: str
    slots: dict = field(default_factory=dict)
    template: str = ""  # "<intent>/<data index>/<sentence index>"

    @property
    def action(self) -> str:
        return format_action(self.intent, self.slots)


def load_intents():
    """hassil ``Intents`` for English."""
    from hassil import Intents
    from home_assistant_intents import get_intents

    return Intents.from_dict(get_intents("en"))


def _templates(intents):
    """{intent: [(template_id, sentence, rules, fixed_slots, name_domains)]} without wildcards."""
    out: dict[str, list] = {}
    for intent_name, intent in sorted(intents.intents.items()):
        for d_index, data in enumerate(intent.data):
            rules = {**intents.expansion_rules, **(data.expansion_rules or {})}
            fixed = {k: v for k, v in (data.slots or {}).items() if isinstance(v, (str, int))}
            domains = (data.requires_context or {}).get("domain")
            domains = [domains] if isinstance(domains, str) else domains
            for s_index, sentence in enumerate(data.sentences):
                lists = set(sentence.list_names(rules))
                if lists & set(data.wildcard_list_names or ()):
                    continue
                template_id = f"{intent_name}/{d_index}/{s_index}"
                out.setdefault(intent_name, []).append(
                    (template_id, sentence, rules, fixed, domains)
                )
    return out


def _signature(entry) -> frozenset:
    """The slot lists and fixed slots a template uses."""
    _template_id, sentence, rules, fixed, _domains = entry
    return frozenset(sentence.list_names(rules)) | frozenset(f"={k}" for k in fixed)


def _assign_templates(entries: list, rng: random.Random) -> dict[str, list[str]]:
    """{split: template ids} for one intent (see the module docstring).

    Templates are shuffled, then moved to test (about 20%) and validation (about 10%, only
    with 5 or more templates) while another template with the same signature stays in
    train. With nothing to hold out, every split uses every template (split by values).
    """
    ids = sorted(e[0] for e in entries)
    signature = {e[0]: _signature(e) for e in entries}
    rng.shuffle(ids)
    n = len(ids)
    wanted = {"test": max(1, round(0.2 * n)) if n >= 2 else 0,
              "validation": max(1, round(0.1 * n)) if n >= 5 else 0}
    train, held = list(ids), {"test": [], "validation": []}
    for split in ("test", "validation"):
        for template_id in list(train):
            if len(held[split]) >= wanted[split]:
                break
            twins = [t for t in train if t != template_id
                     and signature[t] == signature[template_id]]
            if twins:
                train.remove(template_id)
                held[split].append(template_id)
    return {"train": train, "validation": held["validation"] or train,
            "test": held["test"] or train}


def _draw(entries, split: str, cap: int, intents, rng: random.Random, exclude: set[str]):
    from .expand import Expander

    per_template = max(1, math.ceil(cap / len(entries)))
    examples: dict[str, Example] = {}
    for template_id, sentence, rules, fixed, domains in entries:
        invented = random.Random(f"invented/{template_id}") if split == "train" else None
        expander = Expander(intents.slot_lists, split=split, name_domains=domains,
                            invented=invented)
        seen = 0
        for _ in range(per_template * _DRAWS_PER_TARGET):
            text, slots = expander.sample(sentence.expression, rules, rng)
            if not text or text in exclude or text in examples:
                continue
            intent = template_id.split("/")[0]
            examples[text] = Example(text, intent, {**fixed, **slots}, template_id)
            seen += 1
            if seen >= per_template:
                break
    chosen = sorted(examples.values(), key=lambda e: (e.template, e.text))
    rng.shuffle(chosen)
    return chosen[:cap]


def _draw_out_of_scope(split: str, seed: int, exclude: set[str]) -> list[Example]:
    """Out-of-scope commands of ``split`` (target action ``none``), spread evenly over the
    split's templates."""
    from .out_of_scope import assign_templates, fill

    templates = assign_templates(seed)[split]
    rng = random.Random(f"{seed}/out-of-scope/{split}")
    cap = OUT_OF_SCOPE_CAPS[split]
    examples: dict[str, Example] = {}
    for _ in range(cap * _DRAWS_PER_TARGET * 4):
        if len(examples) >= cap:
            break
        template = templates[len(examples) % len(templates)]
        text = fill(template, rng)
        if text in exclude or text in examples:
            template = rng.choice(templates)
            text = fill(template, rng)
            if text in exclude or text in examples:
                continue
        examples[text] = Example(text, NO_ACTION, {}, f"{NO_ACTION}/{template}")
    return list(examples.values())


def build_splits(seed: int = SEED, caps: dict[str, int] | None = None) -> dict[str, list[Example]]:
    """The fixed train/validation/test split (deterministic for a given seed and caps)."""
    caps = {**CAPS, **(caps or {})}
    intents = load_intents()
    templates = _templates(intents)
    plans = {}
    for intent_name, entries in templates.items():
        # a per-intent RNG keeps one intent's draws independent of the others
        digest = hashlib.sha256(f"{seed}/{intent_name}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        by_id = {e[0]: e for e in entries}
        assignment = _assign_templates(entries, rng)
        plans[intent_name] = (rng, {k: [by_id[t] for t in v] for k, v in assignment.items()})
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    # train first, then test, then validation: a text already drawn for an earlier split
    # (for any intent) is never reused, so no command string leaks into evaluation
    for split in ("train", "test", "validation"):
        for intent_name, (rng, assignment) in plans.items():
            drawn = _draw(assignment[split], split, caps[split], intents, rng, exclude=seen)
            splits[split] += drawn
        splits[split] += _draw_out_of_scope(split, seed, exclude=seen | {
            e.text for e in splits[split]})
        seen |= {e.text for e in splits[split]}
    for name in SPLITS:
        random.Random(f"{seed}/{name}").shuffle(splits[name])
    return splits


def labels_of(splits: dict[str, list[Example]]) -> list[str]:
    """Sorted intent names; the label id is the index."""
    return sorted({e.intent for e in splits["train"]})


def schema_of(splits: dict[str, list[Example]]) -> dict:
    """What an action may hold, per intent, for building action grammars.

    ``{"intents": {intent: {"slot_sets": [[key, ...], ...], "slots": {key: kind}}},
    "entity_slots": [...], "no_action": "none"}``. A kind is ``"entity:area"``,
    ``"entity:floor"`` or ``"entity:name"`` (the home's own values, given at run time),
    or ``{"number": bool, "enum": [values]}``: an integer (possibly negative) when
    ``number``, else or also one of a fixed Home Assistant list (colours, domains, "up"). The slot sets are the key combinations
    the intent's templates produce (read off every split, as they are a property of the
    templates, not of the values).
    """
    keysets: dict[str, set] = {}
    values: dict[tuple[str, str], set] = {}
    for examples in splits.values():
        for e in examples:
            slots = normalize_slots(e.slots)
            keysets.setdefault(e.intent, set()).add(tuple(sorted(slots)))
            for key, value in slots.items():
                values.setdefault((e.intent, key), set()).add(value)
    intents = {}
    for intent in sorted(keysets):
        kinds = {}
        for key in sorted({k for ks in keysets[intent] for k in ks}):
            seen = values[(intent, key)]
            if key in ENTITY_SLOTS:
                kinds[key] = f"entity:{key}"
                continue
            numbers = {v for v in seen if v.lstrip("-").isdigit()}
            kinds[key] = {"number": bool(numbers), "enum": sorted(seen - numbers)}
        intents[intent] = {"slot_sets": [list(ks) for ks in sorted(keysets[intent])],
                           "slots": kinds}
    return {"intents": intents, "entity_slots": list(ENTITY_SLOTS), "no_action": NO_ACTION}


def generation_row(example: Example) -> dict:
    """TRL conversational prompt/completion row."""
    return {
        "prompt": [{"role": "system", "content": SYSTEM_PROMPT},
                   {"role": "user", "content": example.text}],
        "completion": [{"role": "assistant", "content": example.action}],
    }


def write_splits(out: Path, splits: dict[str, list[Example]], overwrite: bool = False) -> None:
    """Write the JSONL files and labels.json into ``out`` (refuses to overwrite by default)."""
    out = Path(out)
    if (out / "labels.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a data set; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    labels = labels_of(splits)
    label_id = {name: i for i, name in enumerate(labels)}
    for name, examples in splits.items():
        files = {
            f"{name}.jsonl": [dict(asdict(e), action=e.action) for e in examples],
            f"{name}.generation.jsonl": [generation_row(e) for e in examples],
            f"{name}.classification.jsonl": [
                {"text": e.text, "label": label_id[e.intent]} for e in examples
            ],
        }
        for filename, rows in files.items():
            tmp = out / f".{filename}.tmp"
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            tmp.replace(out / filename)
    (out / "labels.json").write_text(json.dumps({"labels": labels}, indent=1) + "\n")
    (out / "schema.json").write_text(json.dumps(schema_of(splits), indent=1) + "\n")


def read_split(folder: Path, split: str) -> list[Example]:
    """Read ``<split>.jsonl`` written by :func:`write_splits`."""
    rows = Path(folder, f"{split}.jsonl").read_text().splitlines()
    out = []
    for line in rows:
        row = json.loads(line)
        out.append(Example(row["text"], row["intent"], row["slots"], row["template"]))
    return out


def summary(splits: dict[str, list[Example]]) -> str:
    """A plain-text table of per-intent counts per split."""
    counts = {name: Counter(e.intent for e in examples) for name, examples in splits.items()}
    lines = [f"{'intent':32s} " + " ".join(f"{s:>10s}" for s in SPLITS)]
    for intent in labels_of(splits):
        lines.append(f"{intent:32s} " + " ".join(f"{counts[s][intent]:10d}" for s in SPLITS))
    lines.append(f"{'total':32s} " + " ".join(f"{len(splits[s]):10d}" for s in SPLITS))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    splits = build_splits(args.seed)
    write_splits(args.out, splits, overwrite=args.overwrite)
    print(summary(splits))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
