"""Constrained decoding (grammar=) on the tiny random export: outputs always obey the grammar.

The tiny model has random weights, so unconstrained output is garbage; every grammar here
is bounded and ``max_new_tokens`` covers its longest string (the tiny tokenizer writes one
byte per token), so every row must end with finish_reason "grammar" and a text that an
independent checker accepts (Python ``re``, ``jsonschema``, the ``lark`` parser).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime
from runtime import Grammar, GrammarError, InvalidSettingError

pytestmark = pytest.mark.xdist_group("runtime")
pytest.importorskip("llguidance")  # the optional `grammar` extra
jsonschema = pytest.importorskip("jsonschema")  # test-only checkers of the outputs
lark = pytest.importorskip("lark")

EOS = 2

ACTION_LARK = r"""
start: INTENT (" " slot) ~ 0..2
slot: KEY "=" value
value: NUMBER | WORD | QUOTED
INTENT: "HassTurnOn" | "HassTurnOff" | "HassLightSet"
KEY: "area" | "brightness" | "name"
NUMBER: /[0-9]{1,3}/
WORD: /[a-z]{1,8}/
QUOTED: /"[a-z ]{1,10}"/
"""
REGEX = r"(yes|no|maybe)( [0-9]{1,3}(\.[0-9])?)?"
SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"enum": ["on", "off", "dim"]},
        "level": {"type": "integer", "minimum": 0, "maximum": 100},
        "room": {"type": "string", "pattern": "^[a-z]{1,8}$"},
        "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
    },
    "required": ["intent", "level"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},  # compact JSON: the length stays bounded
}
CHOICES = ["kitchen", "living room", "k", "laundry room", "attic"]

_lark_parser = lark.Lark(ACTION_LARK, parser="earley")


def _lark_accepts(text: str) -> bool:
    try:
        _lark_parser.parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def _schema_accepts(text: str) -> bool:
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


# kind -> (grammar, checker, max_new_tokens >= the longest accepted string in bytes)
CASES = {
    "lark": (Grammar(lark=ACTION_LARK), _lark_accepts, 64),
    "regex": (Grammar(regex=REGEX), lambda text: re.fullmatch(REGEX, text) is not None, 16),
    "json_schema": (Grammar(json_schema=SCHEMA), _schema_accepts, 80),
    "choice": (Grammar(choice=CHOICES), lambda text: text in CHOICES, 16),
}

prompts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                  max_size=10)
sampling = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"do_sample": st.just(True)}),
    st.fixed_dictionaries({"temperature": st.floats(0.2, 4.0)},
                          optional={"top_k": st.integers(1, 60), "top_p": st.floats(0.3, 1.0)}),
    st.fixed_dictionaries({"repetition_penalty": st.floats(0.5, 2.0)},
                          optional={"temperature": st.floats(0.2, 4.0)}),
)


class TestEveryOutputIsAccepted:
    """>= 500 drawn prompts, seeds and sampling settings per grammar kind; stream too."""

    @pytest.mark.parametrize("kind", list(CASES))
    def test_outputs_of_drawn_prompts_and_settings_match_the_grammar(self, generator, kind):
        grammar, accepts, max_new_tokens = CASES[kind]
        seen = set()

        @settings(max_examples=500, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(prompt=prompts, seed=st.integers(0, 2**32 - 1), options=sampling)
        def check(prompt, seed, options):
            result = generator.generate(prompt, max_new_tokens=max_new_tokens, seed=seed,
                                        grammar=grammar, **options)
            assert result.finish_reason == "grammar", result
            assert accepts(result.text), result
            # eos ends a row only where the grammar accepts (it is the last id, if present)
            assert EOS not in result.token_ids[:-1]
            seen.add(result.text)

        check()
        assert len(seen) >= (2 if kind == "choice" else 10)  # the draws explore the grammar

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(prompt=prompts, seed=st.integers(0, 2**32 - 1), options=sampling,
           kind=st.sampled_from(list(CASES)))
    def test_stream_yields_the_text_of_generate(self, generator, prompt, seed, options, kind):
        grammar, _, max_new_tokens = CASES[kind]
        kwargs = {"max_new_tokens": max_new_tokens, "seed": seed, "grammar": grammar, **options}
        pieces = list(generator.stream(prompt, **kwargs))
        assert "".join(pieces) == generator.generate(prompt, **kwargs).text


class TestBatches:
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(prompts, min_size=2, max_size=4), seed=st.integers(0, 2**16),
           options=sampling, kind=st.sampled_from(list(CASES)))
    def test_a_batch_equals_its_rows_run_alone(self, generator, batch, seed, options, kind):
        grammar, _, max_new_tokens = CASES[kind]
        kwargs = {"max_new_tokens": max_new_tokens, "seed": seed, "grammar": grammar, **options}
        together = generator.generate(batch, **kwargs)
        alone = [generator.generate(p, **kwargs) for p in batch]
        assert together == alone

    def test_each_row_has_its_own_matcher(self, generator):
        # rows that finish at different lengths: a finished row does not move the others
        results = generator.generate(["a", "bb", "a much longer prompt"], max_new_tokens=16,
                                     grammar=Grammar(regex=r"[a-z]{1,12}"), do_sample=True,
                                     seed=3)
        for result in results:
            assert re.fullmatch(r"[a-z]{1,12}", result.text)
            assert result.finish_reason == "grammar"


class TestEos:
    def test_eos_is_allowed_exactly_where_the_grammar_accepts(self, generator):
        compiled = generator.grammars.compile(Grammar(regex=r"[a-c]{2,4}|d"))
        rng = np.random.default_rng(0)
        for _ in range(30):
            constraint = compiled.constraint(1, [EOS])
            text = ""
            while not constraint.complete[0]:
                allowed = np.isfinite(constraint.mask(np.zeros((1, 259), np.float32))[0])
                assert allowed[EOS] == bool(re.fullmatch(r"[a-c]{2,4}|d", text)), text
                choices = [i for i in np.flatnonzero(allowed) if i != EOS]
                token = int(rng.choice(choices))
                constraint.advance(np.array([token]), np.array([False]))
                text += generator.tokenizer.decode([token])
            assert re.fullmatch(r"[a-c]{4}|d", text)  # complete: nothing more may follow

    def test_a_custom_eos_id_replaces_the_models_own(self, generator):
        # '!' (id 36) as the only eos: the model's eos (2) never appears, '!' only at the end
        results = [generator.generate(p, max_new_tokens=12, grammar=Grammar(regex="[a-z]{1,8}"),
                                      eos_token_id=[36], do_sample=True, seed=s)
                   for s, p in enumerate(["x", "yy", "zzz", "hello"] * 3)]
        for result in results:
            assert EOS not in result.token_ids and 36 not in result.token_ids[:-1]
            assert re.fullmatch("[a-z]{1,8}", result.text)
        assert {r.finish_reason for r in results} == {"grammar"}

    def test_without_eos_ids_a_row_ends_when_the_grammar_allows_nothing_more(self, generator):
        for seed in range(8):
            result = generator.generate("x", max_new_tokens=10, grammar=Grammar(regex="[a-z]{1,3}"),
                                        eos_token_id=[], do_sample=True, seed=seed)
            assert len(result.text) == 3 and len(result.token_ids) == 3
            assert result.finish_reason == "grammar"

    def test_a_complete_choice_ends_without_an_eos_token(self, generator):
        result = generator.generate("x", max_new_tokens=20, grammar=["laundry room"])
        assert result.text == "laundry room"
        assert result.token_ids == generator.tokenizer.encode("laundry room")
        assert result.finish_reason == "grammar"


class TestFinishReasons:
    def test_length_when_max_new_tokens_cuts_the_grammar(self, generator):
        result = generator.generate("x", max_new_tokens=5, grammar=Grammar(regex="[0-9]{40}"))
        assert result.finish_reason == "length"
        assert re.fullmatch("[0-9]{5}", result.text)  # a prefix of a match

    def test_length_at_the_end_of_the_context(self, generator):
        prompt = "p" * 120  # context 128
        result = generator.generate(prompt, max_new_tokens=50, grammar=Grammar(regex="[a-z]{20}"))
        assert result.finish_reason == "length"
        assert len(result.token_ids) == 128 - 120

    def test_a_stop_string_still_ends_the_row(self, generator):
        result = generator.generate("x", max_new_tokens=20, grammar=["kitchen light"], stop=" ")
        assert (result.text, result.finish_reason) == ("kitchen", "stop")

    def test_unconstrained_results_keep_eos_as_their_reason(self, generator):
        result = generator.generate("x", max_new_tokens=40, eos_token_id=[int(t) for t in
                                    generator.generate("x", max_new_tokens=1).token_ids])
        assert result.finish_reason == "eos"


class TestGrammarArgument:
    def test_dict_is_a_json_schema_and_list_is_choices(self, generator):
        as_dict = generator.generate("x", max_new_tokens=80, grammar=SCHEMA, seed=1,
                                     do_sample=True)
        assert as_dict == generator.generate("x", max_new_tokens=80, seed=1, do_sample=True,
                                             grammar=Grammar(json_schema=json.dumps(SCHEMA)))
        assert generator.generate("x", max_new_tokens=9, grammar=("on", "off")).text in {"on", "off"}

    @pytest.mark.parametrize("value, fragment", [
        ("[0-9]+", "bare string"),
        (42, "must be a Grammar"),
        ([], "non-empty list of strings"),
        (["a", 1], "non-empty list of strings"),
    ])
    def test_bad_grammar_values_are_invalid_settings(self, generator, value, fragment):
        with pytest.raises(InvalidSettingError, match=fragment):
            generator.generate("x", max_new_tokens=2, grammar=value)

    @pytest.mark.parametrize("kwargs, fragment", [
        ({}, "got none"),
        ({"regex": "a", "choice": ["a"]}, "got regex, choice"),
        ({"lark": "  "}, "non-empty Lark source"),
        ({"regex": b"a"}, "must be a string"),
        ({"json_schema": "{not json"}, "not valid JSON"),
        ({"json_schema": "[1, 2]"}, "must be a JSON object"),
        ({"json_schema": {"type": object}}, "cannot be written as JSON"),
        ({"choice": "yes"}, "non-empty list of strings"),
    ])
    def test_a_grammar_takes_exactly_one_valid_field(self, kwargs, fragment):
        with pytest.raises(InvalidSettingError, match=fragment):
            Grammar(**kwargs)

    def test_kind_and_text(self):
        assert (Grammar(choice=["a", "b"]).kind, Grammar(choice=["a", "b"]).text) == (
            "choice", '["a", "b"]')
        assert Grammar(json_schema={"type": "string"}).text == '{"type":"string"}'
        assert Grammar(regex="x").kind == "regex"


class TestErrors:
    @pytest.mark.parametrize("grammar, fragment", [
        (Grammar(lark="start: missing_rule"), "unknown name"),
        (Grammar(lark='start "a"'), "Expected token ':'"),
        (Grammar(regex="(unclosed"), "unclosed group"),
        (Grammar(json_schema={"type": "no-such-type"}), "no-such-type"),
        (Grammar(json_schema={"type": "string", "x-unknown-keyword": 1, "format": "nope"}),
         "json_schema grammar cannot be compiled"),
    ])
    def test_a_grammar_that_does_not_compile_raises_before_any_output(self, generator, grammar,
                                                                      fragment):
        with pytest.raises(GrammarError, match=fragment) as caught:
            generator.stream("x", max_new_tokens=4, grammar=grammar)  # raises before iterating
        assert "\n" not in str(caught.value)

    def test_a_grammar_no_string_can_meet_raises(self, generator):
        with pytest.raises(GrammarError, match="cannot be met"):
            generator.generate("x", max_new_tokens=4, grammar=Grammar(regex=r"a[^\s\S]"))

    def test_a_grammar_cut_by_max_new_tokens_reports_length_not_an_error(self, generator):
        results = generator.generate(["x", "y"], max_new_tokens=3,
                                     grammar=Grammar(json_schema={"type": "array",
                                                                  "minItems": 10}))
        assert [r.finish_reason for r in results] == ["length", "length"]
        assert all(r.text.startswith("[") for r in results)

    def test_a_grammar_of_only_the_empty_string_writes_nothing(self, generator):
        with_eos = generator.generate("x", grammar=Grammar(lark='start: ""'))
        assert (with_eos.text, with_eos.token_ids, with_eos.finish_reason) == ("", [EOS], "grammar")
        without = generator.generate(["x", "y"], grammar=Grammar(lark='start: ""'),
                                     eos_token_id=[])
        assert [(r.text, r.token_ids, r.finish_reason) for r in without] == [("", [], "grammar")] * 2
        assert list(generator.stream("x", grammar=Grammar(lark='start: ""'), eos_token_id=[])) == []

    def test_a_tokenizer_with_more_ids_than_logits_cannot_use_grammars(self, generator):
        from runtime.constraint import GrammarCompiler

        compiler = GrammarCompiler(generator.tokenizer, vocab_size=200, eos_ids=[EOS])
        with pytest.raises(GrammarError, match="259 token ids but the model only 200 logits"):
            compiler.compile(Grammar(regex="a"))


def test_grammar_errors_are_invalid_setting_errors():
    # the CLI maps InvalidSettingError to exit code 2 (a usage error)
    assert issubclass(GrammarError, InvalidSettingError)
    assert issubclass(runtime.MissingDependencyError, ImportError)
