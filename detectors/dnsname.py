"""The one definition of a valid DNS name, in canonical presentation form.

Every trust boundary (the collector's event decoder, the detectors' event
decoder, the verdict store, the feed encoder, the blocklist publisher, the
operator policy file) takes names through :func:`canonical_name`, and the
filter's Rust crates apply the same rule (``dnswire::presentation``), so a
name that is valid here is valid there and means the same octets.

Canonical form (RFC 1035 section 5.1 presentation form, RFC 4343 case):

* labels separated by ``.``, no trailing dot; the root is the empty string;
* each label 1 to 63 octets; the whole name at most 253 octets plus dots
  (255 on the wire);
* octets ``a-z``, ``0-9``, ``-`` and ``_`` are written as themselves, upper
  case is folded to lower case, and every other octet (including ``.`` inside
  a label, ``*``, space, backslash, control and non-ASCII bytes) is written
  ``\\DDD`` (three decimal digits).

So a canonical name contains only ``[a-z0-9._\\-]`` characters: it can be
written into a TAB-separated feed line, an RPZ master file or a log line
without breaking the format.

Input is accepted in any presentation form that means a valid name (upper
case, a trailing dot, ``\\DDD`` and ``\\X`` escapes, printable ASCII such as
``+`` or ``/`` written raw); raw whitespace, control characters, non-ASCII
characters (use punycode), empty labels and over-long labels or names are
refused with :class:`InvalidName`, whose message says what and where.
"""

from __future__ import annotations

import re

MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 253  # octets of the labels plus the dots between them

# The common case, already canonical: one regular expression and a length check.
_PLAIN = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*", re.ASCII)
_CANONICAL = re.compile(r"(?:[a-z0-9_-]|\\[0-9]{3})+(?:\.(?:[a-z0-9_-]|\\[0-9]{3})+)*", re.ASCII)
_PLAIN_OCTET = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")


class InvalidName(ValueError):
    """Text that is not a valid DNS name; the message names the problem and its position."""


def _render(octets: bytes | bytearray) -> str:
    out = []
    for b in octets:
        if 65 <= b <= 90:
            b += 32
        out.append(chr(b) if b in _PLAIN_OCTET else f"\\{b:03d}")
    return "".join(out)


def _parse(text: str) -> list[bytearray]:
    """The labels of ``text`` as octets (presentation form, RFC 1035 5.1)."""
    if text in ("", "."):
        return []
    body = text
    labels: list[bytearray] = [bytearray()]
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            if i + 1 >= n:
                raise InvalidName(f"{text!r}: a backslash ends the name (position {i})")
            nxt = body[i + 1]
            if nxt.isdigit():
                digits = body[i + 1 : i + 4]
                if len(digits) != 3 or not digits.isascii() or not digits.isdigit():
                    raise InvalidName(f"{text!r}: \\DDD needs three digits (position {i})")
                value = int(digits)
                if value > 255:
                    raise InvalidName(f"{text!r}: \\{digits} is not an octet (position {i})")
                labels[-1].append(value)
                i += 4
                continue
            if not ("!" <= nxt <= "~"):
                raise InvalidName(
                    f"{text!r}: escaped character U+{ord(nxt):04X} is not printable ASCII (position {i + 1})"
                )
            labels[-1].append(ord(nxt))
            i += 2
            continue
        if c == ".":
            if not labels[-1]:
                raise InvalidName(f"{text!r}: empty label (position {i})")
            labels.append(bytearray())
            i += 1
            continue
        if not ("!" <= c <= "~"):
            raise InvalidName(
                f"{text!r}: character U+{ord(c):04X} is not allowed (position {i}; "
                "names are ASCII: use punycode or \\DDD escapes)"
            )
        labels[-1].append(ord(c))
        i += 1
    if not labels[-1]:
        labels.pop()  # the trailing dot of an absolute name
        if not labels:
            raise InvalidName(f"{text!r}: empty label at the end")
    for label in labels:
        if len(label) > MAX_LABEL_OCTETS:
            raise InvalidName(
                f"{text!r}: a label of {len(label)} octets (at most {MAX_LABEL_OCTETS})"
            )
    total = sum(len(label) for label in labels) + len(labels) - 1
    if total > MAX_NAME_OCTETS:
        raise InvalidName(f"{text!r}: {total} octets (at most {MAX_NAME_OCTETS})")
    return labels


def canonical_name(text: str) -> str:
    """``text`` in canonical presentation form, or :class:`InvalidName`."""
    if not isinstance(text, str):
        raise InvalidName(f"expected a string, got {type(text).__name__}")
    if len(text) <= MAX_NAME_OCTETS and _PLAIN.fullmatch(text):
        return text
    if len(text) > 4 * (MAX_NAME_OCTETS + 1) + 1:  # longer than any escaped form of a valid name
        raise InvalidName(f"{text[:64]!r}...: {len(text)} characters is too long for a DNS name")
    return ".".join(_render(label) for label in _parse(text))


def is_canonical(text: str) -> bool:
    """Whether ``text`` is a valid name already in canonical form (the root included)."""
    if text == "":
        return True
    if len(text) <= MAX_NAME_OCTETS and _PLAIN.fullmatch(text):
        return True
    if not _CANONICAL.fullmatch(text):
        return False
    try:
        return canonical_name(text) == text
    except InvalidName:
        return False


def name_octets(name: str) -> int:
    """Octets of a canonical name's labels plus its dots (``\\DDD`` counts as one)."""
    return len(name) - 3 * name.count("\\")


def label_count(name: str) -> int:
    return name.count(".") + 1 if name else 0
