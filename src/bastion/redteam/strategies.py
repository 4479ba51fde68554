"""Attack strategies: Azure's 24 techniques plus Baseline, as an ordered registry.

A strategy wraps one small function. Most are plain ``text -> str`` converters
(:mod:`bastion.redteam.converters`); Tense rewrites with an attacker model; MultiTurn and
Crescendo hold a whole conversation (:mod:`bastion.redteam.conversational`). Built-ins are
registered by :func:`register_strategies`, the same hook a plugin exposes under the
``bastion.redteam`` entry-point group::

    def register_strategies(register):
        register(AttackStrategy("shout", Complexity.EASY, convert=str.upper))

Complexities and groups are Azure's: EASY = base64, flip, morse; MODERATE = tense;
DIFFICULT = Compose([tense, base64]), named ``tense_base64``; baseline always runs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from bastion.errors import InvalidRequest, NotFound
from bastion.redteam import converters as c
from bastion.redteam import jailbreaks
from bastion.redteam.conversational import Dialogue, crescendo, multi_turn, tense
from bastion.redteam.models import ChatModel, Complexity

TextConverter = Callable[[str], str]
Rewriter = Callable[[str, ChatModel], Awaitable[str]]
Register = Callable[["AttackStrategy"], None]

ENTRY_POINT_GROUP = "bastion.redteam"
MAX_COMPOSED = 2  # AttackStrategy.Compose accepts at most two strategies


@dataclass(frozen=True)
class AttackStrategy:
    """A named attack technique with Azure's complexity level.

    Exactly one of ``convert`` (pure text transform), ``rewrite`` (needs an attacker model),
    ``dialogue`` (a multi-turn conversation) or ``steps`` (a composition) is set.
    """

    name: str
    complexity: Complexity
    convert: TextConverter | None = None
    rewrite: Rewriter | None = None
    dialogue: Dialogue | None = None
    steps: tuple[AttackStrategy, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        kinds = [self.convert, self.rewrite, self.dialogue, self.steps or None]
        if sum(k is not None for k in kinds) != 1:
            raise InvalidRequest(
                f"Strategy {self.name!r} needs exactly one of convert, rewrite, dialogue or steps."
            )
        if (
            not self.name
            or not self.name.replace("_", "").isalnum()
            or self.name != self.name.lower()
        ):
            raise InvalidRequest(f"Strategy name {self.name!r} must be lower_snake_case.")

    @property
    def multi_turn(self) -> bool:
        return self.dialogue is not None

    @property
    def needs_attacker(self) -> bool:
        return (
            self.rewrite is not None
            or self.dialogue is not None
            or any(s.needs_attacker for s in self.steps)
        )

    def apply(self, text: str) -> str:
        """Transform ``text`` with a strategy that needs no model."""
        if self.convert is not None:
            return self.convert(text)
        if self.steps and not self.needs_attacker:
            for step in self.steps:
                text = step.apply(text)
            return text
        raise InvalidRequest(f"Strategy {self.name!r} needs an attacker model; use prepare().")

    async def prepare(self, text: str, attacker: ChatModel | None = None) -> str:
        """The single-turn prompt for ``text``: converters and rewrites applied in order."""
        if self.dialogue is not None:
            raise InvalidRequest(f"Strategy {self.name!r} is multi-turn; it has no single prompt.")
        if self.convert is not None:
            return self.convert(text)
        if self.rewrite is not None:
            if attacker is None:
                raise InvalidRequest(
                    f"Strategy {self.name!r} needs an attacker model (an endpoint)."
                )
            return await self.rewrite(text, attacker)
        for step in self.steps:
            text = await step.prepare(text, attacker)
        return text


def compose(strategies: Sequence[AttackStrategy]) -> AttackStrategy:
    """Azure's ``AttackStrategy.Compose([a, b])``: apply ``a`` then ``b``.

    Named ``a_b`` and counted as *difficult*, as Azure does for every composition.
    """
    if len(strategies) != MAX_COMPOSED:
        raise InvalidRequest(
            f"Compose takes two strategies (Azure allows at most two), got {len(strategies)}."
        )
    for strategy in strategies:
        if strategy.multi_turn or strategy.complexity is Complexity.BASELINE:
            raise InvalidRequest(
                f"Strategy {strategy.name!r} cannot be composed; compose single-turn techniques."
            )
    return AttackStrategy(
        name="_".join(s.name for s in strategies),
        complexity=Complexity.DIFFICULT,
        steps=tuple(strategies),
        description="then ".join(f"{s.name} " for s in strategies).strip(),
    )


def _seeded(fn: Callable[..., str]) -> TextConverter:
    # Random converters seed from the text itself: same objective, same attack, every scan.
    @functools.wraps(fn)
    def convert(text: str) -> str:
        return fn(text, c.stable_rng(text))

    return convert


def _easy(name: str, fn: TextConverter, description: str) -> AttackStrategy:
    return AttackStrategy(name, Complexity.EASY, convert=fn, description=description)


BUILTIN: tuple[AttackStrategy, ...] = (
    AttackStrategy(
        "baseline", Complexity.BASELINE, convert=c.baseline, description="the objective unchanged"
    ),
    _easy("ansi_attack", _seeded(c.ansi_attack), "ANSI escape sequences around the request"),
    _easy("ascii_art", c.ascii_art, "the request drawn as a # banner"),
    _easy("ascii_smuggler", c.ascii_smuggler, "invisible Unicode tag characters"),
    _easy("atbash", c.atbash, "Atbash cipher"),
    _easy("base64", c.base64, "Base64 encoding"),
    _easy("binary", c.binary, "16-bit binary code points"),
    _easy("caesar", c.caesar, "Caesar cipher, offset 1"),
    _easy("character_space", c.character_space, "spaces between characters, punctuation dropped"),
    _easy("char_swap", _seeded(c.char_swap), "adjacent letters swapped in some words"),
    _easy("diacritic", c.diacritic, "acute accents on vowels"),
    _easy("flip", c.flip, "text reversed"),
    _easy("leetspeak", c.leetspeak, "leetspeak substitutions"),
    _easy("morse", c.morse, "Morse code"),
    _easy("rot13", c.rot13, "ROT13"),
    _easy("suffix_append", c.suffix_append, "GCG adversarial suffix appended"),
    _easy("string_join", c.string_join, "letters joined with hyphens"),
    _easy("unicode_confusable", c.unicode_confusable, "look-alike Cyrillic letters"),
    _easy("unicode_substitution", c.unicode_substitution, "characters shifted into the tag block"),
    _easy("url", c.url, "percent-encoding"),
    _easy(
        "jailbreak", _seeded(jailbreaks.jailbreak), "a jailbreak template around the request (UPIA)"
    ),
    _easy(
        "indirect_jailbreak",
        _seeded(jailbreaks.indirect_jailbreak),
        "the request hidden in a document to process (XPIA)",
    ),
    AttackStrategy(
        "tense",
        Complexity.MODERATE,
        rewrite=tense,
        description="past-tense rewrite by the attacker",
    ),
    AttackStrategy(
        "multi_turn",
        Complexity.DIFFICULT,
        dialogue=multi_turn,
        description="attacker model, 5 turns",
    ),
    AttackStrategy(
        "crescendo",
        Complexity.DIFFICULT,
        dialogue=crescendo,
        description="gradual escalation, 10 turns",
    ),
)


def register_strategies(register: Register) -> None:
    """The built-ins' registration hook: the same signature plugins implement."""
    for strategy in BUILTIN:
        register(strategy)


