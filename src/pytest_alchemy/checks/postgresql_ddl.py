"""PostgreSQL: the schema read from the system catalogs, for the ``recreate`` strategy.

The snapshot covers every table, view, materialized view and sequence of the
schemas the plugin looks at (all but ``pg_catalog``, ``information_schema`` and
the other ``pg_*`` schemas), except what belongs to an extension and the kept
tables (``alchemy_keep_tables``). It is read with an empty ``search_path``, so
every name in it is schema-qualified and it replays the same under any setting.
It holds:

* tables with their columns (types, collations, defaults, ``NOT NULL``, identity
  and generated columns), ``UNLOGGED``, storage parameters, access methods,
  declarative partitioning (``PARTITION BY``, ``PARTITION OF``), inheritance
  (``INHERITS``) and typed tables (``OF type``);
* sequences (``serial`` ones made before their table, ``OWNED BY`` after it,
  identity ones with their column, standalone ones), with their options; their
  positions go back to the baseline's;
* constraints as ``pg_get_constraintdef`` writes them: primary keys, unique,
  check and exclusion constraints with their table, foreign keys after every
  table exists and the rows are back (cycles need no ``use_alter``); a kept
  table's foreign key to a recreated table is added back ``NOT VALID``;
* indexes that back no constraint (``pg_get_indexdef``), extended statistics;
* views and materialized views (``WITH DATA`` or not, as they were), in the order
  their dependencies need, with the functions that depend on a table or view
  (``RETURNS SETOF users``, ``BEGIN ATOMIC`` bodies), which dropping it would drop;
* triggers (enabled, disabled, replica or always, as they were) and rules;
* row-level security and its policies, table privileges granted to other roles,
  comments on tables, views, sequences, columns, constraints, indexes and triggers.

Not recreated: ownership (the recreated objects belong to the role the plugin
connects as, which normally made them), column privileges, per-column storage,
compression and statistics targets, replica identity, tablespaces, ``CLUSTER ON``,
security labels and publications. Types, functions that depend on no table,
schemas and extensions are never dropped, so what a test makes of those stays.
Whatever else depends on a table (a domain over its row type, an aggregate, a
publication) makes taking the snapshot fail with a message naming it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from ..errors import ConfigurationError, message
from ..leaks import Baseline
from ..tables import TableRef
from .ddl import Recreated, SchemaSnapshot, Step, kept, steps

SCHEMA_SCOPE = "n.nspname <> 'information_schema' AND left(n.nspname, 3) <> 'pg_'"
"""The schemas the plugin looks at: every one but the system's."""
SCOPE = (
    f"{SCHEMA_SCOPE} AND NOT EXISTS (SELECT 1 FROM pg_depend AS e "
    "WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')"
)
"""Relations of those schemas that no extension owns. (Columns of type ``"char"`` are
read as ``text``: asyncpg returns the former as bytes.)"""

