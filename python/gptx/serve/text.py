"""Token bytes -> text for one sequence, with stop strings: the text ends before the first stop string, and a tail
that could still become one is held back from a stream until the next token decides it."""
from __future__ import annotations

import codecs


class TextState:
    def __init__(self, stops):
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""      # everything decoded so far (cut at a stop string once one is found)
        self.sent = 0       # characters of text already handed out
        self.stops = list(stops)
        self.longest = max((len(s) for s in self.stops), default=0)

    def add(self, piece: bytes) -> tuple[str, bool]:
        """(text that is now final, whether a stop string was found) after one token's bytes."""
        before = len(self.text)
        self.text += self.decoder.decode(piece)
        if not self.stops:
            return self._release(len(self.text)), False
        # A match not seen before must end in the new characters: it starts at most longest - 1 before them.
        start = max(0, before - self.longest + 1)
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            cut = min(hits)
            self.text = self.text[:cut]
            return self._release(cut), True
        keep = 0  # the longest tail that is the beginning of some stop string
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.text) - self.sent), keep, -1):
                if self.text.endswith(s[:k]):
                    keep = k
                    break
        return self._release(len(self.text) - keep), False

    def finish(self) -> str:
        """The held-back rest once the sequence has ended for another reason (length, end-of-text)."""
        self.text += self.decoder.decode(b"", final=True)
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        out = self.text[self.sent:upto]
        self.sent = max(self.sent, upto)
        return out
