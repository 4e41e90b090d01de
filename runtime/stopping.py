"""Stop strings, matched on what the model generated, special tokens included.

A stop string such as ``"<|im_start|>"`` (the usual ChatML guard) is often a special token,
which the returned text skips. So each row is decoded twice, one id at a time: with special
tokens (the text stop strings are searched in, as transformers' ``StopStringCriteria``
matches token strings) and without them (the text returned). The two arrive as pairs of
pieces, one pair per id; where a pair is equal (ordinary tokens) the cut before a stop
string can fall inside it, an unequal pair (a special token) is released whole or not at all.

Streaming holds back the tail that could still become a stop string, so the released pieces
never include text after one.
"""

from __future__ import annotations

from .tokenizer import Tokenizer


class StopMatcher:
    """Streams one row's text (special tokens skipped) while watching for stop strings.

    ``push(id)`` returns the newly released text, ``finish()`` the rest; ``stopped`` turns
    true once a stop string was generated, and ``text`` is everything released (cut before
    the first stop string).
    """

    def __init__(self, tokenizer: Tokenizer, stop: tuple[str, ...]):
        self.stop = stop
        self.visible = tokenizer.stream_decoder(skip_special_tokens=True)
        self.full = tokenizer.stream_decoder(skip_special_tokens=False) if stop else None
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.pending: list[tuple[str, str]] = []  # (with specials, without) not yet released
        self.released: list[str] = []
        self.stopped = False

    def _release_before(self, cut: int) -> str:
        """Release the visible text of pending pieces before offset ``cut`` of the full text."""
        out, position, index = [], 0, 0
        while index < len(self.pending):
            full, visible = self.pending[index]
            if position + len(full) <= cut:
                out.append(visible)
                position += len(full)
                index += 1
                continue
            if full == visible and cut > position:  # split an ordinary piece
                at = cut - position
                out.append(visible[:at])
                self.pending[index] = (full[at:], visible[at:])
            break
        del self.pending[:index]
        return self._emit("".join(out))

    def _holdback_start(self, text: str) -> int:
        """Offset of the longest tail of ``text`` (shorter than the longest stop string) that
        could start a stop string; ``len(text)`` when none can."""
        cut = max(len(text) - self.hold, 0)
        while cut < len(text) and not any(s.startswith(text[cut:]) for s in self.stop):
            cut += 1
        return cut

    def _advance(self, final: bool) -> str:
        text = "".join(full for full, _ in self.pending)
        found = [at for at in (text.find(s) for s in self.stop) if at >= 0]
        if found:  # one piece can complete several stop strings: cut at the earliest
            self.stopped = True
            released = self._release_before(min(found))
            self.pending.clear()
            return released
        return self._release_before(len(text) if final else self._holdback_start(text))

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text it releases (maybe "")."""
        visible = self.visible.push(token_id)
        if self.full is None:
            return self._emit(visible)
        self.pending.append((self.full.push(token_id), visible))
        return self._advance(final=False)

    def finish(self) -> str:
        """Release what is left (a stop string completed only by the flushed tail counts)."""
        if self.full is None:
            return self._emit(self.visible.flush())
        if self.stopped:
            return ""
        self.pending.append((self.full.flush(), self.visible.flush()))
        return self._advance(final=True)

    def _emit(self, text: str) -> str:
        if text:
            self.released.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.released)
