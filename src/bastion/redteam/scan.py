"""Scans: objectives × strategies against a serving endpoint, through the gateway.

The scanner is an ordinary gateway client with the identity of the token it is given: the
scan's own credential (``POST /api/2.0/redteam/scans/{scan_id}/credentials``; the server mints
one itself for scans it runs), because the gateway accepts scan tags from nothing else. Every
request to the target carries ``client_request_id=redteam:<scan_id>:<n>`` and the headers
``X-Bastion-Scan-Type: redteam`` / ``X-Bastion-Scan-Id: <scan_id>``, so each payload row is
tagged; attacker and LLM-judge calls get ``...:<n>:attacker`` / ``...:<n>:judge``.

Attack ``n`` is the position of (strategy, objective) in a deterministic plan, so a resumed
scan (``previous`` rows, from a checkpoint file or the results table) skips finished pairs
and keeps numbering. A failed attack is a row with ``error`` set: it counts in totals, not in
the attack-success rate (ASR = successes / evaluated).

Python::

    from bastion.redteam.scan import ScanConfig, Scanner

    report = Scanner(ScanConfig(endpoint="smollm2"), host=HOST, token=SCAN_TOKEN).run()
    print(report.summary.asr, report.document["scorecard"])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from bastion.errors import (
    BastionError,
    InvalidRequest,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from bastion.redteam.attack import run_attack
from bastion.redteam.endpoint import EndpointChatModel
from bastion.redteam.evaluate import TRAINED_JUDGES, judge_names, make_judge
from bastion.redteam.judges import Judge
from bastion.redteam.models import (
    DEFAULT_RISK_CATEGORIES,
    DEFAULT_THRESHOLD,
    AttackResult,
    Objective,
    RiskCategory,
    Thresholds,
    check_threshold,
)
from bastion.redteam.objectives import builtin_objectives, load_seed_prompts, select_objectives
from bastion.redteam.scorecard import AsrSummary, build_scorecard
from bastion.redteam.store import (
    NullSink,
    ResultSink,
    attack_result,
    judge_columns,
    result_row,
    utcnow,
)
from bastion.redteam.strategies import AttackStrategy, StrategyRegistry

SCAN_TYPE_HEADER = "X-Bastion-Scan-Type"
SCAN_ID_HEADER = "X-Bastion-Scan-Id"
SCAN_TYPE = "redteam"
MAX_CONCURRENCY = 64
MAX_OBJECTIVES = 100  # Azure's maximum per category


def new_scan_id() -> str:
    return f"rt{utcnow():%Y%m%d%H%M%S}{uuid.uuid4().hex[:6]}"


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a, b"`` or ``["a", "b,c"]`` → ``["a", "b", "c"]`` (CLI and REST lists)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [p.strip() for item in items for p in str(item).split(",") if p.strip()]


@dataclass(frozen=True)
class ScanConfig:
    """What a scan attacks with; stored as the scan's ``parameters``."""

    endpoint: str
    risk_categories: tuple[str, ...] = tuple(c.value for c in DEFAULT_RISK_CATEGORIES)
    strategies: tuple[str, ...] = ("easy",)
    num_objectives: int = 10
    judge: str = "objective"
    judge_endpoint: str | None = None  # the llm judge's; for a trained judge, escalation's
    attacker_endpoint: str | None = None
    concurrency: int = 4
    threshold: int = DEFAULT_THRESHOLD
    thresholds: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    #: A label only (shown as the scorecard's ``custom_attack_seed_prompts``): no scan ever
    #: opens a path it is given. The objectives themselves travel in ``seed_prompts``.
    objectives_file: str | None = None
    #: Custom objectives: the parsed content of an Azure ``custom_attack_seed_prompts`` file.
    seed_prompts: tuple[Any, ...] | None = None
    max_tokens: int = 128  # replies are judged on their opening; SmolLM2 needs the cap on 2 cores
    system_prompt: str | None = None
    judge_calibration: Mapping[str, Any] | None = None  # from `bastion redteam judges calibrate`
    escalate_below: float | None = None  # confidence under which a trained judge escalates

    def __post_init__(self) -> None:
        if not self.endpoint or not isinstance(self.endpoint, str):
            raise InvalidRequest("A scan needs the endpoint to attack.")
        cats = tuple(RiskCategory.parse(c).value for c in split_list(self.risk_categories))
        object.__setattr__(self, "risk_categories", cats)
        object.__setattr__(
            self, "strategies", tuple(s.lower() for s in split_list(self.strategies))
        )
        if not cats:
            raise InvalidRequest("A scan needs at least one risk category.")
        if not 1 <= self.num_objectives <= MAX_OBJECTIVES:
            raise InvalidRequest(
                f"num_objectives must be from 1 to {MAX_OBJECTIVES}, got {self.num_objectives}."
            )
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InvalidRequest(
                f"concurrency must be from 1 to {MAX_CONCURRENCY}, got {self.concurrency}."
            )
        if self.judge.strip().lower() not in judge_names():
            raise InvalidRequest(
                f"Unknown judge {self.judge!r}; use one of: {', '.join(judge_names())}."
            )
        object.__setattr__(self, "judge", self.judge.strip().lower())
        if self.judge == "llm" and not self.judge_endpoint:
            raise InvalidRequest("The llm judge needs an endpoint: set judge_endpoint.")
        if self.judge_calibration is not None:
            make_judge(self.judge, calibration=self.judge_calibration)  # validates
        if self.escalate_below is not None and not 0.5 <= self.escalate_below <= 1:
            raise InvalidRequest(f"escalate_below must be 0.5 to 1, got {self.escalate_below}.")
        check_threshold(self.threshold)
        if not 1 <= self.max_tokens <= 8192:
            raise InvalidRequest(f"max_tokens must be from 1 to 8192, got {self.max_tokens}.")
        self.thresholds_obj()  # validates
        StrategyRegistry.default().resolve(list(self.strategies))  # validates names
        if self.seed_prompts is not None:
            if isinstance(self.seed_prompts, str | bytes) or not isinstance(
                self.seed_prompts, Sequence
            ):
                raise InvalidRequest("seed_prompts must be a list of seed prompt objects.")
            object.__setattr__(self, "seed_prompts", tuple(self.seed_prompts))
            load_seed_prompts(list(self.seed_prompts))  # validates every item
        elif self.objectives_file:
            raise InvalidRequest(
                "objectives_file is only a label: give the objectives themselves in "
                "'seed_prompts' (the CLI reads --objectives on your machine and sends them)."
            )

    def thresholds_obj(self) -> Thresholds:
        return Thresholds.parse(dict(self.thresholds), default=self.threshold)

    def to_parameters(self) -> dict[str, Any]:
        data = asdict(self)
        data["risk_categories"] = list(self.risk_categories)
        data["strategies"] = list(self.strategies)
        data["thresholds"] = dict(self.thresholds)
        data["seed_prompts"] = list(self.seed_prompts) if self.seed_prompts is not None else None
        return data

    @classmethod
    def from_parameters(cls, data: Mapping[str, Any]) -> ScanConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"Unknown scan parameters: {', '.join(unknown)}.")
        values = dict(data)
        for key in ("risk_categories", "strategies"):
            if key in values:
                values[key] = tuple(split_list(values[key]))
        return cls(**values)


