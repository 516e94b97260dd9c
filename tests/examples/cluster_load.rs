//! The members mix (3 reads : 1 keyed point charge per member) through a load balancer for
//! a while, then the figures: requests/s, p50 and p99, failures, and whether every balance
//! holds exactly the points acknowledged. `scripts/cluster.sh load [SECONDS]` runs it
//! against the cluster's nginx.
//!
//!   cargo run --release -p tests --example cluster_load -- http://127.0.0.1:18080 20 32

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tests::load::{self, Charges, Op};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "http://127.0.0.1:18080".to_owned());
    let seconds: u64 = args.next().map_or(20, |s| s.parse().expect("SECONDS"));
    let members: usize = args.next().map_or(32, |s| s.parse().expect("MEMBERS"));
    let api = format!("{}/api/v1", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(members)
        .build()
        .expect("client");

    let members = load::members(&client, &api, members).await;
    let stop = Arc::new(AtomicBool::new(false));
    let timer = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    let tally = load::run(&client, &api, &members, Charges::Keyed, stop).await;
    timer.await.expect("timer");

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "members mix through {base}: {} members, {:.1} s, {:.0} req/s, {} failed",
        members.len(),
        tally.elapsed.as_secs_f64(),
        tally.rate(),
        tally.failures.len()
    );
    for (name, ops) in [
        ("all", &[][..]),
        ("reads", &[Op::Profile, Op::Balance, Op::History][..]),
        ("charges", &[Op::Charge][..]),
    ] {
        println!(
            "  {name:<8} p50 {:>7.2} ms   p99 {:>7.2} ms",
            ms(tally.quantile(ops, 0.5)),
            ms(tally.quantile(ops, 0.99))
        );
    }
    for failure in tally.failures.iter().take(5) {
        println!("  failed: {:?} {}", failure.op, failure.what);
    }
    let unacknowledged = tally.failures.iter().filter(|f| f.charge.is_some()).count();
    let exact = load::balances(&client, &api, &members).await == tally.charged;
    println!(
        "  balances {} the acknowledged charges ({unacknowledged} charges unacknowledged)",
        if exact { "equal" } else { "DIFFER FROM" }
    );
}
