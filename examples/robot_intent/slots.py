"""Slot values for the Home Assistant intent templates: large pools, disjoint per split.

The intent templates reference ``{area}``, ``{floor}`` and ``{name}`` (entity names) but
ship no values for them: every home has its own. A model that is to work in a home it has
never seen must *copy* the room or device named in a command, not recall one from
training. So the values come from large pools composed from word lists, and the word lists
are split three ways (train, validation, test) before anything is composed:

- an area is a room word (``"nursery"``, ``"laundry room"``), optionally with a modifier
  (``"upper nursery"``, ``"emma's room"``, ``"blue guest room"``);
- a floor is a floor-shaped phrase (``"third floor"``, ``"mezzanine level"``);
- a device name is a modifier plus a *head noun* that names its kind (``"brass lamp"``,
  ``"attic fan"``, ``"zephyr robot vacuum"``). Head nouns are shared by all splits because
  they carry the device's domain ("start the X" is a vacuum or a lawn mower only by its
  head noun); the modifiers are not. Some domains (people, scenes, scripts, weather) use
  their own word lists.

A value of the validation or test pool never equals a training value, and the words that
make validation and test areas and modifiers never occur in training values (tests check
both). Counts: ``python -m examples.robot_intent.slots``.

Training values also get *invented* words (:func:`with_invented_word`, 60% of the
training areas, floors and device names: ``"grendwick kitchen"``, ``"sloam lamp"``). A
word list of a few hundred words can be memorised; a word made of random syllables
cannot, so the only way to fit those commands is to copy the name from the command, which
is what validation and test ask for. Invented words never contain a validation or test
word.

Numbers in ranges with at least ``HELDOUT_NUMBER_MIN_RANGE`` values are split too: a
fixed fifth of the values (by a hash) is used only outside training, so a model must copy
digits it was not trained to write for that slot.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from functools import cache

SPLITS = ("train", "validation", "test")

# ---- word lists (our own) -------------------------------------------------------------

# Rooms. Those named in ROOMS_TEST / ROOMS_VALIDATION are held out by hand (they are the
# rooms people try first); the rest are split by hash.
ROOMS = (
    "kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway",
    "dining room", "guest room", "patio", "den", "porch", "balcony", "pantry", "workshop",
    "library", "sunroom", "playroom", "gym", "music room", "entryway", "mudroom", "cellar",
    "loft", "back yard", "front yard", "game room", "closet", "lounge", "foyer", "shed",
    "greenhouse", "garden", "terrace", "deck", "studio", "sauna", "wine cellar",
    "boiler room", "utility room", "storage room", "stairwell", "landing", "veranda",
    "courtyard", "gazebo", "pool house", "carport", "driveway", "home theater", "media room",
    "family room", "sitting room", "parlor", "conservatory", "powder room", "washroom",
    "master suite", "kids room", "craft room", "sewing room", "art studio", "reading room",
    "tv room", "bar", "cabana", "barn", "cottage", "guesthouse", "treehouse", "cinema room",
    "nook", "alcove", "walk-in closet", "dressing room", "ensuite", "scullery", "larder",
    "breakfast room", "boathouse", "observatory", "darkroom", "billiard room", "trophy room",
    "atrium", "vestibule", "solarium", "rec room", "annex", "cloakroom", "wet room",
    "pool room", "orangery", "snug", "box room", "server room", "pet room", "yoga room",
    "prayer room", "toy room", "coat room", "back porch", "front porch", "side yard",
    "roof deck", "mezzanine", "gallery", "shop", "studio apartment", "crawl space",
    "boot room", "lobby", "corridor", "hall", "winter garden", "bunk room", "spare room",
)
ROOMS_TEST = ("nursery", "basement", "attic", "laundry room", "study", "recording studio",
              "panic room", "sunporch", "chapel", "tack room")
ROOMS_VALIDATION = ("playhouse", "root cellar", "utility closet", "laundry", "man cave")

# Modifiers of rooms and devices: places, colours, materials, sizes, made-up brand names.
MODIFIERS = (
    "upstairs", "downstairs", "front", "back", "north", "south", "east", "west", "main",
    "small", "big", "old", "new", "upper", "lower", "middle", "left", "right", "inner",
    "outer", "corner", "side", "rear", "top", "bottom", "blue", "green", "red", "yellow",
    "white", "black", "grey", "purple", "orange", "pink", "brown", "golden", "silver",
    "teal", "beige", "ivory", "crimson", "navy", "amber", "oak", "pine", "brass", "copper",
    "glass", "marble", "stone", "wooden", "steel", "bamboo", "velvet", "cozy", "quiet",
    "sunny", "shady", "bright", "dark", "long", "round", "tall", "tiny", "spare", "family",
    "guest", "master", "kids", "baby", "first", "second", "third", "fourth",
    "fifth", "lakeside", "lake", "river", "forest", "meadow", "harbor",
    "cedar", "maple", "willow", "birch", "walnut", "cherry", "olive", "lemon", "mint",
    "coral", "jade", "ruby", "pearl", "onyx", "slate", "granite", "cobalt", "indigo",
    "scarlet", "violet", "lilac", "peach", "sand", "cloud", "storm", "sun", "moon", "star",
    "nova", "orion", "atlas", "zephyr", "aurora", "echo", "pixel", "nimbus", "vega",
    "polaris", "luna", "sol", "terra", "aqua", "ember", "frost", "breeze", "ridge", "summit",
    "valley", "canyon", "prairie", "tundra", "island", "coast", "bay", "hill", "brook",
    "vintage", "retro", "modern", "classic", "rustic", "nordic", "tropical", "alpine",
    "coastal", "urban", "twin", "double", "single", "triple", "mini", "grand", "royal",
    "emerald", "sapphire", "topaz", "opal", "quartz", "basalt", "chalk", "ash", "elm",
    "hazel", "fern", "ivy", "moss", "sage", "thyme", "basil", "rosemary", "lavender",
    "tulip", "daisy", "lotus", "poppy", "orchid", "iris", "acorn", "pebble", "comet",
)

# Floors: ordinal / descriptive words + a floor noun.
FLOOR_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
               "ninth", "tenth", "ground", "top", "upper", "lower", "main", "terrace",
               "mezzanine", "loft", "roof", "lobby", "street", "entry",
               "east wing", "west wing", "north wing", "south wing", "guest", "penthouse")
FLOOR_NOUNS = ("floor", "level", "storey")
FLOOR_NUMBERED = ("floor", "level")  # "floor 12", "level 3"; the numbers are split by hash
FLOOR_PLAIN = ("upstairs", "downstairs", "ground floor", "top floor")

# Device head nouns by Home Assistant domain (shared by all splits: they carry the domain).
HEADS: dict[str, tuple[str, ...]] = {
    "light": ("lamp", "light", "lights", "bulb", "sconce", "chandelier", "lantern",
              "light strip", "spotlight", "floor lamp", "desk lamp", "ceiling light",
              "pendant light", "night light", "string lights"),
    "switch": ("switch", "plug", "outlet", "coffee maker", "kettle", "space heater",
               "fountain pump", "toaster", "heater switch", "power strip"),
    "fan": ("fan", "ceiling fan", "tower fan", "exhaust fan", "desk fan", "air purifier"),
    "cover": ("blinds", "curtains", "shutters", "shade", "garage door", "awning",
              "window blinds", "roller shade", "skylight", "gate"),
    "lock": ("lock", "door lock", "deadbolt", "gate lock", "front door lock",
             "smart lock"),
    "valve": ("valve", "water valve", "sprinkler valve", "gas valve", "irrigation valve"),
    "climate": ("thermostat", "air conditioner", "heater", "radiator", "heat pump",
                "climate control"),
    "media_player": ("tv", "speaker", "soundbar", "stereo", "radio", "projector",
                     "smart display", "record player", "media player", "television"),
    "input_boolean": ("mode",),
    "scene": ("scene",),
    "script": ("routine", "script"),
    "button": ("button", "chime", "restart button", "identify button"),
    "input_button": ("button", "reset button", "snooze button"),
    "sensor": ("sensor", "temperature", "humidity sensor", "power meter", "air quality",
               "rain gauge", "thermometer"),
    "binary_sensor": ("door sensor", "motion sensor", "leak sensor", "window sensor",
                      "smoke detector", "contact sensor"),
    "vacuum": ("vacuum", "robot vacuum", "vacuum robot", "roomba", "robovac", "mop robot",
               "cleaning robot", "vacuum cleaner"),
    "lawn_mower": ("mower", "lawn mower", "robot mower", "mowing robot", "grass cutter"),
    "weather": ("weather", "forecast", "weather station"),
}
# Words for scene/script/mode names (composed as "<word> <word2>" or "<word> <head>").
ACTIVITIES = ("movie", "dinner", "party", "reading", "bedtime", "morning", "evening",
              "night", "wake up", "relax", "focus", "workout", "romantic",
              "holiday", "vacation", "away", "guest", "sleep", "cleaning", "cooking",
              "gaming", "music", "meditation", "sunset", "sunrise", "breakfast", "lunch",
              "brunch", "homework", "nap", "spa", "yoga", "christmas", "halloween",
              "birthday", "quiet", "energy saving", "eco", "welcome home", "leaving",
              "storm", "winter", "summer", "spring", "autumn", "weekend", "late night",
              "date night", "game night", "family time", "tea time", "story time")
PEOPLE = ("alice", "bob", "carol", "dave", "emma", "liam", "olivia", "noah", "ava", "mia",
          "lucas", "sophia", "ethan", "isabella", "mason", "amelia", "logan", "harper",
          "james", "evelyn", "oliver", "abigail", "elijah", "emily", "jacob", "ella",
          "aiden", "scarlett", "jackson", "grace", "sebastian", "chloe", "henry", "zoey",
          "leo", "lily", "jack", "hannah", "owen", "nora", "sam", "ruby", "max", "ivy",
          "ben", "zara", "theo", "maya", "felix", "nina", "oscar", "leah", "hugo", "iris",
          "arthur", "clara", "milo", "julia", "ezra", "rosa", "kai", "anna", "tom", "eva",
          "mom", "dad", "grandma", "grandpa", "uncle joe", "aunt may")
CITIES = ("paris", "london", "berlin", "madrid", "rome", "tokyo", "osaka", "seoul",
          "sydney", "melbourne", "toronto", "chicago", "boston", "denver", "austin",
          "seattle", "miami", "dublin", "oslo", "lisbon", "vienna", "prague", "warsaw",
          "athens", "cairo", "nairobi", "lagos", "lima", "bogota", "santiago", "havana",
          "delhi", "mumbai", "bangkok", "hanoi", "manila", "jakarta", "auckland", "zurich",
          "geneva", "munich", "hamburg", "milan", "naples", "porto", "seville", "krakow",
          "helsinki", "stockholm", "reykjavik", "anchorage", "phoenix", "atlanta", "dallas")

_HELDOUT_FRACTION = {"validation": 0.15, "test": 0.15}
HELDOUT_NUMBER_MIN_RANGE = 20


def _bucket(word: str, salt: str) -> str:
    """The split a word belongs to (stable hash; about 70/15/15)."""
    h = int.from_bytes(hashlib.sha256(f"{salt}/{word}".encode()).digest()[:4], "big") / 2**32
    if h < _HELDOUT_FRACTION["test"]:
        return "test"
    if h < _HELDOUT_FRACTION["test"] + _HELDOUT_FRACTION["validation"]:
        return "validation"
    return "train"


def _split_words(words, salt: str, forced: dict[str, tuple[str, ...]] | None = None):
    forced = forced or {}
    pinned = {w: split for split, ws in forced.items() for w in ws}
    out = {split: [] for split in SPLITS}
    for word in dict.fromkeys(tuple(words) + tuple(pinned)):
        out[pinned.get(word) or _bucket(word, salt)].append(word)
    return {split: tuple(ws) for split, ws in out.items()}


@cache
def word_splits() -> dict[str, dict[str, tuple[str, ...]]]:
    """{list name: {split: words}} for every word list that is split."""
    return {
        "rooms": _split_words(ROOMS, "room", {"test": ROOMS_TEST,
                                              "validation": ROOMS_VALIDATION}),
        "modifiers": _split_words(MODIFIERS, "modifier"),
        "floor_words": _split_words(FLOOR_WORDS, "floor"),
        "activities": _split_words(ACTIVITIES, "activity"),
        "people": _split_words(PEOPLE, "person"),
        "cities": _split_words(CITIES, "city"),
    }


def _possessive(person: str) -> str:
    return f"{person}'s"


@cache
def area_pool(split: str) -> tuple[str, ...]:
    """All area values of ``split``: room words, alone or with a modifier of the same split
    (or a person's possessive, ``"emma's bedroom"``). Held-out splits also pair their own
    modifiers with training room words (``"cobalt kitchen"``): a new value all the same."""
    w = word_splits()
    rooms, mods = w["rooms"][split], w["modifiers"][split]
    owners = tuple(_possessive(p) for p in w["people"][split])
    values = set(rooms)
    values |= {f"{m} {r}" for m in mods + owners for r in rooms if m not in r}
    if split != "train":
        values |= {f"{m} {r}" for m in mods + owners for r in w["rooms"]["train"] if m not in r}
        values -= set(area_pool("train"))
    return tuple(sorted(values))


@cache
def floor_pool(split: str) -> tuple[str, ...]:
    """All floor values of ``split`` (``"<word> floor|level|storey"``; a few plain words in
    training only)."""
    words = word_splits()["floor_words"][split]
    values = {f"{w} {noun}" for w in words for noun in FLOOR_NOUNS}
    wanted = "train" if split == "train" else "heldout"
    values |= {f"{noun} {n}" for noun in FLOOR_NUMBERED for n in range(1, 61)
               if number_split(n, "floor") == wanted}
    if split == "train":
        values |= set(FLOOR_PLAIN)
    else:
        values -= set(floor_pool("train"))
    return tuple(sorted(values))


def _names_of(domain: str, split: str) -> set[str]:
    w = word_splits()
    mods = w["modifiers"][split]
    if domain == "person":
        return set(w["people"][split])
    if domain == "weather":
        cities = w["cities"][split]
        return {f"{c} {h}" for c in cities for h in HEADS["weather"]}
    if domain in ("scene", "script", "input_boolean"):
        acts = w["activities"][split]
        heads = HEADS[domain]
        out = {f"{a} {h}" for a in acts for h in heads}
        out |= {f"{m} {a}" for m in mods for a in acts}
        return out
    heads = HEADS[domain]
    places = w["rooms"][split]
    out = {f"{m} {h}" for m in mods + places for h in heads if m not in h}
    if split == "train":
        out |= set(heads)  # a bare head noun ("the lamp") is a training value only
    return out


@cache
def name_pool(domain: str, split: str) -> tuple[str, ...]:
    """All device names of ``domain`` in ``split`` (never a training value outside train)."""
    values = _names_of(domain, split)
    if split != "train":
        values -= set(name_pool(domain, "train"))
    return tuple(sorted(values))


DOMAINS = tuple(sorted(set(HEADS) | {"person"}))


def names(domains: list[str] | None, split: str) -> list[tuple[str, str]]:
    """(name, domain) pairs for the allowed ``domains`` (every domain when None)."""
    chosen = domains if domains else DOMAINS
    return [(name, d) for d in chosen if d in DOMAINS for name in name_pool(d, split)]


class AreaPicker:
    """Draws an area: a plain room word (35%), a person's room (15%) or a room with a
    modifier (50%), all from ``split``'s pools (:func:`area_pool`)."""

    def __init__(self, split: str):
        pool = area_pool(split)
        plain = set(word_splits()["rooms"][split])
        self.plain = tuple(v for v in pool if v in plain)
        self.owned = tuple(v for v in pool if v not in plain and "'s " in v)
        self.modified = tuple(v for v in pool if v not in plain and "'s " not in v)

    def __call__(self, rng: random.Random) -> str:
        r = rng.random()
        group = self.plain if r < 0.35 else self.owned if r < 0.5 else self.modified
        return rng.choice(group)


class NamePicker:
    """Draws a device name: first a domain (uniformly), then a name of that domain, so that
    domains with huge pools do not crowd out the others."""

    def __init__(self, domains: list[str] | None, split: str):
        chosen = domains if domains else DOMAINS
        self.domains = [d for d in chosen if d in DOMAINS and name_pool(d, split)]
        self.split = split

    def __call__(self, rng: random.Random) -> tuple[str, str]:
        domain = rng.choice(self.domains)
        return rng.choice(name_pool(domain, self.split)), domain


def number_split(value: int, slot: str) -> str:
    """``"train"`` or ``"heldout"``: the split a number of a large range belongs to."""
    h = int.from_bytes(hashlib.sha256(f"{slot}/{value}".encode()).digest()[:4], "big")
    return "heldout" if h % 5 == 0 else "train"


def draw_number(start: int, stop: int, step: int, slot: str, split: str,
                rng: random.Random) -> int:
    """A number of ``range(start, stop + 1, step)`` for ``split``.

    Ranges of at least ``HELDOUT_NUMBER_MIN_RANGE`` values are split by :func:`number_split`
    (training draws only "train" values, validation and test only "heldout" ones); smaller
    ranges are shared.
    """
    values = range(start, stop + 1, step)
    if len(values) < HELDOUT_NUMBER_MIN_RANGE:
        return rng.choice(values)
    wanted = "train" if split == "train" else "heldout"
    for _ in range(1000):
        value = rng.choice(values)
        if number_split(value, slot) == wanted:
            return value
    raise ValueError(f"no {wanted} value in range({start}, {stop + 1}, {step}) for {slot!r}")


#: Share of training area, floor and device-name values that get an invented word.
INVENTED_SHARE = 0.6
# Syllable parts for invented words: many onsets, vowels and codas, so that the invented
# words cover hundreds of different BPE tokens (a handful of fixed syllables gave ~180 first
# tokens, which a model memorises instead of learning to copy).
_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "y", "z", "br", "ch", "cl", "cr", "dr", "fl", "gr", "kr", "pl", "pr", "sh", "sk", "sl",
           "sn", "st", "th", "tr", "qu", "wh", "sp", "gl", "x", "")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "ie", "y", "au", "oa")
