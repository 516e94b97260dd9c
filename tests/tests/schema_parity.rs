//! Each SQL dialect has its own hand-written migrations, so only this test keeps them building
//! one schema: it reads each catalogue into one neutral description (tables, nullability, keys,
//! indexes, foreign keys; not types, defaults or checks, which differ by design) and compares.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use adapters_mysql::{MysqlConfig, MysqlStore};
use adapters_postgres::{PgConfig, PgStore};
use adapters_sqlite::{SqliteConfig, SqliteStore};
use sqlx::{Connection, MySqlConnection, PgConnection, SqliteConnection};
use tests::services;

/// A schema as the application sees it: table name → [`Table`]. `_sqlx_migrations` and the
/// database's own tables are left out.
type Schema = BTreeMap<String, Table>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Table {
    /// Column name → whether it takes nulls. A primary-key column counts as not null (SQLite
    /// lets a non-integer primary key hold nulls unless it also says `not null`).
    columns: BTreeMap<String, Nullability>,
    primary_key: Vec<String>,
    /// Unique indexes and unique constraints by name, partial ones included (the adapters
    /// map violations to rules by these names or columns); the primary key's index is not here.
    unique: BTreeMap<String, Index>,
    /// Non-unique indexes by name.
    indexes: BTreeMap<String, Index>,
    foreign_keys: BTreeSet<ForeignKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nullability {
    NotNull,
    Nullable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    /// Key columns in index order; an expression is `<expression>`.
    columns: Vec<String>,
    /// Has a `where` clause (predicates are spelled differently by each dialect, so only
    /// their presence is compared).
    partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ForeignKey {
    columns: Vec<String>,
    references: String,
    referenced_columns: Vec<String>,
}

const EXPRESSION: &str = "<expression>";

/// Non-unique indexes each dialect shapes its own way, with why: both dialects must have
/// them (by name), only their columns and predicate are not compared.
const DIALECT_SHAPED_INDEXES: &[(&str, &str, &str)] = &[(
    "outbox",
    "outbox_pending_idx",
    "PostgreSQL's is partial, (seq) where status = 'pending'; MariaDB, without partial \
     indexes, has (status, seq); SQLite, which has no table statistics, plans the relay's \
     claim (`order by seq limit n`) as a scan of the whole outbox instead of using that \
     index, so it keeps (status, available_at)",
)];
const DIALECT_SHAPED: &str = "<shaped by the dialect>";

/// Objects only one dialect has, with why: `(dialect, table, index)`, the whole table when
/// `index` is `None`. Each must be in its dialect's schema (so the list cannot go stale)
/// and is left out of the comparison.
const DIALECT_ONLY: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "PostgreSQL",
        "members",
        Some("members_search_idx"),
        "the staff search's pg_trgm GIN index over lower(email), lower(name) and phone; the \
         other databases have no index for `like '%text%'`",
    ),
    (
        "MariaDB",
        "member_trigrams",
        None,
        "the trigrams of each member's e-mail, name and phone that the store keeps for the \
         staff search, MariaDB having no trigram index",
    ),
    (
        "MariaDB",
        "member_digit_grams",
        None,
        "the 4-digit substrings of each member's e-mail, name and phone that the store keeps \
         beside member_trigrams, for the staff search by part of a phone number",
    ),
];

impl Table {
    fn add_index(&mut self, name: String, unique: bool, columns: Vec<String>, partial: bool) {
        let index = Index { columns, partial };
        if unique {
            self.unique.insert(name, index);
        } else {
            self.indexes.insert(name, index);
        }
    }
}

/// What every dialect's description gets after reading its catalogue: primary-key columns
/// are not null.
fn normalized(mut schema: Schema) -> Schema {
    for table in schema.values_mut() {
        for column in &table.primary_key {
            if let Some(nullability) = table.columns.get_mut(column) {
                *nullability = Nullability::NotNull;
            }
        }
    }
    schema
}

