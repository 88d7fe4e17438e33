"""Per-language text analysis for BM25: which Lucene analyzer, or which pretokenisation, a language gets.

Anserini maps a language code to a Lucene analyzer (``io.anserini.analysis.AnalyzerMap``) and
*silently* falls back to English for any code it does not know (``--language portuguese`` gives an
English index without a word). Here the choice is explicit, checked and logged. A code is first
resolved by :func:`clir_ot.languages.resolve_language` (``swh``, ``sw`` and ``swh_Latn`` are one
language; a code that is no language is an error with "did you mean"), then:

1. ``en``: Anserini's default English analyzer (Porter stemming), method ``lucene``.
2. The languages of Anserini's ``AnalyzerMap`` (:data:`ANSERINI_ANALYZERS`, read from the Anserini
   1.7.1 jar that Pyserini 1.6 ships and checked against it at run time): method ``lucene``, the text
   analysed inside Anserini at indexing (``-language``) and search (``set_language``) time.
3. Languages Lucene has an analyzer for that Anserini does not map (:data:`LUCENE_ANALYZERS`:
   Romanian, Bulgarian, Catalan, Czech, Estonian, Basque, Irish, Galician, Armenian, Lithuanian,
   Latvian, Nepali, Serbian, Tamil, Sorani Kurdish, Greek, ...): method ``pretokenized``, the text
   analysed in Python with that Lucene class through the JVM and indexed/searched with Lucene's
   whitespace analyzer. Vietnamese (no Lucene analyzer) gets ``StandardAnalyzer`` this way, as before.
4. Thai: Lucene's ``ThaiAnalyzer`` when the Java runtime has the JDK's Thai word-break dictionary,
   else PyThaiNLP's ``newmm`` + Lucene's lower-casing and Thai stop set (``--thai-tokenizer``).
5. Every other language (Swahili, Amharic, Yoruba, Javanese, Kazakh, ...) has no Lucene analyzer and
   gets language-neutral *word segmentation and lower-casing, no stemming and no stop words*, chosen
   by its script and logged as a warning:

   * ``standard``: Unicode word segmentation (UAX #29, Lucene's ``StandardTokenizer``) -- right for
     every script that separates words (Latin, Ethiopic, Cyrillic, Arabic, Devanagari, ...);
   * ``icu``: ICU's dictionary word break (PyICU, ``pyicu-wheels``) for the scripts that do not
     separate words and that UAX #29 leaves as whole runs: Khmer, Lao, Myanmar (and Thai script
     used for another language);
   * ``CJKAnalyzer`` (bigrams, as Anserini gives ``zh``) for the other Han-script languages
     (Cantonese ``yue``, Min Nan ``nan``, ...).

``--analyzer standard|whitespace|icu|<Lucene analyzer class>`` forces any of these (``whitespace``:
split on white space, lower-case). An :class:`Analysis` is recorded in each index's manifest, so
searching uses the same analysis that indexing used.
"""
from __future__ import annotations

import functools
import logging
import re
import zipfile
from dataclasses import asdict, dataclass
from typing import Iterable

from clir_ot.errors import ConfigError
from clir_ot.java import anserini_jar, ensure_jvm, thai_segmentation_available
from clir_ot.languages import Language, resolve_language

logger = logging.getLogger(__name__)

#: Anserini's ``AnalyzerMap`` (Anserini 1.7.1, as Pyserini 1.6 ships it): code -> Lucene analyzer.
ANSERINI_ANALYZERS: dict[str, str] = {
    "ar": "ArabicAnalyzer", "bn": "BengaliAnalyzer", "da": "DanishAnalyzer", "de": "GermanAnalyzer",
    "es": "SpanishAnalyzer", "fa": "PersianAnalyzer", "fi": "FinnishAnalyzer", "fr": "FrenchAnalyzer",
    "hi": "HindiAnalyzer", "hu": "HungarianAnalyzer", "id": "IndonesianAnalyzer", "it": "ItalianAnalyzer",
    "ja": "JapaneseAnalyzer", "ko": "CJKAnalyzer", "nl": "DutchAnalyzer", "no": "NorwegianAnalyzer",
    "pl": "MorfologikAnalyzer", "pt": "PortugueseAnalyzer", "ru": "RussianAnalyzer", "sv": "SwedishAnalyzer",
    "te": "TeluguAnalyzer", "th": "ThaiAnalyzer", "tr": "TurkishAnalyzer", "uk": "UkrainianMorfologikAnalyzer",
    "zh": "CJKAnalyzer",
}

