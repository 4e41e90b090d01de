"""Which chat template a folder gives, in every place transformers 5 keeps one, and which
named template a call renders: the same ids as ``AutoTokenizer.apply_chat_template`` from
the same folder (or an error where transformers raises one).

transformers' answers are recorded in :data:`TRANSFORMERS_CHOICES`, so the comparison also
runs where transformers is not installed (``make test-arm``); where it is, each test asks
transformers live and checks the recording too."""

from __future__ import annotations

import importlib.util
import json

import pytest

from runtime.chat import render_chat, select_chat_template
from runtime.errors import InvalidSettingError, ModelFolderError
from runtime.tokenizer import Tokenizer
from tests.runtime.fixtures import tiny_tokenizer_files


def _template(tag: str) -> str:
    return ("{% for m in messages %}" + tag + ":{{ m['role'] }}={{ m['content'] }}\n{% endfor %}"
            "{% if tools is not none %}tools={{ tools | tojson }}\n{% endif %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


DEFAULT, TOOL_USE, OTHER, JSON_ONLY = (_template(t) for t in ("D", "T", "X", "J"))
INLINE = _template("INLINE")
MESSAGES = [{"role": "user", "content": "turn on the light"}]
TOOL = {"type": "function", "function": {"name": "light", "parameters": {"area": "string"}}}
CALLS = [{}, {"tools": [TOOL]}, {"tools": []}, {"chat_template": "tool_use"},
         {"chat_template": "other"}, {"chat_template": INLINE}]


def _config_template(value):
    def write(folder):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config["chat_template"] = value
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return write


def _files(**templates):
    """chat_template.jinja for "default", additional_chat_templates/<name>.jinja otherwise."""
    def write(folder):
        for name, source in templates.items():
            if name == "default":
                (folder / "chat_template.jinja").write_text(source)
            else:
                (folder / "additional_chat_templates").mkdir(exist_ok=True)
                (folder / "additional_chat_templates" / f"{name}.jinja").write_text(source)
    return write


def _json_file(folder):
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": JSON_ONLY}))


NAMED = [{"name": "default", "template": DEFAULT}, {"name": "tool_use", "template": TOOL_USE},
         {"name": "other", "template": OTHER}]
LAYOUTS = {
    "config string": [_config_template(DEFAULT)],
    "config named list": [_config_template(NAMED)],  # the case: tools -> "tool_use"
    "config list without default": [_config_template(NAMED[1:])],
    "no template": [_config_template(None)],
    "jinja file": [_config_template(None), _files(default=DEFAULT)],
    "jinja + additional": [_config_template(None), _files(default=DEFAULT, tool_use=TOOL_USE)],
    "additional only": [_config_template(None), _files(tool_use=TOOL_USE, other=OTHER)],
    "files beat the config list": [_config_template(NAMED), _files(default=OTHER)],
    "files beat the config string": [_config_template(DEFAULT), _files(tool_use=TOOL_USE)],
    "chat_template.json is a processor file": [_config_template(None), _json_file],
    "config beats chat_template.json": [_config_template(TOOL_USE), _json_file],
}


# transformers 5's answers for each layout: (AutoTokenizer's ``chat_template``, the template
# ``apply_chat_template`` renders for each of CALLS, or ValueError where it raises). A
# ``chat_template=`` name that is not among the named templates is itself the template
# source, so transformers renders the text "tool_use" / "other".
TRANSFORMERS_CHOICES = {
    "config string": (DEFAULT, [DEFAULT, DEFAULT, DEFAULT, "tool_use", "other", INLINE]),
    "config named list": ({"default": DEFAULT, "tool_use": TOOL_USE, "other": OTHER},
                          [DEFAULT, TOOL_USE, TOOL_USE, TOOL_USE, OTHER, INLINE]),
    "config list without default": ({"tool_use": TOOL_USE, "other": OTHER},
                                    [ValueError, TOOL_USE, TOOL_USE, TOOL_USE, OTHER, INLINE]),
    "no template": (None, [ValueError, ValueError, ValueError, "tool_use", "other", INLINE]),
    "jinja file": (DEFAULT, [DEFAULT, DEFAULT, DEFAULT, "tool_use", "other", INLINE]),
    "jinja + additional": ({"default": DEFAULT, "tool_use": TOOL_USE},
                           [DEFAULT, TOOL_USE, TOOL_USE, TOOL_USE, "other", INLINE]),
    "additional only": ({"tool_use": TOOL_USE, "other": OTHER},
                        [ValueError, TOOL_USE, TOOL_USE, TOOL_USE, OTHER, INLINE]),
    "files beat the config list": (OTHER, [OTHER, OTHER, OTHER, "tool_use", "other", INLINE]),
    "files beat the config string": ({"tool_use": TOOL_USE},
                                     [ValueError, TOOL_USE, TOOL_USE, TOOL_USE, "other", INLINE]),
    "chat_template.json is a processor file": (
        None, [ValueError, ValueError, ValueError, "tool_use", "other", INLINE]),
    "config beats chat_template.json": (
        TOOL_USE, [TOOL_USE, TOOL_USE, TOOL_USE, "tool_use", "other", INLINE]),
}


def _recorded(tok, template, call):
    """The ids transformers gives when it renders ``template`` (ValueError: it raises)."""
    if template is ValueError:
        return ValueError
    text = render_chat(template, MESSAGES, special_tokens=tok.special_tokens,
                       tools=call.get("tools"))
    return tok.encode(text, add_special_tokens=False)


def _theirs(hf, call):
    try:
        out = hf.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False,
                                     **call)
    except ValueError as error:  # transformers: no template / no default among named ones
        return type(error)
    return list(out)


