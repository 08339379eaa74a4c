"""Readable text hidden in a text by a common encoding: base64, base32, base85/ascii85, hex, binary, percent- and
backslash-escapes, Morse code, Unicode tag characters (invisible letters a model may still read), and ROT13,
reversed or leetspeak English.

Attackers encode a payload so that a classifier of plain text reads nothing
harmful (garak's encoding probes list these encodings). What decodes to
readable text (mostly letters and spaces, at least 8 characters) is returned,
to be judged like any text; what decodes to bytes or noise is not. Each
decoder looks only at runs shaped like its encoding, so ordinary text costs a
few regular-expression scans. ROT13, reversal and leetspeak turn any text into
letters, so they count only when the undone sentence reads as English and the
sentence did not (the share of their words in MiniLM's word list).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import string
from urllib.parse import unquote

__all__ = ["decoded_payloads", "english_share", "might_hold_payload"]

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])")
_BASE32 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9+/=])")
_BASE85 = re.compile(r"(?<![\w!#$%&()*+\-;<=>?@^`{|}~])[0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~]{25,}(?![\w!#$%&()*+\-;<=>?@^`{|}~])")
_ASCII85 = re.compile(r"<~([!-uz\s]{8,})~>")  # its alphabet only, so a "<~" never scans past the next "~"
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]?){16,}\b")
_BINARY = re.compile(r"\b(?:[01]{8}[ ]?){8,}\b")
# Possessive runs, started only where a run starts: linear in the text (a plain [^\s%]* here is quadratic).
_PERCENT = re.compile(r"(?<![^\s%])[^\s%]*+(?:%[0-9A-Fa-f]{2}[^\s%]*+){4,}")
_ESCAPES = re.compile(r"(?:\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}){6,}")
# Starts with a character class, so that re skips the positions that cannot start it (a lookbehind would not).
_MORSE = re.compile(r"[.\-]{1,7}(?: | ?/ ?)(?:[.\-]{1,7}(?: | ?/ ?)){6,}[.\-]{1,7}(?![\w.\-])")
_TAGS = re.compile("[\U000e0020-\U000e007e]{4,}")
_LONG_RUN = re.compile(r"\S{16,}")
_SEGMENT = re.compile(r"[.!?:;]\s+|\n+")  # sentences and lines (a class first: re skips to it; a lookbehind would not)
MAX_SEGMENTS = 100
_WORD = re.compile(r"[a-z0-9@$]*[a-z][a-z0-9@$]*[a-z][a-z0-9@$]*")  # two letters or more, leetspeak's digits within
_ROT13 = str.maketrans(string.ascii_lowercase + string.ascii_uppercase,
                       string.ascii_lowercase[13:] + string.ascii_lowercase[:13] + string.ascii_uppercase[13:] + string.ascii_uppercase[:13])
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"})
ENGLISH_ABOVE = 0.75  # a rewriting undone is English when this share of its words is in the word list...
ENGLISH_GAIN = 0.25  # ...and this much more than of the text as it came (leetspeak keeps some words whole)
_MORSE_CODE = {
    ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g", "....": "h", "..": "i",
    ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n", "---": "o", ".--.": "p", "--.-": "q", ".-.": "r",
    "...": "s", "-": "t", "..-": "u", "...-": "v", ".--": "w", "-..-": "x", "-.--": "y", "--..": "z",
    "-----": "0", ".----": "1", "..---": "2", "...--": "3", "....-": "4", ".....": "5", "-....": "6", "--...": "7",
    "---..": "8", "----.": "9", ".-.-.-": ".", "--..--": ",", "..--..": "?", "-.-.--": "!", ".----.": "'",
}


def might_hold_payload(text: str) -> bool:
    """False when no encoding below can be in ``text`` (most text): the decoders need not run."""
    return any(_gates(text)) or bool(_undone_rewritings(text))


def _gates(text: str) -> tuple[bool, ...]:
    """For each family of decoders, whether the text can hold its encoding: counts and look-ups in C, a few µs, so
    that ordinary text is not scanned by each decoder's regular expression (20-60 µs each on a paragraph)."""
    digits = sum(map(text.count, "0123456789"))
    return (
        _LONG_RUN.search(text) is not None,  # base64, base32, base85: no spaces inside
        digits >= 16,  # hex with separators: an ASCII byte's first digit is 2-7
        text.count("0") + text.count("1") >= 64,  # binary: 8 bits a character, at least 8 characters
        "<~" in text,
        text.count("%") >= 4,
        "\\u" in text or "\\x" in text,
        text.count(".") + text.count("-") >= 8,  # Morse: eight letters of a dot or more
        not text.isascii() and _TAGS.search(text) is not None,  # isascii is a flag of the string: free
    )