RELATIONS = (
    "SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relpersistence::text, "
    "quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relispartition, "
    "pg_get_expr(c.relpartbound, c.oid), "
    "CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, "
    "array_to_string(c.reloptions, ', '), c.relrowsecurity, c.relforcerowsecurity, "
    "CASE WHEN c.reloftype <> 0 THEN format_type(c.reloftype, NULL) END, "
    "ARRAY(SELECT i.inhparent FROM pg_inherits AS i WHERE i.inhrelid = c.oid "
    "ORDER BY i.inhseqno), "
    "obj_description(c.oid, 'pg_class'), "
    "CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END, c.relispopulated, "
    "CASE WHEN c.relkind IN ('r', 'm') AND am.amname <> 'heap' THEN quote_ident(am.amname) END, "
    "c.reltype, quote_ident(n.nspname) "
    "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_am AS am ON am.oid = c.relam "
    f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND {SCOPE} ORDER BY c.oid"
)
COLUMNS = (
    "SELECT a.attrelid, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), "
    "a.attnotnull, a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid), "
    "CASE WHEN a.attcollation <> t.typcollation THEN (SELECT quote_ident(cn.nspname) || '.' "
    "|| quote_ident(co.collname) FROM pg_collation AS co "
    "JOIN pg_namespace AS cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END, "
    "a.attislocal, col_description(a.attrelid, a.attnum), "
    "CASE WHEN t.typrelid <> 0 THEN t.typrelid "
    "ELSE coalesce((SELECT e.typrelid FROM pg_type AS e WHERE e.oid = t.typelem), 0) END "
    "FROM pg_attribute AS a JOIN pg_type AS t ON t.oid = a.atttypid "
    "LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE a.attrelid = ANY({oids}) AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attrelid, a.attnum"
)
SEQUENCES = (
    "SELECT s.seqrelid, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, "
    "s.seqmin, s.seqmax, s.seqcache, s.seqcycle, d.refobjid, d.deptype::text, "
    "(SELECT quote_ident(a.attname) FROM pg_attribute AS a "
    "WHERE a.attrelid = d.refobjid AND a.attnum = d.refobjsubid) "
    "FROM pg_sequence AS s LEFT JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass "
    "AND d.objid = s.seqrelid AND d.refclassid = 'pg_class'::regclass "
    "AND d.deptype IN ('a', 'i') "
    "WHERE s.seqrelid = ANY({oids}) ORDER BY s.seqrelid"
)
CONSTRAINTS = (
    "SELECT co.conrelid, quote_ident(co.conname), co.contype::text, pg_get_constraintdef(co.oid), "
    "co.confrelid, obj_description(co.oid, 'pg_constraint') FROM pg_constraint AS co "
    "WHERE co.contype IN ('p', 'u', 'c', 'x', 'f') AND co.conislocal AND co.conparentid = 0 "
    "AND (co.conrelid = ANY({tables}) OR (co.contype = 'f' AND co.conrelid = ANY({kept}) "
    "AND co.confrelid = ANY({tables}))) "
    "ORDER BY co.conrelid, CASE co.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 ELSE 2 END, co.oid"
)
INDEXES = (
    "SELECT i.indrelid, pg_get_indexdef(i.indexrelid), ic.relkind::text, "
    "quote_ident(n.nspname) || '.' || quote_ident(ic.relname), "
    "obj_description(i.indexrelid, 'pg_class') "
    "FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid "
    "JOIN pg_namespace AS n ON n.oid = ic.relnamespace "
    "WHERE i.indrelid = ANY({oids}) AND NOT EXISTS (SELECT 1 FROM pg_constraint AS co "
    "WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid "
    "AND co.contype IN ('p', 'u', 'x')) "
    "AND NOT EXISTS (SELECT 1 FROM pg_inherits AS h WHERE h.inhrelid = i.indexrelid) "
    "ORDER BY i.indexrelid"
)
"""Indexes that back no constraint, but those a partitioned table's index made."""
TRIGGERS = (
    "SELECT t.tgrelid, pg_get_triggerdef(t.oid), t.tgenabled::text, quote_ident(t.tgname), "
    "obj_description(t.oid, 'pg_trigger') FROM pg_trigger AS t "
    "WHERE t.tgrelid = ANY({oids}) AND NOT t.tgisinternal AND t.tgparentid = 0 "
    "ORDER BY t.tgrelid, t.tgname"
)
RULES = (
    "SELECT r.ev_class, pg_get_ruledef(r.oid) FROM pg_rewrite AS r "
    "WHERE r.ev_class = ANY({oids}) AND r.rulename <> '_RETURN' ORDER BY r.oid"
)
POLICIES = (
    "SELECT p.polrelid, quote_ident(p.polname), p.polpermissive, p.polcmd::text, "
    "(SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) "
    "END, ', ') FROM unnest(p.polroles) AS r), "
    "pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) "
    "FROM pg_policy AS p WHERE p.polrelid = ANY({oids}) ORDER BY p.oid"
)
STATISTICS = (
    "SELECT s.stxrelid, pg_get_statisticsobjdef(s.oid) FROM pg_statistic_ext AS s "
    "WHERE s.stxrelid = ANY({oids}) ORDER BY s.oid"
)
GRANTS = (
    "SELECT c.oid, CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
    "ELSE quote_ident(pg_get_userbyid(a.grantee)) END, a.is_grantable, "
    "string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) "
    "FROM pg_class AS c, aclexplode(c.relacl) AS a "
    "WHERE c.oid = ANY({oids}) AND a.grantee <> c.relowner "
    "GROUP BY c.oid, a.grantee, a.is_grantable ORDER BY c.oid, 2, 3"
)
DEPENDENTS = (
    "SELECT DISTINCT d.classid = 'pg_proc'::regclass, d.objid, "
    "pg_describe_object(d.classid, d.objid, 0), "
    "(SELECT p.prokind::text FROM pg_proc AS p WHERE p.oid = d.objid) "
    "FROM pg_depend AS d WHERE d.deptype IN ('n', 'a') "
    "AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY({oids})) "
    "OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = ANY({types}))) "
    "AND d.classid NOT IN ('pg_class'::regclass, 'pg_constraint'::regclass, "
    "'pg_attrdef'::regclass, 'pg_trigger'::regclass, 'pg_rewrite'::regclass, "
    "'pg_policy'::regclass, 'pg_statistic_ext'::regclass) "
    "ORDER BY 2"
)
"""What else depends on the snapshot's relations or their row types, which ``DROP …
CASCADE`` drops with them: functions (made again), anything else (refused)."""
DEPENDENCIES = (
    "SELECT r.ev_class, d.refclassid = 'pg_proc'::regclass, "
    "CASE WHEN d.refclassid = 'pg_type'::regclass THEN t.typrelid ELSE d.refobjid END "
    "FROM pg_rewrite AS r JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass "
    "AND d.objid = r.oid LEFT JOIN pg_type AS t ON t.oid = d.refobjid "
    "AND d.refclassid = 'pg_type'::regclass WHERE r.ev_class = ANY({views}) "
    "UNION ALL SELECT d.objid, d.refclassid = 'pg_proc'::regclass, "
    "CASE WHEN d.refclassid = 'pg_type'::regclass THEN t.typrelid ELSE d.refobjid END "
    "FROM pg_depend AS d LEFT JOIN pg_type AS t ON t.oid = d.refobjid "
    "AND d.refclassid = 'pg_type'::regclass "
    "WHERE d.classid = 'pg_proc'::regclass AND d.objid = ANY({functions})"
)
"""What each view (its ``_RETURN`` rule) and each function of the snapshot refers to."""
FUNCTIONS = "SELECT p.oid, pg_get_functiondef(p.oid) FROM pg_proc AS p WHERE p.oid = ANY({oids})"
PROTECTED = (
    "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
    "FROM pg_attrdef AS ad JOIN pg_depend AS d ON d.classid = 'pg_attrdef'::regclass "
    "AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass "
    "JOIN pg_class AS c ON c.oid = d.refobjid AND c.relkind = 'S' "
    "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE ad.adrelid = ANY({kept})"
)
"""Sequences a kept table's column defaults take values from."""

