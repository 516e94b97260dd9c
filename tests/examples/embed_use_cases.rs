//! hexride as a library, without HTTP: the use cases called directly, on adapters chosen in
//! code (SQLite in a temporary directory, the in-process cache, limiter, coupon gate and
//! event dispatch). Runs a rider through sign-up, a points charge, an order and its payment,
//! then drains the outbox to an in-process handler of its own, and checks what it sees.
//!
//! ```sh
//! cargo run -p tests --example embed_use_cases
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use adapters_memory::{
    Argon2Hasher, Argon2Params, InProcessPublisher, MemoryConsistencyTokens, MemoryCouponGate, MemoryRateLimiter,
    MokaCache, SystemClock, UuidV7Ids,
};
use adapters_sqlite::{SqliteConfig, SqliteStore};
use application::events::{OutboxRelay, RelaySettings};
use application::idempotency::IdempotencyKey;
use application::members::SignUp;
use application::{Ports, Services, Settings};
use async_trait::async_trait;
use core_domain::event::DomainEvent;
use ports::{EventHandler, Handled, HandlerError, Quota, StorePorts};

/// An event handler of the embedding application: it records the events it is handed.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

#[async_trait]
impl EventHandler for Recorder {
    fn name(&self) -> &'static str {
        "embedding-app"
    }

    fn topics(&self) -> Vec<&'static str> {
        vec!["member-events", "payment-events"]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
        self.0.lock().unwrap().push(event.event_type().to_owned());
        Ok(Handled::Applied)
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::connect(&SqliteConfig {
        url: format!("sqlite://{}", dir.path().join("embedded.db").display()),
        ..SqliteConfig::default()
    })
    .await
    .expect("open SQLite");
    store.migrate().await.expect("migrate");

    // Every port the store implements, as trait objects (a clone shares its pools).
    let stores = StorePorts::of(store.clone());
    let ports = Ports {
        db: stores.db,
        members: stores.members,
        insurance: stores.insurance,
        licences: stores.licences,
        jobs: stores.jobs,
        // No licence provider here: licences are taken as registered.
        licence_verifier: Arc::new(app_server::licence_provider::SelfDeclaredLicences),
        catalog: stores.catalog,
        wallet: stores.wallet,
        coupons: stores.coupons,
        orders: stores.orders,
        idempotency: stores.idempotency,
        outbox: stores.outbox,
        refresh_tokens: stores.refresh_tokens,
        staff_sessions: stores.staff_sessions,
        trail: stores.trail,
        access_tokens: Arc::new(app_server::jwt::JwtAccessTokens::new(
            b"an example secret of at least thirty-two bytes",
            Duration::from_secs(900),
        )),
        consistency: Arc::new(MemoryConsistencyTokens::new(Duration::from_secs(5))),
        cache: Arc::new(MokaCache::new(1_000)),
        limiter: Arc::new(MemoryRateLimiter::new()),
        coupon_gate: Arc::new(MemoryCouponGate::new()),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UuidV7Ids),
        hasher: Arc::new(Argon2Hasher::new(Argon2Params::default()).expect("argon2 parameters")),
    };
    let per_minute = |limit| Quota {
        limit,
        period: Duration::from_secs(60),
    };
    let services = Services::new(
        ports.clone(),
        Settings {
            login_per_ip: per_minute(50),
            sign_up_per_ip: per_minute(20),
            refresh_ttl: Duration::from_secs(14 * 24 * 3600),
            product_cache_ttl: Duration::from_secs(5),
            popular_cache_ttl: Duration::from_secs(30),
            ..Settings::default()
        },
    );

    let rider = services
        .members
        .sign_up(SignUp {
            email: "embedded.rider@example.com".to_owned(),
            password: "correct horse battery".to_owned(),
            name: "Kim Embedded".to_owned(),
            phone: "010-1234-5678".to_owned(),
        })
        .await
        .expect("sign up");
    let balance = services.wallet.charge(rider.id, 50_000, None).await.expect("charge");
    let helmet = services.catalog.create("Helmet", 30_000, 10).await.expect("product");
    let order = services
        .orders
        .place(rider.id, vec![(helmet.id, 1)], None, None)
        .await
        .expect("order");
    // The caller's retry key, and what identifies the request it protects.
    let key = IdempotencyKey::parse("example-payment-1", format!("pay {}", order.id)).expect("a valid key");
    let payment = services.orders.pay(rider.id, order.id, &key).await.expect("payment");

    // The events those use cases wrote to the outbox, handed to a handler of our own.
    let recorder = Arc::new(Recorder::default());
    let relay = OutboxRelay::new(
        ports.outbox.clone(),
        Arc::new(InProcessPublisher::new(vec![recorder.clone()])),
        ports.clock.clone(),
        RelaySettings::default(),
        "embedding-app",
    );
    let relayed = relay.run_once().await.expect("relay");

    let seen = recorder.0.lock().unwrap().clone();
    println!("rider {} signed up; balance {balance} KRW", rider.email);
    println!(
        "order {} total {} KRW, paid: payment {} of {} KRW",
        order.id, order.total, payment.id, payment.amount
    );
    println!("{relayed} events relayed to the embedding application: {seen:?}");
    assert_eq!(balance, 50_000);
    assert_eq!(payment.amount, 30_000);
    assert!(seen.contains(&"member.registered".to_owned()), "{seen:?}");
    assert!(seen.contains(&"payment.succeeded".to_owned()), "{seen:?}");
    store.close().await;
}
