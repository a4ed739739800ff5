"""Parsing numbers from untrusted input without work that grows with the input.

Python's exact types do arithmetic eagerly: ``Fraction("1e30000000")`` computes
10**30000000 (30 s), and ``json.loads`` of a 5,000-digit integer raises a
ValueError that is no JSONDecodeError. Every number a gpuhub service reads comes
through here: its text is bounded (length, exponent) *before* any arithmetic, so
a 21-byte body can never stall an event loop.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction

#: the longest number text accepted anywhere (digits, sign, point, exponent)
MAX_NUMBER_TEXT = 32
#: a plain decimal: no exponent, bounded digits on both sides of the point
_DECIMAL = re.compile(r"^[+-]?(\d{1,15})(?:\.(\d{1,9}))?$")
#: exponents beyond this make no sense for any quantity gpuhub reads
MAX_EXPONENT = 18


class NumberError(ValueError):
    """The text is not a number gpuhub accepts; the message says why."""


class BodyError(ValueError):
    """A request body that is not the JSON object it must be."""


def _bounded(text: str) -> str:
    if len(text) > MAX_NUMBER_TEXT:
        raise NumberError(f"number too long ({len(text)} characters; at most {MAX_NUMBER_TEXT})")
    return text


def _json_float(text: str) -> Decimal:
    value = Decimal(_bounded(text))
    if abs(value.adjusted()) > MAX_EXPONENT:
        raise NumberError(f"number out of range: {text}")
    return value


def _json_int(text: str) -> int:
    return int(_bounded(text))


def _json_constant(name: str):
    raise NumberError(f"{name} is not a number gpuhub accepts")


def loads_json(raw: bytes | str):
    """``json.loads`` with every number bounded: integers stay ``int``, numbers
    with a point or exponent become exact ``Decimal`` (never float), NaN and
    Infinity are refused. Raises :class:`BodyError` with a readable message."""
    try:
        return json.loads(
            raw,
            parse_float=_json_float,
            parse_int=_json_int,
            parse_constant=_json_constant,
        )
    except NumberError as e:
        raise BodyError(f"request body has a bad number: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BodyError(f"request body is not JSON: {e}") from None
    except (ValueError, RecursionError) as e:
        raise BodyError(f"request body is not acceptable JSON: {e}") from None


def parse_object(raw: bytes | str | None) -> dict:
    """A request body that must be a JSON object (an empty body is ``{}``)."""
    data = loads_json(raw) if raw else {}
    if not isinstance(data, dict):
        raise BodyError("request body must be a JSON object")
    return data


def exact(value: object, name: str) -> Fraction:
    """The exact value of a JSON number (``int`` or ``Decimal`` from
    :func:`loads_json`) or of a plain decimal string ("0.5", "2"). Refuses bool,
    None, float NaN/inf, exponents in strings, fractions like "1/2", and any text
    longer than a quantity needs. Cost is bounded by the text's length."""
    if isinstance(value, bool) or value is None:
        raise NumberError(f"{name} must be a number, got {value!r}")
    if isinstance(value, int):
        if value.bit_length() > 64:
            raise NumberError(f"{name} is out of range")
        return Fraction(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT:
            raise NumberError(f"{name} must be a finite number of sensible size, got {value}")
        return Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise NumberError(f"{name} must be a finite number, got {value!r}")
        return exact(Decimal(repr(value)), name)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_TEXT:
            raise NumberError(f"{name} is too long to be a number ({len(text)} characters)")
        if not _DECIMAL.match(text):
            raise NumberError(
                f"{name} must be a number written as digits with an optional decimal point "
                f"(e.g. 0.5 or 2), got {value!r}"
            )
        return Fraction(Decimal(text))
    raise NumberError(f"{name} must be a number, got {value!r}")


def decimal_text(value: Fraction, places: int = 6) -> str:
    """An exact-when-possible decimal string of a Fraction: 1/2 → "0.5", 2 → "2"."""
    if value.denominator == 1:
        return str(value.numerator)
    q = Decimal(value.numerator) / Decimal(value.denominator)
    text = f"{q:.{places}f}".rstrip("0").rstrip(".")
    return text



def human_bytes(n: float) -> str:
    """Bytes as people read them (binary units, one decimal): "3.2 GiB"; one
    formatter for both services' messages and the spawn form."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_minutes(minutes: int) -> str:
    """A duration as people say it: "42 min", "8 h", "1 h 20 min", "2 days 3 h";
    one formatter for the hub's pages and the services' messages."""
    minutes = max(0, int(minutes))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {rest} min" if rest else "")
    days, hours = divmod(hours, 24)
    return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")


def gpu_hours_text(used: float, reserved: float, limit: float | None = None) -> str:
    """GPU-hours as every page shows them, each part labelled: "0.04 used + 4
    reserved of 40" — used so far, and reserved: what running shares may still use
    of their declared time (a quota counts both). One formatter for the spawn form
    and the lab panel."""
    def num(h: float) -> str:
        return f"{h:.2g}" if 0 < h < 1 else f"{h:.3g}" if h < 100 else f"{h:.0f}"

    text = f"{num(used)} used" + (f" + {num(reserved)} reserved" if reserved > 0 else "")
    return text + (f" of {limit:g}" if limit is not None else "")