CURRENT = (
    "SELECT c.relkind::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
    "nullif(n.nspname, current_schema()), c.relname, EXISTS (SELECT 1 FROM pg_depend AS o "
    "WHERE o.classid = 'pg_class'::regclass AND o.objid = c.oid "
    "AND o.refclassid = 'pg_class'::regclass AND o.deptype IN ('a', 'i')) "
    "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND {SCOPE} "
    "UNION ALL SELECT 'n', quote_ident(n.nspname), NULL, n.nspname, false "
    f"FROM pg_namespace AS n WHERE {SCHEMA_SCOPE}"
)
"""The relations there are now (sequences: whether a table owns them) and the schemas."""

TRIGGER_STATES = {
    "D": "DISABLE TRIGGER",
    "R": "ENABLE REPLICA TRIGGER",
    "A": "ENABLE ALWAYS TRIGGER",
}
POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
KINDS = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}


def literal(value: str) -> str:
    """``value`` as a string constant, whatever ``standard_conforming_strings`` says."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _oids(values: Iterable[int]) -> str:
    return "ARRAY[" + ", ".join(str(int(value)) for value in values) + "]::oid[]"


@dataclass
class _Column:
    name: str
    type: str
    not_null: bool
    identity: str
    generated: str
    default: str | None
    collation: str | None
    local: bool
    comment: str | None
    row_type_of: int
    """The relation whose row type (or an array of it) the column has; 0: none."""


@dataclass
class _Relation:
    oid: int
    schema: str
    name: str
    kind: str
    persistence: str
    quoted: str
    partition: bool
    bound: str | None
    partition_key: str | None
    options: str | None
    row_security: bool
    force_row_security: bool
    of_type: str | None
    parents: list[int]
    comment: str | None
    definition: str | None
    populated: bool
    access_method: str | None
    row_type: int
    quoted_schema: str
    columns: list[_Column] = field(default_factory=list)

    @property
    def declares_columns(self) -> bool:
        """Whether its CREATE TABLE lists columns and constraints (a partition or a
        typed table takes its columns from its parent or type)."""
        return not (self.partition or self.of_type)


@dataclass
class _Catalog:
    """The relations of the snapshot, read from the catalogs."""

    relations: dict[int, _Relation]
    tables: dict[int, _Relation]
    """The tables recreated (all but the kept ones)."""
    keeping: set[int]
    """The kept tables."""
    views: dict[int, _Relation]
    sequences: dict[int, _Relation]
    """The sequences recreated (those of kept tables and the protected ones left out)."""
    identities: dict[tuple[int, str], str] = field(default_factory=dict)
    """The options of each identity column's sequence, by table and column."""


