"""The gateway: authenticate → parse → route → authorize → rate limits → input guardrails →
call upstream → output guardrails → render → log.

Pure ASGI in front of the FastAPI control plane, so a query pays for no framework layer, no
metastore query (tokens, grants and endpoint plans come from in-memory snapshots) and no
logging I/O (records go to the durable writer's log, which commits to Delta off the path).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.egress import policy_of
from bastion.errors import (
    BastionError,
    GuardrailViolation,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Unavailable,
    UpstreamError,
)
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.identity.authn import presented_token
from bastion.identity.model import SCAN_ATTRIBUTE, Caller
from bastion.observability.exchange import Attempt, Check, Exchange
from bastion.observability.traceparent import new_trace_id
from bastion.platform import Platform, RequestInfo, current_request
from bastion.serving.budgets import Ticket, budgets_of
from bastion.serving.control.routing import RoutePlan, Upstream
from bastion.serving.gateway.guard import (
    reply_texts,
    request_texts,
    with_reply_texts,
    with_request_texts,
)
from bastion.serving.gateway.tokens import check_context, count_prompt_tokens
from bastion.serving.gateway.upstream import RetryableUpstreamError, UpstreamClient
from bastion.serving.guardrails import GuardrailOutcome, GuardrailPolicy, Side, check, mask_pii
from bastion.serving.limits import Limiter, limiter_for
from bastion.serving.protocols import (
    AnthropicUpstreamStream,
    ChatRequest,
    ClientApi,
    Json,
    UpstreamChunkDecoder,
    completion_chunks,
    from_anthropic_message,
    parse_anthropic_messages,
    parse_request,
    render_error,
    render_reply,
    stream_translator,
    to_anthropic_request,
)

PREFIX = "/serving-endpoints"
QUERY_SCOPES = ("serving.serving-endpoints", "model-serving")
MAX_BODY = 16 * 1024 * 1024
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
ANTHROPIC = "/anthropic"
ANTHROPIC_BASES = frozenset({ANTHROPIC, ANTHROPIC + "/", ANTHROPIC + "/v1", ANTHROPIC + "/v1/"})
ANTHROPIC_MODELS = ANTHROPIC + "/v1/models"
EMPTY_STREAM = (
    "The model server ended its stream without any output or finish reason (llama.cpp does "
    "this when the prompt exceeds the model's context window)."
)


class Router(Protocol):
    def plan(self, endpoint_name: str) -> RoutePlan: ...

    def endpoint_names(self) -> list[str]: ...


Logger = Callable[[Exchange], None]
SCAN_TYPE_HEADER = "x-bastion-scan-type"
SCAN_ID_HEADER = "x-bastion-scan-id"
SELF_DECLARED_SCAN_TYPES = frozenset({"normal", "eval"})


def scan_tags(headers: dict[str, str], caller: Caller) -> tuple[str, str | None]:
    """The scan type and id a request's payload row carries.

    Red-team tags join a row into a scan's results, so they are accepted only from the scan
    itself: a credential minted for scan ``S`` (its ``redteam_scan`` attribute) always tags
    its requests ``redteam`` / ``S``, and a request claiming a scan any other way is refused.
    ``eval`` and ``normal`` label only the caller's own traffic and need no proof.
    """
    bound = caller.extra.get(SCAN_ATTRIBUTE)
    claimed_type = headers.get(SCAN_TYPE_HEADER, "").strip().lower()
    claimed_id = headers.get(SCAN_ID_HEADER, "").strip() or None
    if bound is not None:
        if (claimed_id is not None and claimed_id != bound) or claimed_type not in ("", "redteam"):
            raise PermissionDenied(f"This credential belongs to red-team scan '{bound}' only.")
        return "redteam", bound
    if claimed_id is not None or claimed_type == "redteam":
        raise PermissionDenied(
            "Red-team scan tags are accepted only with the scan's own credential "
            "(POST /api/2.0/redteam/scans/{scan_id}/credentials)."
        )
    return (claimed_type if claimed_type in SELF_DECLARED_SCAN_TYPES else "normal"), None


class Gateway:
    def __init__(
        self,
        platform: Platform,
        router: Router,
        control_plane: ASGIApp,
        *,
        upstreams: UpstreamClient | None = None,
        log: Logger | None = None,
        on_upstream_failure: Callable[[Upstream], None] | None = None,
        rng: random.Random | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.platform = platform
        self.router = router
        self.control_plane = control_plane
        self.upstreams = upstreams or UpstreamClient(egress=policy_of(platform))
        self.log = log
        self.on_upstream_failure = on_upstream_failure
        self.rng = rng or random.Random()
        self.limiter = limiter or limiter_for(platform)  # shared through Redis if configured
        self.budgets = budgets_of(platform)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/"):
            await self.control_plane(scope, receive, send)
            return
        route = path[len(PREFIX) :]
        method = scope["method"]
        if method == "POST" and route == "/chat/completions":
            await self._query(ClientApi.CHAT_COMPLETIONS, None, scope, receive, send)
        elif method == "POST" and route == "/responses":
            await self._query(ClientApi.RESPONSES, None, scope, receive, send)
        elif method == "POST" and route in ("/anthropic/v1/messages", "/anthropic/messages"):
            await self._query(ClientApi.ANTHROPIC_MESSAGES, None, scope, receive, send)
        elif method == "POST" and route.endswith("/invocations") and route.count("/") == 2:
            endpoint = route.split("/")[1]
            await self._query(ClientApi.INVOCATIONS, endpoint, scope, receive, send)
        elif method == "POST" and route in (
            "/anthropic/v1/messages/count_tokens",
            "/anthropic/messages/count_tokens",
        ):
            await self._count_tokens(scope, receive, send)
        elif method == "GET" and route in ("/models", "/v1/models"):
            await self._models(scope, send)
        elif method == "GET" and (
            route == ANTHROPIC_MODELS or route.startswith(ANTHROPIC_MODELS + "/")
        ):
            await self._anthropic_models(route[len(ANTHROPIC_MODELS) + 1 :], scope, send)
        elif method == "HEAD" and route in ANTHROPIC_BASES:
            # Claude Code's reachability probe of ANTHROPIC_BASE_URL: says nothing but "here".
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await self.control_plane(scope, receive, send)

    # -- helpers ------------------------------------------------------------------------------

    def _authenticate(self, headers: dict[str, str]) -> Caller:
        caller = self.platform.authenticator.authenticate(presented_token(headers))
        if not any(caller.has_scope(s) for s in QUERY_SCOPES):
            raise PermissionDenied(
                "The credential lacks the scope 'serving.serving-endpoints' needed to query models."
            )
        return caller

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise PayloadTooLarge(f"The request body is larger than {MAX_BODY} bytes.")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _order(self, plan: RoutePlan) -> list[Upstream]:
        """The entity the traffic split picks, then (with fallback) the others in order.

        An entity whose worker is (re)starting is skipped when another can answer.
        """
        order = list(plan.order(self.rng.random()))
        if not plan.fallback:
            order = order[:1]
        ready = [e for e in order if e.ready]
        if not ready and order:
            raise Unavailable(
                f"The serving endpoint '{plan.endpoint_name}' is starting; try again shortly."
            )
        return ready

    @staticmethod
    def _ended(exchange: Exchange, attempt: Attempt, error: BastionError | None = None) -> None:
        attempt.ended = time.perf_counter()
        exchange.upstream_s += attempt.ended - attempt.started
        if error is not None:
            attempt.error = error.message

    def _failed(self, exchange: Exchange, entity: Upstream) -> None:
        exchange.upstream_failures += 1
        if self.on_upstream_failure is not None:
            self.on_upstream_failure(entity)

    @staticmethod
    async def _respond(
        send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode()), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- queries ------------------------------------------------------------------------------

    async def _query(
        self, api: ClientApi, endpoint: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        exchange = Exchange(new_trace_id(), api, time.perf_counter(), time.time())
        exchange.headers = headers
        exchange.continue_trace()
        client = scope.get("client")
        token = current_request.set(
            RequestInfo(
                exchange.request_id, client[0] if client else None, headers.get("user-agent")
            )
        )
        try:
            await self._serve(api, exchange, endpoint, receive, send)
        finally:
            current_request.reset(token)
            self._record(exchange)  # if not already logged (e.g. the client went away)

    def _record(self, exchange: Exchange) -> None:
        """Log the exchange once — before its last response byte is sent, so that every
        response a client received has its row in the write-ahead log (kill -9 included)."""
        if exchange.logged:
            return
        exchange.logged = True
        exchange.finished = exchange.finished or time.perf_counter()
        if self.log is not None and exchange.plan is not None:
            self.log(exchange)

    async def _serve(
        self,
        api: ClientApi,
        exchange: Exchange,
        endpoint: str | None,
        receive: Receive,
        send: Send,
    ) -> None:
        ticket: Ticket | None = None  # the budgets this request counts against
        try:
            exchange.raw_body = await self._read_body(receive)
            exchange.caller = self._authenticate(exchange.headers)
            exchange.scan_type, exchange.scan_id = scan_tags(exchange.headers, exchange.caller)
            exchange.authenticated = time.perf_counter()
            chat = parse_request(api, exchange.raw_body, endpoint=endpoint)
            exchange.request = chat
            exchange.endpoint = name = endpoint or chat.model
            plan = self.router.plan(name)
            exchange.routed = time.perf_counter()
            self.platform.authorizer.require(
                exchange.caller, Privilege.CAN_QUERY, SecurableType.SERVING_ENDPOINT, name
            )
            exchange.authorized = time.perf_counter()
            exchange.plan = plan
            if plan.rate_limits is not None:
                await self._admit(exchange, plan)
            if "budgets" in plan.ai_gateway:
                ticket = await self.budgets.check(name, plan.ai_gateway, exchange.caller)
            guards = plan.guardrails
            if guards is not None and guards.input is not None:
                chat = self._guard_input(exchange, chat, guards.input)
        except BastionError as error:
            if isinstance(error, NotFound) and exchange.endpoint:
                error = NotFound(f"The serving endpoint '{exchange.endpoint}' does not exist.")
            await self._fail(exchange, send, error)
            return
        try:
            if chat.stream and (guards is None or guards.output is None):
                await self._stream(exchange, chat, plan, send)
            else:  # output guardrails see a whole reply before the client sees any of it
                await self._complete(exchange, chat, plan, send)
        except Unavailable as error:
            await self._fail(exchange, send, error)
        finally:
            if exchange.admission is not None:
                exchange.admission.charge(exchange.input_tokens + exchange.output_tokens)
            if ticket is not None:
                ticket.charge(exchange)

    # -- governance -----------------------------------------------------------------------------

    async def _admit(self, exchange: Exchange, plan: RoutePlan) -> None:
        """Apply the endpoint's rate limits (raises RateLimited, HTTP 429)."""
        assert exchange.caller is not None
        began = time.perf_counter()
        outcome, refusal = "admitted", None
        try:
            exchange.admission = await self.limiter.acquire(
                plan.endpoint_name, plan.rate_limits, exchange.caller
            )
        except (RateLimited, Unavailable) as error:
            outcome, refusal = "refused", error.message
            raise
        finally:
            attributes = {"bastion.rate_limit.outcome": outcome}
            exchange.checks.append(
                Check("rate_limit", began, time.perf_counter(), attributes, refusal)
            )

    @staticmethod
    def _guard(
        exchange: Exchange, policy: GuardrailPolicy, texts: list[str], side: Side
    ) -> GuardrailOutcome:
        """Run one side's guardrails; a block raises GuardrailViolation (HTTP 400)."""
        began = time.perf_counter()
        outcome = check(policy, texts, side=side)
        action = "blocked" if outcome.blocked else "masked" if outcome.modified else "passed"
        attributes: dict[str, Any] = {
            "bastion.guardrail.side": side,
            "bastion.guardrail.action": action,
            "bastion.guardrail.findings": ",".join(
                f"{f.guardrail}:{f.category}" for f in outcome.findings
            )
            or None,
        }
        exchange.checks.append(
            Check(f"guardrails {side}", began, time.perf_counter(), attributes, outcome.reason)
        )
        if outcome.blocked:
            raise GuardrailViolation(outcome.reason or f"The {side} was blocked by guardrails.")
        return outcome

    def _guard_input(
        self, exchange: Exchange, chat: ChatRequest, policy: GuardrailPolicy
    ) -> ChatRequest:
        refs, texts = request_texts(chat)
        outcome = self._guard(exchange, policy, texts, "input")
        if not outcome.modified:
            return chat
        # What is logged is what went upstream: the masked request, never the PII.
        exchange.raw_body = mask_pii(exchange.raw_body.decode("utf-8", "replace")).encode()
        return with_request_texts(chat, refs, outcome.texts)

    def _guard_output(
        self, exchange: Exchange, reply: dict[str, Any], policy: GuardrailPolicy
    ) -> dict[str, Any]:
        indexes, texts = reply_texts(reply)
        outcome = self._guard(exchange, policy, texts, "output")
        return with_reply_texts(reply, indexes, outcome.texts) if outcome.modified else reply

    def _for_caller(self, exchange: Exchange, error: BastionError) -> BastionError:
        """An upstream's own words reach only callers who may manage the endpoint."""
        detail = getattr(error, "detail", None)
        if not detail or exchange.caller is None or exchange.endpoint is None:
            return error
        try:
            node = self.platform.authorizer.node(SecurableType.SERVING_ENDPOINT, exchange.endpoint)
        except NotFound:
            return error
        if Privilege.CAN_MANAGE not in self.platform.authorizer.effective(exchange.caller, node):
            return error
        shown = type(error)(f"{error.message} It said: {detail}")
        shown.status_code, shown.error_code = error.status_code, error.error_code
        return shown

    async def _fail(self, exchange: Exchange, send: Send, error: BastionError) -> None:
        status, body = render_error(
            ClientApi(exchange.api.value), self._for_caller(exchange, error)
        )
        exchange.status, exchange.error = status, error.message  # logged without the detail
        exchange.finished = time.perf_counter()
        self._record(exchange)
        headers = self._trace_headers(exchange)
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await self._respond(send, status, body, headers)

    def _trace_headers(self, exchange: Exchange) -> list[tuple[bytes, bytes]]:
        now = time.perf_counter()
        overhead = (now - exchange.started - exchange.upstream_s) * 1000
        return [
            (b"x-request-id", exchange.request_id.encode()),
            (b"x-bastion-overhead-ms", f"{max(overhead, 0.0):.3f}".encode()),
        ]

    async def _call(self, entity: Upstream, chat: ChatRequest, traceparent: str) -> dict[str, Any]:
        await check_context(self.upstreams, entity, chat)
        if entity.kind == "anthropic":
            body = to_anthropic_request(chat, model=entity.upstream_model)
            body["stream"] = False
            return from_anthropic_message(await self.upstreams.complete(entity, body, traceparent))
        body = chat.to_openai(
            model=entity.upstream_model, stream_usage=False, fold_system=entity.kind == "worker"
        )
        return await self.upstreams.complete(entity, body, traceparent)

    async def _complete(
        self, exchange: Exchange, chat: ChatRequest, plan: RoutePlan, send: Send
    ) -> None:
        last: BastionError | None = None
        upstream_chat = replace(chat, stream=False) if chat.stream else chat
        guards = plan.guardrails
        for entity in self._order(plan):
            attempt = exchange.attempt(entity)
            try:
                reply = await self._call(entity, upstream_chat, exchange.traceparent(attempt))
            except RetryableUpstreamError as error:
                self._ended(exchange, attempt, error)
                self._failed(exchange, entity)
                last = error
                continue
            except BastionError as error:
                self._ended(exchange, attempt, error)
                await self._fail(exchange, send, error)
                return
            self._ended(exchange, attempt)
            usage = reply.get("usage") or {}
            exchange.input_tokens = int(usage.get("prompt_tokens") or 0)
            exchange.output_tokens = int(usage.get("completion_tokens") or 0)
            if guards is not None and guards.output is not None:
                try:
                    reply = self._guard_output(exchange, reply, guards.output)
                except GuardrailViolation as error:
                    await self._fail(exchange, send, error)
                    return
            if chat.stream:
                await self._relay(exchange, chat, _whole(reply), send)
                return
            rendered = render_reply(reply, chat)
            exchange.response = rendered
            exchange.finished = time.perf_counter()
            payload = orjson.dumps(rendered)
            headers = self._trace_headers(exchange)
            self._record(exchange)
            await self._respond(send, 200, payload, headers)
            return
        assert last is not None
        await self._fail(exchange, send, last)

    async def _stream(
        self, exchange: Exchange, chat: ChatRequest, plan: RoutePlan, send: Send
    ) -> None:
        last: BastionError | None = None
        for entity in self._order(plan):
            attempt = exchange.attempt(entity)
            try:
                await check_context(self.upstreams, entity, chat)
                if entity.kind == "anthropic":
                    body = to_anthropic_request(chat, model=entity.upstream_model)
                    body["stream"] = True
                else:
                    body = chat.to_openai(
                        model=entity.upstream_model,
                        stream_usage=True,
                        fold_system=entity.kind == "worker",
                    )
                chunks = await self.upstreams.stream(entity, body, exchange.traceparent(attempt))
            except RetryableUpstreamError as error:
                self._ended(exchange, attempt, error)
                self._failed(exchange, entity)
                last = error
                continue
            except BastionError as error:
                self._ended(exchange, attempt, error)
                await self._fail(exchange, send, error)
                return
            exchange.upstream_s += time.perf_counter() - attempt.started
            decoded = _decoded(chunks, anthropic=entity.kind == "anthropic")
            await self._relay(exchange, chat, decoded, send)
            attempt.ended = exchange.finished
            attempt.error = exchange.error
            return
        assert last is not None
        await self._fail(exchange, send, last)

    async def _relay(
        self,
        exchange: Exchange,
        chat: ChatRequest,
        batches: AsyncIterator[list[Json]],
        send: Send,
    ) -> None:
        """Translate upstream chat-completion chunks, as they arrive, into the client's
        stream.

        The response starts with the first upstream chunk, so an upstream stream that ends
        before sending any is answered as a plain error in the API's shape; one that ends
        with no output and no finish reason is an error event in the client's stream format.
        Either is logged as the error it is, never as a normal stop.
        """
        translator = stream_translator(chat)
        started = False
        waited = time.perf_counter()
        try:
            async for batch in batches:
                exchange.upstream_s += time.perf_counter() - waited
                if batch and not started:
                    started = True
                    await self._start_stream(exchange, translator, send)
                out = bytearray()
                for chunk in batch:
                    out += translator.feed(chunk)
                if out:
                    await _send_body(send, bytes(out))
                waited = time.perf_counter()
            if translator.accumulator.empty:
                raise UpstreamError(EMPTY_STREAM)
            closing = translator.finish()
        except BastionError as error:
            if not started:
                await self._fail(exchange, send, error)
                return
            exchange.status, exchange.error = error.status_code, error.message
            closing = translator.error(error)
        usage = translator.usage
        exchange.input_tokens, exchange.output_tokens = usage.input_tokens, usage.output_tokens
        exchange.response = translator.completion()
        exchange.finished = time.perf_counter()
        self._record(exchange)  # before the closing events, which end the client's read
        await send({"type": "http.response.body", "body": closing, "more_body": False})

    async def _start_stream(self, exchange: Exchange, translator: Any, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE, *self._trace_headers(exchange)],
            }
        )
        start: Callable[[], bytes] | None = getattr(translator, "start", None)
        if start is not None:
            await _send_body(send, start())

    # -- Anthropic extras -------------------------------------------------------------------

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /anthropic/v1/messages/count_tokens``: the prompt's tokens as the model
        serving the endpoint counts them (see :mod:`bastion.serving.gateway.tokens`)."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(receive)
            caller = self._authenticate(headers)
            chat = parse_anthropic_messages(body, count_only=True)
            try:
                plan = self.router.plan(chat.model)
            except NotFound:
                raise NotFound(f"The serving endpoint '{chat.model}' does not exist.") from None
            self.platform.authorizer.require(
                caller, Privilege.CAN_QUERY, SecurableType.SERVING_ENDPOINT, chat.model
            )
            entities = self._order(plan)
            if not entities:
                raise Unavailable(f"The serving endpoint '{chat.model}' serves nothing.")
            count = await count_prompt_tokens(self.upstreams, entities[0], chat)
        except BastionError as error:
            status, payload = render_error(ClientApi.ANTHROPIC_MESSAGES, error)
            await self._respond(send, status, payload, [])
            return
        await self._respond(send, 200, orjson.dumps({"input_tokens": count}), [])

    async def _anthropic_models(self, model_id: str, scope: Scope, send: Send) -> None:
        """``GET /anthropic/v1/models[/{id}]`` in Anthropic's shape: the endpoints the caller
        may query."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            names = self._queryable(self._authenticate(headers))
            if model_id and model_id not in names:
                raise NotFound(f"model: {model_id}")
        except BastionError as error:
            status, payload = render_error(ClientApi.ANTHROPIC_MESSAGES, error)
            await self._respond(send, status, payload, [])
            return

        def model(name: str) -> Json:
            return {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "1970-01-01T00:00:00Z",
            }

        if model_id:
            body: Json = model(model_id)
        else:
            body = {
                "data": [model(n) for n in names],
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        await self._respond(send, 200, orjson.dumps(body), [])

    def _queryable(self, caller: Caller) -> list[str]:
        """The endpoints ``caller`` may query."""
        authorizer = self.platform.authorizer
        names = []
        for name in self.router.endpoint_names():
            try:
                node = authorizer.node(SecurableType.SERVING_ENDPOINT, name)
            except NotFound:
                continue
            if Privilege.CAN_QUERY in authorizer.effective(caller, node):
                names.append(name)
        return names

    async def _models(self, scope: Scope, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            caller = self._authenticate(headers)
        except BastionError as error:
            status, payload = render_error(ClientApi.CHAT_COMPLETIONS, error)
            await self._respond(send, status, payload, [])
            return
        names = self._queryable(caller)
        body = {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "bastion"} for n in names
            ],
        }
        await self._respond(send, 200, orjson.dumps(body), [])


async def _decoded(chunks: AsyncIterator[bytes], *, anthropic: bool) -> AsyncIterator[list[Json]]:
    """Upstream SSE bytes (OpenAI chunks, or Anthropic events if ``anthropic``) as the
    chat-completion chunks each read completes."""
    decoder = UpstreamChunkDecoder()
    events = AnthropicUpstreamStream() if anthropic else None
    async for raw in chunks:
        decoded = decoder.feed(raw)
        yield [c for event in decoded for c in events.feed(event)] if events else decoded


async def _whole(reply: Json) -> AsyncIterator[list[Json]]:
    """A whole reply as the one batch of chunks a stream of it would have been."""
    yield completion_chunks(reply)


async def _send_body(send: Send, data: bytes) -> None:
    if data:
        await send({"type": "http.response.body", "body": data, "more_body": True})
