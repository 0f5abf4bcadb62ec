"""Label and field selectors: parsing (errors become 400 BadRequest) and matching, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tools.fakekube import formats

Op = Literal["=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"]

# k8s.io/apimachinery/pkg/labels/selector.go: the lexer's special symbols and keywords.
_SPECIAL = frozenset("=!(),<>")
_SYMBOLS = ("!=", "==", "!", "(", ")", ",", "=", ">", "<")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return value == self.values[0]
        if self.op == "!=":
            # Like the API server: objects without the key match `key!=value`.
            return value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op in ("gt", "lt"):
            # selector.go Matches: the label must parse as an int64, else no match.
            try:
                have = int(value or "", 10)
            except ValueError:
                return False
            want = int(self.values[0])
            return have > want if self.op == "gt" else have < want
        return not present


def _lex(text: str) -> list[tuple[str, str]]:
    """selector.go Lexer: (token kind, literal); identifiers run until whitespace or a special symbol."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SPECIAL:
            sym = next(s for s in _SYMBOLS if text.startswith(s, i))
            out.append((sym, sym))
            i += len(sym)
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            out.append(("id", text[i:j]))
            i = j
    out.append(("end", ""))
    return out


class _Parser:
    """selector.go Parser, token by token, with NewRequirement's checks on each requirement."""

    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        tok = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return tok

    def parse(self) -> tuple[Requirement, ...]:
        out: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok in ("id", "!"):
                out.append(self.requirement())
                tok, lit = self.take()
                if tok == "end":
                    return tuple(out)
                if tok != ",":
                    raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
                if self.peek()[0] not in ("id", "!"):
                    raise SelectorError(f"found '{self.peek()[1]}', expected: identifier after ','")
            elif tok == "end":
                return tuple(out)
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        negated = self.peek()[0] == "!"
        if negated:
            self.take()
        tok, key = self.take()
        if tok != "id":  # the key is read in Values mode: "in" and "notin" are plain identifiers there
            raise SelectorError(f"found '{key}', expected: identifier")
        _check(formats.is_qualified_name(key), key)
        if negated:
            return Requirement(key, "!exists")
        if self.peek()[0] in ("end", ","):
            return Requirement(key, "exists")
        tok, lit = self.take()
        if tok == "id" and lit in ("in", "notin"):
            values = self.value_set()
            if not values:
                raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
            req = Requirement(key, lit, tuple(sorted(values)))  # type: ignore[arg-type]
        elif tok in ("=", "==", "!="):
            nxt, value = self.peek()
            if nxt in ("end", ","):
                value = ""
            else:
                self.take()
                if nxt != "id":
                    raise SelectorError(f"found '{value}', expected: identifier")
            req = Requirement(key, "!=" if tok == "!=" else "=", (value,))
        elif tok in (">", "<"):
            nxt, value = self.take()
            if nxt != "id":
                raise SelectorError(f"found '{value}', expected: identifier")
            try:
                int(value, 10)
            except ValueError:
                raise SelectorError(
                    f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
                ) from None
            return Requirement(key, "gt" if tok == ">" else "lt", (value,))
        else:
            raise SelectorError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        for value in req.values:
            _check(formats.is_valid_label_value(value), value)
        return req

    def value_set(self) -> set[str]:
        tok, lit = self.take()
        if tok != "(":
            raise SelectorError(f"found '{lit}', expected: '('")
        if self.peek()[0] == ")":
            self.take()
            return set()
        values: set[str] = set()
        while True:
            tok, lit = self.take()
            if tok == "id":
                values.add(lit)
                nxt, nlit = self.peek()
                if nxt == ")":
                    self.take()
                    return values
                if nxt != ",":
                    raise SelectorError(f"found '{nlit}', expected: ',' or ')'")
            elif tok == ",":  # "(,", ",)" and ",," stand for the empty value
                if not values:
                    values.add("")
                nxt = self.peek()[0]
                if nxt == ")":
                    self.take()
                    values.add("")
                    return values
                if nxt == ",":
                    self.take()
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")


def _check(messages: list[str], value: str) -> None:
    if messages:
        raise SelectorError(f"unable to parse requirement: Invalid value: {value!r}: {'; '.join(messages)}")


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """labels.Parse: syntax errors and invalid keys/values are a 400 like the API server's."""
    if not text:
        return ()
    return _Parser(text).parse()


def labels_match(requirements: Sequence[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    equal: bool
    value: str


def _split_field_terms(text: str) -> list[str]:
    """fields/selector.go splitTerms: split on commas not escaped with a backslash."""
    terms, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if escaped:
        cur += "\\"
    terms.append(cur)
    return terms


def _unescape_field_value(value: str) -> str:
    """fields/selector.go UnescapeValue: a backslash escapes only a backslash, ',' or '='; a bare ',' or
    '=' in a value is an error."""
    out, escaped = "", False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped {ch!r}")
        else:
            out += ch
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return out


def parse_field_selector(text: str | None, supported: Sequence[str]) -> tuple[FieldRequirement, ...]:
    """fields.ParseSelector, then the kind's field label conversion: no trimming, no empty terms."""
    if not text:
        return ()
    out = []
    for term in _split_field_terms(text):
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op is not None:
                field, value = term[:i], _unescape_field_value(term[i + len(op) :])
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        if field not in supported:
            raise SelectorError(f'field label not supported: "{field}"')
        out.append(FieldRequirement(field, op != "!=", value))
    return tuple(out)


def _lookup(obj: Mapping[str, Any], dotted: str) -> str:
    node: Any = obj
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def fields_match(requirements: Sequence[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    return all((_lookup(obj, r.path) == r.value) == r.equal for r in requirements)