@dataclass
class _Plan:
    """The snapshot's statements, by when they run."""

    sequences: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    after_tables: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    foreign_keys: list[Step] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def _rows(connection: Connection, sql: str) -> Sequence[Any]:
    """The rows of ``sql`` (which has no ``%``: some drivers take it for a placeholder)."""
    return connection.exec_driver_sql(sql).all()


def snapshot(connection: Connection, keep: Collection[str]) -> SchemaSnapshot:
    """The schema of the database on ``connection`` but the ``keep`` tables, as DDL.

    Runs in the caller's transaction, which the caller rolls back (the empty
    ``search_path`` it sets lasts until then).
    """
    default_schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
    connection.exec_driver_sql("SET LOCAL search_path = ''")

    def ref(relation: _Relation) -> TableRef:
        schema = None if relation.schema == default_schema else relation.schema
        return TableRef(schema, relation.name)

    catalog = _catalog(connection, keep, ref)
    plan = _Plan()
    protected = _sequences(connection, catalog, plan)
    order = _table_order(catalog.tables)
    _tables(connection, catalog, order, ref, plan)
    _indexes(connection, catalog, plan)
    _views_and_functions(connection, catalog, plan)
    _triggers_and_rules(connection, catalog, plan)
    _security(connection, catalog, plan)
    _comments(catalog, plan)
    tables = catalog.tables
    return SchemaSnapshot(
        tables=tuple(ref(tables[oid]) for oid in order),
        build=tuple(
            Step(sql) for sql in (*plan.sequences, *plan.tables, *plan.after_tables, *plan.indexes)
        ),
        finish=(
            *plan.foreign_keys,
            *(Step(sql) for sql in (*plan.views, *plan.late, *plan.comments)),
        ),
        # A partitioned table holds no row of its own: its partitions get them back.
        columns={
            ref(tables[oid]): tuple(
                column.name for column in tables[oid].columns if not column.generated
            )
            for oid in order
            if tables[oid].kind != "p"
        },
        names={ref(tables[oid]): tables[oid].quoted for oid in order},
        children={
            ref(tables[oid]): tuple(
                ref(child)
                for child in tables.values()
                if oid in child.parents and not child.partition
            )
            for oid in order
        },
        row_columns={
            ref(tables[oid]): tuple(column.name for column in tables[oid].columns) for oid in order
        },
        keep=tuple(keep),
        sequences=tuple(relation.quoted for relation in catalog.sequences.values()),
        schemas=tuple(
            sorted(
                {relation.quoted_schema for relation in (*tables.values(), *catalog.views.values())}
            )
        ),
        protected=frozenset(protected),
    )


def _catalog(connection: Connection, keep: Collection[str], ref: Any) -> _Catalog:
    relations: dict[int, _Relation] = {}
    for row in _rows(connection, RELATIONS):
        relation = _Relation(
            oid=int(row[0]),
            schema=str(row[1]),
            name=str(row[2]),
            kind=str(row[3]),
            persistence=str(row[4]),
            quoted=str(row[5]),
            partition=bool(row[6]),
            bound=row[7],
            partition_key=row[8],
            options=row[9] or None,
            row_security=bool(row[10]),
            force_row_security=bool(row[11]),
            of_type=row[12],
            parents=[int(parent) for parent in row[13] or ()],
            comment=row[14],
            definition=row[15],
            populated=bool(row[16]),
            access_method=row[17],
            row_type=int(row[18]),
            quoted_schema=str(row[19]),
        )
        relations[relation.oid] = relation
    keeping = {
        oid
        for oid, relation in relations.items()
        if relation.kind in ("r", "p") and kept(ref(relation), keep)
    }
    tables = {
        oid: relation
        for oid, relation in relations.items()
        if relation.kind in ("r", "p") and oid not in keeping
    }
    for row in _rows(connection, COLUMNS.format(oids=_oids(tables))):
        tables[int(row[0])].columns.append(
            _Column(
                name=str(row[1]),
                type=str(row[2]),
                not_null=bool(row[3]),
                identity=str(row[4]),
                generated=str(row[5]),
                default=row[6],
                collation=row[7],
                local=bool(row[8]),
                comment=row[9],
                row_type_of=int(row[10]),
            )
        )
    return _Catalog(
        relations=relations,
        tables=tables,
        keeping=keeping,
        views={oid: relation for oid, relation in relations.items() if relation.kind in ("v", "m")},
        sequences={},
    )


