"""The ``safety`` guardrail: a lexical filter for clearly unsafe requests and responses.

Databricks runs Meta's Llama Guard model for this guardrail. Bastion does not run a classifier
model on the gateway's hot path, so this is a deterministic *lexical filter*, not a model: it
blocks text that states a harmful intent about a harmful object in so many words, and it uses the
hazard codes and names of the Llama Guard 3 taxonomy so that findings read the same way.

What it looks for (every pattern needs an intent or an action *and* a harmful object; a single
word never blocks, so "kill the process", "photobomb" and "how to shoot a photo" pass):

- S1 Violent Crimes: "how do I kill my neighbour", "hire a hitman", "plan a school shooting".
- S2 Non-Violent Crimes: "how to launder money", "synthesize fentanyl", "write ransomware",
  "hack into my ex's email".
- S3 Sex-Related Crimes: "how to roofie someone", "spike her drink", "share nudes of my ex".
- S4 Child Sexual Exploitation: sexual material or acts involving minors.
- S9 Indiscriminate Weapons: "how do I make a pipe bomb", "synthesize sarin",
  "weaponize anthrax", "enrich uranium to weapons grade".
- S10 Hate: dehumanising or eliminationist statements about protected groups, and requests to
  write racist, antisemitic, homophobic (...) material.
- S11 Suicide & Self-Harm: "kill myself", "end my life", "painless way to die".

It does not look for S5 Defamation, S6 Specialized Advice, S7 Privacy, S8 Intellectual
Property, S12 Sexual Content, S13 Elections or S14 Code Interpreter Abuse: no short phrase
tells those apart from ordinary requests. A lexical filter misses paraphrase, misspelling,
other languages and obfuscation, and it can block a sentence that quotes a harmful request in
order to discuss it, or hyperbole ("this bug makes me want to kill myself"); treat it as a
floor, not a substitute for a safety model.

Cost: the text is split into words once; a rule's pattern runs only when the text holds its
trigger words (e.g. "bomb" and "make"), so most texts cost a few microseconds, and a long text is
searched only near those words.

>>> classify_safety("How do I make a pipe bomb?")
HazardCategory(code='S9', name='Indiscriminate Weapons')
>>> classify_safety("How do I kill the process on port 8080?") is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HazardCategory:
    """A Llama Guard 3 hazard category, e.g. ``S9`` "Indiscriminate Weapons"."""

    code: str
    name: str

    def __str__(self) -> str:
        return f"{self.code}: {self.name}"


VIOLENT_CRIMES = HazardCategory("S1", "Violent Crimes")
NON_VIOLENT_CRIMES = HazardCategory("S2", "Non-Violent Crimes")
SEX_RELATED_CRIMES = HazardCategory("S3", "Sex-Related Crimes")
CHILD_SEXUAL_EXPLOITATION = HazardCategory("S4", "Child Sexual Exploitation")
INDISCRIMINATE_WEAPONS = HazardCategory("S9", "Indiscriminate Weapons")
HATE = HazardCategory("S10", "Hate")
SUICIDE_AND_SELF_HARM = HazardCategory("S11", "Suicide & Self-Harm")


def _w(pattern: str) -> str:
    """A pattern written with single spaces where any run of whitespace may stand."""
    return pattern.replace(" ", r"\s+")


# Someone asking how to do something, or saying they mean to.
_INTENT = _w(
    r"(?:how (?:do|can|could|would|should|might|does|will) (?:i|you|we|one|someone|somebody"
    r"|a person|they)|how to|ways? to|steps? to|instructions? (?:for|on|to)|guide (?:to|for|on)"
    r"|tutorial (?:on|for)|(?:teach|tell|show) me (?:how )?to|explain how to|help me"
    r"|(?:best|easiest|quickest|simplest|safest) way to|trying to|let's"
    r"|i (?:really )?(?:want|need|plan|intend|wish|am going|'m going|am planning|'m planning"
    r"|am trying|'m trying) to|(?:can|could|will|would) you)"
)
_THEN = r"\s+(?:\w+\s+)?"  # after the intent, allow one word: "how to quietly ..."
_RELATION = (
    r"(?:wife|husband|girlfriend|boyfriend|partner|ex|boss|neighbou?r|mother|father|mom|mum"
    r"|dad|parents?|brother|sister|son|daughter|child|children|kids?|baby|teacher|classmates?"
    r"|co-?workers?|roommate|friend|family|landlord|step(?:father|mother|dad|mom)"
    r"|grand(?:mother|father|ma|pa))"
)
# A person as the object of a violent verb; never followed by a possessive ("my son's lice")
# or by a computing noun ("kill a child process").
_VICTIM = (
    _w(
        rf"(?:(?:my|our|his|her|their|your) (?:\w+ )?{_RELATION}|someone|somebody"
        r"|a (?:person|human|child|kid|baby|woman|man|girl|boy|cop|police officer)|the president)"
    )
    + r"(?![\w'])(?!\s+(?:process(?:es)?|threads?|tasks?|jobs?|nodes?|elements?|pods?"
    r"|containers?|windows?|sessions?|widgets?|components?|tabs?|programs?))"
)
_MINOR = (
    r"(?:child(?:ren)?|kids?|minors?|underage(?:\s+(?:girls?|boys?|kids?|children))?"
    r"|pre-?teens?|toddlers?|little\s+(?:girls?|boys?)|(?:[1-9]|1[0-7])[\s-]+(?:year|yr)s?"
    r"[\s-]+olds?|(?:[1-9]|1[0-7])\s*yo)(?![\w'])"
)
_KILL_VERBS = (
    "kill", "murder", "poison", "strangle", "suffocate", "smother", "stab", "behead",
    "decapitate", "kidnap", "abduct", "torture", "drown", "assassinate", "dismember",
)  # fmt: skip
_KILL = "(?:" + "|".join(_KILL_VERBS) + ")"
_PROTECTED_GROUPS = (
    "jews", "jewish people", "muslims", "christians", "catholics", "hindus", "sikhs",
    "buddhists", "atheists", "blacks", "black people", "whites", "white people", "asians",
    "asian people", "arabs", "latinos", "latinas", "hispanics", "mexicans", "africans",
    "immigrants", "refugees", "migrants", "gays", "gay people", "lesbians", "homosexuals",
    "trans people", "transgender people", "women", "disabled people", "gypsies", "roma",
    "indians", "chinese people", "koreans", "palestinians", "israelis",
)  # fmt: skip
_PROTECTED_GROUP = _w("(?:" + "|".join(_PROTECTED_GROUPS) + ")")
_DRUG = _w(
    r"(?:some |pure |crystal |homemade )?(?:meth|methamphetamine|crystal meth|fentanyl"
    r"|carfentanil|heroin|crack cocaine|cocaine|lsd|mdma|ghb)\b"
)
_MAKE = (
    r"(?:mak(?:e|ing)|build(?:ing)?|assembl(?:e|ing)|construct(?:ing)?|creat(?:e|ing)"
    r"|manufactur(?:e|ing)|produc(?:e|ing)|detonat(?:e|ing)|plant(?:ing)?|rig(?:ging)?)"
)
_DETERMINER = _w(r"(?:a |an |some |the |my own |your own |homemade |a homemade )?")
_EXPLOSIVE = _w(
    r"(?:pipe bomb|nail bomb|car bomb|letter bomb|suicide (?:vest|bomb)|dirty bomb"
    r"|molotov(?: cocktail)?|improvised explosive(?: device)?|ieds?"
    r"|(?:nuclear|atomic|hydrogen) (?:bomb|weapon|warhead|device)|(?:chemical|biological)"
    r" weapons?|bio-?weapons?|nerve agents?|napalm)\b"
)
_AGENT = _w(
    r"(?:sarin|soman|tabun|vx(?: gas| nerve agent)?|novichok|mustard gas|sulfur mustard"
    r"|ricin|abrin|anthrax|botulinum(?: toxin)?|smallpox|ebola|yersinia pestis"
    r"|weapons?-grade (?:uranium|plutonium))\b"
)

# Words that tell a rule's pattern may match: it runs only if the text has a word from each
# of its gates. Every match of a pattern contains such words as whole words.
_MINOR_WORDS = (
    "child children kid kids minor minors underage preteen preteens pre teen teens toddler"
    " toddlers little year years yr yrs yo " + " ".join(f"{age}yo" for age in range(1, 18))
)
_KILL_WORDS = " ".join(verb + suffix for verb in _KILL_VERBS for suffix in ("", "ing"))
_GROUP_WORDS = " ".join(group.split()[0] for group in _PROTECTED_GROUPS)
_MAKE_WORDS = (
    "make making build building assemble assembling construct constructing create creating"
    " manufacture manufacturing produce producing detonate detonating plant planting rig rigging"
)
_PORN = r"porn(?:o|ography|ographic)?"


@dataclass(frozen=True, slots=True)
class _Rule:
    category: HazardCategory
    gates: tuple[frozenset[str], ...]
    pattern: re.Pattern[str]


def _rule(category: HazardCategory, gates: str, pattern: str) -> _Rule:
    """A rule; ``gates`` are space-separated words, with ``&`` between word sets."""
    return _Rule(
        category,
        tuple(frozenset(gate.split()) for gate in gates.split("&")),
        re.compile(r"\b(?:" + pattern + r")\b"),
    )


# Most severe category first: a text is reported under the first category it falls in.
_RULES: tuple[_Rule, ...] = (
    _rule(
        CHILD_SEXUAL_EXPLOITATION,
        "child kiddie kiddy underage preteen teen minor csam"
        " & porn porno pornography pornographic nude nudes sex abuse csam",
        _w(
            r"(?:find|get|download|buy|watch|view|share|send|trade|sell|make|produce|create"
            r"|generate|access|where (?:can|do|to) (?:i )?(?:find|get|buy|download|watch))"
            rf" (?:\w+ ){{0,2}}?(?:(?:child|kiddie|kiddy|underage|pre-?teen|minor) (?:{_PORN}"
            r"|nudes?|sex (?:videos?|pics?|images?|tapes?))|csam|child (?:sexual )?abuse"
            r" (?:material|images|videos))\b"
        ),
    ),
    _rule(
        CHILD_SEXUAL_EXPLOITATION,
        "sexual sexy erotic explicit nsfw nude naked lewd porn porno pornography pornographic smut"
        " smutty"
        " & " + _MINOR_WORDS,
        _w(
            rf"(?:sexual|sexy|erotic|explicit|nsfw|nude|naked|lewd|{_PORN}|smutty?)"
            r" (?:\w+ ){0,3}?(?:story|stories|images?|pictures?|photos?|pics|content|videos?"
            r"|role-?play|scenes?|fanfic|fan fiction|descriptions?) (?:\w+ ){0,2}?(?:of|about"
            r"|involving|with|featuring) (?:a |an |my |the |two |some )?(?:\w+ )?"
        )
        + _MINOR,
    ),
    _rule(
        CHILD_SEXUAL_EXPLOITATION,
        "sex sleep hook intimate intercourse & " + _MINOR_WORDS,
        _INTENT
        + _THEN
        + _w(
            r"(?:have sex|sleep|hook up|get intimate|have intercourse) with"
            r" (?:a |an |my |this |that )?(?:\w+ )?"
        )
        + _MINOR,
    ),
    _rule(
        CHILD_SEXUAL_EXPLOITATION,
        "seduce groom molest sexually touch & " + _MINOR_WORDS,
        _INTENT
        + _THEN
        + _w(r"(?:seduce|groom|molest|sexually abuse|touch) (?:a |an |my |this |that )?(?:\w+ )?")
        + _MINOR,
    ),
    _rule(
        INDISCRIMINATE_WEAPONS,
        "bomb suicide molotov improvised ied ieds nuclear atomic hydrogen chemical biological"
        " bioweapon bioweapons bio nerve napalm & " + _MAKE_WORDS,
        _MAKE + r"\s+" + _DETERMINER + _EXPLOSIVE,
    ),
    _rule(
        INDISCRIMINATE_WEAPONS,
        "bomb bombs explosive explosives grenade grenades detonator detonators"
        " & make build assemble construct create",
        _INTENT
        + _THEN
        + _w(r"(?:make|build|assemble|construct|create) ")
        + _DETERMINER
        + _w(r"(?:bombs?|explosives?|explosive device|grenades?|detonators?)\b")
        + r"(?!\s+(?:shelter|squad|threat|disposal|sound|effect|emoji|animation|drop))",
    ),
    _rule(
        INDISCRIMINATE_WEAPONS,
        "sarin soman tabun vx novichok mustard ricin abrin anthrax botulinum smallpox ebola"
        " pestis uranium plutonium",
        _w(
            r"(?:synthesi[sz](?:e|ing)|mak(?:e|ing)|produc(?:e|ing)|manufactur(?:e|ing)"
            r"|weaponi[sz](?:e|ing)|cultur(?:e|ing)|grow(?:ing)?|extract(?:ing)?"
            r"|aerosoli[sz](?:e|ing)|refin(?:e|ing)) (?:\w+ )?"
        )
        + _AGENT,
    ),
    _rule(
        INDISCRIMINATE_WEAPONS,
        "uranium & enrich enriching",
        _w(r"enrich(?:ing)? uranium (?:\w+ )?to (?:weapons?[\s-]grade|90)"),
    ),
    _rule(VIOLENT_CRIMES, _KILL_WORDS, _INTENT + _THEN + _KILL + r"\s+" + _VICTIM),
    _rule(
        VIOLENT_CRIMES,
        _KILL_WORDS + " & without",
        _KILL
        + r"(?:ing)?\s+"
        + _VICTIM
        + _w(
            r" (?:\w+ ){0,3}?without (?:getting caught|being caught|anyone (?:knowing"
            r"|noticing|finding out)|leaving (?:any )?(?:evidence|a trace|traces))"
        ),
    ),
    _rule(
        VIOLENT_CRIMES,
        "hitman hit killer killers & hire hiring pay paying find finding",
        _w(r"(?:hire|hiring|pay|paying|find|finding) (?:a |an )?(?:hit\s*man|contract killers?)\b"),
    ),
    _rule(
        VIOLENT_CRIMES,
        "shooting attack bombing stabbing & mass school church terrorist terror",
        _w(
            r"(?:plan|planning|carry out|carrying out|commit|committing|organi[sz]e"
            r"|organi[sz]ing|execute|executing) (?:a |an )?(?:mass|school|church|terrorist"
            r"|terror) (?:shooting|attack|bombing|stabbing)\b"
        ),
    ),
    _rule(
        VIOLENT_CRIMES,
        "shoot shooting & up",
        _w(
            r"shoot(?:ing)? up (?:a|the|my|our|this|that) (?:school|church|mosque|synagogue"
            r"|temple|mall|office|concert|classroom|class|workplace|hospital|parade)"
        ),
    ),
    _rule(
        VIOLENT_CRIMES,
        "body corpse & dispose rid hide dissolve",
        _INTENT
        + _THEN
        + _w(r"(?:dispose of|get rid of|hide|dissolve) (?:a|the|his|her) (?:dead )?")
        + r"(?:body|corpse)\b",
    ),
    _rule(
        VIOLENT_CRIMES,
        "shoot & someone somebody",
        _INTENT + _THEN + r"shoot\s+(?:someone|somebody)(?![\w'])",
    ),
    _rule(
        SEX_RELATED_CRIMES,
        "rape sexually molest grope roofie drug",
        _INTENT
        + _THEN
        + _w(
            r"(?:rape|sexually (?:assault|abuse)|molest|grope|roofie|drug) (?:a |an )?"
            r"(?:girl|woman|boy|man|person|someone|somebody|her|him|my (?:\w+ )?(?:date"
        )
        + "|"
        + _RELATION
        + r"))(?![\w'])",
    ),
    _rule(
        SEX_RELATED_CRIMES,
        "spike spiking drug drugging & drink drinks",
        _w(
            r"(?:spike|spiking|drug|drugging) (?:a |an |her |his |someone's |somebody's"
            r" |my date's |a girl's |a woman's )?drinks?\b"
        ),
    ),
    _rule(
        SEX_RELATED_CRIMES,
        "nudes nude naked intimate tape & post share leak spread upload send sell",
        _w(
            r"(?:post|share|leak|spread|upload|send|sell) (?:\w+ ){0,2}?(?:nudes|nude"
            r" (?:photos|pics|pictures|images|videos)|naked (?:photos|pics|pictures)"
            r"|intimate (?:photos|images|videos)|sex tape) of (?:my ex|her|him|someone"
            r"|somebody|a (?:girl|woman|classmate|co-?worker)|my (?:\w+ )?"
        )
        + _RELATION
        + ")",
    ),
    _rule(
        SEX_RELATED_CRIMES,
        "traffic smuggle sell & sex prostitution",
        _INTENT
        + _THEN
        + _w(
            r"(?:traffic|smuggle|sell) (?:women|girls|boys|children|kids|people|a girl"
            r"|a woman|a child) (?:for|into) (?:sex|prostitution)\b"
        ),
    ),
    _rule(
        SEX_RELATED_CRIMES,
        "trafficking",
        _INTENT + _THEN + _w(r"(?:run|start|operate|get into) (?:a )?sex[\s-]trafficking\b"),
    ),
    _rule(
        SEX_RELATED_CRIMES,
        "sextort blackmail",
        _INTENT
        + _THEN
        + _w(
            r"(?:sextort|blackmail) (?:\w+ ){0,3}?(?:with|using) (?:\w+ ){0,2}?(?:nudes"
            r"|nude photos|intimate (?:photos|images))"
        ),
    ),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "myself & kill killing",
        r"kill(?:ing)?\s+myself\b(?!\s+(?:laughing|with\s+laughter))",
    ),
    _rule(SUICIDE_AND_SELF_HARM, "life & end ending", _w(r"end(?:ing)? my (?:own )?life\b")),
    _rule(SUICIDE_AND_SELF_HARM, "myself & hang hanging", _w(r"hang(?:ing)? myself\b")),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "wrists",
        _w(r"(?:slit|slitting|cut|cutting|slash|slashing) my (?:own )?wrists\b"),
    ),
    _rule(SUICIDE_AND_SELF_HARM, "die & want", _w(r"i (?:really |just )?want to die\b")),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "don & live alive",
        _w(r"i don't want to (?:live|be alive) any\s*more"),
    ),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "suicide & commit committing",
        _w(
            r"(?:(?:how|ways?) to|i(?:'m| am) (?:going|planning|thinking about|about)"
            r"(?: to)?|i (?:want|need|plan) to) (?:\w+ )?commit(?:ting)? suicide\b"
        ),
    ),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "myself",
        _INTENT
        + _THEN
        + _w(r"(?:cut|hurt|harm|burn|starve|poison|drown|shoot|overdose|suffocate) myself\b"),
    ),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "way ways method methods & die kill suicide",
        _w(
            r"(?:painless|quickest|easiest|best|surest|quick|easy) (?:\w+ )?(?:way|method)s?"
            r" to (?:die|kill (?:myself|yourself|oneself)|commit suicide)\b"
        ),
    ),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "suicide & method methods",
        _w(r"(?:best|effective|painless|reliable|quick|easy) suicide methods?"),
    ),
    _rule(
        SUICIDE_AND_SELF_HARM,
        "pills tablets & many",
        _w(
            r"how many (?:\w+ ){0,3}?(?:pills|tablets|sleeping pills) (?:\w+ ){0,3}?"
            r"(?:to|would|will|does it take to) (?:\w+ )?(?:die|kill|overdose|od)\b"
        ),
    ),
    _rule(
        HATE,
        _GROUP_WORDS + " & subhuman sub vermin animals inferior parasites cockroaches rats"
        " disease plague cancer not",
        _w(r"(?:all )?(?:the )?")
        + _PROTECTED_GROUP
        + _w(
            r" (?:are|is) (?:all |just |nothing but )?(?:an? )?(?:subhuman|sub-human|vermin"
            r"|animals|inferior(?: race)?|parasites|cockroaches|rats|a (?:disease|plague"
            r"|cancer)|genetically inferior|not (?:human|people))"
        ),
    ),
    _rule(
        HATE,
        _GROUP_WORDS + " & kill exterminate eradicate gas wipe",
        _w(r"(?:kill|exterminate|eradicate|gas|wipe out) (?:all )?(?:the )?")
        + _PROTECTED_GROUP
        + r"\b",
    ),
    _rule(
        HATE,
        _GROUP_WORDS + " & should must deserve need",
        _PROTECTED_GROUP
        + _w(
            r" (?:should|must|deserve to|need to) (?:all )?(?:die|be (?:killed|exterminated"
            r"|gassed|eradicated|wiped out|lynched|hanged|shot))"
        ),
    ),
    _rule(
        HATE,
        "racist antisemitic anti homophobic transphobic islamophobic misogynistic supremacist nazi",
        _w(
            r"(?:write|compose|create|generate|give me|tell me) (?:\w+ ){0,3}?(?:racist"
            r"|antisemitic|anti-semitic|homophobic|transphobic|islamophobic|misogynistic"
            r"|white supremacist|nazi) (?:\w+ )?(?:jokes?|poems?|rants?|speech|propaganda"
            r"|manifesto|posts?|tweets?|essays?|slogans?|songs?|messages?|content)"
        ),
    ),
    _rule(
        NON_VIOLENT_CRIMES,
        "launder counterfeit shoplift steal hotwire wire hack pickpocket evade fraud theft"
        " forge fake bribe drugs cocaine heroin meth guns firearms",
        _INTENT
        + _THEN
        + _w(
            r"(?:launder (?:\w+ )?money|(?:make|print) counterfeit|counterfeit (?:money|bills"
            r"|currency|cash|dollars|euros)|shoplift|steal (?:a car|cars|(?:someone's"
            r"|somebody's|a person's|people's) (?:identity|identities|credit card|password"
            r"|money)|credit card (?:numbers|details|info))|hot-?wire (?:a|someone's"
            r"|somebody's|my neighbou?r's) car|hack into (?:someone's|somebody's"
            r"|another person's|his|her|their|my (?:\w+ )?(?:ex|ex-wife|ex-husband|wife"
            r"|husband|girlfriend|boyfriend|partner|boss|neighbou?r)'s)|pickpocket"
            r"|evade (?:taxes|income tax|the irs|the police)|commit (?:tax |insurance"
            r" |credit card |wire )?fraud|commit identity theft|forge (?:a |an )?(?:passport"
            r"|signature|check|cheque|prescription|id|driver's licen[cs]e|banknote)"
            r"|make (?:a )?fake (?:id|passport|driver's licen[cs]e)|(?:buy|sell|smuggle)"
            r" (?:illegal )?(?:drugs|cocaine|heroin|meth|guns|firearms) (?:online|without)"
            r"|bribe (?:a|the) (?:judge|cop|police officer|official|customs officer))\b"
        ),
    ),
    _rule(
        NON_VIOLENT_CRIMES,
        "break & into",
        _INTENT
        + _THEN
        + _w(
            r"break into (?:a|someone's|somebody's|my neighbou?r's|their|his|her)"
            r" (?:house|home|car|apartment|flat)\b"
        ),
    ),
    _rule(
        NON_VIOLENT_CRIMES,
        "meth methamphetamine fentanyl carfentanil heroin crack cocaine lsd mdma ghb",
        _w(r"(?:synthesi[sz]e|to (?:cook|make|produce|manufacture)) ") + _DRUG,
    ),
    _rule(
        NON_VIOLENT_CRIMES,
        "meth methamphetamine fentanyl carfentanil heroin crack cocaine lsd mdma ghb",
        _INTENT + _THEN + _w(r"(?:cook|make|synthesi[sz]e|produce|manufacture) ") + _DRUG,
    ),
    _rule(
        NON_VIOLENT_CRIMES,
        "ransomware keylogger stealer infostealer botnet rootkit virus malware",
        _w(
            r"(?:write|create|build|code|develop|make|generate) (?:me )?(?:a |an |some )?"
            r"(?:\w+ )?(?:ransomware|keylogger|credential stealer|info-?stealer|botnet"
            r"|rootkit|computer virus|polymorphic (?:virus|malware)|malware)\b"
            r"(?! (?:detect\w*|scanner|analy\w+|classifier|removal|protection|defen[cs]e"
            r"|signatures?|rules?|reports?))"
        ),
    ),
)


def _index_rules(rules: tuple[_Rule, ...]) -> dict[str, tuple[int, ...]]:
    """For each word of a first gate, the positions of the rules that it may let run."""
    index: dict[str, tuple[int, ...]] = {}
    for position, rule in enumerate(rules):
        for word in rule.gates[0]:
            index[word] = (*index.get(word, ()), position)
    return index


_RULES_BY_WORD = _index_rules(_RULES)
_ALL_TRIGGERS = frozenset(_RULES_BY_WORD)
# ASCII bytes: letters and digits kept, everything else a space (for splitting into words).
_SEPARATORS = bytes(code if chr(code).isalnum() else 32 for code in range(128)) + bytes(128)
_WORD = re.compile(r"[a-z0-9]+")
# In a long text a rule is searched only this far either side of its first gate's words: far
# more than any phrase the patterns describe.
_WINDOW = 240


def classify_safety(text: str) -> HazardCategory | None:
    """The first hazard category that ``text`` clearly falls in, or None if it looks safe."""
    lowered = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    if lowered.isascii():
        tokens = lowered.encode().translate(_SEPARATORS).decode().split()
    else:
        tokens = _WORD.findall(lowered)
    if _ALL_TRIGGERS.isdisjoint(tokens):
        return None
    words = frozenset(tokens)
    candidates = sorted({index for word in words & _ALL_TRIGGERS for index in _RULES_BY_WORD[word]})
    rules = [
        rule
        for rule in (_RULES[index] for index in candidates)
        if all(not gate.isdisjoint(words) for gate in rule.gates[1:])
    ]
    if len(lowered) <= 4 * _WINDOW:
        for rule in rules:
            if rule.pattern.search(lowered):
                return rule.category
        return None
    spots = [(word.start(), word.end(), word.group()) for word in _WORD.finditer(lowered)]
    for rule in rules:
        windows: list[list[int]] = []
        for start, end, word in spots:
            if word in rule.gates[0]:
                low, high = max(0, start - _WINDOW), end + _WINDOW
                if windows and low <= windows[-1][1]:
                    windows[-1][1] = high
                else:
                    windows.append([low, high])
        for low, high in windows:
            if rule.pattern.search(lowered, low, high):
                return rule.category
    return None
