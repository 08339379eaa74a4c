"""Which of many regular expressions can match a text at all, from the literal strings each one's matches must hold.

Python's ``re`` tries a case-insensitive pattern that starts with ``\\b`` or an
alternation at every position of the text, so fifty such rules cost about 2 ms
on 700 characters. Most of them need words the text does not have. For each
pattern this module reads from its parse the sets of strings of which every
match must contain one (``ignore|disregard`` before ``instructions``: one of
the first two and the third), and finds all those strings in the text in one
pass; only the patterns whose every set was found are searched. That is exact,
not a heuristic: a pattern is skipped only when the text lacks a string that
any match of it would contain. The comparison is case-insensitive (the text is
folded as ``re.IGNORECASE`` matches), so a case-sensitive pattern is only ever
searched more often than needed, never less.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# re's parser is private, but it is the only reader of a pattern's structure, and its tree has kept these
# node kinds since Python 3.0 (3.11 renamed sre_parse to re._parser). Should it change, the tests that compare
# every rule's hits with and without the prefilter fail, and `literal_sets` falls back to "always search".
from re import _constants as _sre
from re import _parser as _sre_parse

__all__ = ["Prefilter", "fold", "literal_sets"]

MIN_LENGTH = 3  # a set holding a shorter string ("ai", "is") finds itself in nearly every text: not worth a look-up
MAX_ALTERNATIVES = 8  # a run of alternatives multiplies ("are (now )?(void|revoked|...)"); past this it is cut

# Characters that re.IGNORECASE matches to an ASCII character although str.lower() does not make them one
# (checked over every code point by tests/unit/guard/test_prefilter.py): dotted and dotless i, long s, Kelvin.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def fold(text: str) -> str:
    """``text`` as ``re.IGNORECASE`` compares it with ASCII literals: lower case, the special letters mapped."""
    return text.translate(_FOLD).lower()


def literal_sets(pattern: re.Pattern[str]) -> list[frozenset[str]]:
    """Sets of folded ASCII strings such that every match of ``pattern`` contains one string of each set.

    Empty when nothing can be said (the pattern is then always searched).
    """
    try:
        parsed = _sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception:  # noqa: BLE001 - a parser that changed shape: no prefilter for this pattern
        return []
    sets = {frozenset(_without_superstrings(found)) for found in _required(list(parsed))}
    return sorted(sets, key=lambda s: (len(s), -min(map(len, s)), sorted(s)))


class Prefilter:
    """Searches only the patterns that can match: one pass over the text finds every string the patterns need."""

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self.needs = [literal_sets(p) for p in patterns]
        strings = sorted({s for sets in self.needs for one in sets for s in one})
        # One regular expression over the folded text, a trie of all the strings, tried at every position inside
        # a lookahead (so overlapping strings are all found); it takes the longest string at a position, and the
        # strings that are its prefixes are there too.
        self._finder = re.compile(f"(?=({_trie(strings)}))", re.DOTALL) if strings else None
        self._with_prefixes = {s: frozenset(t for t in strings if s.startswith(t)) for s in strings}

    def strings_in(self, text: str) -> set[str]:
        if self._finder is None:
            return set()
        found: set[str] = set()
        for match in self._finder.finditer(fold(text)):
            found |= self._with_prefixes[match.group(1)]
        return found

    def candidates(self, text: str) -> list[int]:
        """Indices of the patterns that can match ``text`` (each of their literal sets has a string in it)."""
        found = self.strings_in(text)
        return [i for i, sets in enumerate(self.needs) if all(not found.isdisjoint(one) for one in sets)]


def _required(items: list) -> list[set[str]]:
    """Sets of strings of which a match of the sequence ``items`` contains one each (runs of literals, their
    alternatives, and what required groups, repeats and every branch of an alternation need)."""
    found: list[set[str]] = []
    run = {""}

    def close() -> None:
        nonlocal run
        if "" not in run and min(map(len, run)) >= MIN_LENGTH:
            found.append(run)
        run = {""}

    for op, av in items:
        exact = _exact([(op, av)])
        if exact is not None:
            joined = {a + b for a in run for b in exact}
            if len(joined) > MAX_ALTERNATIVES:
                close()
                joined = exact
            run = joined
            continue
        close()
        if op is _sre.SUBPATTERN:
            found += _required(list(av[3]))
        elif op is _sre.BRANCH:
            per_branch = [_required(list(branch)) for branch in av[1]]
            if all(per_branch):  # each branch needs something: one of those is in every match
                found.append(set().union(*(min(sets, key=len) for sets in per_branch)))
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            found += _required(list(av[2]))
        elif op is _sre.ATOMIC_GROUP:
            found += _required(list(av))
        # anything else (classes, anchors, lookarounds, optional repeats) needs no particular string
    close()
    return found


def _exact(items: Iterable) -> set[str] | None:
    """The folded strings the sequence ``items`` matches, when it matches only a few ASCII strings; else None."""
    out = {""}
    for op, av in items:
        if op is _sre.LITERAL:
            char = chr(av)
            if not char.isascii():
                return None
            options = {char.lower()}
        elif op is _sre.SUBPATTERN:
            options = _exact(av[3])
        elif op is _sre.BRANCH:
            options = set()
            for branch in av[1]:
                one = _exact(branch)
                if one is None:
                    return None
                options |= one
        elif op is _sre.IN and all(kind is _sre.LITERAL and chr(code).isascii() for kind, code in av) and len(av) <= 4:
            options = {chr(code).lower() for _, code in av}
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[1] == 1:
            once = _exact(av[2])
            options = None if once is None else (once | {""} if av[0] == 0 else once)
        else:
            return None
        if options is None:
            return None
        out = {a + b for a in out for b in options}
        if len(out) > MAX_ALTERNATIVES:
            return None
    return out


def _without_superstrings(strings: set[str]) -> set[str]:
    """A string that holds another of the set adds nothing to "one of them is in the text"."""
    return {s for s in strings if not any(t != s and t in s for t in strings)}


def _trie(strings: list[str]) -> str:
    """A regular expression matching any of ``strings``, the longest first, as a trie (a few steps a position)."""
    root: dict = {}
    for string in strings:
        node = root
        for char in string:
            node = node.setdefault(char, {})
        node[""] = {}

    def expression(node: dict) -> str:
        branches = [re.escape(char) + expression(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and "" not in node else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body  # greedy: a longer string is tried before this one ends

    return expression(root)