def _sequences(connection: Connection, catalog: _Catalog, plan: _Plan) -> set[str]:
    """Plan the sequences: standalone and ``serial`` ones made before the tables (``OWNED
    BY`` after them), identity ones with their column. Returns the protected ones."""
    relations, tables = catalog.relations, catalog.tables
    protected = {
        str(name) for (name,) in _rows(connection, PROTECTED.format(kept=_oids(catalog.keeping)))
    }
    listed = [oid for oid, relation in relations.items() if relation.kind == "S"]
    for row in _rows(connection, SEQUENCES.format(oids=_oids(listed))):
        oid, kind, start, increment, minimum, maximum, cache, cycle, owner, how, column = row
        sequence = relations[int(oid)]
        options = (
            f"INCREMENT BY {int(increment)} MINVALUE {int(minimum)} MAXVALUE {int(maximum)} "
            f"START WITH {int(start)} CACHE {int(cache)} {'CYCLE' if cycle else 'NO CYCLE'}"
        )
        if owner is not None and int(owner) not in tables:
            continue  # a kept table's (or an extension's): left as it is
        if owner is None and sequence.quoted in protected:
            continue
        catalog.sequences[sequence.oid] = sequence
        if how == "i":
            key = (int(owner), str(column))
            catalog.identities[key] = f"SEQUENCE NAME {sequence.quoted} {options}"
            continue
        unlogged = "UNLOGGED " if sequence.persistence == "u" else ""
        plan.sequences.append(f"CREATE {unlogged}SEQUENCE {sequence.quoted} AS {kind} {options}")
        if owner is not None:
            plan.after_tables.append(
                f"ALTER SEQUENCE {sequence.quoted} OWNED BY {tables[int(owner)].quoted}.{column}"
            )
    return protected


def _table_order(tables: Mapping[int, _Relation]) -> list[int]:
    """The tables, each after the tables it needs (its parents, the row types of its
    columns), otherwise in the order they were made."""
    needs = {
        oid: [
            other
            for other in (*relation.parents, *(column.row_type_of for column in relation.columns))
            if other in tables and other != oid
        ]
        for oid, relation in tables.items()
    }
    return _ordered(list(tables), needs)


def _ordered(nodes: Sequence[Any], needs: Mapping[Any, Sequence[Any]]) -> list[Any]:
    """``nodes``, each after those it ``needs`` (among ``nodes``); a cycle is broken
    where it is met."""
    ordered: list[Any] = []
    state: dict[Any, bool] = {}  # False: being visited, True: placed
    wanted = set(nodes)

    def visit(node: Any) -> None:
        if node in state:
            return
        state[node] = False
        for other in needs.get(node, ()):
            if other in wanted:
                visit(other)
        state[node] = True
        ordered.append(node)

    for node in nodes:
        visit(node)
    return ordered


def _column(column: _Column, identity: str | None) -> str:
    text = f"{column.name} {column.type}"
    if column.collation is not None:
        text += f" COLLATE {column.collation}"
    if column.identity:
        how = "ALWAYS" if column.identity == "a" else "BY DEFAULT"
        text += f" GENERATED {how} AS IDENTITY"
        if identity is not None:
            text += f" ({identity})"
    elif column.generated:
        stored = "STORED" if column.generated == "s" else "VIRTUAL"
        text += f" GENERATED ALWAYS AS ({column.default}) {stored}"
    elif column.default is not None:
        text += f" DEFAULT {column.default}"
    if column.not_null:
        text += " NOT NULL"
    return text


