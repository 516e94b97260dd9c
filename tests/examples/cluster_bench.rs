//! Load through the load balancer, as `scripts/cluster.sh bench` runs it once with one API
//! instance behind nginx and once with every instance: requests/s, p50 and p99 for cached
//! product reads, the members mix (3 reads : 1 keyed charge) and order + payment, each for
//! SECONDS with CONCURRENCY clients. With DIRECT (an instance's own URL) it first measures
//! the product reads straight on that instance: the baseline nginx is compared with.
//!
//!   cargo run --release -p tests --example cluster_bench -- \
//!       URL SECONDS ADMIN_EMAIL ADMIN_PASSWORD LABEL [CONCURRENCY] [DIRECT]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use tests::load::{self, Charges, Op, Tally};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, seconds, email, password, label, ..] = &args[..] else {
        panic!("usage: cluster_bench URL SECONDS ADMIN_EMAIL ADMIN_PASSWORD LABEL [CONCURRENCY] [DIRECT]");
    };
    let duration = Duration::from_secs(seconds.parse().expect("SECONDS"));
    let concurrency: usize = args.get(5).map_or(32, |c| c.parse().expect("CONCURRENCY"));
    let api = format!("{}/api/v1", base.trim_end_matches('/'));
    let client = Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");

    // The admin's products: 20 of them, stock enough for every order of the run.
    let admin = load::login(&client, &api, email, password).await;
    let mut products = Vec::new();
    for i in 0..20 {
        let created: Value = client
            .post(format!("{api}/admin/products"))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("Bench {i}"), "price": 100, "stock": 1_000_000}))
            .send()
            .await
            .expect("create a product")
            .json()
            .await
            .expect("a product");
        products.push(created["id"].as_str().expect("a product id").to_owned());
    }
    let products = Arc::new(products);
    let members = Arc::new(load::members(&client, &api, concurrency).await);
    for member in members.iter() {
        load::charge_points(&client, &api, &member.token, 1_000_000)
            .await
            .expect("points to pay with");
    }

    if let Some(direct) = args.get(6) {
        let direct = format!("{}/api/v1", direct.trim_end_matches('/'));
        let reads = product_reads(&client, &direct, &products, concurrency, duration).await;
        report("direct to one instance", "product reads", &reads);
    }
    let reads = product_reads(&client, &api, &products, concurrency, duration).await;
    report(label, "product reads", &reads);

    let mix = load::run_for(&client, &api, &members, Charges::Keyed, duration).await;
    report(label, "members mix", &mix);

    let orders = load::orders_for(&client, &api, &members, &products, duration).await;
    report(label, "order + payment", &orders);
}

async fn product_reads(
    client: &Client,
    api: &str,
    products: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) -> Tally {
    let (client, api, products) = (client.clone(), api.to_owned(), products.clone());
    load::timed(concurrency, duration, Op::Product, move |task, turn| {
        let (client, api) = (client.clone(), api.clone());
        let id = products[(task * 7 + turn) % products.len()].clone();
        async move { load::read_product(&client, &api, &id).await }
    })
    .await
}

fn report(label: &str, what: &str, tally: &Tally) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<24} {what:<16} {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   {} failed",
        tally.rate(),
        ms(tally.quantile(&[], 0.5)),
        ms(tally.quantile(&[], 0.99)),
        tally.failures.len()
    );
    for failure in tally.failures.iter().take(3) {
        println!("    failed: {:?} {}", failure.op, failure.what);
    }
}
