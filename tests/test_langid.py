import pytest

from pipeline.steps.langid import LanguageIdentifier, LanguageSelector, default_model_path


@pytest.fixture(scope="module")
def identifier():
    return LanguageIdentifier()


def test_bundled_model_is_found_offline():
    assert default_model_path().endswith("lid.176.ftz")


def test_identifies_multiline_text(identifier):
    language, score = identifier.identify("Das ist ein Satz.\nUnd hier ist noch ein zweiter Satz auf Deutsch.")
    assert language == "de" and 0.65 < score <= 1.0


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="language-ID model not found"):
        LanguageIdentifier(str(tmp_path / "lid.176.bin"))


def test_selector():
    keep_en_de = LanguageSelector({"en", "de"}, 0.65)
    assert keep_en_de("en", 0.9) is None
    assert keep_en_de("fr", 0.99) == "language"
    assert keep_en_de("de", 0.5) == "language_score"
    assert LanguageSelector(None, 0.0)("xx", 0.01) is None


@pytest.mark.shared
def test_accuracy_per_language_on_real_sentences(identifier, shared_fixtures, langid_report):
    for folder in sorted((shared_fixtures / "langid").iterdir()):
        sentences = [s for s in (folder / "sentences.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
        correct = sum(identifier.identify(sentence)[0] == folder.name for sentence in sentences)
        langid_report[folder.name] = (correct, len(sentences))
    assert len(langid_report) == 14
    # single sentences are the hard case for lid.176.ftz; whole documents score higher
    for language, (correct, total) in langid_report.items():
        assert correct / total >= 0.93, f"{language}: {correct}/{total}"