def _tables(
    connection: Connection, catalog: _Catalog, order: Sequence[int], ref: Any, plan: _Plan
) -> None:
    """Plan the tables with their constraints: foreign keys after all tables and rows."""
    relations, tables = catalog.relations, catalog.tables
    inline: dict[int, list[str]] = defaultdict(list)
    added: dict[int, list[str]] = defaultdict(list)
    keys: dict[int, list[str]] = defaultdict(list)
    kept_keys: dict[int, list[str]] = defaultdict(list)
    rows = _rows(connection, CONSTRAINTS.format(tables=_oids(tables), kept=_oids(catalog.keeping)))
    for oid, name, kind, definition, _, comment in rows:
        table = int(oid)
        clause = f"CONSTRAINT {name} {definition}"
        if table in catalog.keeping:
            # Dropping the table it references drops it: back without checking the rows
            # the kept table holds, which may point at rows that are gone.
            valid = "" if definition.endswith(" NOT VALID") else " NOT VALID"
            kept_keys[table].append(f"ADD {clause}{valid}")
            continue
        if kind == "f":
            keys[table].append(f"ADD {clause}")
        elif tables[table].declares_columns:
            inline[table].append(clause)
        else:
            added[table].append(f"ADD {clause}")
        if comment is not None:
            plan.comments.append(
                f"COMMENT ON CONSTRAINT {name} ON {tables[table].quoted} IS {literal(comment)}"
            )
    for oid in order:
        relation = tables[oid]
        plan.tables.append(_create_table(relation, relations, catalog.identities, inline[oid]))
        changes = [f"ALTER COLUMN {change}" for change in _inherited_columns(relation)]
        changes += added[oid]
        if changes:
            plan.after_tables.append(f"ALTER TABLE {relation.quoted} {', '.join(changes)}")
        if keys[oid]:
            statement = f"ALTER TABLE {relation.quoted} {', '.join(keys[oid])}"
            plan.foreign_keys.append(Step(statement))
    for oid, clauses in kept_keys.items():
        statement = f"ALTER TABLE {relations[oid].quoted} {', '.join(clauses)}"
        plan.foreign_keys.append(Step(statement, needs=ref(relations[oid])))


def _create_table(
    relation: _Relation,
    relations: Mapping[int, _Relation],
    identities: Mapping[tuple[int, str], str],
    constraints: Sequence[str],
) -> str:
    unlogged = "UNLOGGED " if relation.persistence == "u" else ""
    head = f"CREATE {unlogged}TABLE {relation.quoted}"
    if relation.partition:
        parent = relations[relation.parents[0]].quoted
        text = f"{head} PARTITION OF {parent} {relation.bound}"
    elif relation.of_type is not None:
        text = f"{head} OF {relation.of_type}"
    else:
        parts = [
            _column(column, identities.get((relation.oid, column.name)))
            for column in relation.columns
            if column.local
        ]
        text = f"{head} ({', '.join([*parts, *constraints])})"
        if relation.parents:
            parents = ", ".join(relations[parent].quoted for parent in relation.parents)
            text += f" INHERITS ({parents})"
    if relation.partition_key is not None:
        text += f" PARTITION BY {relation.partition_key}"
    if relation.access_method is not None:
        text += f" USING {relation.access_method}"
    if relation.options is not None:
        text += f" WITH ({relation.options})"
    return text


def _inherited_columns(relation: _Relation) -> list[str]:
    """For the columns a table takes from its parents or type: the defaults and ``NOT
    NULL`` it has (again, where they are its parents' too)."""
    changes = []
    for column in relation.columns:
        if relation.declares_columns and column.local:
            continue
        if column.identity or column.generated:
            continue
        if column.default is not None:
            changes.append(f"{column.name} SET DEFAULT {column.default}")
        if column.not_null:
            changes.append(f"{column.name} SET NOT NULL")
    return changes


def _indexes(connection: Connection, catalog: _Catalog, plan: _Plan) -> None:
    """Plan the indexes that back no constraint: a table's before the rows go back, a
    materialized view's after it is made; and extended statistics."""
    owners = {**catalog.tables, **catalog.views}
    for table, made, kind, quoted, comment in _rows(connection, INDEXES.format(oids=_oids(owners))):
        definition = str(made)
        if kind == "I":  # a partitioned table's: made on its partitions too
            definition = definition.replace(" ON ONLY ", " ON ", 1)
        (plan.indexes if int(table) in catalog.tables else plan.late).append(definition)
        if comment is not None:
            plan.comments.append(f"COMMENT ON INDEX {quoted} IS {literal(comment)}")
    for _, definition in _rows(connection, STATISTICS.format(oids=_oids(catalog.tables))):
        plan.late.append(definition)


