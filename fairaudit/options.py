"""Typed settings: the one description of a mitigation method's hyper-parameter or a dataset's option.

A setting is declared once, with :func:`setting`::

    epsilon: float = setting(0.05, "L∞ bound of the perturbation", min=0, min_inclusive=False, max=1,
                             unit="pixels in [0, 1]")
    train_split: str = setting("val", "split G is trained on", choices=("train", "val"))

and everything else is generated from that declaration: parsing a
``key=value`` string from the command line (:meth:`Setting.coerce`), the
check of its range or choices with one message format (:meth:`Setting.check`,
e.g. ``setting 'epsilon' of 'faap' must lie in (0, 1], got 1.5.``), the
``--list-settings --json`` listing (:meth:`Setting.describe`) and the app's
form widgets (a drop-down for choices, a number input bounded by the range).

Rules of a declaration:

* ``type`` is inferred from the default (``bool``, ``int``, ``float`` or ``str``) unless given; a default of
  ``None`` needs ``type`` and makes the setting optional (``None``, ``""`` or ``"none"`` mean "not set");
* ``min`` / ``max`` bound a number, inclusively unless ``min_inclusive=False`` / ``max_inclusive=False``;
  a float setting must also be finite;
* ``choices`` (a tuple, or a function returning one for choices known only at run time, such as the
  model builders) lists the allowed values of a string setting; ``refuse={value: sentence}`` names a value
  that is refused with its own sentence instead (e.g. fitting on the test split), where ``{owner}`` and
  ``{name}`` in the sentence are filled in;
* a string setting without choices is free text (a group name, a column, a list of numbers) that the
  method or dataset checks itself;
* ``unit`` is what a number is measured in, shown next to it in listings.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from fairaudit.errors import FairauditError

__all__ = ["Setting", "setting", "setting_of", "coerce_like", "describe_settings"]

_TYPES = {bool: "bool", int: "int", float: "float", str: "str"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Setting:
    """What a setting is: its default, one-line help, type, and the values it accepts."""

    default: Any
    help: str = ""
    type: type | None = None
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    choices: tuple | Callable[[], tuple] | None = None
    unit: str | None = None
    refuse: Mapping[Any, str] | None = None
    null_text: tuple[str, ...] = ("", "none")

    def __post_init__(self) -> None:
        kind = self.type
        if kind is None:
            if self.default is None:
                raise TypeError("a setting whose default is None needs its type")
            kind = type(self.default)
        if kind not in _TYPES:
            raise TypeError(f"a setting is a bool, int, float or str, not {kind.__name__}")
        object.__setattr__(self, "type", kind)
        if self.choices is not None and not callable(self.choices):
            object.__setattr__(self, "choices", tuple(self.choices))
        if (self.min is not None or self.max is not None) and kind not in (int, float):
            raise TypeError("only a number setting has a range")

    # ------------------------------------------------------------------ description

    @property
    def type_name(self) -> str:
        return _TYPES[self.type]

    @property
    def optional(self) -> bool:
        return self.default is None

    @property
    def allowed(self) -> tuple | None:
        """The choices (evaluated when they are known only at run time), or ``None``."""
        if self.choices is None:
            return None
        return tuple(self.choices()) if callable(self.choices) else self.choices

    @property
    def has_range(self) -> bool:
        return self.min is not None or self.max is not None

    def range_text(self) -> str | None:
        """``[0, 1]``, ``(0, 1]``, ``>= 1`` or ``> 0``; ``None`` without a range."""
        low, high = self.min, self.max
        if low is not None and high is not None:
            return (("[" if self.min_inclusive else "(") + f"{_number(low)}, {_number(high)}"
                    + ("]" if self.max_inclusive else ")"))
        if low is not None:
            return (">= " if self.min_inclusive else "> ") + _number(low)
        if high is not None:
            return ("<= " if self.max_inclusive else "< ") + _number(high)
        return None

    def requirement(self) -> str | None:
        """What a value must do, as the message says it: ``lie in [0, 1]``, ``be >= 1``, ``be a finite number
        > 0``, ``be one of a, b``; ``None`` when any value of the type is accepted."""
        allowed = self.allowed
        if allowed is not None:
            return "be one of " + ", ".join(str(c) for c in allowed)
        text = self.range_text()
        if text is None:
            return "be a finite number" if self.type is float else None
        if self.min is not None and self.max is not None:
            return "lie in " + text
        return ("be a finite number " if self.type is float else "be ") + text

    def describe(self, name: str) -> dict[str, Any]:
        """The setting as ``--list-settings --json`` prints it."""
        allowed = self.allowed
        if allowed is None and self.type is bool:
            allowed = (False, True)
        return {"name": name, "type": self.type_name, "default": self.default, "help": self.help,
                "optional": self.optional, "unit": self.unit,
                "range": None if not self.has_range else {
                    "min": self.min, "max": self.max, "min_inclusive": self.min_inclusive,
                    "max_inclusive": self.max_inclusive, "text": self.range_text()},
                "choices": list(allowed) if allowed is not None else None}

    # ------------------------------------------------------------------ parsing and checking

    def coerce(self, value: Any, what: str, error: type[FairauditError] = FairauditError) -> Any:
        """A string ``value`` (from ``--set k=v`` or a text box) converted to the setting's type; other values
        are returned as given. ``what`` names the setting in the message (``setting 'lr' of 'erm'``)."""
        if not isinstance(value, str):
            return value
        if self.optional and value.strip().lower() in self.null_text:
            return None
        if self.type is str:
            return value
        try:
            if self.type is bool:
                lowered = value.strip().lower()
                if lowered not in _TRUE + _FALSE:
                    raise ValueError
                return lowered in _TRUE
            return self.type(value)
        except ValueError:
            raise error(f"{what} expects a {self.type_name}, got {value!r}.") from None

    def check(self, value: Any, what: str, owner: str = "", name: str = "",
              error: type[FairauditError] = FairauditError) -> None:
        """Refuse ``value`` when it lies outside the range or the choices, with the one message
        ``{what} must {requirement}, got {value}.``; a value of :attr:`refuse` gets its own sentence."""
        if value is None and self.optional:
            return
        if self.refuse and isinstance(value, (str, int, float)) and value in self.refuse:
            raise error(self.refuse[value].format(owner=owner, name=name, value=value))
        if self.type in (int, float) and not isinstance(value, bool) and isinstance(value, (int, float)):
            ok = True
            if self.type is float and not math.isfinite(value):
                ok = False
            elif self.min is not None and (value < self.min if self.min_inclusive else value <= self.min):
                ok = False
            elif self.max is not None and (value > self.max if self.max_inclusive else value >= self.max):
                ok = False
            if not ok:
                raise error(f"{what} must {self.requirement()}, got {value!r}.")
            return
        allowed = self.allowed
        if allowed is not None and value not in allowed:
            raise error(f"{what} must {self.requirement()}, got {value!r}.")


def setting(default: Any, help: str, *, type: type | None = None, min: float | None = None,
            max: float | None = None, min_inclusive: bool = True, max_inclusive: bool = True,
            choices: tuple | Callable[[], tuple] | None = None, unit: str | None = None,
            refuse: Mapping[Any, str] | None = None, null_text: tuple[str, ...] = ("", "none")):
    """A setting with its default and one-line help, typed and bounded (see the module's rules).

    Returns a dataclass field (a method's ``Config`` field); its
    :class:`Setting` is in ``metadata["setting"]`` and :func:`setting_of`
    reads it. A dataset lists such fields as its ``options``.
    """
    declared = Setting(default, help, type=type, min=min, max=max, min_inclusive=min_inclusive,
                       max_inclusive=max_inclusive, choices=choices, unit=unit, refuse=refuse, null_text=null_text)
    return dataclasses.field(default=default, metadata={"help": help, "setting": declared})


def setting_of(declared: Any, default: Any = dataclasses.MISSING) -> Setting:
    """The :class:`Setting` of a dataclass field, of a :func:`setting` field, a :class:`Setting` itself, or
    (for a field or option declared without :func:`setting`) one inferred from its plain default."""
    if isinstance(declared, Setting):
        return declared
    if isinstance(declared, dataclasses.Field):
        found = declared.metadata.get("setting")
        if found is not None:
            return found
        return Setting(declared.default, declared.metadata.get("help", ""),
                       type=str if declared.default is None else None)
    value = declared if default is dataclasses.MISSING else default
    return Setting(value, type=str if value is None else None)


def describe_settings(settings: Mapping[str, Setting]) -> list[dict[str, Any]]:
    return [s.describe(name) for name, s in settings.items()]


def coerce_like(value: Any, default: Any, what: str) -> Any:
    """Convert a string ``value`` to the type of ``default``; ``what`` names the option in errors."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    return Setting(default).coerce(value, what)


def parse_values(settings: Mapping[str, Setting], values: Mapping[str, Any], what: Callable[[str], str], *,
                 owner: str = "", unknown: Callable[[str], str] | None = None,
                 error: type[FairauditError] = FairauditError) -> dict[str, Any]:
    """``values`` (strings from the command line, or typed values) converted and checked against their
    declarations: the one place a setting's type, range and choices are enforced. ``what(name)`` names a
    setting in messages (``setting 'p' of 'label_flip'``); ``unknown(name)`` is the message for a name
    without a declaration."""
    parsed = {}
    for name, value in values.items():
        if name not in settings:
            raise error(unknown(name) if unknown else f"{what(name)} does not exist.")
        parsed[name] = settings[name].coerce(value, what(name), error)
    for name, value in parsed.items():
        settings[name].check(value, what(name), owner, name, error)
    return parsed