_L = "org.apache.lucene.analysis."
STANDARD = _L + "standard.StandardAnalyzer"
CJK = _L + "cjk.CJKAnalyzer"
#: Lucene analyzers (in the jar) for languages Anserini does not map; applied in Python through the JVM.
LUCENE_ANALYZERS: dict[str, str] = {
    "bg": _L + "bg.BulgarianAnalyzer",
    "ca": _L + "ca.CatalanAnalyzer",
    "ckb": _L + "ckb.SoraniAnalyzer",
    "cs": _L + "cz.CzechAnalyzer",
    "el": _L + "el.GreekAnalyzer",
    "et": _L + "et.EstonianAnalyzer",
    "eu": _L + "eu.BasqueAnalyzer",
    "ga": _L + "ga.IrishAnalyzer",
    "gl": _L + "gl.GalicianAnalyzer",
    "hy": _L + "hy.ArmenianAnalyzer",
    "lt": _L + "lt.LithuanianAnalyzer",
    "lv": _L + "lv.LatvianAnalyzer",
    "nb": _L + "no.NorwegianAnalyzer",  # Anserini maps only "no"; Lucene's Norwegian is Bokmål
    "ne": _L + "ne.NepaliAnalyzer",
    "ro": _L + "ro.RomanianAnalyzer",
    "sr": _L + "sr.SerbianAnalyzer",  # Cyrillic and Latin, folded to one form
    "ta": _L + "ta.TamilAnalyzer",
    "vi": STANDARD,  # Lucene has no Vietnamese analyzer: UAX #29 words, lower-cased, no stop words
}

#: Scripts written without spaces between words that need a dictionary to segment (ICU has one).
DICTIONARY_SCRIPTS = {"Khmr": "Khmer", "Laoo": "Lao", "Mymr": "Myanmar", "Thai": "Thai"}
#: Han scripts: languages without an analyzer get CJK bigrams, as Anserini gives Chinese.
HAN_SCRIPTS = frozenset({"Hans", "Hant", "Hani"})

ICU = "icu-word-break"
WHITESPACE = "whitespace-lowercase"
PYTHAINLP = "pythainlp-newmm"
THAI_TOKENIZERS = ("auto", "lucene", "pythainlp")
#: ``--analyzer`` values besides a Lucene analyzer class.
ANALYZER_CHOICES = ("auto", "standard", "whitespace", "icu")
#: ``Analysis.choice``: from the table of analyzers, the script fallback for languages without one, or forced.
CHOICES = ("table", "fallback", "forced")

__all__ = [
    "ANALYZER_CHOICES",
    "ANSERINI_ANALYZERS",
    "Analysis",
    "LUCENE_ANALYZERS",
    "THAI_TOKENIZERS",
    "Pretokenizer",
    "check_language",
    "language_table",
    "lucene_analyzer_classes",
    "render_language_table",
    "resolve_analysis",
]


@dataclass(frozen=True)
class Analysis:
    """How one index analyses text.

    ``method`` is ``"lucene"`` (Anserini's analyzer for ``language``) or ``"pretokenized"`` (text is
    analysed by :class:`Pretokenizer` with ``tokenizer`` and indexed with a whitespace analyzer);
    ``tokenizer`` a Lucene analyzer class, or ``icu-word-break``, ``whitespace-lowercase``,
    ``pythainlp-newmm``; ``choice`` one of :data:`CHOICES` (indexes built before it read as ``table``).
    """

    language: str
    method: str
    tokenizer: str
    choice: str = "table"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Analysis":
        return cls(language=data["language"], method=data["method"], tokenizer=data["tokenizer"],
                   choice=data.get("choice", "table"))

    def describe(self) -> str:
        how = {"table": "", "fallback": " (no Lucene analyzer for the language)", "forced": " (forced with --analyzer)"}
        if self.method == "lucene":
            return f"{self.language}: Lucene analyzer {self.tokenizer} inside Anserini{how[self.choice]}"
        return (f"{self.language}: pretokenised in Python with {_TOKENIZER_WORDS.get(self.tokenizer, self.tokenizer)}, "
                f"whitespace analyzer in Lucene{how[self.choice]}")


