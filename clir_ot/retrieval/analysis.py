"""Per-language text analysis for BM25: which Lucene analyzer, or which pretokenisation, a language gets.

Anserini maps a language code to a Lucene analyzer (``io.anserini.analysis.AnalyzerMap``) and
*silently* falls back to English for any code it does not know (``--language portuguese`` gives an
English index without a word). Here the choice is explicit and checked:

* ``lucene``: Anserini's own analyzer for the code (``en`` = Anserini's default English analyzer,
  Porter stemming; ``ar de es fa fi fr hi ... th tr zh``: the analyzer in ``AnalyzerMap``).
* ``pretokenized``: the text is analysed in Python and indexed/searched with Lucene's whitespace
  analyzer. Used for languages Lucene can analyse but Anserini does not map (``el``: Lucene's
  ``GreekAnalyzer``; ``vi``: Lucene's ``StandardAnalyzer`` without stop words, as Lucene has no
  Vietnamese analyzer), and for Thai when the Java runtime lacks the JDK's Thai word-break
  dictionary (pip-installed runtimes are jlink-trimmed): then PyThaiNLP's ``newmm`` segments, and
  tokens are lower-cased and filtered with Lucene's Thai stop set -- the same steps as
  ``ThaiAnalyzer`` after segmentation.

An :class:`Analysis` is recorded in each index's manifest, so searching uses the same analysis
that indexing used.
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import asdict, dataclass
from typing import Iterable

from clir_ot.errors import ConfigError
from clir_ot.java import ensure_jvm, thai_segmentation_available

logger = logging.getLogger(__name__)

#: ISO 639-1 code -> English name, for every language the toolkit can analyse.
LANGUAGE_NAMES = {
    "ar": "Arabic", "bn": "Bengali", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "fa": "Persian", "fi": "Finnish", "fr": "French", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sv": "Swedish", "te": "Telugu", "th": "Thai",
    "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}

#: Languages Anserini does not map but that Lucene analyzers cover; analysed in Python through the JVM.
_LUCENE_PRETOKENIZED = {
    "el": "org.apache.lucene.analysis.el.GreekAnalyzer",
    "vi": "org.apache.lucene.analysis.standard.StandardAnalyzer",
}

THAI_TOKENIZERS = ("auto", "lucene", "pythainlp")

__all__ = ["Analysis", "LANGUAGE_NAMES", "THAI_TOKENIZERS", "check_language", "resolve_analysis", "Pretokenizer"]


@dataclass(frozen=True)
class Analysis:
    """How one index analyses text.

    ``method`` is ``"lucene"`` (Anserini's analyzer for ``language``) or ``"pretokenized"`` (text is
    analysed by :class:`Pretokenizer` with ``tokenizer`` and indexed with a whitespace analyzer).
    """

    language: str
    method: str
    tokenizer: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Analysis":
        return cls(language=data["language"], method=data["method"], tokenizer=data["tokenizer"])

    def describe(self) -> str:
        if self.method == "lucene":
            return f"{self.language}: Lucene analyzer {self.tokenizer} inside Anserini"
        return f"{self.language}: pretokenised in Python with {self.tokenizer}, whitespace analyzer in Lucene"


def check_language(language: str) -> str:
    """Return ``language`` if the toolkit can analyse it, else raise :class:`ConfigError`."""
    if language in LANGUAGE_NAMES:
        return language
    lowered = language.strip().lower()
    by_name = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
    hint = ""
    if lowered in by_name:
        hint = f" Did you mean {by_name[lowered]!r} ({LANGUAGE_NAMES[by_name[lowered]]})?"
    else:
        close = difflib.get_close_matches(lowered, list(LANGUAGE_NAMES) + list(by_name), n=1)
        if close:
            code = by_name.get(close[0], close[0])
            hint = f" Did you mean {code!r} ({LANGUAGE_NAMES[code]})?"
    raise ConfigError(
        f"unsupported language {language!r}: expected an ISO 639-1 code, one of "
        f"{', '.join(sorted(LANGUAGE_NAMES))}.{hint} (Pyserini would silently use English here.)"
    )


def _anserini_languages() -> set[str]:
    ensure_jvm()
    from jnius import autoclass

    return set(autoclass("io.anserini.analysis.AnalyzerMap").analyzerMap.keySet().toArray())


def resolve_analysis(language: str, thai_tokenizer: str = "auto") -> Analysis:
    """Choose the analysis for ``language`` on the running JVM (see the module docstring).

    ``thai_tokenizer``: ``auto`` (Lucene's ThaiAnalyzer when the runtime can segment Thai, else
    PyThaiNLP), ``lucene`` (error if the runtime cannot) or ``pythainlp``.
    """
    check_language(language)
    if thai_tokenizer not in THAI_TOKENIZERS:
        raise ConfigError(f"thai tokenizer {thai_tokenizer!r} is not one of {', '.join(THAI_TOKENIZERS)}")
    if language == "en":
        return Analysis("en", "lucene", "DefaultEnglishAnalyzer (Porter)")
    if language == "th":
        if thai_tokenizer == "pythainlp":
            return Analysis("th", "pretokenized", "pythainlp-newmm")
        if thai_segmentation_available():
            return Analysis("th", "lucene", "ThaiAnalyzer")
        if thai_tokenizer == "lucene":
            raise ConfigError(
                "this Java runtime cannot segment Thai (it lacks the JDK's Thai word-break dictionary, as the "
                "pip-installed runtimes do); use --thai-tokenizer pythainlp or auto, or set JAVA_HOME to a full JDK >= 21"
            )
        logger.warning("this Java runtime cannot segment Thai; Thai text is segmented with PyThaiNLP (newmm) instead")
        return Analysis("th", "pretokenized", "pythainlp-newmm")
    if language in _LUCENE_PRETOKENIZED:
        return Analysis(language, "pretokenized", _LUCENE_PRETOKENIZED[language])
    mapped = _anserini_languages()
    if language not in mapped:  # the jar changed under us: never fall back to English
        raise ConfigError(f"the installed Anserini has no analyzer for {language!r} (it maps {sorted(mapped)})")
    from jnius import autoclass

    analyzer = autoclass("io.anserini.analysis.AnalyzerMap").analyzerMap.get(language)
    return Analysis(language, "lucene", str(analyzer).rsplit(".", 1)[-1])


class Pretokenizer:
    """Turns text into the space-joined terms that a ``pretokenized`` index stores.

    >>> Pretokenizer(resolve_analysis("el")).terms("Οι Πάνθηρες")  # doctest: +SKIP
    ['πανθηρ']
    """

    def __init__(self, analysis: Analysis):
        if analysis.method != "pretokenized":
            raise ValueError(f"{analysis.describe()} is not pretokenised")
        self.analysis = analysis
        ensure_jvm()
        from jnius import autoclass

        self._utils = autoclass("io.anserini.analysis.AnalyzerUtils")
        if analysis.tokenizer == "pythainlp-newmm":
            from pythainlp.tokenize import word_tokenize

            self._word_tokenize = word_tokenize
            stop_set = autoclass("org.apache.lucene.analysis.th.ThaiAnalyzer").getDefaultStopSet()
            self._thai_stop = stop_set
            # Lower-case and drop stop words exactly as ThaiAnalyzer's filters do, via a Lucene chain
            # that only splits on whitespace: WhitespaceTokenizer + LowerCaseFilter + StopFilter.
            custom = autoclass("org.apache.lucene.analysis.custom.CustomAnalyzer")
            builder = custom.builder().withTokenizer("whitespace").addTokenFilter("lowercase")
            self._analyzer = builder.build()
        elif analysis.tokenizer == "org.apache.lucene.analysis.standard.StandardAnalyzer":
            char_array_set = autoclass("org.apache.lucene.analysis.CharArraySet")
            self._analyzer = autoclass(analysis.tokenizer)(char_array_set.EMPTY_SET)
        else:
            self._analyzer = autoclass(analysis.tokenizer)()

    def terms(self, text: str) -> list[str]:
        if self.analysis.tokenizer == "pythainlp-newmm":
            words = self._word_tokenize(text, engine="newmm", keep_whitespace=False)
            joined = " ".join(w.replace(" ", "") for w in words if any(ch.isalnum() for ch in w))
            terms = list(self._utils.analyze(self._analyzer, joined).toArray())
            return [t for t in terms if not self._thai_stop.contains(t)]
        return list(self._utils.analyze(self._analyzer, text).toArray())

    def __call__(self, text: str) -> str:
        return " ".join(self.terms(text))

    def batch(self, texts: Iterable[str]) -> list[str]:
        return [self(text) for text in texts]
