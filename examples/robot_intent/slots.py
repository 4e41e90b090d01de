"""Our own small slot lists for the Home Assistant intent templates.

The intent templates reference ``{area}``, ``{floor}`` and ``{name}`` (entity names) but
ship no values for them: every home has its own. Each list has values used in training and
held-out values that only the validation and test splits use, so the test measures
generalisation to rooms and devices the model never saw.

Device names are keyed by Home Assistant domain, because a template that says
"lock the {name}" only makes sense with a lock. Names are descriptive ("robot vacuum"),
as in a real home; an unseen name that gave no hint of its domain would make some commands
ambiguous (e.g. "start the X" could be a vacuum or a lawn mower).
"""

from __future__ import annotations

AREAS_TRAIN = ("kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway",
               "dining room", "guest room", "patio", "master bedroom", "kids room", "den",
               "porch", "balcony", "pantry", "workshop", "library", "sunroom", "playroom",
               "gym", "music room", "entryway", "mudroom", "cellar", "loft", "back yard",
               "front yard", "game room", "closet")
AREAS_HELDOUT = ("nursery", "basement", "attic", "laundry room", "study")

FLOORS_TRAIN = ("first floor", "second floor", "ground floor", "upstairs", "downstairs",
                "main floor", "lower level")
FLOORS_HELDOUT = ("third floor", "top floor")

# domain -> (train names, held-out names)
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "light": (("desk lamp", "ceiling light", "floor lamp", "porch light", "bedside lamp",
               "string lights", "night light", "chandelier", "wall sconce", "vanity light",
               "table lamp", "spotlight"), ("reading lamp", "pendant light")),
    "switch": (("coffee maker", "space heater", "fountain pump", "fish tank", "dehumidifier",
                "toaster"), ("kettle switch",)),
    "fan": (("ceiling fan", "tower fan", "box fan", "exhaust fan", "vent fan"),
            ("desk fan",)),
    "cover": (("garage door", "window blinds", "curtains", "shutters", "awning", "roller shade"),
              ("skylight shade",)),
    "lock": (("front door lock", "back door lock", "side door lock", "shed lock", "safe lock"),
             ("gate lock",)),
    "valve": (("water valve", "sprinkler valve", "main valve", "garden valve"), ("gas valve",)),
    "climate": (("thermostat", "air conditioner", "heater", "radiator"), ("heat pump",)),
    "media_player": (("tv", "speaker", "soundbar", "stereo", "record player", "smart display",
                      "projector"), ("radio",)),
    "input_boolean": (("guest mode", "party mode", "night mode", "away mode"),
                      ("vacation mode",)),
    "scene": (("movie night", "good morning", "relax", "reading time", "romantic dinner"),
              ("dinner party",)),
    "script": (("bedtime routine", "morning routine", "leaving home", "arrive home"),
               ("wake up routine",)),
    "button": (("doorbell chime", "identify button", "refresh button"), ("restart button",)),
    "input_button": (("reset button", "panic button"), ("snooze button",)),
    "sensor": (("outdoor temperature", "humidity sensor", "power meter", "rain gauge"),
               ("air quality sensor",)),
    "binary_sensor": (("front door sensor", "motion sensor", "leak sensor", "smoke detector"),
                      ("window sensor",)),
    "person": (("alice", "bob", "dad", "mom", "grandma", "emma", "liam"), ("carol",)),
    "vacuum": (("robot vacuum", "roomba", "cleaning robot", "vacuum cleaner"), ("mop robot",)),
    "lawn_mower": (("lawn mower", "mower", "grass cutter"), ("robot mower",)),
    "weather": (("home forecast", "weather station", "local weather"), ("city weather",)),
}

def areas(heldout: bool) -> tuple[str, ...]:
    return AREAS_HELDOUT if heldout else AREAS_TRAIN


def floors(heldout: bool) -> tuple[str, ...]:
    return FLOORS_HELDOUT if heldout else FLOORS_TRAIN


def names(domains: list[str] | None, heldout: bool) -> list[tuple[str, str]]:
    """(name, domain) pairs for the allowed ``domains`` (all domains when None)."""
    chosen = domains if domains else sorted(NAMES)
    out = []
    for domain in chosen:
        if domain in NAMES:
            out.extend((name, domain) for name in NAMES[domain][1 if heldout else 0])
    return out
