//! The time of each online query on the scale database (`tests::scale`: 1,000,000 members,
//! 1,000,000 policies, 10,000,000 driving sessions), on PostgreSQL and on MariaDB, against
//! the 5 ms goal ([`tests::scale::print_query_times`]). Each query runs `QUERY_TIMES_RUNS`
//! times (default 200) after 20 warm-up runs. Fills the database first when it is missing
//! (minutes), like the query-plan test. `examples/batch_bench.rs` prints the same table at
//! its end.
//!
//! ```sh
//! eval "$(scripts/infra.sh env)"
//! cargo run --release -p tests --example query_times
//! ```

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("QUERY_TIMES_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    tests::scale::print_query_times(runs).await;
}