/// Reads SQLite's catalogue through its pragma table-valued functions. Each dialect has one
/// such function returning a [`Schema`].
async fn describe_sqlite(conn: &mut SqliteConnection) -> Schema {
    let names: Vec<String> = sqlx::query_scalar(
        "select name from sqlite_schema where type = 'table' \
         and name not like 'sqlite!_%' escape '!' and name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("sqlite tables");

    let mut schema = Schema::new();
    for name in names {
        let mut table = Table::default();

        let columns: Vec<(String, i64, i64)> =
            sqlx::query_as("select name, \"notnull\", pk from pragma_table_info(?1) order by cid")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await
                .expect("sqlite columns");
        let mut primary_key: Vec<(i64, String)> = Vec::new();
        for (column, not_null, pk) in columns {
            let nullability = if not_null != 0 {
                Nullability::NotNull
            } else {
                Nullability::Nullable
            };
            if pk > 0 {
                primary_key.push((pk, column.clone()));
            }
            table.columns.insert(column, nullability);
        }
        primary_key.sort();
        table.primary_key = primary_key.into_iter().map(|(_, column)| column).collect();

        // origin: `pk` is the primary key's own index (described above), `u` a `unique`
        // constraint, `c` a `create [unique] index`.
        let indexes: Vec<(String, bool, String, bool)> =
            sqlx::query_as("select name, \"unique\", origin, partial from pragma_index_list(?1)")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await
                .expect("sqlite indexes");
        for (index, unique, origin, partial) in indexes {
            if origin == "pk" {
                continue;
            }
            let columns: Vec<Option<String>> =
                sqlx::query_scalar("select name from pragma_index_info(?1) order by seqno")
                    .bind(&index)
                    .fetch_all(&mut *conn)
                    .await
                    .expect("sqlite index columns");
            let columns = columns
                .into_iter()
                .map(|c| c.unwrap_or_else(|| EXPRESSION.to_owned()))
                .collect();
            table.add_index(index, unique, columns, partial);
        }

        // One row per column of each foreign key (`id`); `to` is null when the reference
        // names no columns, i.e. means the referenced table's primary key.
        let references: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("select id, \"table\", \"from\", \"to\" from pragma_foreign_key_list(?1) order by id, seq")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await
                .expect("sqlite foreign keys");
        let mut keys: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        let mut to_primary_key = BTreeSet::new();
        for (id, parent, from, to) in references {
            let key = keys.entry(id).or_insert_with(|| ForeignKey {
                columns: Vec::new(),
                references: parent,
                referenced_columns: Vec::new(),
            });
            key.columns.push(from);
            match to {
                Some(to) => key.referenced_columns.push(to),
                None => {
                    to_primary_key.insert(id);
                }
            }
        }
        for (id, mut key) in keys {
            if to_primary_key.contains(&id) {
                key.referenced_columns =
                    sqlx::query_scalar("select name from pragma_table_info(?1) where pk > 0 order by pk")
                        .bind(&key.references)
                        .fetch_all(&mut *conn)
                        .await
                        .expect("sqlite referenced primary key");
            }
            table.foreign_keys.insert(key);
        }

        schema.insert(name, table);
    }
    normalized(schema)
}

/// Reads PostgreSQL's catalogue (`pg_catalog`: `information_schema` has no indexes) for the
/// current schema, one query per kind of object.
async fn describe_postgres(conn: &mut PgConnection) -> Schema {
    let names: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = current_schema() and c.relkind in ('r', 'p') \
           and c.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("postgres tables");
    let mut schema: Schema = names.into_iter().map(|name| (name, Table::default())).collect();

    let columns: Vec<(String, String, bool)> = sqlx::query_as(
        "select c.relname::text, a.attname::text, a.attnotnull \
         from pg_attribute a \
         join pg_class c on c.oid = a.attrelid \
         join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = current_schema() and a.attnum > 0 and not a.attisdropped",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("postgres columns");
    for (table, column, not_null) in columns {
        if let Some(table) = schema.get_mut(&table) {
            let nullability = if not_null {
                Nullability::NotNull
            } else {
                Nullability::Nullable
            };
            table.columns.insert(column, nullability);
        }
    }

    // Every index, the primary key's and the unique constraints' included; its key columns
    // (not `include` ones) in order, an expression's position (attnum 0) as `<expression>`.
    let indexes: Vec<(String, String, bool, bool, bool, Vec<String>)> = sqlx::query_as(
        "select c.relname::text, i.relname::text, x.indisprimary, x.indisunique, \
                x.indpred is not null, \
                array(select coalesce(a.attname::text, '<expression>') \
                      from unnest(x.indkey::int2[]) with ordinality k(attnum, ord) \
                      left join pg_attribute a on a.attrelid = x.indrelid and a.attnum = k.attnum \
                      where k.ord <= x.indnkeyatts \
                      order by k.ord) \
         from pg_index x \
         join pg_class i on i.oid = x.indexrelid \
         join pg_class c on c.oid = x.indrelid \
         join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("postgres indexes");
    for (table, index, primary, unique, partial, columns) in indexes {
        if let Some(table) = schema.get_mut(&table) {
            if primary {
                table.primary_key = columns;
            } else {
                table.add_index(index, unique, columns, partial);
            }
        }
    }

    let references: Vec<(String, String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "select c.relname::text, p.relname::text, \
                array(select a.attname::text from unnest(f.conkey) with ordinality k(attnum, ord) \
                      join pg_attribute a on a.attrelid = f.conrelid and a.attnum = k.attnum \
                      order by k.ord), \
                array(select a.attname::text from unnest(f.confkey) with ordinality k(attnum, ord) \
                      join pg_attribute a on a.attrelid = f.confrelid and a.attnum = k.attnum \
                      order by k.ord) \
         from pg_constraint f \
         join pg_class c on c.oid = f.conrelid \
         join pg_class p on p.oid = f.confrelid \
         join pg_namespace n on n.oid = c.relnamespace \
         where f.contype = 'f' and n.nspname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("postgres foreign keys");
    for (table, parent, columns, referenced_columns) in references {
        if let Some(table) = schema.get_mut(&table) {
            table.foreign_keys.insert(ForeignKey {
                columns,
                references: parent,
                referenced_columns,
            });
        }
    }

    normalized(schema)
}

/// Tables only MySQL/MariaDB has, with why.
const MYSQL_ONLY_TABLES: &[(&str, &str)] = &[(
    "replication_heartbeat",
    "replica lag is the age of a row the primary's instances write (Seconds_Behind_Master is \
     NULL with a stopped thread and has one-second steps); PostgreSQL reports replay times itself",
)];

/// MySQL has no partial indexes: where PostgreSQL's index has a `where`, MySQL's key has the
/// predicate's column joined to it (see the migrations). `(table, index, predicate column)`:
/// the column is taken out again and the index described as partial.
const MYSQL_PREDICATE_COLUMNS: &[(&str, &str, &str)] = &[
    ("members", "members_withdrawn_idx", "anonymised_at"),
    ("outbox", "outbox_pending_idx", "status"),
    ("outbox", "outbox_aggregate_idx", "status"),
];

/// The column a partial-index emulation's generated column copies: MySQL says a partial
/// unique index as a unique key on `case when <predicate> then <column> end`, a column that
/// is null (so never a duplicate) where the predicate does not hold.
fn generated_copy_of(expression: &str) -> Option<String> {
    let expression = expression.to_lowercase();
    let (_, then) = expression.split_once(" then ")?;
    let column = then.split_whitespace().next()?;
    Some(column.trim_matches('`').to_owned())
}

/// Reads MySQL's or MariaDB's catalogue (`information_schema`) for the current database,
/// one query per kind of object, describing what MySQL cannot say directly as the other
/// dialects say it: a unique key on a generated column as a partial unique index over the
/// column it copies ([`generated_copy_of`]), a key with a predicate column joined as a
/// partial index ([`MYSQL_PREDICATE_COLUMNS`]). The index InnoDB makes for a foreign key
/// that has none (named like the constraint) is not an index of the schema's, and
/// [`MYSQL_ONLY_TABLES`] are left out.
async fn describe_mysql(conn: &mut MySqlConnection) -> Schema {
    let names: Vec<String> = sqlx::query_scalar(
        "select cast(table_name as char) from information_schema.tables \
         where table_schema = database() and table_type = 'BASE TABLE' and table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("mysql tables");
    let mut schema: Schema = names
        .into_iter()
        .filter(|name| !MYSQL_ONLY_TABLES.iter().any(|(only, _)| only == name))
        .map(|name| (name, Table::default()))
        .collect();

    let columns: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "select cast(table_name as char), cast(column_name as char), cast(is_nullable as char), \
                cast(nullif(generation_expression, '') as char) \
         from information_schema.columns where table_schema = database()",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("mysql columns");
    // (table, generated column) → the column it copies.
    let mut copies: BTreeMap<(String, String), String> = BTreeMap::new();
    for (table_name, column, nullable, generated) in columns {
        let Some(table) = schema.get_mut(&table_name) else {
            continue;
        };
        if let Some(expression) = generated {
            let copied = generated_copy_of(&expression)
                .unwrap_or_else(|| panic!("{table_name}.{column}: a generated column of no known shape: {expression}"));
            copies.insert((table_name, column), copied);
            continue;
        }
        let nullability = if nullable == "YES" {
            Nullability::Nullable
        } else {
            Nullability::NotNull
        };
        table.columns.insert(column, nullability);
    }

    let references: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "select cast(table_name as char), cast(constraint_name as char), cast(column_name as char), \
                cast(referenced_table_name as char), cast(referenced_column_name as char) \
         from information_schema.key_column_usage \
         where table_schema = database() and referenced_table_name is not null \
         order by table_name, constraint_name, ordinal_position",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("mysql foreign keys");
    let mut keys: BTreeMap<(String, String), ForeignKey> = BTreeMap::new();
    for (table, constraint, column, parent, parent_column) in references {
        let key = keys.entry((table, constraint)).or_insert_with(|| ForeignKey {
            columns: Vec::new(),
            references: parent,
            referenced_columns: Vec::new(),
        });
        key.columns.push(column);
        key.referenced_columns.push(parent_column);
    }

    let index_columns: Vec<(String, String, i64, String)> = sqlx::query_as(
        "select cast(table_name as char), cast(index_name as char), cast(non_unique as signed), \
                cast(column_name as char) \
         from information_schema.statistics where table_schema = database() \
         order by table_name, index_name, seq_in_index",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("mysql indexes");
    let mut indexes: BTreeMap<(String, String), (bool, Vec<String>)> = BTreeMap::new();
    for (table, index, non_unique, column) in index_columns {
        indexes
            .entry((table, index))
            .or_insert_with(|| (non_unique == 0, Vec::new()))
            .1
            .push(column);
    }
    for ((table_name, index), (unique, mut columns)) in indexes {
        let Some(table) = schema.get_mut(&table_name) else {
            continue;
        };
        if index == "PRIMARY" {
            table.primary_key = columns;
            continue;
        }
        let implicit_for_key = keys
            .get(&(table_name.clone(), index.clone()))
            .is_some_and(|key| !unique && key.columns == columns);
        if implicit_for_key {
            continue;
        }
        let mut partial = false;
        for column in &mut columns {
            if let Some(copied) = copies.get(&(table_name.clone(), column.clone())) {
                *column = copied.clone();
                partial = true;
            }
        }
        for (_, _, predicate) in MYSQL_PREDICATE_COLUMNS
            .iter()
            .filter(|(t, i, _)| *t == table_name && *i == index)
        {
            let before = columns.len();
            columns.retain(|c| c != predicate);
            assert_eq!(
                columns.len() + 1,
                before,
                "{table_name}.{index} has no column {predicate}"
            );
            partial = true;
        }
        table.add_index(index, unique, columns, partial);
    }

    for ((table, _), key) in keys {
        if let Some(table) = schema.get_mut(&table) {
            table.foreign_keys.insert(key);
        }
    }
    normalized(schema)
}

/// A fresh SQLite file migrated by the adapter, described over a connection of our own.
async fn sqlite_schema() -> Schema {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("parity.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&SqliteConfig {
        url: url.clone(),
        ..SqliteConfig::default()
    })
    .await
    .expect("connect to SQLite");
    store.migrate().await.expect("migrate SQLite");
    store.close().await;

    let mut conn = SqliteConnection::connect(&url).await.expect("open the SQLite file");
    let schema = describe_sqlite(&mut conn).await;
    conn.close().await.ok();
    schema
}

/// A fresh PostgreSQL database migrated by the adapter, described over a connection of our
/// own; `None` when PostgreSQL is missing and skipping is allowed.
async fn postgres_schema() -> Option<Schema> {
    let pg = services::postgres().await?;
    let db = services::fresh_pg(&pg).await;
    let store = PgStore::connect(&PgConfig {
        primary_url: db.primary_url.clone(),
        ..PgConfig::default()
    })
    .await
    .expect("connect to PostgreSQL");
    store.migrate().await.expect("migrate PostgreSQL");
    store.close().await;

    let mut conn = PgConnection::connect(&db.primary_url)
        .await
        .expect("connect to the fresh database");
    let schema = describe_postgres(&mut conn).await;
    conn.close().await.ok();
    Some(schema)
}

/// A fresh MariaDB database migrated by the adapter, described over a connection of our
/// own; `None` when MariaDB is missing and skipping is allowed.
async fn mysql_schema() -> Option<Schema> {
    let urls = services::mariadb().await?;
    let db = services::fresh_mariadb(&urls).await;
    let store = MysqlStore::connect(&MysqlConfig::primary(db.primary_url.clone()))
        .await
        .expect("connect to MariaDB");
    store.migrate().await.expect("migrate MariaDB");
    store.close().await;

    let mut conn = MySqlConnection::connect(&db.primary_url)
        .await
        .expect("connect to the fresh database");
    let schema = describe_mysql(&mut conn).await;
    conn.close().await.ok();
    Some(schema)
}

/// One line per difference, `what: left …, right …` (`None` where a side lacks it).
fn differences(left: (&str, &Schema), right: (&str, &Schema)) -> Vec<String> {
    let ((l_name, l_schema), (r_name, r_schema)) = (left, right);
    let mut out = Vec::new();
    let names: BTreeSet<&String> = l_schema.keys().chain(r_schema.keys()).collect();
    for name in names {
        let (Some(l), Some(r)) = (l_schema.get(name), r_schema.get(name)) else {
            out.push(format!(
                "table {name}: {l_name} {}, {r_name} {}",
                presence(l_schema.contains_key(name)),
                presence(r_schema.contains_key(name))
            ));
            continue;
        };
        let sides = (l_name, r_name);
        map_differences(&mut out, &format!("{name} column"), sides, &l.columns, &r.columns);
        if l.primary_key != r.primary_key {
            out.push(format!(
                "{name} primary key: {l_name} {:?}, {r_name} {:?}",
                l.primary_key, r.primary_key
            ));
        }
        map_differences(&mut out, &format!("{name} unique"), sides, &l.unique, &r.unique);
        map_differences(&mut out, &format!("{name} index"), sides, &l.indexes, &r.indexes);
        for key in l.foreign_keys.symmetric_difference(&r.foreign_keys) {
            let only = if l.foreign_keys.contains(key) { l_name } else { r_name };
            out.push(format!("{name} foreign key only in {only}: {key:?}"));
        }
    }
    out
}

fn presence(present: bool) -> &'static str {
    if present { "has it" } else { "lacks it" }
}

fn map_differences<V: PartialEq + Debug>(
    out: &mut Vec<String>,
    what: &str,
    (l_name, r_name): (&str, &str),
    left: &BTreeMap<String, V>,
    right: &BTreeMap<String, V>,
) {
    let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for key in keys {
        let (l, r) = (left.get(key), right.get(key));
        if l != r {
            out.push(format!("{what} {key}: {l_name} {l:?}, {r_name} {r:?}"));
        }
    }
}

/// `schema` (of `dialect`) with the shape of each of [`DIALECT_SHAPED_INDEXES`] blanked
/// out and its [`DIALECT_ONLY`] objects, which must be there, left out.
fn comparable(dialect: &str, schema: &Schema) -> Schema {
    let mut schema = schema.clone();
    for (only_in, table, index, _why) in DIALECT_ONLY {
        if *only_in != dialect {
            continue;
        }
        let removed = match index {
            None => schema.remove(*table).is_some(),
            Some(index) => schema
                .get_mut(*table)
                .is_some_and(|t| t.indexes.remove(*index).is_some()),
        };
        assert!(removed, "{dialect} lacks {table} {index:?}, listed as its own");
    }
    for (table, index, _why) in DIALECT_SHAPED_INDEXES {
        if let Some(index) = schema.get_mut(*table).and_then(|t| t.indexes.get_mut(*index)) {
            *index = Index {
                columns: vec![DIALECT_SHAPED.to_owned()],
                partial: false,
            };
        }
    }
    schema
}

fn assert_same_schema(reference: (&str, &Schema), other: (&str, &Schema)) {
    let (reference, other) = (
        (reference.0, &comparable(reference.0, reference.1)),
        (other.0, &comparable(other.0, other.1)),
    );
    let found = differences(reference, other);
    assert!(
        found.is_empty(),
        "the {} and {} schemas differ ({} differences):\n  {}",
        reference.0,
        other.0,
        found.len(),
        found.join("\n  ")
    );
    // The line-by-line report above is for reading; this is the comparison itself.
    assert_eq!(reference.1, other.1);
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_build_the_same_schema() {
    let sqlite = sqlite_schema().await;
    let Some(postgres) = postgres_schema().await else {
        return;
    };
    assert_same_schema(("SQLite", &sqlite), ("PostgreSQL", &postgres));
}

/// Facts any correct description has, so the comparison cannot pass by both sides being
/// empty or by a builder that misses a kind of object.
fn assert_known_facts(dialect: &str, schema: &Schema) {
    let table = |name: &str| {
        schema
            .get(name)
            .unwrap_or_else(|| panic!("{dialect}: no table {name} in {:?}", schema.keys()))
    };
    let index = |columns: &[&str], partial: bool| Index {
        columns: columns.iter().map(|&c| c.to_owned()).collect(),
        partial,
    };

    assert!(!schema.contains_key("_sqlx_migrations"), "{dialect}: sqlx's own table");
    let members = table("members");
    assert_eq!(members.columns.get("email"), Some(&Nullability::NotNull), "{dialect}");
    assert_eq!(
        members.columns.get("last_login_at"),
        Some(&Nullability::Nullable),
        "{dialect}"
    );
    assert_eq!(members.primary_key, ["id"], "{dialect}");
    assert_eq!(
        members.unique.get("members_email_key"),
        Some(&index(&["email"], false)),
        "{dialect}"
    );
    assert_eq!(
        members.indexes.get("members_withdrawn_idx"),
        Some(&index(&["status", "withdrawn_at"], true)),
        "{dialect}"
    );
    assert_eq!(
        table("policies").unique.get("policies_one_active_key"),
        Some(&index(&["member_id"], true)),
        "{dialect}"
    );
    assert_eq!(table("order_items").primary_key, ["order_id", "line_no"], "{dialect}");

    let ledger = table("wallet_ledger");
    assert_eq!(ledger.primary_key, ["seq"], "{dialect}");
    assert_eq!(
        ledger.unique.get("wallet_ledger_id_key"),
        Some(&index(&["id"], false)),
        "{dialect}"
    );
    assert!(
        ledger.foreign_keys.contains(&ForeignKey {
            columns: vec!["member_id".to_owned()],
            references: "members".to_owned(),
            referenced_columns: vec!["id".to_owned()],
        }),
        "{dialect}: wallet_ledger.member_id references members(id): {:?}",
        ledger.foreign_keys
    );
    assert_eq!(
        table("outbox").columns.get("updated_at"),
        Some(&Nullability::NotNull),
        "{dialect}"
    );
}

#[tokio::test]
async fn postgres_and_mariadb_migrations_build_the_same_schema() {
    let Some(postgres) = postgres_schema().await else {
        return;
    };
    let Some(mysql) = mysql_schema().await else {
        return;
    };
    assert_same_schema(("PostgreSQL", &postgres), ("MariaDB", &mysql));
}

#[tokio::test]
async fn each_description_sees_known_facts() {
    assert_known_facts("SQLite", &sqlite_schema().await);
    if let Some(postgres) = postgres_schema().await {
        assert_known_facts("PostgreSQL", &postgres);
    }
    if let Some(mysql) = mysql_schema().await {
        assert_known_facts("MariaDB", &mysql);
        // What only MySQL's description has to normalise, seen through.
        let outbox = &mysql["outbox"];
        assert_eq!(
            outbox
                .indexes
                .get("outbox_aggregate_idx")
                .map(|i| (&i.columns[..], i.partial)),
            Some((&["aggregate_id".to_owned(), "seq".to_owned()][..], true)),
            "{outbox:?}"
        );
        assert!(
            !mysql["policies"].columns.contains_key("active_member_id"),
            "the emulation's generated column is not a column of the schema's"
        );
    }
}

/// The SQLite rebuilds of 0006 on a database that already has rows: every row survives,
/// `seq` follows the old insertion order (the rowid), the outbox never hands out a `seq`
/// again, and `updated_at` starts at `created_at`.
#[tokio::test]
async fn sqlite_parity_migration_keeps_existing_rows_and_their_order() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("upgrade.db");
    let url = format!("sqlite://{}", path.display());
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters-sqlite/migrations");
    let migrator = sqlx::migrate::Migrator::new(migrations)
        .await
        .expect("read the migrations");

    let options = url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .expect("SQLite URL")
        .create_if_missing(true)
        .foreign_keys(true);
    let mut conn = SqliteConnection::connect_with(&options).await.expect("create the file");
    migrator.run_to(5, &mut conn).await.expect("migrate to 0005");
    // Rows inserted out of id order, so the rowid (insertion) order is not the id order.
    sqlx::raw_sql(
        "insert into members values ('m1', 'a@example.com', 'A', '0101234567', 'h', 'rider', \
                'active', null, null, null, 1, 1); \
         insert into policies values ('p1', 'm1', 'PN-1', 1000, 1, 'active', null, null, null, 1, 1, 1); \
         insert into policy_audit values ('a2', 'p1', 'rider', 'enrolled', null, null, null, 5, 5); \
         insert into policy_audit values ('a1', 'p1', 'cx', 'expired', 'admin_request', null, 9, 5, 5); \
         insert into wallet_ledger values ('l2', 'm1', 'charge', 10, 10, null, 7); \
         insert into wallet_ledger values ('l1', 'm1', 'charge', 5, 15, null, 7); \
         insert into outbox (id, topic, event_type, aggregate_id, payload, available_at, created_at) \
             values ('e1', 't', 'x', 'm1', '{}', 1, 11), ('e2', 't', 'x', 'm1', '{}', 1, 12), \
                    ('e3', 't', 'x', 'm1', '{}', 1, 13); \
         delete from outbox where id = 'e3'; \
         insert into idempotency_keys values ('charge', 'k1', 'f', null, 42); \
         insert into refresh_tokens values ('hash', 'm1', 'family', 99, null, null, 43);",
    )
    .execute(&mut conn)
    .await
    .expect("rows before 0006");
    conn.close().await.ok();

    let store = SqliteStore::connect(&SqliteConfig {
        url: url.clone(),
        ..SqliteConfig::default()
    })
    .await
    .expect("connect");
    store.migrate().await.expect("migrate an existing database");
    store.close().await;

    let mut conn = SqliteConnection::connect(&url).await.expect("open the file");
    let ids = |sql: &'static str| sqlx::query_scalar::<_, String>(sql);
    assert_eq!(
        ids("select id from policy_audit order by seq")
            .fetch_all(&mut conn)
            .await
            .expect("audit"),
        ["a2", "a1"]
    );
    assert_eq!(
        ids("select id from wallet_ledger order by seq")
            .fetch_all(&mut conn)
            .await
            .expect("ledger"),
        ["l2", "l1"]
    );
    sqlx::query(
        "insert into outbox (id, topic, event_type, aggregate_id, payload, available_at, created_at) \
                 values ('e4', 't', 'x', 'm1', '{}', 1, 14)",
    )
    .execute(&mut conn)
    .await
    .expect("a new outbox row");
    let outbox: Vec<(i64, String, i64)> = sqlx::query_as("select seq, id, updated_at from outbox order by seq")
        .fetch_all(&mut conn)
        .await
        .expect("outbox");
    // e4 gets seq 4, not e3's 3: the autoincrement high-water mark survived the rebuild.
    assert_eq!(
        outbox,
        [
            (1, "e1".to_owned(), 11),
            (2, "e2".to_owned(), 12),
            (4, "e4".to_owned(), 0)
        ]
    );
    let updated: Vec<i64> =
        sqlx::query_scalar("select updated_at from idempotency_keys union all select updated_at from refresh_tokens")
            .fetch_all(&mut conn)
            .await
            .expect("updated_at");
    assert_eq!(updated, [42, 43]);
    let broken: Vec<(String,)> = sqlx::query_as("select \"table\" from pragma_foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .expect("foreign key check");
    assert!(broken.is_empty(), "rows breaking a foreign key: {broken:?}");
    conn.close().await.ok();
}
