"""The public surface: ``load(folder)`` -> :class:`ShadowGenerator` or :class:`ShadowClassifier`.

    >>> import runtime
    >>> model = runtime.load("out/shadow-int8", threads=2)
    >>> model.generate("The capital of France is", max_new_tokens=8).text
    >>> for piece in model.stream([{"role": "user", "content": "Hi"}]):
    ...     print(piece, end="")

One loaded model may be used from several threads at once: the onnxruntime session is
shared (its ``run`` is thread-safe) and every call keeps its state (KV cache, sampler,
decoders) in local variables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .beam_search import beam_search, check_beam_settings, check_length_penalty, check_num_beams
from .causal_lm import CausalLMRunner
from .chat import render_chat
from .classification import MULTI_LABEL_THRESHOLD, Classification, ClassifierRunner
from .constraint import GrammarCompiler
from .cpu import warn_if_int8_can_saturate
from .errors import InvalidSettingError, ModelFolderError, PromptTooLongError
from .generation import (
    GenerationResult,
    check_eos,
    check_max_new_tokens,
    check_stop,
    fit_prompt,
    run_to_end,
    stream_generate,
)
from .grammar import Grammar, as_grammar, constrained_decoding_status
from .manifest import Manifest, check_files, read_manifest
from .sampling import SamplingSettings
from .session import check_onnxruntime_version, create_session
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, Any]]
Prompt = str | Messages | Sequence[int]
GrammarLike = Grammar | Mapping[str, Any] | Sequence[str]


class _ShadowModel:
    """What both tasks share: the folder, manifest, onnxruntime session and tokenizer."""

    def __init__(self, folder: Path, manifest: Manifest, session, tokenizer: Tokenizer):
        self.folder = folder
        self.manifest = manifest
        self.session = session
        self.tokenizer = tokenizer
        tokens = manifest.tokens
        eos = list(tokens.eos_token_id)
        if not eos and tokenizer.special_token_id("eos_token") is not None:
            eos = [tokenizer.special_token_id("eos_token")]
        self.eos_token_ids: list[int] = eos
        pad = tokens.pad_token_id
        if pad is None:
            pad = tokenizer.special_token_id("pad_token")
        if pad is None:
            pad = eos[0] if eos else 0
        self.pad_token_id: int = pad
        self.vocab_size: int = manifest.model.vocab_size

    def _check_vocabulary(self) -> None:
        """Refuse a tokenizer or special ids the model has no embedding rows for (onnxruntime's
        Gather would fail on them with a long, unclear error)."""
        vocab = self.vocab_size
        outside = self.tokenizer.tokens_from(vocab)
        special = sorted({t for t in (*self.eos_token_ids, self.pad_token_id,
                                      self.manifest.tokens.bos_token_id)
                          if t is not None and not 0 <= t < vocab})
        if outside:
            raise ModelFolderError(
                f"the tokenizer in {str(self.folder)!r} has tokens the model has no embedding for: "
                f"{self.tokenizer.describe_ids([i for i, _ in outside])}; the model takes ids "
                f"0-{vocab - 1}. Remove them from tokenizer.json (added_tokens), or export a "
                "model whose embeddings cover them (model.resize_token_embeddings(len("
                "tokenizer)) before training)."
            )
        if special:
            raise ModelFolderError(
                f"the special token ids in {str(self.folder)!r} (eos/pad/bos, from "
                "shadow_edge.json or the tokenizer) include ids the model has no embedding for: "
                f"{self.tokenizer.describe_ids(special)}; the model takes ids 0-{vocab - 1}. Fix "
                "tokens in shadow_edge.json, or re-export the model."
            )

    def _check_ids(self, ids: list[int], source: str = "the prompt") -> list[int]:
        """Every id that reaches the graph is in [0, vocab_size): InvalidSettingError naming
        the tokens otherwise."""
        bad = sorted({t for t in ids if not 0 <= t < self.vocab_size})
        if bad:
            raise InvalidSettingError(
                f"{source} holds token ids outside the vocabulary [0, {self.vocab_size}) of this model: "
                f"{self.tokenizer.describe_ids(bad)}. Pass ids from this model's tokenizer, or "
                "text without these tokens."
            )
        return ids

    def _encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return self._check_ids(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def _wrong_task(self, method: str, task: str):
        return InvalidSettingError(
            f"{method}() needs a {task!r} export, but {str(self.folder)!r} holds a "
            f"{self.manifest.task!r} model ({type(self).__name__}). Load a {task} export, or "
            f"call {'generate()/stream()' if self.manifest.is_generation else 'classify()'}."
        )

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses."""
        return self.session.get_providers()

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"{type(self).__name__}(folder={str(self.folder)!r}, task={m.task!r}, "
            f"precision={m.precision!r}, providers={self.providers})"
        )


