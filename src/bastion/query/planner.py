"""Resolve, authorize and rewrite one query: the heart of governed SQL.

The planner works on a sqlglot tree that passed the allow-list. It resolves every table
reference to a CTE or a catalog object, checks privileges (``SELECT`` plus the ``USE``
rights, through the authorizer, which audits the decision), expands views as their owner,
wraps tables that have a row filter or column masks in a subquery that applies them as the
*invoker*, inlines SQL functions, replaces ``current_user()`` and
``is_account_group_member()`` with the invoker's values, and renames every source to an
internal name that only this statement's DuckDB connection knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from bastion.errors import BastionError, InvalidRequest, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.query import allowlist, metadata
from bastion.query.catalog import CatalogCache
from bastion.query.names import (
    DEFAULT_CATALOG,
    DEFAULT_SCHEMA,
    INFORMATION_SCHEMA,
    qualify,
    table_parts,
)

MAX_VIEW_DEPTH = 16
SOURCE_ALIAS = "__src"


@dataclass
class Plan:
    """A rewritten query and the Arrow sources its DuckDB connection must register."""

    tree: exp.Expr
    sources: dict[str, Any] = field(default_factory=dict)
    public_names: dict[str, str] = field(default_factory=dict)
    parameters: set[str] = field(default_factory=set)
    tables_read: list[str] = field(default_factory=list)

    def sql(self) -> str:
        return self.tree.sql(dialect="duckdb")


def _with_of(node: exp.Expr) -> exp.With | None:
    value = node.args.get("with_") or node.args.get("with")
    return value if isinstance(value, exp.With) else None


def _dotted_parts(node: exp.Expr) -> list[str] | None:
    if isinstance(node, exp.Identifier):
        return [node.name]
    if isinstance(node, exp.Column) and not node.args.get("table"):
        return [node.name]
    if isinstance(node, exp.Dot):
        left = _dotted_parts(node.this)
        right = _dotted_parts(node.expression)
        return left + right if left is not None and right is not None else None
    return None


def _is_rewritten(node: exp.Expr) -> bool:
    return isinstance(
        node,
        (
            exp.Anonymous,
            exp.CurrentUser,
            exp.SessionUser,
            exp.CurrentCatalog,
            exp.CurrentSchema,
            exp.CurrentDatabase,
        ),
    ) and not (isinstance(node, exp.Anonymous) and node.name.lower() in allowlist.BUILTIN_NAMES)


class Planner:
    """Plans the queries of one statement for one invoker (shares sources across views)."""

    def __init__(self, platform: Platform, catalog: CatalogCache, invoker: Caller) -> None:
        self.platform = platform
        self.catalog = catalog
        self.invoker = invoker
        self.plan = Plan(exp.Null())
        self._counter = 0

    # -- entry points ---------------------------------------------------------------------

    def plan_query(self, tree: exp.Expr) -> Plan:
        """Check and rewrite a user's query (or INSERT/CTAS source) as the invoker."""
        allowlist.check(tree, what="query")
        self.plan.parameters |= {str(p.this) for p in tree.find_all(exp.Placeholder)}
        self.plan.tree = self.rewrite(tree, self.invoker, depth=0)
        return self.plan

    def rewrite(self, tree: exp.Expr, authority: Caller, depth: int) -> exp.Expr:
        """Rewrite ``tree`` in place; object privileges are checked as ``authority``."""
        if depth > MAX_VIEW_DEPTH:
            raise InvalidRequest("Views are nested too deeply (or refer to themselves).")
        self._name_rewritten_projections(tree)
        tables = list(tree.find_all(exp.Table))
        # Innermost first, so that a function's arguments are final before it is inlined.
        functions = [n for n in reversed(list(tree.walk(bfs=False))) if isinstance(n, exp.Func)]
        qualified = [c for c in tree.find_all(exp.Column) if c.args.get("db")]
        ctes = {id(t): self._cte_for(t) for t in tables}
        cte_names: dict[int, str] = {}
        for definition in tree.find_all(exp.CTE):
            cte_names[id(definition)] = self._internal("cte")
        for table in tables:
            cte = ctes[id(table)]
            if cte is not None:
                self._alias_source(table, cte_names[id(cte)], table.name)
            else:
                self._resolve_table(table, authority, depth)
        for node in functions:
            self._resolve_function(node, authority)
        for column in qualified:
            column.set("db", None)
            column.set("catalog", None)
        for definition in tree.find_all(exp.CTE):
            if id(definition) in cte_names:
                old = definition.args.get("alias")
                columns = old.args.get("columns") if isinstance(old, exp.TableAlias) else None
                definition.set(
                    "alias",
                    exp.TableAlias(
                        this=exp.to_identifier(cte_names[id(definition)]), columns=columns or None
                    ),
                )
        return tree

    @staticmethod
    def _name_rewritten_projections(tree: exp.Expr) -> None:
        """Keep the written name of output columns whose functions the planner rewrites."""
        for select in tree.find_all(exp.Select):
            for projection in list(select.expressions):
                if isinstance(projection, (exp.Alias, exp.Column, exp.Star)):
                    continue
                if any(_is_rewritten(n) for n in projection.walk()):
                    projection.replace(
                        exp.alias_(
                            projection.copy(),
                            projection.sql(dialect="databricks", normalize_functions="lower"),
                            quoted=True,
                        )
                    )

    # -- tables ---------------------------------------------------------------------------

    def _internal(self, kind: str) -> str:
        self._counter += 1
        return f"__{kind}{self._counter}"

    def _cte_for(self, table: exp.Table) -> exp.CTE | None:
        """The CTE an unqualified table name refers to, honouring WITH scoping."""
        if table.args.get("db") or table.args.get("catalog"):
            return None
        name = table.name.lower()
        previous: exp.Expr = table
        node = table.parent
        last_cte: exp.CTE | None = None
        while node is not None:
            if isinstance(node, exp.CTE):
                last_cte = node
            elif isinstance(node, exp.With):
                ctes = list(node.expressions)
                index = next((i for i, c in enumerate(ctes) if c is last_cte), len(ctes))
                limit = index + 1 if node.args.get("recursive") else index
                for cte in ctes[:limit]:
                    if cte.alias_or_name.lower() == name:
                        return cte
            else:
                with_ = _with_of(node)
                if with_ is not None and with_ is not previous:
                    for cte in with_.expressions:
                        if cte.alias_or_name.lower() == name:
                            return cte
            previous, node = node, node.parent
        return None

    @staticmethod
    def _alias_source(table: exp.Table, internal: str, default_alias: str) -> None:
        alias = table.args.get("alias")
        columns = alias.args.get("columns") if isinstance(alias, exp.TableAlias) else None
        name = table.alias or default_alias
        table.set("this", exp.to_identifier(internal))
        table.set("db", None)
        table.set("catalog", None)
        table.set(
            "alias", exp.TableAlias(this=exp.to_identifier(name, quoted=True), columns=columns)
        )

    def _register(self, data: Any, public: str) -> str:
        internal = self._internal("t")
        self.plan.sources[internal] = data
        self.plan.public_names[internal] = public
        return internal

    def _resolve_table(self, table: exp.Table, authority: Caller, depth: int) -> None:
        parts = [p.lower() for p in table_parts(table)]
        if len(parts) >= 2 and parts[-2] == INFORMATION_SCHEMA:
            catalog = parts[0] if len(parts) == 3 else DEFAULT_CATALOG
            data = metadata.information_schema(
                self.platform, self.catalog, authority, catalog, parts[-1]
            )
            self._alias_source(table, self._register(data, ".".join(parts)), parts[-1])
            return
        full_name = qualify(parts)
        if self.catalog.node(SecurableType.TABLE, full_name) is None:
            # An analysis error, as in Databricks SQL (a 400, not a 404 of the REST API).
            raise InvalidRequest(
                f"[TABLE_OR_VIEW_NOT_FOUND] The table or view '{full_name}' cannot be found."
            )
        self.platform.authorizer.require(
            authority, Privilege.SELECT, SecurableType.TABLE, full_name
        )
        self.plan.tables_read.append(full_name)
        info = self.catalog.info(SecurableType.TABLE, full_name)
        props = info.properties
        if props.get("table_type") == "VIEW":
            self._expand_view(table, full_name, info.owner_id, props, depth)
            return
        location = props.get("storage_location")
        if not location:
            raise InvalidRequest(f"Table '{full_name}' has no data to query.")
        internal = self._register(self.catalog.source(location), full_name)
        row_filter = props.get("row_filter")
        masks = props.get("column_masks") or {}
        if not row_filter and not masks:
            self._alias_source(table, internal, parts[-1])
            return
        self._replace_with_governed(table, internal, parts[-1], props, row_filter, masks)

    def _replace_with_governed(
        self,
        table: exp.Table,
        internal: str,
        default_alias: str,
        props: dict[str, Any],
        row_filter: dict[str, Any] | None,
        masks: dict[str, dict[str, Any]],
    ) -> None:
        """``(SELECT <masked columns> FROM src WHERE <filter>) AS alias``, as the invoker."""
        columns = [c["name"] for c in sorted(props.get("columns", []), key=lambda c: c["position"])]

        def ref(name: str) -> exp.Expr:
            return exp.column(name, table=SOURCE_ALIAS, quoted=True)

        projections: list[exp.Expr] = []
        for name in columns:
            mask = masks.get(name)
            if mask:
                args = [ref(name)] + [ref(c) for c in mask.get("using_columns", [])]
                value = self._call(mask["function"], args, self.invoker, check_execute=False)
                projections.append(exp.alias_(value, name, quoted=True))
            else:
                projections.append(ref(name))
        select = exp.select(*projections).from_(
            exp.Table(
                this=exp.to_identifier(internal),
                alias=exp.TableAlias(this=exp.to_identifier(SOURCE_ALIAS)),
            )
        )
        if row_filter:
            args = [ref(c) for c in row_filter.get("columns", [])]
            predicate = self._call(row_filter["function"], args, self.invoker, check_execute=False)
            select = select.where(predicate)
        alias = table.args.get("alias")
        alias_columns = alias.args.get("columns") if isinstance(alias, exp.TableAlias) else None
        table.replace(
            exp.Subquery(
                this=select,
                alias=exp.TableAlias(
                    this=exp.to_identifier(table.alias or default_alias, quoted=True),
                    columns=alias_columns,
                ),
            )
        )

    def _expand_view(
        self, table: exp.Table, full_name: str, owner_id: int, props: dict[str, Any], depth: int
    ) -> None:
        """Replace a view reference by its body, checked and rewritten as the view's owner."""
        try:
            owner = self.platform.identity_cache.caller(owner_id)
        except BastionError:
            raise PermissionDenied(
                f"The owner of view '{full_name}' no longer exists; ask an admin to reassign it."
            ) from None
        body = self.catalog.parsed(
            ("view", full_name),
            props.get("view_definition", ""),
            lambda t: allowlist.check(t, what="view"),
        )
        body = self.rewrite(body, owner, depth + 1)
        names = [c["name"] for c in sorted(props.get("columns", []), key=lambda c: c["position"])]
        alias = table.args.get("alias")
        user_columns = alias.args.get("columns") if isinstance(alias, exp.TableAlias) else None
        columns = user_columns or [exp.to_identifier(n, quoted=True) for n in names] or None
        table.replace(
            exp.Subquery(
                this=body,
                alias=exp.TableAlias(
                    this=exp.to_identifier(table.alias or table.name, quoted=True),
                    columns=columns,
                ),
            )
        )

    # -- functions ------------------------------------------------------------------------

    def _resolve_function(self, node: exp.Func, authority: Caller) -> None:
        if isinstance(node, (exp.CurrentUser, exp.SessionUser)):
            node.replace(exp.Literal.string(self.invoker.name))
        elif isinstance(node, exp.CurrentCatalog):
            node.replace(exp.Literal.string(DEFAULT_CATALOG))
        elif isinstance(node, (exp.CurrentSchema, exp.CurrentDatabase)):
            node.replace(exp.Literal.string(DEFAULT_SCHEMA))
        elif isinstance(node, exp.Anonymous):
            self._resolve_anonymous(node, authority)
        elif isinstance(node.parent, exp.Dot) and node.parent.expression is node:
            raise InvalidRequest(
                f"Qualified call to built-in {node.sql_name().lower()}() is not allowed."
            )

    def _resolve_anonymous(self, node: exp.Anonymous, authority: Caller) -> None:
        name = node.name.lower()
        parent = node.parent
        if isinstance(parent, exp.Dot) and parent.expression is node:
            prefix = _dotted_parts(parent.this)
            if prefix is None:
                raise InvalidRequest(f"Invalid function name in {parent.sql()!r}.")
            full_name = qualify([*prefix, name])
            parent.replace(self._call(full_name, list(node.expressions), authority))
            return
        if name in allowlist.IDENTITY_NAMES:
            if len(node.expressions) != 1:
                raise InvalidRequest(f"{name}() takes one argument: a group name.")
            groups = sorted(self.invoker.groups)
            member: exp.Expr = (
                exp.In(
                    this=node.expressions[0], expressions=[exp.Literal.string(g) for g in groups]
                )
                if groups
                else exp.false()
            )
            node.replace(exp.Paren(this=member))
            return
        if name in allowlist.BUILTIN_NAMES:
            return
        full_name = qualify([name])
        if self.catalog.node(SecurableType.FUNCTION, full_name) is None:
            raise InvalidRequest(f"Function {name}() is not supported or does not exist.")
        node.replace(self._call(full_name, list(node.expressions), authority))

    def _call(
        self,
        full_name: str,
        args: list[exp.Expr],
        authority: Caller,
        *,
        check_execute: bool = True,
    ) -> exp.Expr:
        """Inline the SQL function ``full_name`` applied to ``args``."""
        if self.catalog.node(SecurableType.FUNCTION, full_name) is None:
            raise InvalidRequest(f"Function '{full_name}' does not exist.")
        if check_execute:
            self.platform.authorizer.require(
                authority, Privilege.EXECUTE, SecurableType.FUNCTION, full_name
            )
        info = self.catalog.info(SecurableType.FUNCTION, full_name)
        params = info.properties.get("parameters", [])
        if len(args) != len(params):
            raise InvalidRequest(
                f"Function '{full_name}' takes {len(params)} argument(s), got {len(args)}."
            )
        body = self.catalog.parsed(
            ("function", full_name),
            info.properties.get("routine_definition", ""),
            lambda t: allowlist.check(t, what="function body"),
        )
        by_name = {p["name"]: (arg, p["type_text"]) for p, arg in zip(params, args, strict=True)}
        inner = [n for n in reversed(list(body.walk(bfs=False))) if isinstance(n, exp.Func)]
        for node in inner:
            if isinstance(node, exp.Anonymous) and node.name.lower() not in (
                allowlist.BUILTIN_NAMES | allowlist.IDENTITY_NAMES
            ):
                raise InvalidRequest(f"Function '{full_name}' calls unknown {node.name}().")
            self._resolve_function(node, authority)
        for column in list(body.find_all(exp.Column)):
            bound = by_name.get(column.name.lower()) if not column.args.get("table") else None
            if bound is None:
                raise InvalidRequest(f"Function '{full_name}' refers to unknown {column.sql()}.")
            arg, type_text = bound
            column.replace(
                exp.cast(arg.copy(), exp.DataType.build(type_text, dialect="databricks"))
            )
        result: exp.Expr = exp.Paren(this=body)
        return_type = info.properties.get("return_type")
        if return_type:
            result = exp.cast(result, exp.DataType.build(return_type, dialect="databricks"))
        return result
