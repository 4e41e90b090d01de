"""What constrained decoding needs from an export and a loaded model: the manifest's
tokenizer size, a model vocabulary larger than the tokenizer, one llguidance tokenizer per
model (built once, thread-safe), compiled grammars reused, threads."""

from __future__ import annotations

import json
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import runtime
from runtime import Grammar
from runtime.constraint import GrammarCompiler
from runtime.grammar import constrained_decoding_status
from runtime.manifest import read_manifest

pytestmark = pytest.mark.xdist_group("runtime")
pytest.importorskip("llguidance")  # the optional `grammar` extra


@pytest.fixture(scope="module")
def padded_export(exports):
    """A tiny export whose model has 300 logits for the tokenizer's 259 ids (a vocabulary
    padded past the tokenizer, as many checkpoints are)."""
    return exports["padded"]


class TestManifest:
    def test_exports_record_the_tokenizer_size_and_info_says_available(self, exports):
        manifest = read_manifest(exports["fp32"])
        assert manifest.tokens.tokenizer_vocab_size == 259
        status = runtime.info(exports["fp32"])["constrained_decoding"]
        assert status == {"available": True, "tokenizer_vocab_size": 259,
                          "llguidance_installed": True,
                          "reason": "tokenizer.json ids (259) fit the model's 259 logits"}

    def test_classifiers_do_not_offer_it(self, exports):
        status = runtime.info(exports["cls"])["constrained_decoding"]
        assert status["available"] is False and "text-generation" in status["reason"]

    def test_an_older_manifest_is_checked_against_tokenizer_json(self, exports, tmp_path):
        folder = tmp_path / "old"
        shutil.copytree(exports["fp32"], folder)
        data = json.loads((folder / "shadow_edge.json").read_text())
        del data["tokens"]["tokenizer_vocab_size"]
        (folder / "shadow_edge.json").write_text(json.dumps(data))
        manifest = read_manifest(folder)
        assert manifest.tokens.tokenizer_vocab_size is None
        assert constrained_decoding_status(manifest, folder)["tokenizer_vocab_size"] == 259
        assert constrained_decoding_status(manifest)["available"] is False  # no folder to read

    def test_more_token_ids_than_logits_is_not_available(self, exports):
        manifest = read_manifest(exports["fp32"])
        manifest.tokens.tokenizer_vocab_size = 300
        status = constrained_decoding_status(manifest)
        assert status["available"] is False
        assert status["reason"] == "tokenizer.json has 300 token ids but the model only 259 logits"

    def test_the_field_round_trips_and_is_checked(self, exports):
        data = read_manifest(exports["fp32"]).to_dict()
        assert data["tokens"]["tokenizer_vocab_size"] == 259
        data["tokens"]["tokenizer_vocab_size"] = 0
        with pytest.raises(runtime.ModelFolderError, match="tokens.tokenizer_vocab_size"):
            runtime.Manifest.from_dict(data)


class TestPaddedVocabulary:
    def test_ids_without_a_token_are_never_generated(self, padded_export):
        model = runtime.load(padded_export, threads=1)
        status = runtime.info(padded_export)["constrained_decoding"]
        assert status["available"] and "41 ids without a token are never allowed" in status["reason"]
        prompts = [f"prompt {i}" for i in range(12)]
        free = model.generate(prompts, max_new_tokens=12, eos_token_id=[])
        # why: without a grammar this random model does pick ids the tokenizer lacks
        assert any(t >= 259 for r in free for t in r.token_ids)
        constrained = model.generate(prompts, max_new_tokens=12, eos_token_id=[],
                                     grammar=Grammar(regex=r"(.|\n){12}"))
        for result in constrained:
            assert all(t < 259 for t in result.token_ids)
            assert len(result.text.encode()) == 12 or "\ufffd" in result.text


class TestTokenizerAndCompilerReuse:
    def test_the_llguidance_tokenizer_is_built_once_under_concurrent_first_use(self, generator):
        compiler = GrammarCompiler(generator.tokenizer, generator.runner.vocab_size, [2])
        builds = []
        original = compiler._build_tokenizer

        def counting_build():
            builds.append(threading.get_ident())
            return original()

        compiler._build_tokenizer = counting_build
        start = threading.Barrier(6)

        def first_use(_):
            start.wait()
            return compiler.lltokenizer()

        with ThreadPoolExecutor(6) as pool:
            tokenizers = list(pool.map(first_use, range(6)))
        assert len(builds) == 1
        assert all(t is tokenizers[0] for t in tokenizers)

    def test_a_model_keeps_its_tokenizer_and_compiled_grammars(self, generator):
        grammar = Grammar(regex="[a-z]{3}")
        first = generator.grammars.compile(grammar)
        tokenizer = generator.grammars.lltokenizer()
        generator.generate("x", max_new_tokens=4, grammar=grammar)
        assert generator.grammars.compile(Grammar(regex="[a-z]{3}")) is first
        assert generator.grammars.lltokenizer() is tokenizer

    def test_the_cache_drops_the_least_recently_used_grammar(self, generator):
        compiler = GrammarCompiler(generator.tokenizer, generator.runner.vocab_size, [2],
                                   cache_size=2)
        a = compiler.compile(Grammar(regex="a"))
        compiler.compile(Grammar(regex="b"))
        assert compiler.compile(Grammar(regex="a")) is a  # now the most recent
        compiler.compile(Grammar(regex="c"))  # drops "b"
        assert compiler.compile(Grammar(regex="a")) is a
        assert len(compiler._cache) == 2

    def test_threads_sharing_a_model_and_a_grammar_get_their_own_results(self, generator):
        grammar = Grammar(json_schema={"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 999}}, "required": ["n"],
            "additionalProperties": False, "x-guidance": {"whitespace_flexible": False}})
        jobs = [(f"prompt {i}", i) for i in range(16)]

        def run(job):
            prompt, seed = job
            return generator.generate(prompt, max_new_tokens=20, grammar=grammar,
                                      do_sample=True, seed=seed)

        alone = [run(job) for job in jobs]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(run, jobs))
        assert together == alone
        assert all(re.fullmatch(r'\{"n":(0|[1-9][0-9]{0,2})\}', r.text) for r in alone)


def test_the_mask_allows_exactly_the_next_tokens_of_each_row(generator):
    compiled = generator.grammars.compile(Grammar(regex="[0-9]+"))
    constraint = compiled.constraint(2, [2])
    masked = constraint.mask(np.zeros((2, 259), dtype=np.float32))
    digits = [generator.tokenizer.token_to_id(str(d)) for d in range(10)]
    assert sorted(np.flatnonzero(np.isfinite(masked[0])).tolist()) == sorted(digits)
    # row 0 takes "7": it may now end (eos); row 1 has not moved
    constraint.advance(np.array([digits[7], 0]), np.array([False, True]))
    masked = constraint.mask(np.zeros((2, 259), dtype=np.float32))
    assert sorted(np.flatnonzero(np.isfinite(masked[0])).tolist()) == sorted(digits + [2])
    assert np.isfinite(masked[1]).all()  # an ended row rides along unconstrained


def test_clearing_token_bits_covers_every_bit_of_a_word():
    # bit 31 of a word is the int32 sign bit (the token ids 31, 63, ... of an eos)
    from runtime.constraint import clear_token_bits

    words = np.full((2, 3), -1, dtype=np.int32)  # every id of 96 allowed
    clear_token_bits(words, [0, 31, 63, 70])
    allowed = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
    assert [np.flatnonzero(row == 0).tolist() for row in allowed] == [[0, 31, 63, 70]] * 2
