"""Language codes, resolved once for the whole toolkit (analyzers, bitext files, XQuAD files, study configs).

Every place that takes a language goes through :func:`resolve_language`, which reads the code with
`langcodes <https://pypi.org/project/langcodes/>`_ (IANA's BCP-47 registry and CLDR's aliases,
bundled in the wheel: nothing is downloaded at run time). So ISO 639-1 (``sw``), ISO 639-2/3
(``swa``, ``swh``), deprecated codes (``iw``, ``in``, ``mo``), BCP-47 tags (``zh-Hans``, ``pt-BR``)
and FLORES-200 names (``swh_Latn``, ``zho_Hans``) all name one :class:`Language`, whose
:attr:`~Language.code` is the toolkit's key for it:

* the shortest ISO 639 code (``swe`` -> ``sv``, ``ron``/``rum`` -> ``ro``);
* an individual language folded into its macrolanguage where CLDR treats them as one
  (``swh`` -> ``sw``, ``cmn`` -> ``zh``, ``arb`` -> ``ar``, ``pes`` -> ``fa``, ``zsm`` -> ``ms``,
  ``ekk`` -> ``et``, ``npi`` -> ``ne``, ``kmr`` -> ``ku``); CLDR keeps ``ckb`` (Sorani Kurdish),
  ``yue`` (Cantonese), ``nb``/``nn`` (Norwegian Bokmål / Nynorsk) apart from their macrolanguages;
* CLDR's renames applied (``tl`` and ``tgl`` -> ``fil``; ``sh`` and ``hbs`` -> ``sr``).

Script and region are kept on the record (:attr:`Language.script` is the explicit script, else the
language's likely one: ``km`` -> ``Khmr``), but do not change the key: ``zh-Hant`` and ``zh`` are one
language for file look-ups.

A code that is not a language -- unregistered (``xx``), private use (``qaa``, ``x-foo``), the
special codes ``und mul mis zxx``, or a language *name* -- is a
:class:`UnknownLanguageError` (a :class:`~clir_ot.errors.ConfigError`) whose message says what was expected and, where it
can, which code was meant (``portuguese`` -> ``pt``).

>>> resolve_language("swh_Latn").code, resolve_language("zh-Hans").code, resolve_language("arb").code
('sw', 'zh', 'ar')
>>> same_language("tgl", "tl"), same_language("ron", "ro"), same_language("nb", "nn")
(True, True, False)
"""
from __future__ import annotations

import difflib
import functools
import logging
from dataclasses import dataclass
from typing import Iterable

import langcodes
from langcodes.tag_parser import LanguageTagError

from clir_ot.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "Language",
    "UnknownLanguageError",
    "language_code",
    "language_name",
    "matching_codes",
    "resolve_language",
    "same_language",
    "try_resolve_language",
]

#: BCP-47 special codes that name no language.
_NOT_LANGUAGES = frozenset({"und", "mul", "mis", "zxx"})
#: Codes offered by "did you mean" for a mistyped code (languages the toolkit has bitext or an analyzer for).
_SUGGESTABLE = (
    "af am ar bg bn ca ckb cs da de el en es et eu fa fi fil fr ga gl hi hu hy id it ja jv kk km ko ku "
    "lo lt lv mr ms my ne nl no pl pt ro ru sr sv sw ta te th tr uk ur vi yo zh"
).split()


class UnknownLanguageError(ConfigError):
    """A code that names no language (the message says what was expected and, where it can, what was meant)."""


@dataclass(frozen=True)
class Language:
    """One language as the toolkit names it.

    ``code``: the key (see the module docstring), e.g. ``"sw"``; ``tag``: the code as given;
    ``standard``: the standardised BCP-47 tag (macrolanguages folded; script and region kept);
    ``script``: ISO 15924, explicit or likely; ``name``: English name of ``code``.
    """

    code: str
    tag: str
    standard: str
    script: str
    name: str

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


