//! Every online query reads through an index at scale: on a database of 1,000,000 members,
//! 1,000,000 policies and 10,000,000 driving sessions (`tests::scale`), the plan of each
//! statement the store runs for a request (`sql_store::plans`) reads no big table in full.
//! The plans, and each query's time on that data, are printed (`--nocapture`). Each staff
//! search also finds the sample member (the data behind a plan is checked too: MariaDB's
//! search reads `member_trigrams`, which the fill writes).

use adapters_mysql::MysqlDialect;
use adapters_postgres::PgDialect;
use ports::{Consistency, MemberReads};
use sql_store::backend::Backend;
use sql_store::plans::{self, OnlineQuery, Samples};
use sql_store::{SqlStore, SqlxDialect};
use tests::scale::{self, BIG_TABLES, Fill, QUERY_GOAL};

/// Each staff search finds the sample member, which matches every one of them: among a
/// page that is not full (every match), or else a full page of matches.
async fn check_searches<B: Backend>(database: &str, store: &SqlStore<B>, samples: &Samples) {
    for (name, query) in &samples.searches {
        let found = store.search_members(query, Consistency::Strong).await.expect("search");
        let limit = usize::try_from(query.page.limit).expect("a limit");
        let (found, more) = (found.items, found.next.is_some());
        assert!(
            (found.len() == limit && more) || found.iter().any(|m| m.id == samples.member_id),
            "{database} · staff search: {name} finds {} members, not the sample",
            found.len()
        );
    }
}

async fn check_plans<B: Backend>(database: &str, store: &SqlStore<B>, fill: Fill, queries: &[OnlineQuery]) {
    match fill {
        Fill::Reused => eprintln!("{database}: reusing the filled `{}` database", scale::DATABASE),
        Fill::Filled(took) => eprintln!(
            "{database}: filled `{}` in {:.0} s",
            scale::DATABASE,
            took.as_secs_f64()
        ),
    }
    assert!(queries.len() >= 11, "every online query is listed: {}", queries.len());
    let mut full_scans = Vec::new();
    for query in queries {
        let plan = store.explain(&query.statement).await.expect("explain");
        // Warm, then the median of a few runs: a rough figure; the benchmark example has
        // the careful ones.
        let mut times = store.time(&query.statement, 7).await.expect("run");
        times.sort();
        let median = times[times.len() / 2];
        let median_ms = median.as_secs_f64() * 1000.0;
        let goal = if median <= QUERY_GOAL {
            ""
        } else {
            "  (over the 5 ms goal)"
        };
        eprintln!("{database} · {} · {median_ms:.2} ms{goal}", query.name);
        for line in &plan.lines {
            eprintln!("    {line}");
        }
        for table in plan.full_scans.iter().filter(|t| BIG_TABLES.contains(&t.as_str())) {
            full_scans.push(format!("{}: reads all of {table}", query.name));
        }
    }
    assert!(
        full_scans.is_empty(),
        "{database}: online queries that read a big table in full:\n  {}",
        full_scans.join("\n  ")
    );
}

#[tokio::test]
async fn every_online_query_uses_an_index_on_postgres_at_scale() {
    let Some((store, fill)) = scale::postgres().await else {
        return;
    };
    let samples = scale::samples();
    let queries = plans::online_queries(&<PgDialect as SqlxDialect>::DIALECT, &samples);
    check_plans("PostgreSQL", &store, fill, &queries).await;
    check_searches("PostgreSQL", &store, &samples).await;
    store.close().await;
}

#[tokio::test]
async fn every_online_query_uses_an_index_on_mariadb_at_scale() {
    let Some((store, fill)) = scale::mariadb().await else {
        return;
    };
    let samples = scale::samples();
    let queries = plans::online_queries(&<MysqlDialect as SqlxDialect>::DIALECT, &samples);
    check_plans("MariaDB", &store, fill, &queries).await;
    check_searches("MariaDB", &store, &samples).await;
    store.close().await;
}