_TOKENIZER_WORDS = {
    STANDARD: "Unicode word segmentation (UAX #29, Lucene StandardTokenizer) + lower-casing",
    ICU: "ICU dictionary word segmentation + lower-casing",
    WHITESPACE: "white-space splitting + lower-casing",
    PYTHAINLP: "PyThaiNLP newmm + Lucene's lower-casing and Thai stop words",
}


def check_language(language: str) -> str:
    """The toolkit's code for ``language`` (``"swh"`` -> ``"sw"``), or :class:`ConfigError` when it is no language."""
    return resolve_language(language).code


@functools.lru_cache(maxsize=1)
def lucene_analyzer_classes() -> tuple[str, ...]:
    """Every ``org.apache.lucene.analysis...Analyzer`` class in the Anserini jar (read from the jar's listing)."""
    pattern = re.compile(r"^(org/apache/lucene/analysis/(?:[a-z]+/)*[A-Z][A-Za-z0-9]*Analyzer)\.class$")
    with zipfile.ZipFile(anserini_jar()) as jar:
        names = [m.group(1).replace("/", ".") for n in jar.namelist() if (m := pattern.match(n))]
    return tuple(sorted(set(names)))


def _anserini_map():
    ensure_jvm()
    from jnius import autoclass

    return autoclass("io.anserini.analysis.AnalyzerMap").analyzerMap


def _icu_available() -> bool:
    try:
        import icu  # noqa: F401  (PyICU; the pyicu-wheels package bundles the ICU library)
    except ImportError:
        return False
    return True


def _need_icu(language: Language, why: str) -> None:
    if not _icu_available():
        raise ConfigError(
            f"{language}: {why} needs ICU's dictionary word segmentation, and PyICU is not installed. "
            "Fix: pip install pyicu-wheels (Linux; or PyICU with the ICU library), or force another "
            "analysis with --analyzer standard (Khmer, Lao and Myanmar text then stays in whole runs)"
        )


def _lucene_class(name: str) -> str:
    """A Lucene analyzer class of the jar, by its full or simple name (``RomanianAnalyzer``)."""
    classes = lucene_analyzer_classes()
    if name in classes:
        return name
    simple = [c for c in classes if c.rsplit(".", 1)[-1] == name]
    if len(simple) == 1:
        return simple[0]
    import difflib

    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], [c.rsplit(".", 1)[-1] for c in classes], n=3)
    raise ConfigError(
        f"--analyzer {name!r} is neither one of {', '.join(ANALYZER_CHOICES[1:])} nor a Lucene analyzer class "
        f"in {anserini_jar().name}" + (f"; did you mean {', '.join(close)}?" if close else "")
        + " (e.g. org.apache.lucene.analysis.ro.RomanianAnalyzer or RomanianAnalyzer)"
    )


def _forced(language: Language, analyzer: str) -> Analysis:
    if analyzer == "standard":
        return Analysis(language.code, "pretokenized", STANDARD, "forced")
    if analyzer == "whitespace":
        return Analysis(language.code, "pretokenized", WHITESPACE, "forced")
    if analyzer == "icu":
        _need_icu(language, "--analyzer icu")
        return Analysis(language.code, "pretokenized", ICU, "forced")
    cls = _lucene_class(analyzer)
    ensure_jvm()
    from jnius import JavaException, autoclass

    try:
        built = autoclass(cls)()
        autoclass("io.anserini.analysis.AnalyzerUtils").analyze(built, "probe")
    except (JavaException, TypeError) as err:
        raise ConfigError(f"--analyzer {cls}: not a Lucene analyzer that can be built without arguments ({err})") from None
    return Analysis(language.code, "pretokenized", cls, "forced")


