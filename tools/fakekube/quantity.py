"""resource.Quantity: parsing, comparison and the canonical form the API server stores.

A port of k8s.io/apimachinery/pkg/api/resource/quantity.go: a quantity keeps the *format* of its
suffix (BinarySI ``Ki``, DecimalSI ``m``/``k``, DecimalExponent ``e3``) and is re-emitted in canonical
form: no precision lost, no fractional digits, the largest suffix possible. So ``0.5`` is stored as
``500m``, ``1.5Gi`` as ``1536Mi`` and ``1000m`` as ``1``; a listener that compares what it applied with
what it reads back must compare canonical forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Literal

Format = Literal["BinarySI", "DecimalSI", "DecimalExponent"]

_SPLIT = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$")
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXP = {v: k for k, v in _BINARY_SUFFIXES.items()}
_NANO = Decimal("1e-9")
# The error text of ParseQuantity's ErrFormatWrong.
FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    pass


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    format: Format

    def __str__(self) -> str:
        return canonical(self)

    def __lt__(self, other: Quantity) -> bool:
        return self.value < other.value

    def __le__(self, other: Quantity) -> bool:
        return self.value <= other.value

    def __gt__(self, other: Quantity) -> bool:
        return self.value > other.value

    def __ge__(self, other: Quantity) -> bool:
        return self.value >= other.value


def parse(text: object) -> Quantity:
    """ParseQuantity. Numbers (JSON ints/floats) are accepted like the API server's decoder does."""
    if isinstance(text, bool):
        raise QuantityError(FORMAT_ERROR)
    if isinstance(text, int | float):
        text = repr(text) if isinstance(text, float) else str(text)
    if not isinstance(text, str) or not text:
        raise QuantityError(FORMAT_ERROR)
    if text == "0":
        return Quantity(Decimal(0), "DecimalSI")
    m = _SPLIT.match(text)
    if not m:
        raise QuantityError(FORMAT_ERROR)
    number, suffix = m.group(1), m.group(2)
    if not _NUMBER.match(number):
        raise QuantityError("unable to parse numeric part of quantity")
    fmt: Format
    with localcontext() as ctx:
        ctx.prec = 80
        amount = Decimal(number)
        if suffix in _DECIMAL_SUFFIXES:
            fmt = "DecimalSI"
            amount = amount.scaleb(_DECIMAL_SUFFIXES[suffix])
        elif suffix in _BINARY_SUFFIXES:
            fmt = "BinarySI"
            amount = amount * (Decimal(2) ** _BINARY_SUFFIXES[suffix])
        elif suffix[:1] in ("e", "E") and re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
            fmt = "DecimalExponent"
            amount = amount.scaleb(int(suffix[1:]))
        else:
            raise QuantityError("unable to parse quantity's suffix")
        # Non-zero values are rounded up (away from zero) to the nano scale: 0.1n becomes 1n.
        # (Only values with digits below the nano scale need it; "1e400" is a valid quantity.)
        exponent = amount.as_tuple().exponent
        if amount != 0 and isinstance(exponent, int) and exponent < -9:
            rounding = ROUND_CEILING if amount > 0 else ROUND_FLOOR
            ctx.prec = max(80, amount.adjusted() + 12)
            amount = amount.quantize(_NANO, rounding=rounding)
        if fmt == "BinarySI" and 0 < abs(amount) < 1:
            fmt = "DecimalSI"
        return Quantity(amount.normalize() if amount != 0 else Decimal(0), fmt)


def canonical(q: Quantity) -> str:
    """Quantity.String(): CanonicalizeBytes."""
    value, fmt = q.value, q.format
    if value == 0:
        return "0"
    if fmt == "BinarySI":
        if -1024 < value < 1024 or value != value.to_integral_value():
            fmt = "DecimalSI"
        else:
            n = int(value)
            exp = 0
            while exp < 60 and n % 1024 == 0 and n != 0:
                n //= 1024
                exp += 10
            return f"{n}{_BINARY_BY_EXP.get(exp, '')}"
    # Decimal: mantissa integer, exponent a multiple of 3, as large as possible.
    with localcontext() as ctx:
        ctx.prec = 80
        sign, digits, exponent = value.normalize().as_tuple()
        mantissa = int("".join(map(str, digits)))
        exp = int(exponent)
        # Make the exponent a multiple of 3 by moving digits into the mantissa.
        while exp % 3 != 0:
            mantissa *= 10
            exp -= 1
        if fmt == "DecimalSI" and exp > 18:
            mantissa *= 10 ** (exp - 18)
            exp = 18
        if fmt == "DecimalSI" and exp < -9:
            exp = -9  # cannot happen after rounding to nano
        prefix = "-" if sign else ""
        if fmt == "DecimalExponent":
            return f"{prefix}{mantissa}" + (f"e{exp}" if exp else "")
        return f"{prefix}{mantissa}{_DECIMAL_BY_EXP[exp]}"


def canonicalize(text: object) -> str:
    return canonical(parse(text))


def milli_value(q: Quantity) -> int:
    with localcontext() as ctx:
        ctx.prec = 80
        return int((q.value * 1000).to_integral_value(rounding=ROUND_CEILING))