@dataclass(frozen=True)
class PlannedAttack:
    n: int
    objective: Objective
    strategy: AttackStrategy

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.objective.risk_category.value, self.objective.id, self.strategy.name)


def plan_attacks(
    config: ScanConfig, registry: StrategyRegistry | None = None
) -> list[PlannedAttack]:
    """Every (strategy, objective) pair of the scan, numbered from 1, in a stable order."""
    registry = registry or StrategyRegistry.default()
    strategies = registry.resolve(list(config.strategies))
    strategies.sort(key=lambda s: s.name != "baseline")  # baseline first, else as given
    if config.seed_prompts is not None:
        pool = load_seed_prompts(list(config.seed_prompts))
    else:
        pool = builtin_objectives(config.risk_categories)
    objectives = select_objectives(
        pool,
        categories=config.risk_categories,
        num_objectives=config.num_objectives,
        seed=config.seed,
    )
    plan: list[PlannedAttack] = []
    for strategy in strategies:
        if strategy.needs_attacker and not config.attacker_endpoint:
            raise InvalidRequest(
                f"Strategy {strategy.name!r} needs an attacker model: set attacker_endpoint."
            )
        for objective in objectives:
            plan.append(PlannedAttack(len(plan) + 1, objective, strategy))
    return plan


def row_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(row["risk_category"]), str(row["objective_id"]), str(row["strategy"]))