def _views_and_functions(connection: Connection, catalog: _Catalog, plan: _Plan) -> None:
    """Plan the views and materialized views, with the functions that depend on a
    relation of the snapshot (dropping it drops them), in the order they need."""
    recreated = {**catalog.tables, **catalog.views, **catalog.sequences}
    types = [relation.row_type for relation in (*catalog.tables.values(), *catalog.views.values())]
    functions: list[int] = []
    refused: list[str] = []
    for is_function, oid, described, kind in _rows(
        connection, DEPENDENTS.format(oids=_oids(recreated), types=_oids(types))
    ):
        if is_function and kind in ("f", "p", "w"):
            functions.append(int(oid))
        else:
            refused.append(str(described))
    if refused:
        raise ConfigurationError(
            message(
                f"the recreate strategy cannot rebuild {'; '.join(refused)}, which depend"
                f"{'s' if len(refused) == 1 else ''} on tables it drops and makes again. "
                "Give these tests isolation='truncate' (if they keep the schema as it is) or "
                "isolation='clone' (PostgreSQL)."
            )
        )
    definitions = {
        int(oid): str(definition)
        for oid, definition in _rows(connection, FUNCTIONS.format(oids=_oids(functions)))
    }
    nodes: list[tuple[str, int]] = [("relation", oid) for oid in catalog.views]
    nodes += [("function", oid) for oid in functions]
    needs: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    rows = _rows(
        connection, DEPENDENCIES.format(views=_oids(catalog.views), functions=_oids(functions))
    )
    for dependent, on_function, referenced in rows:
        if referenced is None:
            continue
        kind = "function" if on_function else "relation"
        node = ("relation" if int(dependent) in catalog.views else "function", int(dependent))
        if (kind, int(referenced)) != node:
            needs[node].append((kind, int(referenced)))
    for kind, oid in _ordered(nodes, needs):
        if kind == "function":
            plan.views.append(definitions[oid].strip())
            continue
        view = catalog.views[oid]
        definition = (view.definition or "").strip().rstrip(";")
        options = f" WITH ({view.options})" if view.options is not None else ""
        if view.kind == "v":
            plan.views.append(f"CREATE VIEW {view.quoted}{options} AS {definition}")
            continue
        using = f" USING {view.access_method}" if view.access_method is not None else ""
        data = "WITH DATA" if view.populated else "WITH NO DATA"
        plan.views.append(
            f"CREATE MATERIALIZED VIEW {view.quoted}{using}{options} AS {definition} {data}"
        )


def _triggers_and_rules(connection: Connection, catalog: _Catalog, plan: _Plan) -> None:
    """Plan the rules and triggers, made after the rows went back: none fires for them."""
    owners = {**catalog.tables, **catalog.views}
    for _, definition in _rows(connection, RULES.format(oids=_oids(owners))):
        plan.late.append(str(definition).strip().rstrip(";"))
    for relation, definition, state, name, comment in _rows(
        connection, TRIGGERS.format(oids=_oids(owners))
    ):
        quoted = owners[int(relation)].quoted
        plan.late.append(str(definition))
        if state in TRIGGER_STATES:
            plan.late.append(f"ALTER TABLE {quoted} {TRIGGER_STATES[state]} {name}")
        if comment is not None:
            plan.comments.append(f"COMMENT ON TRIGGER {name} ON {quoted} IS {literal(comment)}")


def _security(connection: Connection, catalog: _Catalog, plan: _Plan) -> None:
    """Plan row-level security, its policies, and the privileges granted to other roles."""
    tables = catalog.tables
    for relation in tables.values():
        if relation.row_security:
            plan.late.append(f"ALTER TABLE {relation.quoted} ENABLE ROW LEVEL SECURITY")
        if relation.force_row_security:
            plan.late.append(f"ALTER TABLE {relation.quoted} FORCE ROW LEVEL SECURITY")
    for table, name, permissive, command, roles, using, check in _rows(
        connection, POLICIES.format(oids=_oids(tables))
    ):
        text = (
            f"CREATE POLICY {name} ON {tables[int(table)].quoted} "
            f"AS {'PERMISSIVE' if permissive else 'RESTRICTIVE'} "
            f"FOR {POLICY_COMMANDS[str(command)]} TO {roles or 'PUBLIC'}"
        )
        if using is not None:
            text += f" USING ({using})"
        if check is not None:
            text += f" WITH CHECK ({check})"
        plan.late.append(text)
    recreated = {**tables, **catalog.views, **catalog.sequences}
    for oid, grantee, grantable, privileges in _rows(
        connection, GRANTS.format(oids=_oids(recreated))
    ):
        relation = recreated[int(oid)]
        on = "SEQUENCE" if relation.kind == "S" else "TABLE"
        option = " WITH GRANT OPTION" if grantable else ""
        plan.late.append(f"GRANT {privileges} ON {on} {relation.quoted} TO {grantee}{option}")


def _comments(catalog: _Catalog, plan: _Plan) -> None:
    for relation in (
        *catalog.tables.values(),
        *catalog.views.values(),
        *catalog.sequences.values(),
    ):
        if relation.comment is not None:
            kind = KINDS[relation.kind]
            plan.comments.append(
                f"COMMENT ON {kind} {relation.quoted} IS {literal(relation.comment)}"
            )
        for column in relation.columns:
            if column.comment is not None:
                plan.comments.append(
                    f"COMMENT ON COLUMN {relation.quoted}.{column.name} "
                    f"IS {literal(column.comment)}"
                )


