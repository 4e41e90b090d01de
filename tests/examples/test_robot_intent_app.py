"""The robot app's action parsing and dispatch (no model needed), and its import isolation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from examples.robot_intent import action as action_format
from examples.robot_intent import app, data


def test_action_parse_matches_the_data_format():
    text = action_format.format_action("HassLightSet", {"area": "living room", "brightness": 40})
    action = app.Action.parse(text)
    assert action == app.Action("HassLightSet", {"area": "living room", "brightness": "40"})


def test_action_parse_rejects_malformed_text():
    with pytest.raises(ValueError, match="is not 'key: value'"):
        app.Action.parse("HassTurnOn kitchen")
    with pytest.raises(ValueError, match="no action"):
        app.Action.parse("")


def test_dispatcher_calls_the_registered_handler_with_slots():
    d = app.Dispatcher()
    calls = []

    @d.on("HassTurnOn")
    def turn_on(**slots):
        calls.append(slots)
        return "ok"

    assert d.dispatch(app.Action("HassTurnOn", {"name": "tv"})) == "ok"
    assert calls == [{"name": "tv"}]
    assert d.dispatch(app.Action("HassNevermind", {"x": "1"})) == "call HassNevermind(x='1')"


def test_default_robot_handles_lights_and_timers():
    assert "nursery" in app.robot.dispatch(app.Action("HassTurnOff", {"area": "nursery"}))
    assert "minutes" in app.robot.dispatch(app.Action("HassStartTimer", {"minutes": "5"}))


def test_system_prompt_matches_training():
    assert app.SYSTEM_PROMPT == data.SYSTEM_PROMPT


def test_app_imports_neither_torch_nor_transformers():
    code = (
        "import sys, examples.robot_intent.app, runtime.api; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
