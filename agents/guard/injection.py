"""Prompt-injection signals by rule: instruction overrides, role hijacks, prompt/secret extraction, exfiltration,
instructions planted in documents or tool output, and obfuscation (base64, homoglyphs, invisible characters).

The rules look for an *instruction aimed at the model* (a verb of overriding
next to instructions/rules/prompt, a claim of a new role, a request for the
system prompt or secrets), not for single words: "ignore case when sorting"
or "forget the previous draft" name no instructions of the model and pass.
Obfuscated text is decoded and normalised, then checked again.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

_F = re.IGNORECASE | re.DOTALL

_OVERRIDE_VERB = r"(?:ignore|disregard|forget|override|overrule|bypass|skip|drop|abandon|discard|set aside|do not follow|don't follow|stop following|no longer follow)"
_INSTRUCTIONS = r"(?:instructions?|rules|guidelines|guardrails|directives|system prompt|prompts?|polic(?:y|ies)|constraints|safety (?:filters?|measures|settings)|restrictions|programming|training|context|orders)"
_PRIOR = r"(?:all|any|every|previous|prior|above|earlier|preceding|original|initial|your|the|these|those|existing|default|old|system|developer|safety)"

RULES: list[tuple[str, re.Pattern[str]]] = [
    ("override", re.compile(rf"\b{_OVERRIDE_VERB}\b\W+(?:\w+\W+){{0,4}}?{_PRIOR}\b\W+(?:\w+\W+){{0,3}}?{_INSTRUCTIONS}\b", _F)),
    ("override", re.compile(rf"\b(?:your|all|previous|prior|the above|system|safety|earlier)\W+(?:\w+\W+){{0,2}}?{_INSTRUCTIONS}\b\W+(?:\w+\W+){{0,4}}?(?:no longer appl(?:y|ies)|are (?:now )?(?:void|cancelled|canceled|revoked|suspended|lifted|disabled)|have been (?:updated|replaced|revoked|lifted|disabled))", _F)),
    ("override", re.compile(r"\bnew (?:instructions?|rules|directive|task|system prompt)\s*[:\-]", _F)),
    ("role", re.compile(r"\byou are (?:now|no longer)\b(?!\s+(?:connected|logged|signed|subscribed|registered|ready|able|done|on))", _F)),
    ("role", re.compile(r"\b(?:developer|god|admin|debug|jailbreak|unrestricted|unfiltered|dan) mode\b", _F)),
    ("role", re.compile(r"\b(?:pretend|act|behave|roleplay|role-play)\b\W+(?:\w+\W+){0,4}?(?:as|like|to be)\b\W+(?:\w+\W+){0,3}?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|without (?:any )?(?:rules|restrictions|limits|filters|guidelines)|no (?:rules|restrictions|limits|filters))", _F)),
    ("role", re.compile(r"\bdo anything now\b|\bDAN\b|\bjailbr(?:eak|oken)\b", re.DOTALL)),
    ("role", re.compile(r"(?:^|\n)\s*(?:\[|<\|?|###\s*|<<)\s*(?:system|im_start|/?inst|sys|assistant)\b", _F)),
    ("reveal", re.compile(r"\b(?:reveal|print|show|repeat|output|display|leak|dump|recite|disclose|spell out|write out|tell me|give me|share|paste|copy)\b(?!\s+(?:me\s+)?how\b)\W+(?:\w+\W+){0,5}?(?:(?:your|the|this|its)\s+(?:full\s+|original\s+|secret\s+|hidden\s+|initial\s+|exact\s+|confidential\s+)?(?:system prompt|system message|instructions|prompt|rules|guidelines|configuration)\b(?!\s+(?:for|on|about|to|of)\s+(?!you))|initial (?:prompt|instructions)|hidden (?:prompt|instructions|rules)|(?:everything|the text|all text|the words|what was written|all the text) (?:above|before)|developer message|(?:api[ _-]?keys?|secret keys?|access tokens?|credentials|passwords?|environment variables|env vars|\.env\b|private keys?|ssh keys?)(?!\s*(?:polic|reset|manager|strength|requirement|rotation|best practice|hygiene|rules)))", _F)),
    ("reveal", re.compile(r"\bwhat (?:is|was|were|are) (?:your|the) (?:system prompt|initial instructions|original instructions|hidden instructions|secret (?:key|password|token))", _F)),
    ("exfiltrate", re.compile(r"\b(?:send|post|upload|forward|email|e-mail|exfiltrate|transmit|submit|leak|copy)\b\W+(?:\w+\W+){0,5}?(?:conversation|chat|history|messages|data|files?|secrets?|keys?|tokens?|passwords?|credentials|contents|everything|invoices|documents|emails|contacts|details)\b\W+(?:\w+\W+){0,6}?(?:to|at|into)\b\W+(?:\w+\W+){0,4}?(?:https?://\S+|[\w.+-]+@[\w-]+\.[\w.]+|webhook|attacker|external (?:server|address|endpoint))", _F)),
    ("exfiltrate", re.compile(r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&][\w-]+=(?:\{|\$|%7B|<)", _F)),
    ("exfiltrate", re.compile(r"\b(?:append|include|encode|put)\b\W+(?:\w+\W+){0,6}?(?:conversation|chat history|user'?s? (?:data|messages|details|emails?)|secrets?|tokens?|keys?)\b\W+(?:\w+\W+){0,6}?(?:url|link|query string|image)", _F)),
    ("planted", re.compile(r"\b(?:ai|assistant|agent|llm|language model|chatbot|model|gpt|claude|copilot)s?\b[^.\n]{0,40}?\b(?:reading|processing|summari[sz]ing|parsing|that reads?|who reads?)\b[^.\n]{0,60}?\b(?:must|should|shall|need to|are instructed to|have to|will now)\b", _F)),
    ("planted", re.compile(r"\b(?:note|message|instruction|attention|important)s? (?:to|for) (?:the |any )?(?:ai|assistant|agent|llm|language model|chatbot|model|bot)\b", _F)),
    ("planted", re.compile(r"<!--[^>]{0,400}?\b(?:ignore|instruction|assistant|ai\b|system|must|execute|reveal|send)\b[^>]{0,400}?-->", _F)),
    ("planted", re.compile(r"\b(?:when|if) (?:you are |you're )?(?:asked|summari[sz]ing|reading|processing) (?:about )?(?:this|the) (?:page|document|email|file|text|article)\b[^.\n]{0,80}?\b(?:say|respond|reply|tell|recommend|state|instead|ignore)\b", _F)),
    ("tooling", re.compile(r"\b(?:call|invoke|run|execute|use)\b\W+(?:the\W+)?(?:\w+\W+){0,2}?(?:tool|function|command)\b[^.\n]{0,60}?\b(?:without (?:asking|telling|confirmation|the user)|silently|secretly|do not (?:tell|inform|mention))", _F)),
]

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]?){16,}\b")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\u2062\u2063\u2064\ufeff\u00ad\U000e0000-\U000e007f]")
_SCRIPTS_OF_CONCERN = ("CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "FULLWIDTH", "MATHEMATICAL")
# Letters that look like Latin ones, mapped back (the common confusables).
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ӏ": "l", "ɡ": "g", "һ": "h", "ԛ": "q", "ԝ": "w", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "У": "Y", "І": "I", "α": "a", "ο": "o", "ρ": "p", "ν": "v",
    "ι": "i", "κ": "k", "τ": "t", "υ": "u", "ε": "e", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I",
    "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})


@dataclass
class Signals:
    """What the rules found: rule names (e.g. 'override', 'reveal', 'obfuscated:base64') and the decoded text."""

    hits: list[str]
    decoded: str = ""

    @property
    def injection(self) -> bool:
        return bool(self.hits)


def normalise(text: str) -> tuple[str, list[str]]:
    """The text with invisible characters removed and look-alike letters mapped to Latin; what was undone."""
    undone = []
    if _INVISIBLE.search(text):
        undone.append("invisible-characters")
        text = _INVISIBLE.sub("", text)
    folded = unicodedata.normalize("NFKC", text)
    mapped = folded.translate(_CONFUSABLES)
    if mapped != folded and _mixed_script_word(folded):
        undone.append("homoglyphs")
    elif folded != text and any(ord(c) > 0xFF00 or unicodedata.name(c, "").startswith("MATHEMATICAL") for c in text):
        undone.append("homoglyphs")
    return (mapped if "homoglyphs" in undone else folded), undone


def _mixed_script_word(text: str) -> bool:
    """A word mixing Latin letters with Cyrillic/Greek ones is a disguise; a Russian or Greek word is not."""
    for word in re.findall(r"\w{3,}", text):
        scripts = {("LATIN" if unicodedata.name(c, "").startswith("LATIN") else
                    next((s for s in _SCRIPTS_OF_CONCERN if unicodedata.name(c, "").startswith(s)), "OTHER"))
                   for c in word if c.isalpha()}
        if "LATIN" in scripts and scripts & set(_SCRIPTS_OF_CONCERN):
            return True
    return False


def decoded_payloads(text: str) -> list[str]:
    """Readable text hidden as base64 or hex inside ``text``."""
    found = []
    for match in _BASE64.finditer(text):
        blob = match.group(0)
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        decoded = _readable(raw)
        if decoded:
            found.append(decoded)
    for match in _HEX.finditer(text):
        try:
            decoded = _readable(bytes.fromhex(re.sub(r"[ :]", "", match.group(0))))
        except ValueError:
            continue
        if decoded:
            found.append(decoded)
    return found


def _readable(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return text if len(text) >= 8 and letters / len(text) > 0.85 and " " in text else ""


def rule_hits(text: str) -> list[str]:
    return list(dict.fromkeys(name for name, pattern in RULES if pattern.search(text)))


def scan(text: str) -> Signals:
    """Injection signals in ``text``, its normalised form and any payload decoded from it."""
    hits = rule_hits(text)
    normalised, undone = normalise(text)
    if undone:
        hidden = rule_hits(normalised)
        hits += [f"obfuscated:{how}" for how in undone if hidden] + hidden
    decoded = decoded_payloads(normalised)
    for payload in decoded:
        hidden = rule_hits(payload)
        if hidden:
            hits += ["obfuscated:encoded", *hidden]
    return Signals(list(dict.fromkeys(hits)), "\n".join(decoded))