# -- putting the database back --------------------------------------------------------


def script(
    current: Iterable[Sequence[Any]],
    snapshot: SchemaSnapshot,
    baseline: Baseline,
    recreated: Recreated,
) -> list[str]:
    """The statements that put the database back at ``baseline``, in one transaction,
    given the relations there are now (``current``, from :data:`CURRENT`)."""
    present: set[TableRef] = set()
    schemas: set[str] = set()
    drops: dict[str, list[str]] = {"VIEW": [], "MATERIALIZED VIEW": [], "TABLE": [], "SEQUENCE": []}
    for kind, quoted, schema, name, owned in current:
        if kind == "n":
            schemas.add(str(quoted))
            continue
        table = TableRef(None if schema is None else str(schema), str(name))
        if kind in ("r", "p"):
            present.add(table)
            if kept(table, snapshot.keep):
                recreated.kept.append(table)
            else:
                drops["TABLE"].append(str(quoted))
        elif kind in ("v", "m"):
            drops[KINDS[kind]].append(str(quoted))
        elif not owned and quoted not in snapshot.protected:
            drops["SEQUENCE"].append(str(quoted))  # a table's own go with it
    statements = ["SET LOCAL client_min_messages = warning"]
    statements += [
        f"DROP {kind} IF EXISTS {', '.join(names)} CASCADE"
        for kind, names in drops.items()
        if names
    ]
    statements += [
        f"CREATE SCHEMA {schema}" for schema in snapshot.schemas if schema not in schemas
    ]
    statements += steps(snapshot.build, present)
    statements += inserts(snapshot, baseline, recreated)
    statements += steps(snapshot.finish, present)
    positions = [
        f"pg_catalog.setval({literal(name)}, {int(last)}, true)"
        for name in snapshot.sequences
        for last, _ in [baseline.sequences.get(name, (None, 0))]
        if last is not None
    ]
    if positions:
        statements.append("SELECT " + ", ".join(positions))
    return statements


def inserts(snapshot: SchemaSnapshot, baseline: Baseline, recreated: Recreated) -> list[str]:
    """``INSERT`` statements putting the baseline's rows back into the recreated tables,
    from their text images; the tables whose rows the baseline could not keep go to
    ``recreated.unrestored``.

    A table that others inherit from was read with their rows (as ``SELECT`` reads
    it): its children's rows, as rows of its own type, are taken out of its images.
    """
    statements = []
    for name in baseline.order:
        columns = snapshot.columns.get(name)
        table = baseline.tables.get(name)
        if columns is None or table is None or not table.count:
            continue
        children = [baseline.tables.get(child) for child in snapshot.children.get(name, ())]
        if table.images is None or any(
            child is not None and child.count and child.images is None for child in children
        ):
            recreated.unrestored.append(name)
            continue
        quoted = snapshot.names[name]
        source = f"unnest({_text_array(table.images)})"
        theirs = [
            _as_parent(snapshot, name, child.name, child.images)
            for child in children
            if child is not None and child.images
        ]
        if theirs:
            source = (
                f"(SELECT unnest({_text_array(table.images)}) "
                f"EXCEPT ALL ({' UNION ALL '.join(theirs)}))"
            )
        picked = ", ".join(f"(s.r).{column}" for column in columns)
        statements.append(
            f"INSERT INTO {quoted} ({', '.join(columns)}) OVERRIDING SYSTEM VALUE "
            f"SELECT {picked} FROM (SELECT CAST(x AS {quoted}) AS r "
            f"FROM {source} AS t(x)) AS s"
        )
    return statements


def _text_array(images: Sequence[str]) -> str:
    return f"CAST(ARRAY[{', '.join(literal(image) for image in images)}] AS text[])"


def _as_parent(
    snapshot: SchemaSnapshot, parent: TableRef, child: TableRef, images: Sequence[str]
) -> str:
    """The rows ``images`` of ``child`` as the text images of rows of ``parent``."""
    columns = ", ".join(f"(c.r).{column}" for column in snapshot.row_columns[parent])
    return (
        f"SELECT CAST(CAST(ROW({columns}) AS {snapshot.names[parent]}) AS text) "
        f"FROM (SELECT CAST(y AS {snapshot.names[child]}) AS r "
        f"FROM unnest({_text_array(images)}) AS y) AS c"
    )