class ShadowGenerator(_ShadowModel):
    """A loaded text-generation export. Use :meth:`generate` or :meth:`stream`.

    ``context`` is the model's window in tokens (``max_position_embeddings``; None if
    unknown): prompt plus generated tokens never exceed it.
    """

    def __init__(self, folder, manifest, session, tokenizer):
        super().__init__(folder, manifest, session, tokenizer)
        self.runner = CausalLMRunner(session, manifest)
        self._check_vocabulary()  # after the graph-vs-manifest check
        self.context = manifest.model.max_position_embeddings
        # llguidance's tokenizer is built on the first grammar= call, then reused
        self.grammars = GrammarCompiler(tokenizer, self.runner.vocab_size, self.eos_token_ids)

    def classify(self, *args, **kwargs):
        """Not available on a generator: raises InvalidSettingError naming generate()."""
        raise self._wrong_task("classify", "text-classification")

    # ---- prompts -----------------------------------------------------------------------

    def apply_chat_template(
        self, messages: Messages, *, add_generation_prompt: bool = True, tokenize: bool = True,
        tools: list[dict] | None = None, documents: list[dict] | None = None,
        chat_template: str | None = None, **template_kwargs: Any,
    ) -> list[int] | str:
        """Render ``messages`` with the tokenizer's chat template; ids (default) or text.

        The template is chosen as transformers does: ``chat_template`` (a template name or a
        Jinja source), else "tool_use" when ``tools`` is given and the tokenizer has it, else
        "default" (:func:`runtime.chat.select_chat_template`). The ids equal transformers'
        ``tokenizer.apply_chat_template(messages, ...)`` from the same folder.

        Raises:
            InvalidSettingError: no template, bad messages, or the template raised.
        """
        template = self.tokenizer.get_chat_template(chat_template, tools)
        text = render_chat(
            template, messages, add_generation_prompt=add_generation_prompt,
            special_tokens=self.tokenizer.special_tokens, tools=tools, documents=documents,
            **template_kwargs,
        )
        return self._encode(text, add_special_tokens=False) if tokenize else text

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """One prompt to ids: text (with the tokenizer's special tokens), chat messages
        (rendered with the chat template, add_generation_prompt=True) or token ids."""
        if isinstance(prompt, str):
            return self._encode(prompt)
        if isinstance(prompt, np.ndarray) and prompt.ndim == 1 and (
            np.issubdtype(prompt.dtype, np.integer) or prompt.size == 0
        ):
            prompt = prompt.tolist()
        if isinstance(prompt, Sequence) and prompt and all(isinstance(m, Mapping) for m in prompt):
            return self.apply_chat_template(prompt)
        if isinstance(prompt, Sequence) and all(
            isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in prompt
        ):
            return self._check_ids([int(t) for t in prompt])
        raise InvalidSettingError(
            f"a prompt must be a string, a list of chat messages or a list of token ids, got "
            f"{type(prompt).__name__}: {prompt!r:.80}."
        )

    def _split_batch(self, prompt) -> tuple[list, bool]:
        """(prompts, is_batch). A list of prompts (strings, message lists or id lists) is a
        batch; a string, one message list or one id list is a single prompt. A 2-D numpy
        array of ids is a batch of its rows; a 1-D one is a single prompt."""
        if isinstance(prompt, np.ndarray):
            return (list(prompt), True) if prompt.ndim == 2 else ([prompt], False)
        if isinstance(prompt, Sequence) and not isinstance(prompt, str) and prompt:
            first = prompt[0]
            if isinstance(first, str) or (
                isinstance(first, (Sequence, np.ndarray)) and not isinstance(first, (str, Mapping))
            ):
                return list(prompt), True
        return [prompt], False

    # ---- generation --------------------------------------------------------------------

    def _prepare(self, prompt, max_new_tokens, truncate, stop, eos_token_id, grammar,
                 sampling_kwargs, num_beams: int = 1):
        max_new_tokens = check_max_new_tokens(max_new_tokens)
        sampling = SamplingSettings(**sampling_kwargs)
        stop = check_stop(stop)
        if num_beams > 1:
            check_beam_settings(sampling, stop)
        grammar = as_grammar(grammar)
        prompts, is_batch = self._split_batch(prompt)
        rows = [
            fit_prompt(self.encode_prompt(p), self.context, max_new_tokens, truncate)
            for p in prompts
        ]
        if eos_token_id is None:
            eos = self.eos_token_ids
        else:
            eos = check_eos(eos_token_id, self.runner.vocab_size)
        kwargs = {
            "max_new_tokens": max_new_tokens, "sampling": sampling, "eos_ids": eos,
            "pad_id": self.pad_token_id, "context": self.context, "stop": stop,
        }
        if grammar is not None:
            kwargs["constraint"] = self.grammars.compile(grammar).constraint(
                len(rows) * num_beams, eos)
        return rows, is_batch, kwargs

    def generate(
        self,
        prompt: Prompt | Sequence[Prompt],
        *,
        max_new_tokens: int = 128,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        truncate: bool = False,
        grammar: GrammarLike | None = None,
        num_beams: int = 1,
        length_penalty: float = 1.0,
    ) -> GenerationResult | list[GenerationResult]:
        """Generate a continuation.

        Args:
            prompt: a string, chat messages ([{"role", "content"}...]) or token ids (a list or
                a 1-D integer numpy array); or a list of those (or a 2-D id array) for a
                left-padded batch. Each row equals running it alone, also when sampling with
                a seed (every row gets its own generator seeded with ``seed``), at every
                precision: int8 and int4 quantize activations per row and block of 32. (int8
                exports from ``quantize_dynamic``, written before the block-wise int8, share
                one activation scale per batch; loading one warns on x86 without VNNI.)
            max_new_tokens: upper bound on generated tokens (>= 1).
            do_sample, temperature, top_k, top_p, repetition_penalty, seed: see
                :mod:`runtime.sampling` (default: greedy).
            stop: string(s) that end generation; the text is cut before the first one
                generated.
            eos_token_id: override the manifest's eos ids (an id or a list; [] = none).
            truncate: when prompt + max_new_tokens would overflow the context, keep only the
                prompt's last ``context - max_new_tokens`` tokens (at least one). Without it,
                a prompt of >= context tokens raises PromptTooLongError and a shorter one
                generates until the context is full (finish_reason "length").
            grammar: constrain the output (needs ``pip install 'shadow-edge[grammar]'``): a
                :class:`~runtime.grammar.Grammar` (Lark, regex, JSON schema or choices), a
                dict (a JSON schema) or a list of strings (choices). Each row has its own
                matcher; the mask applies before the sampling settings; eos is allowed only
                where the grammar accepts; stop strings and max_new_tokens still apply.
                finish_reason "grammar" means the text is a complete match, "length" that it
                was cut off (a prefix of a match: raise max_new_tokens), "stop" that a stop
                string cut it. A row whose grammar allows nothing more ends without an eos
                token. See :mod:`runtime.constraint`.
            num_beams: beam search with this many beams per prompt (1 = greedy or
                sampling). Keeps the likeliest whole outputs instead of the likeliest next
                token, which matters most with a grammar (see :mod:`runtime.beam_search`);
                costs about ``num_beams`` times the compute per step. Deterministic: not
                with sampling settings, repetition_penalty or stop strings.
            length_penalty: with beams, a finished output scores ``sum of log-probabilities
                / tokens ** length_penalty`` (transformers' meaning; 1.0 = per-token mean);
                unused when num_beams is 1.

        Returns:
            A :class:`GenerationResult` for a single prompt, a list for a batch.

        Raises:
            InvalidSettingError (bad settings or prompt), PromptTooLongError.
            GrammarError: the grammar does not compile, this export cannot use grammars,
                or the grammar reached a point no token can continue.
            MissingDependencyError: ``grammar=`` without llguidance installed.
        """
        num_beams = check_num_beams(num_beams)
        length_penalty = check_length_penalty(length_penalty)
        rows, is_batch, kwargs = self._prepare(
            prompt, max_new_tokens, truncate, stop, eos_token_id, grammar,
            {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                 "repetition_penalty": repetition_penalty, "seed": seed}, num_beams,
        )
        if num_beams > 1:
            del kwargs["sampling"], kwargs["stop"]
            results = beam_search(self.runner, self.tokenizer, rows, num_beams=num_beams,
                                  length_penalty=length_penalty, **kwargs)
        else:
            results = run_to_end(stream_generate(self.runner, self.tokenizer, rows, **kwargs))
        return results if is_batch else results[0]

    def stream(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 128,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        truncate: bool = False,
        grammar: GrammarLike | None = None,
    ) -> Iterator[str]:
        """Like :meth:`generate` for one prompt, but yield text pieces as they are ready.

        The pieces joined equal ``generate(...).text`` with the same settings (``grammar``
        too); a piece never ends inside a multi-byte character. Settings (and the grammar)
        are checked before the first piece.
        """
        rows, is_batch, kwargs = self._prepare(
            prompt, max_new_tokens, truncate, stop, eos_token_id, grammar,
            {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                 "repetition_penalty": repetition_penalty, "seed": seed},
        )
        if is_batch:
            raise InvalidSettingError(
                "stream() takes one prompt; call generate() for a batch, or stream each prompt."
            )
        return (piece for _, piece in stream_generate(self.runner, self.tokenizer, rows, **kwargs))