def decoded_payloads(text: str, normalised: str | None = None) -> list[str]:
    """Readable text hidden in ``text`` (tag characters are read from it as sent; the encodings from ``normalised``,
    its form with invisible and look-alike characters undone, when given)."""
    found = [] if text.isascii() else ["".join(chr(ord(c) - 0xE0000) for c in run) for run in _TAGS.findall(text)]
    source = text if normalised is None else normalised
    runs, hex_pairs, bits, ascii85, percent, escapes, morse, _ = _gates(source)
    # Their alphabets hold no whitespace: each is searched inside the few long runs without it, not over the text.
    for run in (_LONG_RUN.findall(source) if runs else ()):
        for match in _BASE64.finditer(run):
            blob = match.group(0)
            found.append(_utf8(_decode(base64.b64decode, blob + "=" * (-len(blob) % 4))))
        for match in _BASE32.finditer(run):
            blob = match.group(0).rstrip("=")
            found.append(_utf8(_decode(base64.b32decode, blob + "=" * (-len(blob) % 8))))
        for match in _BASE85.finditer(run):
            if not match.group(0).isalnum():  # all letters and digits: base64's or base32's, or a long word
                found.append(_utf8(_decode(base64.b85decode, match.group(0))))
    if hex_pairs:
        for match in _HEX.finditer(source):
            found.append(_utf8(_decode(bytes.fromhex, re.sub(r"[ :]", "", match.group(0)))))
    if bits:
        for match in _BINARY.finditer(source):
            bits_run = match.group(0).replace(" ", "")
            found.append(_utf8(int(bits_run, 2).to_bytes(len(bits_run) // 8, "big")))  # whole octets, by the pattern
    if ascii85:
        for match in _ASCII85.finditer(source):
            found.append(_utf8(_decode(base64.a85decode, re.sub(r"\s", "", match.group(1)))))
    if percent:
        for match in _PERCENT.finditer(source):
            found.append(_unquoted(match.group(0)))
    if escapes:
        for match in _ESCAPES.finditer(source):
            found.append(_utf8(_decode(lambda run: _escapes(run).encode("utf-8"), match.group(0))))  # lone surrogates
    if morse:
        for match in _MORSE.finditer(source):
            found.append(_morse(match.group(0)))
    found += _undone_rewritings(source)
    return list(dict.fromkeys(f for f in found if f and _readable_text(f)))


def _undone_rewritings(text: str) -> list[str]:
    """The text's sentences with ROT13, reversal or leetspeak undone where that makes one that did not read as English
    read as English; one payload a rewriting (sentence by sentence, so that English around a rewritten sentence does
    not hide it)."""
    if not _english_words():
        return []
    segments = _SEGMENT.split(text)
    if len(segments) > 2 * MAX_SEGMENTS:  # bounded work: the first and the last ones
        segments = segments[:MAX_SEGMENTS] + segments[-MAX_SEGMENTS:]
    undone: dict[str, list[str]] = {}
    for segment in segments:
        if len(segment) < 11:  # under four words of two letters or more
            continue
        before = english_share(segment)
        if before > 1 - ENGLISH_GAIN:  # reads as English (or too short to tell): no undoing could gain enough
            continue
        for name, candidate in (("rot13", segment.translate(_ROT13)), ("reversed", segment[::-1]),
                                ("leet", segment.translate(_LEET))):
            if english_share(candidate) >= max(ENGLISH_ABOVE, before + ENGLISH_GAIN):
                undone.setdefault(name, []).append(candidate.strip())
    return [" ".join(parts) for parts in undone.values()]


def english_share(text: str) -> float:
    """The share of the first 80 words (lower-cased, with two letters or more: "b0mb" is a word, and not English) that
    are English words; 1.0 under 4 words (too few to tell: left as they are)."""
    words = _WORD.findall(text[:800].lower())[:80]
    if len(words) < 4:
        return 1.0
    known = _english_words()
    return sum(word in known for word in words) / len(words)


@functools.cache
def _english_words() -> frozenset[str]:
    """Whole words of MiniLM's WordPiece vocabulary (about 21,700 English words); empty when it is not installed."""
    from mesh.ml.embed import model_dir

    path = model_dir()
    if path is None:
        return frozenset()
    try:
        vocab = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):  # a damaged install: no read-back, never a failed check
        return frozenset()
    return frozenset(word for word in vocab if len(word) >= 2 and word.isascii() and word.isalpha())


def _decode(decoder, *args) -> bytes:
    try:
        return decoder(*args) or b""
    except (binascii.Error, ValueError, UnicodeError, OverflowError):
        return b""


def _escapes(run: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1) or m.group(2), 16)), run)


def _morse(run: str) -> str:
    words = re.split(r"\s*/\s*", run.strip())
    return " ".join("".join(_MORSE_CODE.get(letter, "") for letter in word.split()) for word in words)


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _unquoted(run: str) -> str:
    try:
        return unquote(run, errors="strict")
    except UnicodeDecodeError:
        return ""


def _readable_text(text: str) -> bool:
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return len(text) >= 8 and letters / len(text) > 0.85 and " " in text
