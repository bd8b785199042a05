"""Training a byte-level BPE tokenizer with HF `tokenizers`, and the tokenizer directory it writes.

TOKDIR/tokenizer.json   loads as-is in `tokenizers.Tokenizer.from_file` and transformers'
                        `PreTrainedTokenizerFast(tokenizer_file=…)`
TOKDIR/meta.json        format version, split pattern, vocabulary size, special-token ids, the training
                        corpus and sample, and the sha256 of tokenizer.json (see docs/formats.md)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tokenizer import corpus
from tokenizer.bins import write_json

log = logging.getLogger(__name__)

META_VERSION = 1
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"

# Split patterns (the pre-tokenizer regex, applied before bytes are mapped): GPT-4's cl100k by default.
PATTERNS = {
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",
    "o200k": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
}
DEFAULT_PATTERN = "cl100k"

END_OF_TEXT = "<|endoftext|>"
RESERVED_SPECIALS = 16  # ids 0..15: <|endoftext|> then <|reserved_1|> … <|reserved_15|>, spare for later use


def default_special_tokens() -> list[str]:
    return [END_OF_TEXT] + [f"<|reserved_{i}|>" for i in range(1, RESERVED_SPECIALS)]


@dataclasses.dataclass
class TrainConfig:
    vocab_size: int = 32_000
    pattern: str = DEFAULT_PATTERN  # a name in PATTERNS, or a regex
    extra_special_tokens: tuple[str, ...] = ()
    min_frequency: int = 2
    max_bytes: int | None = None  # train on a seeded sample of at most this many bytes
    max_doc_chars: int | None = 1_000_000  # longer documents are cut (bounded memory per document)
    seed: int = 0
    model_max_length: int = 1024  # the context transformers assumes for this tokenizer (train.export sets the model's)

    def regex(self) -> str:
        return PATTERNS.get(self.pattern, self.pattern)

    def special_tokens(self) -> list[str]:
        specials = default_special_tokens()
        return specials + [t for t in self.extra_special_tokens if t not in specials]


def build_tokenizer(config: TrainConfig) -> Tokenizer:
    """An untrained byte-level BPE tokenizer: the split regex, then bytes mapped to printable characters
    (no prefix space), and the inverse as decoder."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(config.regex()), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"


def start_with_end_of_text(tokenizer: Tokenizer) -> None:
    """Encoding with special tokens (transformers' default) puts <|endoftext|> first, as documents start in the bins
    and prompts in `train.generate`; lmforge's own encoder never adds it twice (it encodes without)."""
    end_of_text = tokenizer.token_to_id(END_OF_TEXT)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{END_OF_TEXT} $A",
        pair=f"{END_OF_TEXT} $A {END_OF_TEXT} $B",
        special_tokens=[(END_OF_TEXT, end_of_text)],
    )


def write_transformers_files(output_dir: str, model_max_length: int) -> None:
    """`tokenizer_config.json` and `special_tokens_map.json`, so that `AutoTokenizer.from_pretrained(output_dir)` loads
    the folder with <|endoftext|> as bos, eos and pad, the context length, and documents read as text: a special
    token's string inside a document stays ordinary text, as in the bins."""
    specials = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "pad_token": END_OF_TEXT}
    write_json(os.path.join(output_dir, SPECIAL_TOKENS_MAP_FILE), specials)
    write_json(
        os.path.join(output_dir, TOKENIZER_CONFIG_FILE),
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "model_max_length": model_max_length,
            "split_special_tokens": True,
            "clean_up_tokenization_spaces": False,
        },
    )


def train_from_texts(texts: Iterable[str], config: TrainConfig) -> Tokenizer:
    """Trains on texts (any iterable; it is consumed once). Every byte is in the initial alphabet, so any
    text round-trips."""
    specials = config.special_tokens()
    if config.vocab_size < 256 + len(specials):
        raise ValueError(f"vocab size {config.vocab_size} leaves no room: 256 bytes and {len(specials)} special tokens")
    tokenizer = build_tokenizer(config)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    start_with_end_of_text(tokenizer)
    return tokenizer


def _capped(texts: Iterable[str], max_chars: int | None) -> Iterator[str]:
    for text in texts:
        yield text[:max_chars] if max_chars else text


def sha256_of(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def train(spec: corpus.CorpusSpec, config: TrainConfig, output_dir: str, progress=None) -> dict:
    """Trains on the corpus (streamed, or a seeded sample of `max_bytes`) and writes the tokenizer
    directory; returns its metadata. `progress(n_bytes)` is called as input is read."""
    seen = {"documents": 0, "bytes": 0}
    report = corpus.ReadReport()

    def records() -> Iterator[corpus.Record]:
        for record in corpus.iter_records(spec, report):
            if progress:
                progress(record.source_bytes)
            yield record

    def counted(texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            seen["documents"] += 1
            seen["bytes"] += len(text.encode("utf-8", "surrogatepass"))
            yield text

    started = time.time()
    texts: Iterable[str] = _capped((record.text for record in records()), config.max_doc_chars)
    if config.max_bytes:
        texts = corpus.seeded_sample(texts, config.max_bytes, config.seed)
    tokenizer = train_from_texts(counted(texts), config)
    if not seen["documents"]:  # a tokenizer of the 256 bytes and the special tokens only: nothing was learnt
        lines = "; ".join(corpus.ReadReport.lines(report.to_json())) or "every document was empty"
        raise ValueError(f"no readable document in {len(spec.paths)} input file(s) ({lines}); nothing was written")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, TOKENIZER_FILE)
    temporary = f"{path}.tmp"
    tokenizer.save(temporary)
    os.replace(temporary, path)
    write_transformers_files(output_dir, config.model_max_length)
    specials = {token: tokenizer.token_to_id(token) for token in config.special_tokens()}
    meta = {
        "version": META_VERSION,
        "type": "byte-level BPE (HF tokenizers)",
        "pattern": config.pattern if config.pattern in PATTERNS else "custom",
        "regex": config.regex(),
        "vocab_size": tokenizer.get_vocab_size(),
        "special_tokens": specials,
        "end_of_text": END_OF_TEXT,
        "corpus": {
            "paths": spec.paths[:1000],
            "files": len(spec.paths),
            "text_column": spec.text_column,
            "lines": spec.lines,
        },
        "sample": {
            "documents": seen["documents"],
            "bytes": seen["bytes"],
            "max_bytes": config.max_bytes,
            "max_doc_chars": config.max_doc_chars,
            "seed": config.seed,
        },
        "read": report.to_json(),
        "min_frequency": config.min_frequency,
        "training_seconds": round(time.time() - started, 1),
        "sha256": sha256_of(path),
    }
    write_json(os.path.join(output_dir, META_FILE), meta)  # whole or not at all, as tokenizer.json
    return meta