def _parse(tag: str) -> langcodes.Language | None:
    """The standardised ``langcodes.Language`` of ``tag``, or ``None`` when it is no language code."""
    text = str(tag).strip()
    if not text:
        return None
    try:
        standard = langcodes.standardize_tag(text.replace("_", "-"), macro=True)
        parsed = langcodes.Language.get(standard)
    except (LanguageTagError, ValueError):
        return None
    code = parsed.language
    if code is None or code in _NOT_LANGUAGES or code.startswith("x-") or not parsed.is_valid():
        return None
    if len(code) == 3 and "qaa" <= code <= "qtz":  # private use
        return None
    if parsed.language_name().startswith("Unknown language"):
        return None
    return parsed


@functools.lru_cache(maxsize=4096)
def _resolve_cached(tag: str) -> Language | None:
    parsed = _parse(tag)
    if parsed is None:
        return None
    script = parsed.script or langcodes.Language.get(parsed.language).maximize().script or "Zyyy"
    return Language(
        code=parsed.language,
        tag=tag,
        standard=parsed.to_tag(),
        script=script,
        name=langcodes.Language.get(parsed.language).display_name(),
    )


def try_resolve_language(tag: str) -> Language | None:
    """:func:`resolve_language` that returns ``None`` for a code that is not a language (for file names)."""
    return _resolve_cached(str(tag))


def _suggestion(tag: str) -> str:
    text = str(tag).strip()
    lowered = text.lower()
    if len(lowered) > 3:  # a language name, maybe misspelt: "Swahili", "romanain", "engl"
        names = {language_name(c).lower(): c for c in _SUGGESTABLE}
        close = [n for n in names if n.startswith(lowered)] or difflib.get_close_matches(lowered, list(names), n=1, cutoff=0.75)
        if close:
            return f" Did you mean {names[close[0]]!r} ({language_name(names[close[0]])})?"
        try:
            found = _resolve_cached(langcodes.find(text).to_tag())  # any other name: "farsi", "sorani"
        except (LookupError, LanguageTagError, ValueError):
            found = None
        if found is not None:
            return f" Did you mean {found.code!r} ({found.name})?"
    close = difflib.get_close_matches(lowered, _SUGGESTABLE, n=1)
    if close:
        return f" Did you mean {close[0]!r} ({language_name(close[0])})?"
    return ""


def resolve_language(tag: str, where: str | None = None) -> Language:
    """The :class:`Language` that ``tag`` names; :class:`UnknownLanguageError` if it names none.

    ``where`` (a file, a flag, a config key) prefixes the message.
    """
    found = _resolve_cached(str(tag))
    if found is None:
        prefix = f"{where}: " if where else ""
        raise UnknownLanguageError(
            f"{prefix}unsupported language {tag!r}: not a language code (expected ISO 639-1/639-3, "
            f"BCP-47 or FLORES-200, e.g. sw, swh, swh_Latn, zh-Hans).{_suggestion(tag)} "
            "(Pyserini would silently use English here.)"
        )
    return found


def language_code(tag: str, where: str | None = None) -> str:
    """The toolkit's key for ``tag`` (``"swh_Latn"`` -> ``"sw"``); raises like :func:`resolve_language`."""
    return resolve_language(tag, where).code


def language_name(tag: str) -> str:
    """English name of the language ``tag`` names (``"km"`` -> ``"Khmer"``)."""
    return resolve_language(tag).name


def same_language(a: str, b: str) -> bool:
    """Whether two codes name one language (``"cmn"`` and ``"zh-Hans"``); codes that name none never match."""
    first, second = try_resolve_language(a), try_resolve_language(b)
    return first is not None and second is not None and first.code == second.code


def matching_codes(tag: str, codes: Iterable[str]) -> list[str]:
    """The entries of ``codes`` (e.g. the codes in a folder's file names) that name the language of ``tag``.

    ``tag`` must be a language (else :class:`UnknownLanguageError`); entries that are not are skipped.
    """
    wanted = resolve_language(tag).code
    return [c for c in dict.fromkeys(codes) if (found := try_resolve_language(c)) is not None and found.code == wanted]
