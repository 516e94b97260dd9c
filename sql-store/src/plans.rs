//! The online queries (what a request waits on) as the store runs them, and their plans:
//! so a test can check, on a database of realistic size, that each one reads through an
//! index, and a benchmark can time them. The statements come from the same constructors
//! the store's ports use, so what is checked is what runs.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use core_domain::{MemberId, OrderId, PolicyId};
use ports::{MemberQuery, PageRequest, StoreError};

use crate::backend::Backend;
use crate::sql::{Dialect, Lock, Query, SqlConn, Statement};
use crate::{Columns, SqlStore, events, insurance, members, orders};

/// Arguments for the online queries: values that exist in the database the plans are read
/// on (a planner answers for the values it is given).
#[derive(Debug, Clone)]
pub struct Samples {
    /// A member, with policies, sessions and orders.
    pub member_id: MemberId,
    /// That member's e-mail (login).
    pub email: String,
    /// A policy of the member.
    pub policy_id: PolicyId,
    /// A premium statement's period.
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// Orders whose lines a list of orders reads (not empty).
    pub order_ids: Vec<OrderId>,
    /// The outbox relay's "now".
    pub now: OffsetDateTime,
    /// Staff searches, each named (`e-mail part`, `phone`, …).
    pub searches: Vec<(String, MemberQuery)>,
}

/// One online query: what it is for, and the statement the store runs for it.
#[derive(Debug, Clone)]
pub struct OnlineQuery {
    pub name: String,
    pub statement: Statement<'static>,
}

/// Every online query for `samples`, as the store runs it on `dialect`: login by e-mail,
/// member by id, the member's policies, a statement's driving sessions, the member's
/// orders and their lines, the outbox relay's claim, and each staff search.
pub fn online_queries(dialect: &Dialect, samples: &Samples) -> Vec<OnlineQuery> {
    let query = |name: &str, statement: Statement<'_>| OnlineQuery {
        name: name.to_owned(),
        statement: statement.into_owned(),
    };
    let mut queries = vec![
        query(
            "login by e-mail",
            members::by_email_statement(&samples.email, Lock::None),
        ),
        query("member by id", members::by_id_statement(samples.member_id, Lock::None)),
        query(
            "policies of a member",
            insurance::policies_page_statement(samples.member_id, &PageRequest::first(20)),
        ),
        query(
            "a statement's sessions",
            insurance::sessions_of_policy_statement(samples.policy_id, samples.from, samples.to),
        ),
        query(
            "orders of a member",
            orders::orders_of_member_statement(samples.member_id, &PageRequest::first(20)),
        ),
        query("lines of orders", orders::lines_statement(&samples.order_ids)),
        query("outbox claim", events::claim_statement(samples.now, 100)),
    ];
    for (name, search) in &samples.searches {
        let search = members::Search::new(search);
        queries.push(query(&format!("staff search: {name}"), search.statement(dialect)));
    }
    queries
}

/// A statement's plan as the database's `explain` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The plan, one line per node (PostgreSQL), table (MariaDB) or step (SQLite).
    pub lines: Vec<String>,
    /// Tables the plan reads in full (PostgreSQL `Seq Scan`; MariaDB access type `ALL`, or
    /// `index`, a walk of a whole index; SQLite a `SCAN` without an index). Derived tables
    /// are not tables here.
    pub full_scans: Vec<String>,
}

impl<B: Backend> SqlStore<B> {
    /// `statement`'s plan on the primary, with its arguments bound as the store binds them:
    /// PostgreSQL `explain`, MariaDB `explain`, SQLite `explain query plan`.
    ///
    /// # Errors
    /// As the read ports: the driver's errors, translated.
    pub async fn explain(&self, statement: &Statement<'_>) -> Result<Plan, StoreError> {
        let mut conn = self.primary().await?;
        let dialect = conn.dialect();
        let rendered = statement.render(dialect)?;
        let prefix = if dialect.name == "sqlite" {
            "explain query plan "
        } else {
            "explain "
        };
        let query = Query {
            sql: format!("{prefix}{}", rendered.sql),
            values: rendered.values,
        };
        let rows = conn.fetch_all(query).await?;
        let mut plan = Plan {
            lines: Vec::new(),
            full_scans: Vec::new(),
        };
        for row in &rows {
            match dialect.name {
                "postgres" => {
                    let line = row.text("QUERY PLAN")?;
                    if let Some(table) = line
                        .split("Seq Scan on ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                    {
                        plan.full_scans.push(table.to_owned());
                    }
                    plan.lines.push(line);
                }
                "sqlite" => {
                    let detail = row.text("detail")?;
                    if let Some(rest) = detail.strip_prefix("SCAN ")
                        && !rest.contains(" USING ")
                    {
                        plan.full_scans.push(rest.split(' ').next().unwrap_or(rest).to_owned());
                    }
                    plan.lines.push(detail);
                }
                _ => {
                    let table = row.opt_text("table")?.unwrap_or_default();
                    let access = row.opt_text("type")?.unwrap_or_default();
                    if matches!(access.as_str(), "ALL" | "index") && !table.starts_with('<') {
                        plan.full_scans.push(table.clone());
                    }
                    plan.lines.push(format!(
                        "{table}: {access} key={} rows={} {}",
                        row.opt_text("key")?.unwrap_or_default(),
                        row.int("rows").map_or_else(|_| "?".to_owned(), |rows| rows.to_string()),
                        row.opt_text("Extra")?.unwrap_or_default(),
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// Runs `statement` `runs` times on one connection to the primary and gives the wall
    /// time of each run: from sending it to having read every row (the rows are not mapped).
    ///
    /// # Errors
    /// As the read ports.
    pub async fn time(&self, statement: &Statement<'_>, runs: usize) -> Result<Vec<Duration>, StoreError> {
        let mut conn = self.primary().await?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let statement = statement.clone();
            let started = Instant::now();
            statement.fetch_all(&mut conn, |_| Ok(())).await?;
            times.push(started.elapsed());
        }
        Ok(times)
    }
}
