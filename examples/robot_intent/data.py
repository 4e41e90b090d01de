"""Robot-intent data: Home Assistant intent templates -> (command, intent, slots, action).

Source: ``home_assistant_intents.get_intents("en")`` parsed with ``hassil.Intents.from_dict``
(home-assistant-intents==2026.11.25, hassil==3.13.0, Apache-2.0). Templates that need a
wildcard list (free text such as a shopping item or a broadcast message) are skipped, as
``hassil.sample.sample_intents`` does by default; 35 intents remain.

The split is fixed and seeded (``SEED``) and measures generalisation:

- whole sentence templates are held out per intent: about 20% of an intent's templates go
  to test and 10% to validation (an intent with 2 templates gives one to test; one with a
  single template is split by slot values only);
- validation and test commands use areas, floors and device names never seen in training
  (:mod:`slots`);
- a command text that occurs in train is dropped from validation and test;
- per-intent counts are capped (``CAPS``) to balance the classes.

Action strings: ``<Intent> key=value ...`` with keys sorted, values with spaces in double
quotes (``HassLightSet area="living room" brightness=40``); :func:`parse_action` reverses
:func:`format_action`. Fixed template slots (e.g. ``domain=light`` for "turn on the
kitchen lights") are part of the action, as Home Assistant reports them.

Run ``python -m examples.robot_intent.data --out examples/robot_intent/data`` to write
``{train,validation,test}.jsonl`` (full records), ``*.generation.jsonl`` (TRL
conversational prompt/completion rows), ``*.classification.jsonl`` (``text``/``label``)
and ``labels.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shlex
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

SEED = 1234
SPLITS = ("train", "validation", "test")
CAPS = {"train": 300, "validation": 20, "test": 40}
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


def _format_value(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def format_action(intent: str, slots: dict) -> str:
    """``HassLightSet area=kitchen brightness=40`` (keys sorted, spaced values quoted)."""
    parts = [intent] + [f"{key}={_format_value(slots[key])}" for key in sorted(slots)]
    return " ".join(parts)


def parse_action(action: str) -> tuple[str, dict[str, str]]:
    """Inverse of :func:`format_action`; values come back as strings.

    Raises:
        ValueError: the text is empty, unbalanced in quotes, or a part lacks ``=``.
    """
    tokens = shlex.split(action)
    if not tokens:
        raise ValueError("Empty action string; expected '<Intent> key=value ...'")
    intent, slots = tokens[0], {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ValueError(f"Action part {token!r} is not key=value (in {action!r})")
        slots[key] = value
    return intent, slots


def normalize_slots(slots: dict) -> dict[str, str]:
    """Slots as strings, as :func:`parse_action` returns them (for comparisons)."""
    return parse_action(format_action("X", slots))[1]


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


def _assign_templates(template_ids: list[str], rng: random.Random) -> dict[str, list[str]]:
    ids = sorted(template_ids)
    rng.shuffle(ids)
    n = len(ids)
    if n == 1:
        return {"train": ids, "validation": ids, "test": ids}
    if n == 2:
        return {"train": ids[:1], "validation": ids[:1], "test": ids[1:]}
    n_test = max(1, round(0.2 * n))
    n_val = max(1, round(0.1 * n)) if n >= 5 else 0
    test, val, train = ids[:n_test], ids[n_test:n_test + n_val], ids[n_test + n_val:]
    return {"train": train, "validation": val or train, "test": test}


def _draw(entries, split: str, cap: int, intents, rng: random.Random, exclude: set[str]):
    from .expand import Expander

    heldout = split != "train"
    per_template = max(1, math.ceil(cap / len(entries)))
    examples: dict[str, Example] = {}
    for template_id, sentence, rules, fixed, domains in entries:
        expander = Expander(intents.slot_lists, heldout=heldout, name_domains=domains)
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
        assignment = _assign_templates(list(by_id), rng)
        plans[intent_name] = (rng, {k: [by_id[t] for t in v] for k, v in assignment.items()})
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    # train first, then test, then validation: a text already drawn for an earlier split
    # (for any intent) is never reused, so no command string leaks into evaluation
    for split in ("train", "test", "validation"):
        for intent_name, (rng, assignment) in plans.items():
            drawn = _draw(assignment[split], split, caps[split], intents, rng, exclude=seen)
            splits[split] += drawn
        seen |= {e.text for e in splits[split]}
    for name in SPLITS:
        random.Random(f"{seed}/{name}").shuffle(splits[name])
    return splits


def labels_of(splits: dict[str, list[Example]]) -> list[str]:
    """Sorted intent names; the label id is the index."""
    return sorted({e.intent for e in splits["train"]})


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