class ShadowClassifier(_ShadowModel):
    """A loaded text-classification export. Use :meth:`classify`."""

    def __init__(self, folder, manifest, session, tokenizer):
        super().__init__(folder, manifest, session, tokenizer)
        self.runner = ClassifierRunner(session, manifest)
        self._check_vocabulary()

    def generate(self, *args, **kwargs):
        """Not available on a classifier: raises InvalidSettingError naming classify()."""
        raise self._wrong_task("generate", "text-generation")

    def stream(self, *args, **kwargs):
        """Not available on a classifier: raises InvalidSettingError naming classify()."""
        raise self._wrong_task("stream", "text-generation")

    @property
    def labels(self) -> list[str]:
        """Label names by class index (from ``id2label``)."""
        return list(self.runner.labels)

    def classify(
        self, texts: str | Sequence[str], *, batch_size: int = 32, truncate: bool = False,
        threshold: float = MULTI_LABEL_THRESHOLD,
    ) -> Classification | list[Classification]:
        """Classify one text (returns one result) or a list of texts (returns a list).

        Scores follow the model's ``problem_type`` as transformers' text-classification
        pipeline does (:mod:`runtime.classification`); for a multi-label model each result's
        ``labels`` lists every label scoring at least ``threshold``.

        Texts are run ``batch_size`` at a time (right-padded); each text's result equals
        classifying it alone, at every precision (see :meth:`ShadowGenerator.generate`).

        Raises:
            InvalidSettingError: empty text, bad batch_size or threshold, or a token the
                model has no embedding for; PromptTooLongError: a text longer than the
                context (unless ``truncate``: keep its first tokens).
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not batch or not all(isinstance(t, str) for t in batch):
            raise InvalidSettingError(
                "classify() takes a string or a non-empty list of strings."
            )
        context = self.manifest.model.max_position_embeddings
        encoded, types = self.tokenizer.encode_batch_with_type_ids(batch)
        for ids in encoded:
            self._check_ids(ids, "a text")
            if context is not None and len(ids) > context and not truncate:
                raise PromptTooLongError(
                    f"a text has {len(ids)} tokens but the model's context is {context}. "
                    "Shorten it, or pass truncate=True to keep its first tokens."
                )
        rows = [ids[:context] for ids in encoded] if context is not None else encoded
        type_rows = [t[:context] for t in types] if context is not None else types
        results = self.runner.classify(
            rows, self.pad_token_id, batch_size, threshold,
            type_rows if self.runner.takes_token_type_ids else None,
        )
        return results[0] if single else results


def load(
    folder: str | os.PathLike,
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    optimization: str = "all",
    use_ort_format: bool = False,
    verify_hashes: bool = False,
) -> ShadowGenerator | ShadowClassifier:
    """Load an export folder written by ``shadow-edge export``.

    Args:
        folder: holds ``shadow_edge.json``, ``model.onnx`` and the tokenizer files.
        providers: execution providers, e.g. "cpu" (default), "xnnpack", ["coreml", "cpu"].
        threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores).
        optimization: graph optimisation level: "disable", "basic", "extended" or "all".
        use_ort_format: load ``model.ort`` (``ort_model_file``) instead of ``model.onnx``.
        verify_hashes: also check every file's SHA-256 against the manifest (slow).

    Returns:
        :class:`ShadowGenerator` for task "text-generation", :class:`ShadowClassifier` for
        "text-classification".

    Raises:
        ModelFolderError / ManifestVersionError: missing, corrupt or too new folder.
        OnnxRuntimeVersionError: the installed onnxruntime is too old for the export's opset.
        ProviderUnavailableError / InvalidSettingError: bad provider, threads or level.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    check_files(folder, manifest, hashes=verify_hashes)
    check_onnxruntime_version(manifest.opset)
    warn_if_int8_can_saturate(manifest.precision, manifest.quantization, str(folder))
    model_file = manifest.model_file
    if use_ort_format:
        if not manifest.ort_model_file:
            raise ModelFolderError(
                f"{str(folder)!r} has no .ort model (ort_model_file is null). Re-export with "
                "`shadow-edge export --ort`, or load without use_ort_format."
            )
        model_file = manifest.ort_model_file
    tokenizer = Tokenizer.from_folder(folder)
    session = create_session(
        folder / model_file, providers=providers, threads=threads, optimization=optimization
    )
    cls = ShadowGenerator if manifest.is_generation else ShadowClassifier
    model = cls(folder, manifest, session, tokenizer)
    logger.info("loaded %r", model)
    return model


