"""Probe inputs of the parity gate: windows of real text, and random token ids.

Real text is what a deployed model sees, so the gate's main probes are windows of
:data:`SAMPLE_TEXT` (a short English sample written for this project: instructions, a
story, facts with numbers, a dialogue) tokenized with the export's own tokenizer, plus
windows of the user's ``calibration_text`` when given. Random ids are an extra probe set:
inputs unlike any text, where quantization damage shows first (a Gemma 3 shadow kept 0.9995
cosine on text but fell to 0.9645 on random ids with dynamic int8, issue 10).

Two architecture features need probes of their own (``runtime/parity.py`` lists the sets):
a sliding attention window (Gemma 3) gets a random row longer than the window
(``window + 8`` tokens, :func:`sliding_window_prefill`), and segment embeddings (BERT) get rows of two segments
(:func:`segment_ids`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from runtime.parity import CALIBRATION, RANDOM_IDS, SLIDING_WINDOW, TEXT, TEXT_GENERATION
from shadow_edge.errors import ConfigError

logger = logging.getLogger(__name__)

SAMPLE_TEXT = """\
Please turn off the lights in the living room and lower the blinds in the bedroom. If the \
kitchen is still warm after nine o'clock, set the thermostat to nineteen degrees and start \
the dishwasher. Remind me tomorrow at half past seven to water the tomatoes on the balcony.

The old lighthouse keeper climbed the spiral stairs every evening, counting one hundred and \
twelve steps. From the top he could see the fishing boats coming home, their lamps swaying \
like fireflies above the grey water. One stormy night a small boat lost its way, and he \
swung the great lamp slowly until the sailors found the harbour.

Water boils at 100 degrees Celsius at sea level, but at the top of a high mountain it boils \
at a lower temperature because the air pressure is lower. The Moon orbits the Earth about \
once every 27 days, and the same side of it always faces us. A healthy adult heart beats \
roughly 60 to 100 times per minute when resting.

"Could you help me find my keys?" asked Maria. "I had them when I came in, and now they are \
gone." Her brother looked under the sofa, then behind the coat rack by the door. "Here they \
are," he said, laughing, "right next to your phone, where you always leave them."