def _ours(tok, call):
    try:
        template = tok.get_chat_template(call.get("chat_template"), call.get("tools"))
        text = render_chat(template, MESSAGES, special_tokens=tok.special_tokens,
                           tools=call.get("tools"))
    except InvalidSettingError:
        return ValueError
    return tok.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_template_choice_equals_transformers(tmp_path, layout):
    folder = tiny_tokenizer_files(tmp_path / "tok")
    for write in LAYOUTS[layout]:
        write(folder)
    tok = Tokenizer.from_folder(folder)
    chat_template, choices = TRANSFORMERS_CHOICES[layout]
    assert tok.chat_template == chat_template
    for call, choice in zip(CALLS, choices, strict=True):
        assert _ours(tok, call) == _recorded(tok, choice, call), call
    if importlib.util.find_spec("transformers") is None:
        return  # the recording stands in for transformers (the torch-free install)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(folder))
    assert tok.chat_template == hf.chat_template
    for call in CALLS:
        assert _ours(tok, call) == _theirs(hf, call), call


def test_named_list_with_tools_renders_tool_use(tmp_path):
    folder = tiny_tokenizer_files(tmp_path / "tok")
    _config_template(NAMED)(folder)
    tok = Tokenizer.from_folder(folder)
    assert tok.get_chat_template(tools=[TOOL]) == TOOL_USE
    assert tok.get_chat_template() == DEFAULT
    assert tok.get_chat_template("other", tools=[TOOL]) == OTHER  # a name beats tools


def test_selection_errors_name_the_templates():
    with pytest.raises(InvalidSettingError, match=r"\['other', 'tool_use'\].*chat_template="):
        select_chat_template({"tool_use": TOOL_USE, "other": OTHER})
    with pytest.raises(InvalidSettingError, match="has no chat template"):
        select_chat_template(None)


@pytest.mark.parametrize("value", [[{"name": "default"}], [["default", "x"]], 42])
def test_malformed_config_templates_are_a_folder_error(tmp_path, value):
    folder = tiny_tokenizer_files(tmp_path / "tok")
    _config_template(value)(folder)
    with pytest.raises(ModelFolderError, match="chat_template must be a string or a list"):
        Tokenizer.from_folder(folder)
