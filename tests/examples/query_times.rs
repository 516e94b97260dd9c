//! The time of each online query on the scale database (`tests::scale`: 1,000,000 members,
//! 1,000,000 policies, 10,000,000 driving sessions), on PostgreSQL and on MariaDB, against
//! the 5 ms goal. Each query runs `QUERY_TIMES_RUNS` times (default 200) after 20 warm-up
//! runs, one after the other on one connection to the primary; a time is the wall time
//! from sending the statement to having read all its rows, as the store runs it (prepared
//! statements, arguments bound), over the loopback. Fills the database first when it is
//! missing (minutes), like the query-plan test.
//!
//! ```sh
//! eval "$(scripts/infra.sh env)"
//! cargo run --release -p tests --example query_times
//! ```

use std::time::Duration;

use adapters_mysql::MysqlDialect;
use adapters_postgres::PgDialect;
use sql_store::backend::Backend;
use sql_store::plans::{self, OnlineQuery};
use sql_store::{SqlStore, SqlxDialect};
use tests::scale;

const GOAL: Duration = Duration::from_millis(5);
const WARM_UP: usize = 20;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn time_all<B: Backend>(database: &str, store: &SqlStore<B>, queries: &[OnlineQuery], runs: usize) {
    for query in queries {
        store.time(&query.statement, WARM_UP).await.expect("warm up");
        let mut times = store.time(&query.statement, runs).await.expect("run");
        times.sort();
        let median = times[times.len() / 2];
        let p99 = times[(times.len() * 99).div_ceil(100) - 1];
        let verdict = if p99 <= GOAL {
            "yes"
        } else if median <= GOAL {
            "median only"
        } else {
            "no"
        };
        println!(
            "| {database} | {} | {:.2} | {:.2} | {verdict} |",
            query.name,
            ms(median),
            ms(p99)
        );
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("QUERY_TIMES_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let samples = scale::samples();
    println!("{runs} runs per query after {WARM_UP} warm-up runs; wall time on one connection to the primary\n");
    println!("| database | query | median ms | p99 ms | under 5 ms |");
    println!("|---|---|---:|---:|---|");
    if let Some((store, _)) = scale::postgres().await {
        let queries = plans::online_queries(&<PgDialect as SqlxDialect>::DIALECT, &samples);
        time_all("PostgreSQL", &store, &queries, runs).await;
        store.close().await;
    }
    if let Some((store, _)) = scale::mariadb().await {
        let queries = plans::online_queries(&<MysqlDialect as SqlxDialect>::DIALECT, &samples);
        time_all("MariaDB", &store, &queries, runs).await;
        store.close().await;
    }
}