To make a simple bread, mix five hundred grams of flour with a teaspoon of salt, seven grams \
of dried yeast and three hundred millilitres of warm water. Knead the dough for ten minutes, \
let it rise for an hour, shape it into a loaf and bake it for thirty-five minutes.
"""

#: Probe shapes (rows, tokens per row, tokens prefilled before cached decoding) per task
#: and precision. fp32 rows are short: the fp32 gate compares logits to 1e-4, and its
#: reference is stored in float32. Quantized gates compare distributions over more positions.
PROBE_SHAPES = {
    (TEXT_GENERATION, "fp32"): {TEXT: (2, 8, 4), CALIBRATION: (1, 8, 4), RANDOM_IDS: (1, 8, 4)},
    (TEXT_GENERATION, "quantized"): {TEXT: (2, 32, 16), CALIBRATION: (2, 32, 16),
                                     RANDOM_IDS: (1, 32, 16)},
    ("text-classification", "fp32"): {TEXT: (4, 8, 0), CALIBRATION: (4, 8, 0),
                                      RANDOM_IDS: (4, 8, 0)},
    ("text-classification", "quantized"): {TEXT: (16, 12, 0), CALIBRATION: (16, 12, 0),
                                           RANDOM_IDS: (16, 12, 0)},
}


#: Tokens by which the sliding-window probe row exceeds the window, and the KV-cached decode
#: steps at its end (the positions compared; the last ones lie beyond the window).
SLIDING_PROBE_EXTRA, SLIDING_DECODE_STEPS = 8, 12


def sliding_window_prefill(seq: int) -> int:
    """Tokens prefilled before the sliding-window probe's cached decode steps (its row has
    ``seq = window + 8`` tokens; the last 12 are decoded through the KV cache)."""
    return max(1, seq - SLIDING_DECODE_STEPS)


def segment_ids(ids: np.ndarray) -> np.ndarray:
    """``token_type_ids`` int64 of two segments: 0 for the first half of each row, 1 after."""
    types = np.zeros_like(ids, dtype=np.int64)
    types[:, ids.shape[1] // 2:] = 1
    return types


def probe_shapes(task: str, precision: str) -> dict[str, tuple[int, int, int]]:
    """``{probe set: (rows, seq, prefill)}`` for ``task`` and ``precision``."""
    return PROBE_SHAPES[(task, "fp32" if precision == "fp32" else "quantized")]


def random_ids(vocab_size: int, rows: int, seq: int, *, seed: int = 0,
               avoid: tuple[int, ...] = ()) -> np.ndarray:
    """Deterministic random token ids int64 [rows, seq] that avoid the ids in ``avoid``."""
    ids = np.random.default_rng(seed).integers(0, vocab_size, (rows, seq))
    for special in avoid:
        if special is not None and 0 <= special < vocab_size:
            ids[ids == special] = (special + 1 + len(avoid)) % vocab_size
    return ids.astype(np.int64)


def text_windows(token_ids: list[int], rows: int, seq: int) -> np.ndarray:
    """``rows`` windows of ``seq`` consecutive ids, spread evenly over ``token_ids``
    (overlapping when the text is short), int64 [rows, seq].

    Raises:
        ConfigError: fewer than ``seq`` ids.
    """
    if len(token_ids) < seq:
        raise ConfigError(f"the probe text has {len(token_ids)} tokens, fewer than the {seq} "
                          "a probe row needs; pass a longer --calibration-text file")
    starts = np.linspace(0, len(token_ids) - seq, rows).round().astype(int)
    return np.array([token_ids[s:s + seq] for s in starts], np.int64)


def read_calibration_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``.

    Raises:
        ConfigError: missing, unreadable, not UTF-8, or empty.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the calibration text {path}: {error}; pass a UTF-8 "
                          "text file") from None
    if not text.strip():
        raise ConfigError(f"the calibration text {path} is empty; pass a file with text from "
                          "your domain")
    return text


def build_probes(task: str, precision: str, *, vocab_size: int, tokenizer=None,
                 calibration_text: str | None = None, special_ids: tuple[int, ...] = (),
                 sliding_window: int | None = None) -> dict[str, np.ndarray]:
    """The probe sets ``{name: int64 [rows, seq]}`` for one gate.

    ``tokenizer`` is a :class:`runtime.tokenizer.Tokenizer` (the export's); without one
    there is no real text, and the text set is drawn at random too (logged; only in-memory
    models without tokenizer files). ``calibration_text`` needs the tokenizer.
    ``sliding_window``: the attention window in effect (tokens; text generation), which adds
    the ``sliding_window`` set.

    Raises:
        ConfigError: ``calibration_text`` without a tokenizer, or too short.
    """
    shapes = probe_shapes(task, precision)
    probes = {}
    if tokenizer is None:
        if calibration_text is not None:
            raise ConfigError("calibration text needs the model's tokenizer, and this source "
                              "has none; export from a folder with tokenizer files")
        logger.warning("no tokenizer: the parity gate's text probes are random token ids")
        rows, seq, _ = shapes[TEXT]
        probes[TEXT] = random_ids(vocab_size, rows, seq, seed=1, avoid=special_ids)
    else:
        def encode(text: str) -> list[int]:  # ids past the model's vocabulary have no row
            return [i for i in tokenizer.encode(text) if i < vocab_size]

        rows, seq, _ = shapes[TEXT]
        probes[TEXT] = text_windows(encode(SAMPLE_TEXT), rows, seq)
        if calibration_text is not None:
            rows, seq, _ = shapes[CALIBRATION]
            probes[CALIBRATION] = text_windows(encode(calibration_text), rows, seq)
    rows, seq, _ = shapes[RANDOM_IDS]
    probes[RANDOM_IDS] = random_ids(vocab_size, rows, seq, avoid=special_ids)
    if sliding_window and task == TEXT_GENERATION:
        seq = sliding_window + SLIDING_PROBE_EXTRA
        probes[SLIDING_WINDOW] = random_ids(vocab_size, 1, seq, seed=2, avoid=special_ids)
    return probes