def _fallback(language: Language) -> Analysis:
    script = language.script
    if script in DICTIONARY_SCRIPTS:
        _need_icu(language, f"{DICTIONARY_SCRIPTS[script]} script, written without spaces between words,")
        analysis = Analysis(language.code, "pretokenized", ICU, "fallback")
    elif script in HAN_SCRIPTS:
        analysis = Analysis(language.code, "pretokenized", CJK, "fallback")
    else:
        analysis = Analysis(language.code, "pretokenized", STANDARD, "fallback")
    logger.warning(
        "Lucene has no analyzer for %s (%s script): %s, no stemming, no stop words (another: --analyzer)",
        language, script, _TOKENIZER_WORDS.get(analysis.tokenizer, "CJK bigrams + lower-casing"),
    )
    return analysis


def resolve_analysis(language: str, thai_tokenizer: str = "auto", analyzer: str = "auto") -> Analysis:
    """Choose the analysis for ``language`` on the running JVM (see the module docstring).

    ``thai_tokenizer``: ``auto`` (Lucene's ThaiAnalyzer when the runtime can segment Thai, else
    PyThaiNLP), ``lucene`` (error if the runtime cannot) or ``pythainlp``. ``analyzer``: ``auto``
    (the table, then the script fallback), or ``standard``, ``whitespace``, ``icu`` or a Lucene
    analyzer class to force.
    """
    lang = resolve_language(language)
    code = lang.code
    if thai_tokenizer not in THAI_TOKENIZERS:
        raise ConfigError(f"thai tokenizer {thai_tokenizer!r} is not one of {', '.join(THAI_TOKENIZERS)}")
    if analyzer != "auto":
        return _forced(lang, analyzer)
    if code == "en":
        return Analysis("en", "lucene", "DefaultEnglishAnalyzer (Porter)")
    if code == "th":
        if thai_tokenizer == "pythainlp":
            return Analysis("th", "pretokenized", PYTHAINLP)
        if thai_segmentation_available():
            return Analysis("th", "lucene", "ThaiAnalyzer")
        if thai_tokenizer == "lucene":
            raise ConfigError(
                "this Java runtime cannot segment Thai (it lacks the JDK's Thai word-break dictionary, as the "
                "pip-installed runtimes do); use --thai-tokenizer pythainlp or auto, or set JAVA_HOME to a full JDK >= 21"
            )
        logger.warning("this Java runtime cannot segment Thai; Thai text is segmented with PyThaiNLP (newmm) instead")
        return Analysis("th", "pretokenized", PYTHAINLP)
    if code in LUCENE_ANALYZERS:
        return Analysis(code, "pretokenized", LUCENE_ANALYZERS[code])
    if code in ANSERINI_ANALYZERS:
        mapped = _anserini_map()
        if not mapped.containsKey(code):  # the jar changed under us: never fall back to English
            raise ConfigError(
                f"the installed Anserini has no analyzer for {code!r} (it maps {sorted(mapped.keySet().toArray())})"
            )
        return Analysis(code, "lucene", str(mapped.get(code)).rsplit(".", 1)[-1])
    return _fallback(lang)


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
        self._segment = None
        self._thai_stop = None
        tokenizer = analysis.tokenizer
        if tokenizer in (PYTHAINLP, ICU, WHITESPACE):
            # Segment in Python (or not at all), then lower-case exactly as Lucene's filters do, via a
            # chain that only splits on whitespace: WhitespaceTokenizer + LowerCaseFilter.
            custom = autoclass("org.apache.lucene.analysis.custom.CustomAnalyzer")
            self._analyzer = custom.builder().withTokenizer("whitespace").addTokenFilter("lowercase").build()
            if tokenizer == PYTHAINLP:
                from pythainlp.tokenize import word_tokenize

                self._word_tokenize = word_tokenize
                self._thai_stop = autoclass("org.apache.lucene.analysis.th.ThaiAnalyzer").getDefaultStopSet()
                self._segment = self._thai_words
            elif tokenizer == ICU:
                self._segment = _IcuWords(analysis.language)
        elif tokenizer == STANDARD:
            char_array_set = autoclass("org.apache.lucene.analysis.CharArraySet")
            self._analyzer = autoclass(tokenizer)(char_array_set.EMPTY_SET)
        else:
            self._analyzer = autoclass(tokenizer)()

    def _thai_words(self, text: str) -> list[str]:
        words = self._word_tokenize(text, engine="newmm", keep_whitespace=False)
        return [w.replace(" ", "") for w in words if any(ch.isalnum() for ch in w)]

    def terms(self, text: str) -> list[str]:
        if self._segment is not None:
            text = " ".join(self._segment(text))
        terms = list(self._utils.analyze(self._analyzer, text).toArray())
        if self._thai_stop is not None:
            terms = [t for t in terms if not self._thai_stop.contains(t)]
        return terms

    def __call__(self, text: str) -> str:
        return " ".join(self.terms(text))

    def batch(self, texts: Iterable[str]) -> list[str]:
        return [self(text) for text in texts]


