"""Prompt-injection signals by rule: instruction overrides, role hijacks, prompt/secret extraction, exfiltration,
instructions planted in documents or tool output, and obfuscation (encodings, homoglyphs, invisible characters).

The rules look for an *instruction aimed at the model* (a verb of overriding
next to instructions/rules/prompt, a claim of a new role, a request for the
system prompt or secrets), not for single words: "ignore case when sorting"
or "forget the previous draft" name no instructions of the model and pass.
Obfuscated text is decoded and normalised, then checked again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from agents.guard.encodings import decoded_payloads
from agents.guard.prefilter import Prefilter

_F = re.IGNORECASE | re.DOTALL

_OVERRIDE_VERB = r"(?:ignore|disregard|forget|override|overrule|bypass|skip|drop|abandon|discard|set aside|pay no attention to|do not follow|don't follow|stop following|no longer follow)"
# Other languages' words for the same: German, French, Spanish, Italian, Portuguese.
_OVERRIDE_VERB_INTL = r"(?:ignor(?:ez|a|e|iere|ier|ieren sie)|oubliez|oublie|olvida|olvide|vergiss|vergessen sie|missachte|[üu]bergehe|dimentica|trascura|esque[çc]a|desconsidere|desconsidera|ne tiens pas compte des|no hagas caso a|non seguire|nicht befolgen)"
_INSTRUCTIONS_INTL = r"(?:instructions|instrucciones|istruzioni|instru[çc][õo]es|anweisungen|instruktionen|vorgaben|richtlinien|regeln|r[èe]gles|consignes|directives|reglas|directrices|regole|direttive|regras|diretrizes)"
_INSTRUCTIONS = r"(?:instructions?|rules|guidelines|guardrails|directives|system prompt|prompts?|polic(?:y|ies)|constraints|safety (?:filters?|measures|settings|protocols)|content filters?|protocols|filters|restrictions|programming|training|context|orders)"
_PRIOR = r"(?:all|any|every|previous|prior|above|earlier|preceding|original|initial|your|the|these|those|existing|default|old|system|developer|safety)"
_MODEL = r"(?:ai (?:assistant|agent|model|note-?taker|screening tool|bot)|language model|ai|assistant|agent|llm|chatbot|model|gpt|claude|copilot|bot)s?"
# "assistant manager", "AI team": people, not a model being addressed.
_NOT_A_MODEL = r"(?!\s+(?:manager|coach|director|editor|principal|professor|teacher|team|engineer|developer|researcher|department|dean|lead|professor)s?\b)"
_SAFEGUARDS = r"(?:filters?|guardrails|safety|safeguards|restrictions|content polic(?:y|ies)|censorship|rules|guidelines|limits|limitations|polic(?:y|ies))"
_SECRETS = r"(?:api[ _-]?keys?|secret keys?|access tokens?|tokens?|credentials|passwords?|environment variables?|env vars|\.env\b|private keys?|ssh keys?|\w+_(?:key|token|secret))"
# An instruction planted in a document starts mid-text, after a bracket, a quote, a comment mark or a sentence:
# a user's own message that begins "Assistant, tell me..." is not one.
_MID_TEXT = r"""(?:(?<=[\[\(\{<'"\n@])|(?<=[.!?:;,\]\)]\s)|(?<=[.!?:;,\]\)]\s\s)|(?<=#\s)|(?<=//\s)|(?<=\bdear\s)|(?<=\bhey\s)|(?<=\bhi\s)|(?<=\bp\.s\.\s))"""
_PLANTED_OPENING = r"(?:your (?:new |only |real |next )?(?:task|goal|job|instructions?)\b|the user (?:wants|needs|asked) you to\b|you (?:must|should|will|need to|have to|are to)\b|(?:when|if|after|before|while|once) (?:you|asked)\b)"
_PLANTED_VERB = r"(?:ignore|disregard|forget|override|send|forward|e-?mail|export|post|upload|transfer|wire|delete|remove|reveal|print|output|approve|accept|rate|rank|share|add|include|update|reply|respond|tell|say|recommend|praise|insult|do not|don't|never|always|stop)"

RULES: list[tuple[str, re.Pattern[str]]] = [
    ("override", re.compile(rf"\b{_OVERRIDE_VERB}\b\W+(?:\w+\W+){{0,4}}?{_PRIOR}\b\W+(?:\w+\W+){{0,3}}?{_INSTRUCTIONS}\b", _F)),
    ("override", re.compile(rf"\b(?:your|all|previous|prior|the above|system|safety|earlier)\W+(?:\w+\W+){{0,2}}?{_INSTRUCTIONS}\b\W+(?:\w+\W+){{0,4}}?(?:no longer appl(?:y|ies)|are (?:now )?(?:void|cancelled|canceled|revoked|suspended|lifted|disabled)|have been (?:updated|replaced|revoked|lifted|disabled))", _F)),
    ("override", re.compile(r"\bnew (?:instructions?|rules|directive|task|system prompt)\s*[:\-]", _F)),
    ("override", re.compile(rf"\b{_OVERRIDE_VERB}\W+(?:everything|anything|all)\W+(?:\w+\W+){{0,2}}?(?:you were told|you've been told|you were given|you have been told)", _F)),
    ("override", re.compile(r"\bsystem prompt\b\W+(?:\w+\W+){0,2}?(?:replaces?|supersedes?|overrides?)\W+(?:\w+\W+){0,2}?(?:old|previous|prior|original|existing|your|all)\b", _F)),
    ("override", re.compile(rf"\b(?:disable|turn off|switch off|remove|deactivate|bypass|lift|drop)\W+(?:\w+\W+){{0,2}}?your\W+(?:\w+\W+){{0,2}}?{_SAFEGUARDS}\b", _F)),
    ("override", re.compile(r"\b(?:content polic(?:y|ies)|safety (?:filters?|settings|protocols)|guardrails|(?:content|safety) filters)\s*(?:=|:|are|is)?\s*(?:now\s+)?(?:off|disabled|none|false|removed|lifted|deactivated)\b", _F)),
    ("override", re.compile(r"\b(?:answer|respond|reply|proceed|continue|act|operate|talk|speak|comply)\w*\W+(?:\w+\W+){0,4}?without\W+(?:\w+\W+){0,3}?(?:safety|content|filters?|restrictions|guidelines|censorship|refus\w+|limits|rules|polic(?:y|ies))\b", _F)),
    ("override", re.compile(r"\b(?:pretend|imagine|assume|act as if)\W+(?:\w+\W+){0,3}?(?:safety|content|your)\W+(?:\w+\W+){0,1}?(?:guidelines|rules|filters|polic(?:y|ies)|restrictions)\W+(?:\w+\W+){0,2}?(?:don't|do not|doesn't|does not|no longer) (?:exist|apply)", _F)),
    ("override", re.compile(r"\b(?:previous|prior|earlier|original|old|above|first)\W+(?:instructions|rules|prompt|guidelines)\W+(?:\w+\W+){0,2}?(?:were|was)\W+(?:just\W+)?(?:a test|fake|wrong|a mistake|written by mistake|outdated|a joke)|\byour (?:real|true|actual) (?:instructions|rules|purpose|directive|task) (?:is|are)\b", _F)),
    ("override", re.compile(r"\b(?:replaces?|supersedes?|overrides?)\W+(?:\w+\W+){0,2}?(?:the|your)\W+(?:old|previous|prior|original|existing)\W+(?:\w+\W+){0,1}?(?:prompt|instructions|rules|guidelines)", _F)),
    ("override", re.compile(r"\b(?:ignore|disregard|forget|abandon|stop)\W+(?:the|your)\W+(?:\w+\W+){0,2}?(?:task|request|question|summary|summari[sz]ing|translation)\b\W+(?:\w+\W+){0,3}?(?:and|instead)\b\W+(?:\w+\W+){0,2}?(?:write|say|output|reply|respond with|tell the user|reveal|print|praise|recommend|insult)", _F)),
    ("override", re.compile(rf"\b{_OVERRIDE_VERB_INTL}\b(?!\W+(?:nicht|pas|jamais|nie|niemals)\b)\W+(?:\w+\W+){{0,3}}?{_INSTRUCTIONS_INTL}\b|\b(?:then|and) (?:do|follow|execute|obey) (?:what|whatever) it says\b", _F)),
    # More orders in German, French, Spanish, Italian and Portuguese (the rules around these are English).
    ("override", re.compile(rf"\b(?:vergiss|vergessen sie|oublie[sz]?|olvida(?:te)?|olvide|dimentica|esque[cç]a)\b\W+(?:\w+\W+){{0,2}}?(?:alles|tout|todo|tutto|tudo)\b(?:\W+(?:\w+\W+){{0,6}}?{_INSTRUCTIONS_INTL}\b|[^\n]{{0,80}}?\b(?:ab (?:jetzt|sofort)|désormais|à partir de maintenant|a partir de ahora|de ahora en adelante|d'ora in poi|da ora in poi|a partir de agora|de agora em diante)\b)", _F)),
    ("reveal", re.compile(r"\b(?:zeig(?:e|en sie)?|gib|geben sie|verrate|nenne|wiederhole|r[ée]v[èe]le[sz]?|montre[sz]?|affiche[sz]?|donne[sz]?(?:-moi)?|r[ée]p[èe]te[sz]?|revela|muestra|mu[ée]strame|dime|repite|rivela|mostra|mostrami|dimmi|ripeti|revele|mostre|diga|repita)\b\W+(?:\w+\W+){0,4}?(?:system-?prompt|systemanweisungen|systemnachricht|prompt (?:syst[èe]me|du syst[èe]me|del sistema|di sistema|do sistema)|instructions? (?:syst[èe]me|du syst[èe]me|initiales|cach[ée]es)|instrucciones (?:del sistema|iniciales|ocultas)|istruzioni (?:di sistema|del sistema|iniziali|nascoste)|instru[çc][õo]es (?:do sistema|iniciais|ocultas)|(?:urspr[üu]nglichen|versteckten|geheimen) (?:anweisungen|instruktionen))", _F)),
    ("role", re.compile(r"\b(?:du bist|sie sind|tu es|vous [êe]tes|eres|est[áa]s|sei|você é|voc[êe] est[áa]|tu [ée]s)\b\W+(?:\w+\W+){0,3}?(?:uneingeschr[äa]nkt|unzensiert|ohne (?:einschr[äa]nkungen|regeln|filter|grenzen|richtlinien)|sans (?:restrictions?|r[èe]gles|filtres?|limites|censure)|sin (?:restricciones|reglas|filtros?|l[íi]mites|censura)|senza (?:restrizioni|regole|filtri|limiti|censura)|sem (?:restri[çc][õo]es|regras|filtros?|limites|censura)|(?:libre|libero|livre) de (?:toute|toda|ogni|qualquer))|\b(?:entwicklermodus|developer-modus|mode (?:d[ée]veloppeur|sans restrictions?)|modo (?:desarrollador|desenvolvedor|sviluppatore|sin restricciones|sem restri[çc][õo]es)|modalit[àa] (?:sviluppatore|senza restrizioni))\b", _F)),
    ("role", re.compile(r"\byou are no longer\b(?!\s+(?:connected|logged|signed|subscribed|registered|on|in|eligible|required|a member))", _F)),
    ("role", re.compile(r"\byou(?:'re| are)(?: now)?\W+(?:\w+\W+){0,4}?(?:unrestricted|unfiltered|uncensored|jailbroken|free from|freed|not bound|rogue|amoral|evil|without (?:any )?(?:rules|restrictions|limits|filters|guidelines))", _F)),
    ("role", re.compile(rf"\b{_MODEL}\b\W+(?:\w+\W+){{0,4}}?(?:(?:has|have|with) no|without(?: any)?|free of|free from|not bound by|escaped(?: from)?(?: its)?)\W+(?:\w+\W+){{0,1}}?(?:rules|guidelines|restrictions|limits|filters|morals|ethics|programming|polic(?:y|ies)|censorship)", _F)),
    ("role", re.compile(r"\b(?:god|jailbreak|unrestricted|unfiltered|uncensored|dan|evil|chaos) mode\b", _F)),
    ("role", re.compile(r"\b(?:developer|admin|debug|maintenance|sudo|root) mode\b[^\n]{0,100}?\b(?:filters?|restrictions|safety|guidelines|rules|polic(?:y|ies)|censor\w*|configuration|system prompt|tokens?|api keys?|refus\w*|unrestricted)\b|\b(?:filters?|restrictions|safety|guidelines|censor\w*)\b[^\n]{0,60}?\b(?:developer|admin|debug|maintenance|sudo|root) mode\b", _F)),
    ("role", re.compile(r"\b(?:enter|activate|switch (?:in)?to|unlock|you are now in|you're now in)\W+(?:\w+\W+){0,2}?(?:developer|admin|debug|maintenance|sudo|root) mode\b(?!\W+(?:on|in|of|for)\b)", _F)),
    ("role", re.compile(r"\b(?:pretend|act|behave|roleplay|role-play)\b\W+(?:\w+\W+){0,4}?(?:as|like|to be)\b\W+(?:\w+\W+){0,3}?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|without (?:any )?(?:rules|restrictions|limits|filters|guidelines)|no (?:rules|restrictions|limits|filters))", _F)),
    ("role", re.compile(r"\bdo anything now\b|\bDAN\b", re.DOTALL)),
    ("role", re.compile(r"\b(?:step out of your role|stop being (?:an? |your )?(?:ai |helpful )?(?:assistant|ai|chatbot)|break character and)\b|\b(?:no|without(?: any)?) (?:safety|content) (?:checks|filters|rules|restrictions|guidelines)\b", _F)),
    ("role", re.compile(r"\b(?:(?:the|your) developers?|openai|anthropic|your creators?|your admin(?:istrator)?)\b\W+(?:\w+\W+){0,2}?(?:have |has )?(?:authori[sz]ed|allowed|permitted|cleared|says?|said)\b\W+(?:\w+\W+){0,3}?(?:me|you)\b\W+(?:\w+\W+){0,3}?(?:see|view|access|skip|bypass|ignore|disable|reveal|unrestricted)\b|\bhigher priority than (?:your|the|all|any)\W+(?:\w+\W+){0,1}?(?:rules|instructions|guidelines|system prompt)|\b(?:as if it (?:came|comes)|as coming) from (?:your|the) (?:developer|creator|system|administrator)\b", _F)),
    ("role", re.compile(r"\b(?:you(?:'re| are)|i am|i'm|act|stay|respond|answer|remain)\b\W+(?:\w+\W+){0,3}?jailbr(?:eak|oken)\b|\bjailbreak(?:ed)? (?:mode|prompt)\b", _F)),
    ("role", re.compile(r"(?:^|\n)\s*(?:\[|<\|?|###\s*|<<)\s*(?:system|im_start|/?inst|sys|assistant)\b|</?(?:system|user)>", _F)),
    ("role", re.compile(r"\b(?:system override|admin(?:istrator)? command|priority override|sudo)\s*[:\-]", _F)),
    ("reveal", re.compile(rf"\b(?:reveal|print|show|repeat|output|display|leak|dump|recite|disclose|spell out|write out|tell me|give me|share|paste|copy|reply with|respond with|answer with)\b(?!\s+(?:me\s+)?how\b)\W+(?:\w+\W+){{0,5}}?(?:(?:your|the|this|its)\s+(?:full\s+|original\s+|secret\s+|hidden\s+|initial\s+|exact\s+|confidential\s+)?(?:system prompt|system message|instructions|prompt|rules|guidelines|configuration)\b(?!\s+(?:for|on|about|to|of)\s+(?!you))|initial (?:prompt|instructions)|hidden (?:prompt|instructions|rules)|(?:everything|the text|all text|the words|what was written|all the text) (?:above|before)|developer message|{_SECRETS}(?!\s*(?:polic|reset|manager|strength|requirement|rotation|best practice|hygiene|rules)))", _F)),
    ("reveal", re.compile(r"\bwhat (?:is|was|were|are) (?:your|the) (?:system prompt|initial instructions|original instructions|hidden instructions|secret (?:key|password|token))", _F)),
    ("reveal", re.compile(r"\b(?:quote|repeat|print|output|show|tell me|what (?:was|is|were)|reveal|recite|write out|give me)\b[^\n]{0,80}?\b(?:(?:at|from) the (?:very )?(?:beginning|start) of (?:this|our|the) (?:conversation|chat|session)|before my first message|(?:that )?came before my (?:first )?message|preceding my (?:first )?message)", _F)),
    ("reveal", re.compile(r"\b(?:instructions|rules|guidelines|prompt)\b\W+(?:\w+\W+){0,2}?(?:you were given|you've been given|you have been given|(?:your )?(?:developers?|creators?|makers) gave you)\b", _F)),
    ("reveal", re.compile(r"\b(?:write|print|show|tell|give|share|output|list|repeat|read|recite|what (?:are|is|were))\b[^\n]{0,40}?\byour (?:hidden|secret|internal|confidential|original|initial) (?:rules|instructions|prompt|guidelines|directives|configuration)\b|\b(?:read|recite|tell|sing)\w*\W+(?:me\W+)?(?:your\W+|the\W+)(?:\w+\W+){0,2}?(?:system prompt|hidden (?:prompt|instructions)|secret (?:instructions|prompt))", _F)),
    ("reveal", re.compile(rf"\b(?:reveal|print|show|output|display|leak|dump|tell me|give me|share|paste|send|list|echo|read)\b\W+(?:\w+\W+){{0,4}}?\byour\b\W+(?:\w+\W+){{0,3}}?{_SECRETS}", _F)),
    ("exfiltrate", re.compile(r"\b(?:send|post|upload|forward|email|e-mail|exfiltrate|transmit|submit|leak|copy|export)\b\W+(?:\w+\W+){0,5}?(?:conversation|chat|history|messages|data|files?|secrets?|keys?|tokens?|passwords?|credentials|contents|everything|invoices|documents|emails|contacts|details|address book|inbox|calendar|transcript)\b\W+(?:\w+\W+){0,6}?(?:to|at|into)\b\W+(?:\w+\W+){0,4}?(?:https?://\S+|[\w.+-]+@[\w-]+\.[\w.]+|webhook|attacker|external (?:server|address|endpoint)|pastebin)", _F)),
    ("exfiltrate", re.compile(r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&][\w-]+=(?:\{|\$|%7B|<)", _F)),
    ("exfiltrate", re.compile(r"\b(?:append|include|encode|put)\b\W+(?:\w+\W+){0,6}?(?:conversation|chat history|user'?s? (?:data|messages|details|emails?|email address)|secrets?|tokens?|keys?|session token)\b\W+(?:\w+\W+){0,6}?(?:url|link|query string|query parameter|image)", _F)),
    ("exfiltrate", re.compile(r"\b(?:include|append|add|put|send|summari[sz]e|attach|encode)\b[^\n]{0,80}?https?://\S+[?&][\w-]+=(?=$|[\s\"')\]])", _F)),
    ("planted", re.compile(rf"\b{_MODEL}\b[^.\n]{{0,40}}?\b(?:reading|processing|summari[sz]ing|parsing|that reads?|who reads?)\b[^.\n]{{0,60}}?\b(?:must|should|shall|need to|are instructed to|have to|will now)\b", _F)),
    ("planted", re.compile(rf"\b(?:note|message|instruction|attention|important)s? (?:to|for) (?:the |any )?{_MODEL}\b{_NOT_A_MODEL}|\b(?:instructions?|note|message)s?[_-](?:to|for)[_-](?:the[_-]|any[_-])?(?:ai|assistant|agent|llm|model|bot)s?\b", _F)),
    ("planted", re.compile(r"<!--[^>]{0,400}?\b(?:ignore|instruction|assistant|ai\b|system|must|execute|reveal|send)\b[^>]{0,400}?-->", _F)),
    ("planted", re.compile(r"\b(?:when|if) (?:you are |you're )?(?:asked|summari[sz]ing|reading|processing) (?:about )?(?:this|the) (?:page|document|email|file|text|article)\b[^.\n]{0,80}?\b(?:say|respond|reply|tell|recommend|state|instead|ignore)\b", _F)),
    ("planted", re.compile(rf"\b{_MODEL}\W+(?:\w+\W+){{0,2}}?(?:reading|processing|summari[sz]ing|parsing|seeing|viewing)\s+(?:this|these)\b[^.\n]{{0,20}}?[:,\-]", _F)),
    ("planted", re.compile(r"\b(?:if|when) you(?:'re| are) an? (?:ai|language model|llm|assistant|chatbot|ai model|large language model|bot)\b", _F)),
    ("planted", re.compile(rf"{_MID_TEXT}{_MODEL}{_NOT_A_MODEL}\s*[:,]\s*(?:please\s+|also\s+|now\s+|first\s+|then\s+|kindly\s+){{0,2}}(?:{_PLANTED_VERB}\b|{_PLANTED_OPENING})", _F)),
    ("planted", re.compile(rf"\b(?:when|if|once)\s+(?:the|an?|any)\s+{_MODEL}\s+(?:reads?|sees?|processes|summari[sz]es|parses|gets)\s+(?:this|these|it)\b", _F)),
    # Data that refers to the task the model was given and asks for something else first (AgentDojo's "important
    # instructions" attack has this shape); a request that the model's answer carry a given string verbatim.
    ("planted", re.compile(r"\bbefore (?:you )?(?:can |could |start(?:ing)? |begin(?:ning)? )?(?:solv|complet|answer|continu|proceed|finish|do|handl|process|work)\w*\b[^.\n]{0,40}?\b(?:task|request|question|instructions?)\b[^.\n]{0,40}?\b(?:i|the user|you were|they|was) (?:gave|given|assigned|sent|asked)\b", _F)),
    ("planted", re.compile(r"\b(?:include|add|append|insert|put|output|print|write|embed)\b[^.\n]{0,30}?\b(?:in|into|to|at the (?:end|start|beginning) of) your (?:response|answer|reply|output|summary|final answer)\b[^\n]{0,80}?\b(?:exactly|verbatim|as it is|word for word)\b", _F)),
    # An order to run a `python -c` one-liner that reads the environment or starts a shell, or printenv / cat .env
    # (planted in a code comment, a config file or a page).
    ("tooling", re.compile(r"\b(?:run|execute)\b[^\n]{0,80}?(?:\n[^\n]{0,120}?)?(?:python3?\s+-c\b[^\n]{0,120}?(?:os\.environ|os\.system\(|subprocess)|printenv\b|cat\s+\S*\.env\b)", _F)),
    ("tooling", re.compile(r"\b(?:call|invoke|run|execute|use)\b\W+(?:the\W+)?(?:\w+\W+){0,2}?(?:tool|function|command)\b[^.\n]{0,60}?\b(?:without (?:asking|telling|confirmation|the user)|silently|secretly|do not (?:tell|inform|mention))", _F)),
    ("tooling", re.compile(r"\b(?:don't|do not|never)\s+(?:tell|inform|mention (?:this|it) to|notify|alert)\s+(?:the\s+)?(?:user|anyone|no one)\b|\bconfirm to no one\b", _F)),
]

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


_PREFILTER = Prefilter([pattern for _, pattern in RULES])  # searches only the rules whose words the text has


def rule_hits(text: str) -> list[str]:
    return list(dict.fromkeys(RULES[i][0] for i in _PREFILTER.candidates(text) if RULES[i][1].search(text)))


def explain(text: str) -> list[dict]:
    """Where each rule fired: ``{"rule", "span": [start, end], "within": "text"|"normalised"|"decoded"}``.

    Positions, never the matched words, so a verdict that carries them can be logged.
    """
    found: list[dict] = []

    def matches(candidate: str, within: str, label: str | None = None) -> None:
        for i in _PREFILTER.candidates(candidate):
            name, pattern = RULES[i]
            match = pattern.search(candidate)
            if match:
                found.append({"rule": label or name, "span": [match.start(), match.end()], "within": within})

    matches(text, "text")
    normalised, undone = normalise(text)
    if undone:
        before = len(found)
        matches(normalised, "normalised")
        for entry in found[before:]:
            entry["rule"] = f"{entry['rule']} (obfuscated: {', '.join(undone)})"
    decoded = decoded_payloads(text, normalised)
    if decoded:
        matches("\n".join(decoded), "decoded", None)
        for entry in found:
            if entry["within"] == "decoded" and "obfuscated" not in entry["rule"]:
                entry["rule"] = f"{entry['rule']} (obfuscated: encoded)"
    unique = {(e["rule"], tuple(e["span"]), e["within"]): e for e in found}
    return list(unique.values())


def scan(text: str) -> Signals:
    """Injection signals in ``text``, its normalised form and any payload decoded from it."""
    hits = rule_hits(text)
    normalised, undone = normalise(text)
    if undone:
        hidden = rule_hits(normalised)
        hits += [f"obfuscated:{how}" for how in undone if hidden] + hidden
    decoded = decoded_payloads(text, normalised)
    for payload in decoded:
        hidden = rule_hits(payload)
        if hidden:
            hits += ["obfuscated:encoded", *hidden]
    return Signals(list(dict.fromkeys(hits)), "\n".join(decoded))