_CODAS = ("", "", "", "n", "r", "s", "t", "l", "m", "ng", "nd", "st", "ck", "x", "rt", "sh",
          "th", "ff", "ll", "z", "k", "p", "d", "g")


@cache
def _heldout_words() -> frozenset[str]:
    """Every word of a validation or test value (invented words must not contain one)."""
    words = set()
    for split in ("validation", "test"):
        for value in _all_values(split):
            words |= {w.removesuffix("'s") for w in value.split() if not w.isdigit()}
    return frozenset(w for w in words if len(w) >= 3)


def invented_word(rng: random.Random) -> str:
    """A pronounceable word of 1-3 random syllables (onset + vowel + coda), at least 3
    letters, that contains no held-out word.

    Raises:
        RuntimeError: 1,000 draws all contained a held-out word (not seen in practice).
    """
    heldout = _heldout_words()
    for _ in range(1000):
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                       for _ in range(rng.choice((1, 2, 2, 2, 3))))
        if len(word) < 3:
            continue
        if not any(h in word for h in heldout):
            return word
    raise RuntimeError("could not invent a word free of held-out words")


def with_invented_word(value: str, kind: str, rng: random.Random) -> str:
    """``value`` with one word replaced by :func:`invented_word` (training only).

    Areas may lose any word (the room word too: ``"blue sloam"``); device names and floors
    of two or more words keep their last word, which names the kind (``"kelvodor lamp"``,
    ``"zutin floor"``); a one-word value is replaced whole. A possessive stays possessive;
    values with a number are returned unchanged.

    Raises:
        RuntimeError: see :func:`invented_word`.
    """
    words = value.split(" ")
    if any(w.isdigit() for w in words):
        return value
    last = len(words) if kind == "area" or len(words) == 1 else len(words) - 1
    index = rng.randrange(last)
    new = invented_word(rng)
    words[index] = f"{new}'s" if words[index].endswith("'s") else new
    return " ".join(words)


def summary() -> str:
    """Pool sizes per split, as a plain-text table."""
    rows = [("areas", area_pool), ("floors", floor_pool)]
    lines = [f"{'pool':16s} " + " ".join(f"{s:>10s}" for s in SPLITS)]
    for label, pool in rows:
        lines.append(f"{label:16s} " + " ".join(f"{len(pool(s)):10d}" for s in SPLITS))
    for domain in DOMAINS:
        lines.append(f"{'name/' + domain:16s} "
                     + " ".join(f"{len(name_pool(domain, s)):10d}" for s in SPLITS))
    return "\n".join(lines)


def _all_values(split: str) -> set[str]:
    return (set(area_pool(split)) | set(floor_pool(split))
            | set(itertools.chain.from_iterable(name_pool(d, split) for d in DOMAINS)))


if __name__ == "__main__":
    print(summary())
    print("train values also in validation/test:",
          len(_all_values("train") & (_all_values("validation") | _all_values("test"))))