def info(folder: str | os.PathLike) -> dict:
    """Describe an export folder without loading the model (fast; reads the manifest only).

    Returns a JSON-ready dict: task, precision, opset, architecture and sizes, labels,
    special token ids, files with sizes, the parity verdict, whether constrained decoding
    (``grammar=``) is available (:func:`runtime.grammar.constrained_decoding_status`), tool
    versions, and the execution providers this onnxruntime offers.

    Raises:
        ModelFolderError / ManifestVersionError: as :func:`runtime.manifest.read_manifest`.
    """
    from .session import available_providers

    folder = Path(folder)
    manifest = read_manifest(folder)
    data = manifest.to_dict()
    present = {
        name: (folder / name).stat().st_size
        for name in sorted(manifest.files) if (folder / name).is_file()
    }
    return {
        "folder": str(folder),
        "task": manifest.task,
        "precision": manifest.precision,
        "opset": manifest.opset,
        "format_version": manifest.format_version,
        "model": data["model"],
        "tokens": data["tokens"],
        "source": data["source"],
        "detach": data["detach"],
        "files": present,
        "verified": manifest.verified,
        "parity_passed": (manifest.parity or {}).get("passed"),
        "constrained_decoding": constrained_decoding_status(manifest, folder),
        "tool_versions": data["tool_versions"],
        "available_providers": available_providers(),
    }