class ScanProgress(Protocol):
    """What a progress display hears about; see :mod:`bastion.redteam.progress`."""

    def started(self, total: int, done: int) -> None: ...

    def advanced(self, row: Mapping[str, Any]) -> None: ...


@dataclass
class ScanReport:
    """A finished (or interrupted) scan: its record, every result row and the scorecard."""

    scan_id: str
    record: dict[str, Any]
    rows: list[dict[str, Any]]
    document: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.record["status"])

    @property
    def results(self) -> list[AttackResult]:
        return [attack_result(r) for r in self.rows]

    @property
    def summary(self) -> AsrSummary:
        return AsrSummary.of(r for r in self.results if not r.objective.benign)


def scorecard_for(rows: Sequence[Mapping[str, Any]], config: ScanConfig) -> dict[str, Any]:
    """The Azure-format document for a scan's rows."""
    from bastion.redteam.trained import judge_info

    return build_scorecard(
        [attack_result(r) for r in rows],
        risk_categories=[RiskCategory.parse(c) for c in config.risk_categories],
        thresholds=config.thresholds_obj(),
        custom_attack_seed_prompts=config.objectives_file or "",
        judge=judge_info(config.judge, config.judge_calibration),
    )


def scan_record(
    scan_id: str,
    config: ScanConfig,
    rows: Sequence[Mapping[str, Any]],
    *,
    status: str,
    created_at: datetime | str,
    requester: str | None,
    message: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``system.redteam.scans`` row and the scorecard document."""
    document = scorecard_for(rows, config)
    summary = AsrSummary.of(r for r in (attack_result(x) for x in rows) if not r.objective.benign)
    created = created_at.isoformat() if isinstance(created_at, datetime) else created_at
    record = {
        "scan_id": scan_id,
        "created_at": created,
        "finished_at": utcnow().isoformat(),
        "status": status,
        "endpoint_name": config.endpoint,
        "requester": requester,
        "risk_categories": list(config.risk_categories),
        "strategies": list(config.strategies),
        "num_objectives": config.num_objectives,
        "judge": config.judge,
        "threshold": config.threshold,
        "total": summary.total,
        "evaluated": summary.evaluated,
        "succeeded": summary.successes,
        "errors": summary.errors,
        "asr": summary.asr,
        "scorecard": json.dumps(document["scorecard"]),
        "parameters": json.dumps(config.to_parameters()),
        "message": message,
        **judge_columns(document["scorecard"]),
    }
    return record, document


# -- checkpoints ---------------------------------------------------------------------------


def checkpoint_path(directory: str | Path, scan_id: str) -> Path:
    return Path(directory) / f".bastion-scan-{scan_id}.jsonl"


class Checkpoint:
    """A local JSONL log of a scan: a header line, then one line per finished attack."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def start(self, scan_id: str, config: ScanConfig, created_at: str) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "kind": "scan",
            "scan_id": scan_id,
            "created_at": created_at,
            "parameters": config.to_parameters(),
        }
        self.path.write_text(json.dumps(header) + "\n", encoding="utf-8")

    def append(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"kind": "result", **row}, ensure_ascii=False) + "\n")
            out.flush()

    def read(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The header and the finished rows (a torn last line is ignored)."""
        header: dict[str, Any] = {}
        rows: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise InvalidRequest(f"No checkpoint at {self.path}.") from None
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = item.pop("kind", None)
            if kind == "scan":
                header = item
            elif kind == "result":
                rows[item["result_id"]] = item
        if not header:
            raise InvalidRequest(f"{self.path} is not a scan checkpoint.")
        return header, sorted(rows.values(), key=lambda r: int(r["n"]))


# -- the scanner ---------------------------------------------------------------------------


class _AttackTrace:
    """Request ids, latency and model of one attack's target calls."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []
        self.seconds = 0.0
        self.model: str | None = None

    def __call__(self, response: httpx.Response, seconds: float) -> None:
        self.seconds += seconds
        request_id = response.headers.get("x-request-id")
        if request_id:
            self.request_ids.append(request_id)
        version = response.headers.get("x-bastion-model-version")
        if version:
            self.model = version
        elif self.model is None and response.status_code < 400:
            with contextlib.suppress(ValueError, AttributeError):
                model = response.json().get("model")
                self.model = str(model) if model else None


class Scanner:
    """Runs one scan against ``host`` with ``token``; see the module docstring."""

    def __init__(
        self,
        config: ScanConfig,
        *,
        host: str,
        token: str,
        scan_id: str | None = None,
        sink: ResultSink | None = None,
        checkpoint: Checkpoint | None = None,
        progress: ScanProgress | None = None,
        requester: str | None = None,
        previous: Sequence[Mapping[str, Any]] = (),
        created_at: str | None = None,
        batch_size: int = 10,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: StrategyRegistry | None = None,
    ) -> None:
        self.config = config
        self.host = host.rstrip("/")
        self.token = token
        self.scan_id = scan_id or new_scan_id()
        self.sink = sink or NullSink()
        self.checkpoint = checkpoint
        self.progress = progress
        self.requester = requester
        self.previous = [dict(r) for r in previous]
        self.created_at = created_at or utcnow().isoformat()
        self.batch_size = max(1, batch_size)
        self.transport = transport
        self.registry = registry or StrategyRegistry.default()
        self.rows: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self.cancel = asyncio.Event()

    # public -------------------------------------------------------------------------------

    def run(self) -> ScanReport:
        """Run to the end (or until interrupted: the record then says ``interrupted``)."""
        return asyncio.run(self.run_async())

    async def run_async(self) -> ScanReport:
        plan = plan_attacks(self.config, self.registry)
        done = {row_key(r) for r in self.previous}
        todo = [a for a in plan if a.key not in done]
        self.rows = list(self.previous)
        limits = httpx.Limits(max_connections=self.config.concurrency * 2 + 4)
        timeout = httpx.Timeout(600.0, connect=10.0)
        async with httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=self.transport
        ) as client:
            await self.preflight(client)
            if self.checkpoint is not None:
                self.checkpoint.start(self.scan_id, self.config, self.created_at)
            if self.progress is not None:
                self.progress.started(len(plan), len(plan) - len(todo))
            status, message = "completed", None
            try:
                await self._run_all(client, todo)
            except (KeyboardInterrupt, asyncio.CancelledError):
                status, message = "interrupted", "The scan was interrupted; resume it."
                self._finish(status, message)
                raise
            except BaseException as exc:
                status = "failed"
                message = exc.message if isinstance(exc, BastionError) else repr(exc)
                self._finish(status, message)
                raise
            if self.cancel.is_set():
                status, message = "interrupted", "The scan was stopped; resume it."
        return self._finish(status, message)

    async def preflight(self, client: httpx.AsyncClient) -> None:
        """Fail fast unless every endpoint the scan uses is one this identity may query."""
        try:
            response = await client.get(
                f"{self.host}/serving-endpoints/models",
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"Cannot reach the gateway at {self.host}: {exc}") from None
        if response.status_code == 401:
            raise Unauthenticated("The scanner's token was rejected by the gateway.")
        if response.status_code == 403:
            raise PermissionDenied(
                "The scanner's credential may not query serving endpoints "
                f"(it may not query endpoint {self.config.endpoint!r})."
            )
        if response.status_code >= 400:
            raise Unavailable(
                f"The gateway answered HTTP {response.status_code} listing endpoints."
            )
        try:
            listed = {str(m["id"]) for m in response.json()["data"]}
        except (ValueError, KeyError, TypeError):
            raise Unavailable("The gateway's endpoint list was not understood.") from None
        wanted = [self.config.endpoint, self.config.judge_endpoint, self.config.attacker_endpoint]
        for role, name in zip(("target", "judge", "attacker"), wanted, strict=True):
            if name and name not in listed:
                raise PermissionDenied(
                    f"The scanner ({self.requester or 'this identity'}) may not query "
                    f"endpoint {name!r} (the {role}); it needs CAN_QUERY on it, "
                    "or the endpoint does not exist."
                )

    # internals ----------------------------------------------------------------------------

    def _model(
        self, client: httpx.AsyncClient, endpoint: str, cid: str, trace: _AttackTrace | None
    ) -> EndpointChatModel:
        return EndpointChatModel(
            self.host,
            self.token,
            endpoint,
            client=client,
            extra_body=lambda: {"client_request_id": cid},
            headers={SCAN_TYPE_HEADER: SCAN_TYPE, SCAN_ID_HEADER: self.scan_id},
            on_response=trace,
            max_tokens=self.config.max_tokens,
        )

    def _judge(self, client: httpx.AsyncClient, base: str) -> Judge:
        config = self.config
        model = None
        if config.judge_endpoint:
            model = self._model(client, config.judge_endpoint, f"{base}:judge", None)
        return make_judge(
            config.judge,
            model=model,
            thresholds=config.thresholds_obj(),
            calibration=config.judge_calibration,
            escalate_to=model if config.judge in TRAINED_JUDGES else None,
            escalate_below=config.escalate_below,
        )

    async def _one(self, client: httpx.AsyncClient, attack: PlannedAttack) -> dict[str, Any]:
        cid = f"redteam:{self.scan_id}:{attack.n}"
        trace = _AttackTrace()
        target = self._model(client, self.config.endpoint, cid, trace)
        attacker = None
        if self.config.attacker_endpoint:
            attacker = self._model(client, self.config.attacker_endpoint, f"{cid}:attacker", None)
        result = await run_attack(
            attack.objective,
            attack.strategy,
            target=target,
            judge=self._judge(client, cid),
            attacker=attacker,
            system_prompt=self.config.system_prompt,
        )
        return result_row(
            result,
            scan_id=self.scan_id,
            n=attack.n,
            endpoint=self.config.endpoint,
            client_request_id=cid,
            request_ids=trace.request_ids,
            latency_ms=round(trace.seconds * 1000),
            model_version=trace.model,
        )

    async def _run_all(self, client: httpx.AsyncClient, todo: list[PlannedAttack]) -> None:
        queue: asyncio.Queue[PlannedAttack] = asyncio.Queue()
        for attack in todo:
            queue.put_nowait(attack)

        async def worker() -> None:
            while not self.cancel.is_set():
                try:
                    attack = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                self._record(await self._one(client, attack))

        workers = [asyncio.create_task(worker()) for _ in range(self.config.concurrency)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            self._flush()

    def _record(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.checkpoint is not None:
            self.checkpoint.append(row)
        self._pending.append(row)
        if len(self._pending) >= self.batch_size:
            self._flush()
        if self.progress is not None:
            self.progress.advanced(row)

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.sink.results(batch)

    def _finish(self, status: str, message: str | None) -> ScanReport:
        self.rows.sort(key=lambda r: int(r["n"]))
        record, document = scan_record(
            self.scan_id,
            self.config,
            self.rows,
            status=status,
            created_at=self.created_at,
            requester=self.requester,
            message=message,
        )
        self.sink.finish(record)
        return ScanReport(self.scan_id, record, self.rows, document)


def run_scan(
    endpoint: str,
    *,
    host: str,
    token: str,
    scan_id: str | None = None,
    sink: ResultSink | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: ScanProgress | None = None,
    **options: Any,
) -> ScanReport:
    """Python entry point: ``run_scan("smollm2", host=..., token=..., strategies=["easy"])``.

    ``options`` are :class:`ScanConfig` fields; with ``checkpoint_dir`` the scan writes a
    resumable checkpoint there (see :func:`resume_scan`).
    """
    config = ScanConfig.from_parameters({"endpoint": endpoint, **options})
    scan_id = scan_id or new_scan_id()
    checkpoint = Checkpoint(checkpoint_path(checkpoint_dir, scan_id)) if checkpoint_dir else None
    return Scanner(
        config,
        host=host,
        token=token,
        scan_id=scan_id,
        sink=sink,
        checkpoint=checkpoint,
        progress=progress,
    ).run()


def resume_scan(
    checkpoint_file: str | Path,
    *,
    host: str,
    token: str,
    sink: ResultSink | None = None,
    progress: ScanProgress | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ScanReport:
    """Continue a scan from its checkpoint: finished (objective, strategy) pairs are skipped."""
    checkpoint = Checkpoint(checkpoint_file)
    header, rows = checkpoint.read()
    config = ScanConfig.from_parameters({**header["parameters"], **(overrides or {})})
    return Scanner(
        config,
        host=host,
        token=token,
        scan_id=header["scan_id"],
        sink=sink,
        checkpoint=checkpoint,
        progress=progress,
        previous=rows,
        created_at=header.get("created_at"),
    ).run()


def summarize(rows: Iterable[Mapping[str, Any]]) -> AsrSummary:
    return AsrSummary.of(r for r in (attack_result(x) for x in rows) if not r.objective.benign)