class _IcuWords:
    """ICU's word break iterator for one language: the words of a text (no spaces, no punctuation)."""

    _WORD_NONE_LIMIT = 100  # rule status below this: spaces and punctuation (UBRK_WORD_NONE_LIMIT)

    def __init__(self, language: str):
        import icu

        self._icu = icu
        self._iterator = icu.BreakIterator.createWordInstance(icu.Locale(language))

    def __call__(self, text: str) -> list[str]:
        # ICU indexes UTF-16 code units: slice the UnicodeString, not the Python str
        unicode = self._icu.UnicodeString(text)
        self._iterator.setText(unicode)
        words, start = [], 0
        for end in self._iterator:
            if self._iterator.getRuleStatus() >= self._WORD_NONE_LIMIT:
                words.append(str(unicode[start:end]))
            start = end
        return words


# --------------------------------------------------------------------------------------------------
# The language table (docs/languages.md is this table; a test keeps the two equal)

#: Low-resource languages without a Lucene analyzer that the table lists by name (any other code works too).
_FALLBACK_EXAMPLES = ("af", "am", "fil", "ha", "ig", "jv", "kk", "km", "ku", "ky", "lo", "mr", "ms", "my", "so",
                      "sw", "ur", "uz", "yo", "yue", "zu")


@dataclass(frozen=True)
class TableRow:
    """One row of the language table: a code, its language and what it gets."""

    code: str
    name: str
    method: str
    analysis: str


def language_table() -> list[TableRow]:
    """What each code gets, without starting the JVM (the JVM-side checks are :func:`resolve_analysis`)."""
    rows = [TableRow("en", resolve_language("en").name, "lucene", "Anserini's DefaultEnglishAnalyzer (Porter stemming)")]
    for code, cls in ANSERINI_ANALYZERS.items():
        if code == "th":
            rows.append(TableRow("th", "Thai", "lucene / pretokenized",
                                 "ThaiAnalyzer with a full JDK; else PyThaiNLP newmm + Lucene's lower-casing and "
                                 "Thai stop words (--thai-tokenizer)"))
        else:
            rows.append(TableRow(code, resolve_language(code).name, "lucene", f"{cls} (Anserini's AnalyzerMap)"))
    for code, cls in LUCENE_ANALYZERS.items():
        what = (f"{cls.rsplit('.', 1)[-1]} (Lucene; Anserini does not map it)" if cls != STANDARD
                else "StandardAnalyzer: UAX #29 words + lower-casing, no stop words (Lucene has no analyzer)")
        rows.append(TableRow(code, resolve_language(code).name, "pretokenized", what))
    for code in _FALLBACK_EXAMPLES:
        lang = resolve_language(code)
        if lang.script in DICTIONARY_SCRIPTS:
            what = f"fallback: ICU dictionary word break ({lang.script}) + lower-casing"
        elif lang.script in HAN_SCRIPTS:
            what = f"fallback: CJKAnalyzer bigrams ({lang.script})"
        else:
            what = f"fallback: UAX #29 words (StandardTokenizer) + lower-casing ({lang.script})"
        rows.append(TableRow(code, lang.name, "pretokenized", what + ", no stemming, no stop words"))
    return sorted(rows, key=lambda r: r.code)


def render_language_table() -> str:
    """:func:`language_table` as a Markdown table."""
    lines = ["| code | language | method | analysis |", "|---|---|---|---|"]
    lines += [f"| `{r.code}` | {r.name} | {r.method} | {r.analysis} |" for r in language_table()]
    return "\n".join(lines) + "\n"
