"""Settings dataclasses: the one type check, the one unknown-key rejection, the one derived seed.

Every stage's settings are a frozen dataclass (:class:`~clir_ot.models.BiEncoderConfig`,
:class:`~clir_ot.training.TrainingConfig`, :class:`~clir_ot.distill.DistillationConfig`, the study's
specs ...). They are built from JSON, YAML or CLI flags through :func:`settings_from_dict`, which
rejects unknown keys listing the known ones (:func:`check_known_keys`) and values of the wrong type
(:func:`check_setting_types`), each with a message that starts with where the settings came from.

:func:`derived_rng` is the one way a stage draws a random stream of its own from the user's seed
(a validation split, the queries paired with bitext), so that stream never repeats the model
initialisation's or the data order's, and every stage that needs one gets the same.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Collection, Mapping

import numpy as np

from clir_ot.errors import ConfigError

__all__ = [
    "DERIVED_SEED_STREAM",
    "check_choice",
    "check_known_keys",
    "check_setting_types",
    "derived_rng",
    "settings_from_dict",
]

DERIVED_SEED_STREAM = 7919
"""Second word of the seed of :func:`derived_rng` (a prime, so the stream differs from ``seed`` alone).

Changing it changes every validation split and query draw, hence every trained model: it is fixed.
"""


def derived_rng(seed: int) -> np.random.Generator:
    """A generator for a stage's own draws (splits, pairings) from the user's ``seed``:
    ``numpy.random.default_rng([seed, DERIVED_SEED_STREAM])``."""
    return np.random.default_rng([seed, DERIVED_SEED_STREAM])


def check_choice(name: str, value: Any, valid: Collection[Any]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``valid``:
    ``method must be one of ('auto', 'log', 'scaling'); got 'fast'``."""
    if value not in valid:
        raise ConfigError(f"{name} must be one of {valid}; got {value!r}")


def check_known_keys(data: Mapping[str, Any], known: Collection[str], where: str, what: str = "setting") -> None:
    """Raise :class:`ConfigError` if ``data`` is not a mapping or has keys outside ``known``.

    The message starts with ``where`` (the file or section) and lists the known keys, e.g.
    ``study.yaml: teacher: unknown setting(s) lr2; known: batch_size, epochs, lr``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, found {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        shown = sorted(known) if not isinstance(known, (list, tuple)) else list(known)
        raise ConfigError(f"{where}: unknown {what}(s) {', '.join(unknown)}; known: {', '.join(shown)}")


def settings_from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build the settings dataclass ``cls`` from ``data``, rejecting unknown keys and values of the wrong
    type with a readable message that starts with ``where`` (the file or section)."""
    check_known_keys(data, sorted(f.name for f in dataclasses.fields(cls)), where)
    try:
        check_setting_types(cls, data)
        return cls(**data)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def check_setting_types(cls: type, values: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for a value that does not fit its field's annotation in the dataclass
    ``cls``. Checked: ``int``, ``float`` (an int is fine), ``str``, ``bool`` and unions of them with
    ``None``; other annotations are left to the class's own checks."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # an annotation names a type imported only for type checkers
        return
    for name, value in values.items():
        if _matches_hint(value, hints.get(name, Any)) is False:
            hint = (" (YAML reads a number such as 1e-4 without a decimal point as text: write 1.0e-4)"
                    if isinstance(value, str) and _parses_as_float(value) else "")
            raise ConfigError(f"setting {name} must be {_describe_hint(hints[name])}, "
                              f"got {value!r} ({type(value).__name__}){hint}")


_SIMPLE_TYPES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _matches_hint(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint``; ``None`` when the annotation is not a simple one."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        answers = [_matches_hint(value, arg) for arg in typing.get_args(hint)]
        return True if True in answers else (None if None in answers else False)
    if hint not in _SIMPLE_TYPES:
        return None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe_hint(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe_hint(arg) for arg in typing.get_args(hint))
    return _SIMPLE_TYPES.get(hint, str(hint))
