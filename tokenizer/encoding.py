"""Turning text into token ids with a trained tokenizer directory, as fast as the ids allow.

Two encoders give the same ids: HF `tokenizers` (the reference) and a tiktoken `Encoding` built from the
same vocabulary, regex and byte mapping (specials kept out of its ranks), several times faster per thread.
tiktoken applies a merge wherever the merged bytes are a token, where HF applies only the merges it learned,
so on rare words the two can differ: `Encoder.agrees()` compares them, and the caller falls back to HF.

Document text is never parsed for special tokens: `<|endoftext|>` inside a page encodes as ordinary text.
Runs of more than 25,000 whitespace or non-whitespace characters are cut before encoding (as Llama 3's
tokenizer does), so a pathological document cannot make the regex or the merges quadratic.
"""

from __future__ import annotations

import json
import os
import re

from tokenizers import Tokenizer

from tokenizer.train import END_OF_TEXT, META_FILE, TOKENIZER_FILE

MAX_RUN = 25_000
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN + 1},}}|\s{{{MAX_RUN + 1},}}")


def split_pathological(text: str) -> list[str]:
    """`text` cut so that no piece holds a run of more than MAX_RUN whitespace or non-whitespace
    characters (cuts every MAX_RUN characters into such a run); almost always just [text]."""
    cuts: list[int] = []
    for match in _LONG_RUN.finditer(text):
        cuts.extend(range(match.start() + MAX_RUN, match.end(), MAX_RUN))
    if not cuts:
        return [text]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def _bytes_of_token() -> dict[str, int]:
    """The inverse of ByteLevel's byte → printable character map (GPT-2's)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return {chr(character): byte for byte, character in zip(printable, characters)}


def load_meta(tokenizer_dir: str) -> dict:
    with open(os.path.join(tokenizer_dir, META_FILE)) as handle:
        return json.load(handle)


class Encoder:
    """`encode(texts)` → token id lists. `backend`: "tiktoken" (fast, when it agrees) or "hf"."""

    def __init__(self, tokenizer_dir: str, backend: str = "tiktoken"):
        self.meta = load_meta(tokenizer_dir)
        self.hf = Tokenizer.from_file(os.path.join(tokenizer_dir, TOKENIZER_FILE))
        self.hf.encode_special_tokens = True  # documents are text: no special token is ever parsed out of them
        end_of_text = self.hf.token_to_id(END_OF_TEXT)
        if end_of_text is None:
            raise ValueError(f"{tokenizer_dir}: {TOKENIZER_FILE} has no {END_OF_TEXT} token")
        self.end_of_text: int = end_of_text
        self.vocab_size = self.hf.get_vocab_size()
        self.fast = self._tiktoken() if backend == "tiktoken" else None

    def _tiktoken(self):
        import tiktoken

        to_byte = _bytes_of_token()
        specials = set(self.meta["special_tokens"])
        ranks = {
            bytes(to_byte[c] for c in token): token_id
            for token, token_id in self.hf.get_vocab(with_added_tokens=False).items()
            if token not in specials
        }
        return tiktoken.Encoding(name="lmforge", pat_str=self.meta["regex"], mergeable_ranks=ranks, special_tokens={})

    @property
    def backend(self) -> str:
        return "tiktoken" if self.fast is not None else "hf"

    def encode_hf(self, texts: list[str]) -> list[list[int]]:
        out = []
        for text in texts:
            pieces = split_pathological(text)
            if len(pieces) == 1:
                out.append(self.hf.encode(text, add_special_tokens=False).ids)
            else:
                out.append([i for e in self.hf.encode_batch(pieces, add_special_tokens=False) for i in e.ids])
        return out

    def encode_fast(self, texts: list[str]) -> list[list[int]]:
        assert self.fast is not None
        out = []
        for text in texts:
            ids: list[int] = []
            for piece in split_pathological(text):
                ids.extend(self.fast.encode_ordinary(piece))
            out.append(ids)
        return out

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.encode_fast(texts) if self.fast is not None else self.encode_hf(texts)

    def agrees(self, texts: list[str]) -> bool:
        """Whether the fast encoder gives HF's ids on `texts` (True when there is no fast encoder)."""
        return self.fast is None or self.encode_fast(texts) == self.encode_hf(texts)

    def decode(self, ids) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)
