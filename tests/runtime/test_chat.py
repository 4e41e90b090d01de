"""Chat templates rendered with jinja2 give the same ids as transformers' apply_chat_template."""

from __future__ import annotations

import pytest

from runtime.chat import render_chat
from runtime.errors import InvalidSettingError
from runtime.tokenizer import Tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Capital of France?"}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Turn on the kitchen light, s'il vous plaît 💡"}],
    [{"role": "user", "content": "multi\nline\n\n  text"}, {"role": "assistant", "content": ""}],
    # a None-valued key is dropped, as transformers does
    [{"role": "user", "content": "text with <|im_end|> inside", "name": None}],
]

# Exercises the helpers transformers provides: tojson, raise_exception, loop controls,
# namespace, {% generation %}, bos/eos variables and trim/lstrip of blocks.
CUSTOM_TEMPLATE = """{{ bos_token }}
{%- set ns = namespace(n=0) %}
{%- for m in messages %}
  {%- if m['role'] not in ['system', 'user', 'assistant'] %}
    {{- raise_exception('bad role ' + m['role']) }}
  {%- endif %}
  {%- if m['role'] == 'system' %}{% continue %}{% endif %}
  {%- set ns.n = ns.n + 1 %}
  {%- if m['role'] == 'assistant' %}
{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}
  {%- else %}
{{ ns.n }}:{{ m | tojson }}
  {%- endif %}
{%- endfor %}
{% if tools %}{{ tools | tojson(indent=2) }}{% endif %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    return Tokenizer.from_folder(smollm2_tokenizer_dir)


def _ours(tok, messages, template=None, **kwargs):
    text = render_chat(template or tok.chat_template, messages,
                       special_tokens=tok.special_tokens, **kwargs)
    return tok.encode(text, add_special_tokens=False)


def _theirs(hf, messages, **kwargs):
    out = hf.apply_chat_template(messages, tokenize=True, **kwargs)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_smollm2_template_ids_equal_transformers(tok, hf_smollm2_tokenizer, index,
                                                  add_generation_prompt):
    messages = CONVERSATIONS[index]
    expected = _theirs(hf_smollm2_tokenizer, messages, add_generation_prompt=add_generation_prompt)
    assert _ours(tok, messages, add_generation_prompt=add_generation_prompt) == expected


def test_default_system_prompt_is_inserted_without_a_system_message(tok):
    text = render_chat(tok.chat_template, CONVERSATIONS[0], special_tokens=tok.special_tokens)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("index", [1, 2])
def test_custom_template_with_helpers_equals_transformers(tok, hf_smollm2_tokenizer, index):
    tools = [{"name": "lights", "parameters": {"area": "string", "ünïcode": True}}]
    kwargs = {"add_generation_prompt": True, "tools": tools}
    expected = _theirs(hf_smollm2_tokenizer, CONVERSATIONS[index], chat_template=CUSTOM_TEMPLATE,
                       **kwargs)
    assert _ours(tok, CONVERSATIONS[index], template=CUSTOM_TEMPLATE, **kwargs) == expected


def test_template_raise_exception_becomes_invalid_setting(tok):
    with pytest.raises(InvalidSettingError, match="bad role robot"):
        render_chat(CUSTOM_TEMPLATE, [{"role": "robot", "content": "x"}])


@pytest.mark.parametrize(
    "template, messages, message",
    [
        (None, [{"role": "user", "content": "x"}], "has no chat template"),
        ("{{ x", [{"role": "user", "content": "x"}], "syntax error"),
        ("{{ 1 }}", "just a string", "must be a list"),
        ("{{ 1 }}", [{"content": "no role"}], "messages\\[0\\] must be a dict with a 'role'"),
    ],
)
def test_bad_templates_and_messages_give_clear_errors(template, messages, message):
    with pytest.raises(InvalidSettingError, match=message):
        render_chat(template, messages)


def test_sandbox_blocks_python_internals():
    with pytest.raises(InvalidSettingError, match="rejected"):
        render_chat("{{ messages.__class__.__mro__[1].__subclasses__() }}",
                    [{"role": "user", "content": "x"}])