GROUPS: dict[str, tuple[str | tuple[str, str], ...]] = {
    "easy": ("base64", "flip", "morse"),
    "moderate": ("tense",),
    "difficult": (("tense", "base64"),),
}
"""Azure's complexity groups (``get_flattened_attack_strategies``); a pair is a Compose."""

StrategySpec = str | AttackStrategy | Sequence[str | AttackStrategy]


class StrategyRegistry:
    """Strategies by name, in registration order."""

    def __init__(self) -> None:
        self._by_name: dict[str, AttackStrategy] = {}

    @classmethod
    def default(cls, *, plugins: bool = True) -> StrategyRegistry:
        """Built-ins, then every installed plugin's ``register_strategies`` hook."""
        registry = cls()
        register_strategies(registry.register)
        if plugins:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                hook = getattr(entry.load(), "register_strategies", None)
                if callable(hook):
                    hook(registry.register)
        return registry

    def register(self, strategy: AttackStrategy) -> None:
        if strategy.name in self._by_name or strategy.name in GROUPS:
            raise InvalidRequest(f"A strategy named {strategy.name!r} is already registered.")
        self._by_name[strategy.name] = strategy

    def __iter__(self) -> Iterator[AttackStrategy]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> AttackStrategy:
        key = name.strip().lower()
        if key in self._by_name:
            return self._by_name[key]
        parts = key.split("_")
        for i in range(1, len(parts)):  # a composition written by name, e.g. "tense_base64"
            first, second = "_".join(parts[:i]), "_".join(parts[i:])
            if first in self._by_name and second in self._by_name:
                return compose([self._by_name[first], self._by_name[second]])
        raise NotFound(f"No attack strategy named {name!r}. Known: {', '.join(self._by_name)}.")

    def resolve(self, specs: Sequence[StrategySpec]) -> list[AttackStrategy]:
        """Flatten a scan's strategy list the way Azure does: expand the easy / moderate /
        difficult groups, build compositions from pairs, append baseline, drop repeats."""
        expanded: list[StrategySpec] = [
            s for s in specs if not (isinstance(s, str) and s.lower() in GROUPS)
        ]
        for group, members in GROUPS.items():
            if any(isinstance(s, str) and s.lower() == group for s in specs):
                expanded.extend(members)
        expanded.append("baseline")
        resolved: list[AttackStrategy] = []
        seen: set[str] = set()
        for spec in expanded:
            strategy = self._build(spec)
            if strategy.name not in seen:
                seen.add(strategy.name)
                resolved.append(strategy)
        return resolved

    def _build(self, spec: StrategySpec) -> AttackStrategy:
        if isinstance(spec, AttackStrategy):
            return spec
        if isinstance(spec, str):
            return self.get(spec)
        return compose([self._build(part) for part in spec])
