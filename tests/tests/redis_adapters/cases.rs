//! The Redis adapters against a real Redis, in the contract style of the SQL stores: each
//! test uses keys under a fresh prefix, and "two instances" are two independent connections,
//! as two `app-server` processes would have. The in-process adapters' cases are mirrored
//! with exact counts; the refresh-token cases are the SQL contract's own. The suite runs on
//! one Redis server and, unchanged, on a Redis Cluster (`crate::TARGET`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapters_redis::{
    RedisCache, RedisConn, RedisConsistencyTokens, RedisCouponGate, RedisHealth, RedisRateLimiter, RedisRefreshTokens,
    RedisSettings,
};
use adapters_sqlite::{SqliteConfig, SqliteStore};
use core_domain::{CampaignId, MemberId, TokenFamilyId};
use futures::FutureExt;
use ports::{
    Cache, CacheError, CommitToken, ConsistencyTokens, CouponGate, GateDecision, GateError, HealthCheck, HealthStatus,
    LimiterError, Loader, Quota, RateDecision, RateLimiter, RefreshTokenStore, RotateOutcome, StoreError,
};
use tempfile::TempDir;
use tests::contract::{self, Stores};
use uuid::Uuid;

const LOCK_TTL: Duration = Duration::from_secs(2);

fn settings(url: &str, prefix: &str) -> RedisSettings {
    RedisSettings {
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        command_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        // As deployed: hot cache values also held in process, invalidated by Redis.
        near_cache_entries: 1_000,
        near_cache_ttl: Duration::from_secs(60),
    }
}

/// `n` independent connections ("instances") sharing one fresh key prefix, or `None` when
/// Redis is missing and skipping was asked for.
async fn instances(n: usize) -> Option<(Vec<RedisConn>, String)> {
    let url = crate::TARGET.url().await?;
    let prefix = tests::services::redis_prefix();
    let mut conns = Vec::new();
    for _ in 0..n {
        let conn = RedisConn::connect(&settings(&url, &prefix)).await.expect("connect");
        conn.ping().await.expect("Redis answers PING");
        conns.push(conn);
    }
    Some((conns, prefix))
}

/// A connection without a key prefix, for writing what another instance would have.
async fn raw() -> RedisConn {
    let url = crate::TARGET.url().await.expect("Redis");
    RedisConn::connect(&settings(&url, "")).await.expect("connect")
}

/// Every key under `prefix` (on every master of a cluster), with its remaining TTL in ms.
async fn keys_with_ttl(prefix: &str) -> Vec<(String, i64)> {
    let url = crate::TARGET.url().await.expect("Redis");
    tests::redis::keys_with_ttl(&url, prefix).await
}

fn counting_loader(calls: &Arc<AtomicUsize>, value: &'static [u8], delay: Duration) -> Loader {
    let calls = Arc::clone(calls);
    async move {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        Ok(value.to_vec())
    }
    .boxed()
}

const MINUTE: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

// --- cache -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_callers_of_a_cold_key_on_two_instances_share_one_load() {
    let Some((conns, _)) = instances(2).await else { return };
    let caches: Vec<_> = conns.into_iter().map(|c| RedisCache::new(c, LOCK_TTL)).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let cache = caches[i % 2].clone();
            let loader = counting_loader(&calls, b"v", Duration::from_millis(50));
            tokio::spawn(async move { cache.get_or_load("product:1", MINUTE, loader).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(b"v".to_vec()));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_warm_key_is_served_without_loading() {
    let Some((conns, _)) = instances(2).await else { return };
    let (a, b) = (
        RedisCache::new(conns[0].clone(), LOCK_TTL),
        RedisCache::new(conns[1].clone(), LOCK_TTL),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    a.get_or_load("k", MINUTE, counting_loader(&calls, b"first", SHORT))
        .await
        .unwrap();
    // Another instance sees it too.
    assert_eq!(
        b.get_or_load("k", MINUTE, counting_loader(&calls, b"second", SHORT))
            .await,
        Ok(b"first".to_vec())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_put_value_is_served_without_loading() {
    let Some((conns, _)) = instances(2).await else { return };
    let (a, b) = (
        RedisCache::new(conns[0].clone(), LOCK_TTL),
        RedisCache::new(conns[1].clone(), LOCK_TTL),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    a.put("product:1", b"new".to_vec(), MINUTE).await.unwrap();
    assert_eq!(
        b.get_or_load("product:1", MINUTE, counting_loader(&calls, b"old", SHORT))
            .await,
        Ok(b"new".to_vec())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_loader_error_is_returned_and_not_cached() {
    let Some((conns, _)) = instances(1).await else { return };
    let cache = RedisCache::new(conns[0].clone(), LOCK_TTL);
    let failing: Loader = async { Err(StoreError::unavailable("db down")) }.boxed();
    assert_eq!(
        cache.get_or_load("k", MINUTE, failing).await,
        Err(CacheError::Load(StoreError::unavailable("db down")))
    );
    // The failed load released its lock: the next caller loads at once.
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    assert_eq!(
        cache
            .get_or_load("k", MINUTE, counting_loader(&calls, b"v", SHORT))
            .await,
        Ok(b"v".to_vec())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() < LOCK_TTL / 2, "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_entry_expires_after_its_own_ttl() {
    let Some((conns, _)) = instances(1).await else { return };
    let cache = RedisCache::new(conns[0].clone(), LOCK_TTL);
    let calls = Arc::new(AtomicUsize::new(0));
    let short = Duration::from_millis(100);
    cache
        .get_or_load("short", short, counting_loader(&calls, b"a", SHORT))
        .await
        .unwrap();
    cache
        .get_or_load("long", MINUTE, counting_loader(&calls, b"b", SHORT))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;

    assert_eq!(
        cache
            .get_or_load("short", short, counting_loader(&calls, b"a2", SHORT))
            .await,
        Ok(b"a2".to_vec())
    );
    assert_eq!(
        cache
            .get_or_load("long", MINUTE, counting_loader(&calls, b"b2", SHORT))
            .await,
        Ok(b"b".to_vec())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn invalidated_keys_are_loaded_again_on_every_instance() {
    let Some((conns, _)) = instances(2).await else { return };
    let (a, b) = (
        RedisCache::new(conns[0].clone(), LOCK_TTL),
        RedisCache::new(conns[1].clone(), LOCK_TTL),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    a.get_or_load("a", MINUTE, counting_loader(&calls, b"old", SHORT))
        .await
        .unwrap();
    a.get_or_load("b", MINUTE, counting_loader(&calls, b"kept", SHORT))
        .await
        .unwrap();

    a.invalidate(&["a".to_owned(), "missing".to_owned()]).await.unwrap();

    assert_eq!(
        b.get_or_load("a", MINUTE, counting_loader(&calls, b"new", SHORT)).await,
        Ok(b"new".to_vec())
    );
    assert_eq!(
        b.get_or_load("b", MINUTE, counting_loader(&calls, b"x", SHORT)).await,
        Ok(b"kept".to_vec())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_put_during_a_load_is_not_overwritten_by_the_older_loaded_value() {
    let Some((conns, _)) = instances(2).await else { return };
    let (a, b) = (
        RedisCache::new(conns[0].clone(), LOCK_TTL),
        RedisCache::new(conns[1].clone(), LOCK_TTL),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let slow = counting_loader(&calls, b"read before the write", Duration::from_millis(300));
    let loading = tokio::spawn({
        let a = a.clone();
        async move { a.get_or_load("product:1", MINUTE, slow).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.put("product:1", b"written".to_vec(), MINUTE).await.unwrap();

    // The slow caller gets what it loaded, but the cache keeps the write.
    assert_eq!(loading.await.unwrap(), Ok(b"read before the write".to_vec()));
    assert_eq!(
        a.get_or_load("product:1", MINUTE, counting_loader(&calls, b"reload", SHORT))
            .await,
        Ok(b"written".to_vec())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_invalidation_during_a_load_keeps_the_loaded_value_out() {
    let Some((conns, _)) = instances(1).await else { return };
    let cache = RedisCache::new(conns[0].clone(), LOCK_TTL);
    let calls = Arc::new(AtomicUsize::new(0));
    let slow = counting_loader(&calls, b"stale", Duration::from_millis(300));
    let loading = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get_or_load("products:list", MINUTE, slow).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cache.invalidate(&["products:list".to_owned()]).await.unwrap();

    assert_eq!(loading.await.unwrap(), Ok(b"stale".to_vec()));
    assert_eq!(
        cache
            .get_or_load("products:list", MINUTE, counting_loader(&calls, b"fresh", SHORT))
            .await,
        Ok(b"fresh".to_vec())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_value_held_in_another_instances_memory_is_dropped_when_it_changes() {
    let Some((conns, _)) = instances(2).await else { return };
    let (a, b) = (
        RedisCache::new(conns[0].clone(), LOCK_TTL),
        RedisCache::new(conns[1].clone(), LOCK_TTL),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    a.put("product:1", b"old".to_vec(), MINUTE).await.unwrap();
    // B now holds the value in memory, for up to the near-cache TTL (60 s here)…
    assert_eq!(
        b.get_or_load("product:1", MINUTE, counting_loader(&calls, b"x", SHORT))
            .await,
        Ok(b"old".to_vec())
    );
    a.put("product:1", b"new".to_vec(), MINUTE).await.unwrap();
    // …until Redis tells it the key changed, which takes a push over the connection.
    let started = Instant::now();
    loop {
        let seen = b
            .get_or_load("product:1", MINUTE, counting_loader(&calls, b"x", SHORT))
            .await
            .unwrap();
        if seen == b"new" {
            break;
        }
        assert_eq!(seen, b"old");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "still the old value after 500 ms"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_lock_left_by_a_vanished_instance_delays_the_load_by_at_most_its_ttl() {
    let Some((conns, prefix)) = instances(1).await else {
        return;
    };
    let lock_ttl = Duration::from_millis(400);
    let cache = RedisCache::new(conns[0].clone(), lock_ttl);
    // An instance took the lock and died before storing anything.
    let _: () = raw()
        .await
        .query(
            redis::cmd("SET")
                .arg(format!("{prefix}cache:{{k}}:lock"))
                .arg("someone-else")
                .arg("PX")
                .arg(300),
        )
        .await
        .unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    assert_eq!(
        cache
            .get_or_load("k", MINUTE, counting_loader(&calls, b"v", SHORT))
            .await,
        Ok(b"v".to_vec())
    );
    let waited = started.elapsed();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

// --- rate limiter ------------------------------------------------------------------------

fn per_minute(limit: u32) -> Quota {
    Quota { limit, period: MINUTE }
}

#[tokio::test]
async fn five_per_minute_allows_exactly_five_then_limits() {
    let Some((conns, _)) = instances(1).await else { return };
    let limiter = RedisRateLimiter::new(conns[0].clone());
    for _ in 0..5 {
        assert_eq!(limiter.check("ip:1", per_minute(5)).await, Ok(RateDecision::Allowed));
    }
    match limiter.check("ip:1", per_minute(5)).await {
        Ok(RateDecision::Limited { retry_after }) => {
            // One cell comes back every 60 s / 5.
            assert!(retry_after > Duration::from_secs(11), "{retry_after:?}");
            assert!(retry_after <= Duration::from_secs(12), "{retry_after:?}");
        }
        other => panic!("expected Limited, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_calls_on_two_instances_pass_a_limit_of_thirty_exactly_thirty_times() {
    let Some((conns, _)) = instances(2).await else { return };
    let limiters: Vec<_> = conns.into_iter().map(RedisRateLimiter::new).collect();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let limiter = limiters[i % 2].clone();
            tokio::spawn(async move { limiter.check("api:member:1", per_minute(30)).await })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == RateDecision::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 30);
}

#[tokio::test]
async fn other_keys_and_other_quotas_are_counted_separately() {
    let Some((conns, _)) = instances(1).await else { return };
    let limiter = RedisRateLimiter::new(conns[0].clone());
    for _ in 0..6 {
        limiter.check("ip:1", per_minute(5)).await.unwrap();
    }
    for _ in 0..5 {
        assert_eq!(limiter.check("ip:2", per_minute(5)).await, Ok(RateDecision::Allowed));
    }
    assert_eq!(limiter.check("ip:1", per_minute(10)).await, Ok(RateDecision::Allowed));
}

#[tokio::test]
async fn a_cell_comes_back_after_period_over_limit() {
    let Some((conns, _)) = instances(1).await else { return };
    let limiter = RedisRateLimiter::new(conns[0].clone());
    let quota = Quota {
        limit: 2,
        period: Duration::from_millis(200),
    };
    assert_eq!(limiter.check("k", quota).await, Ok(RateDecision::Allowed));
    assert_eq!(limiter.check("k", quota).await, Ok(RateDecision::Allowed));
    let Ok(RateDecision::Limited { retry_after }) = limiter.check("k", quota).await else {
        panic!("the third call within the period is limited");
    };
    assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
    tokio::time::sleep(retry_after + Duration::from_millis(10)).await;
    assert_eq!(limiter.check("k", quota).await, Ok(RateDecision::Allowed));
}

#[tokio::test]
async fn a_zero_limit_limits_everything() {
    let Some((conns, _)) = instances(1).await else { return };
    let limiter = RedisRateLimiter::new(conns[0].clone());
    assert_eq!(
        limiter.check("k", per_minute(0)).await,
        Ok(RateDecision::Limited { retry_after: MINUTE })
    );
}

// --- coupon gate -------------------------------------------------------------------------

fn member() -> MemberId {
    MemberId(Uuid::now_v7())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_members_racing_on_two_instances_for_fifty_coupons_admit_exactly_fifty() {
    let Some((conns, _)) = instances(2).await else { return };
    let gates: Vec<_> = conns.into_iter().map(|c| RedisCouponGate::new(c, MINUTE)).collect();
    let campaign = CampaignId(Uuid::now_v7());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let gate = gates[i % 2].clone();
            tokio::spawn(async move { gate.try_acquire(campaign, member(), 50).await })
        })
        .collect();
    let (mut admitted, mut sold_out) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            GateDecision::Admitted => admitted += 1,
            GateDecision::SoldOut => sold_out += 1,
            GateDecision::AlreadyIssued => panic!("every member is distinct"),
        }
    }
    assert_eq!((admitted, sold_out), (50, 150));
}

#[tokio::test]
async fn a_member_is_admitted_once_even_when_the_campaign_is_sold_out() {
    let Some((conns, _)) = instances(2).await else { return };
    let (a, b) = (
        RedisCouponGate::new(conns[0].clone(), MINUTE),
        RedisCouponGate::new(conns[1].clone(), MINUTE),
    );
    let campaign = CampaignId(Uuid::now_v7());
    let m = member();
    assert_eq!(a.try_acquire(campaign, m, 1).await, Ok(GateDecision::Admitted));
    assert_eq!(b.try_acquire(campaign, m, 1).await, Ok(GateDecision::AlreadyIssued));
    assert_eq!(b.try_acquire(campaign, member(), 1).await, Ok(GateDecision::SoldOut));
}

#[tokio::test]
async fn release_frees_a_slot_for_someone_else() {
    let Some((conns, _)) = instances(1).await else { return };
    let gate = RedisCouponGate::new(conns[0].clone(), MINUTE);
    let campaign = CampaignId(Uuid::now_v7());
    let (first, second) = (member(), member());
    assert_eq!(gate.try_acquire(campaign, first, 1).await, Ok(GateDecision::Admitted));
    assert_eq!(gate.try_acquire(campaign, second, 1).await, Ok(GateDecision::SoldOut));
    gate.release(campaign, first).await.unwrap();
    assert_eq!(gate.try_acquire(campaign, second, 1).await, Ok(GateDecision::Admitted));
}

#[tokio::test]
async fn campaigns_are_counted_separately() {
    let Some((conns, _)) = instances(1).await else { return };
    let gate = RedisCouponGate::new(conns[0].clone(), MINUTE);
    let (a, b) = (CampaignId(Uuid::now_v7()), CampaignId(Uuid::now_v7()));
    let m = member();
    assert_eq!(gate.try_acquire(a, m, 1).await, Ok(GateDecision::Admitted));
    assert_eq!(gate.try_acquire(b, m, 1).await, Ok(GateDecision::Admitted));
    assert_eq!(gate.try_acquire(b, member(), 1).await, Ok(GateDecision::SoldOut));
}

// --- refresh tokens: the SQL contract's cases, with SQLite holding the members -------------

/// SQLite stores whose refresh tokens live in Redis under a fresh prefix.
async fn stores_with_redis_tokens() -> Option<(Stores, TempDir)> {
    let (conns, _) = instances(1).await?;
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = SqliteConfig {
        url: format!("sqlite://{}", dir.path().join("contract.db").display()),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    let mut stores = Stores::of(store);
    stores.refresh_tokens = Arc::new(RedisRefreshTokens::new(conns[0].clone()));
    Some((stores, dir))
}

#[tokio::test]
async fn rotating_a_refresh_token_detects_reuse_and_revokes_the_family() {
    let Some((stores, _dir)) = stores_with_redis_tokens().await else {
        return;
    };
    contract::rotating_a_refresh_token_detects_reuse_and_revokes_the_family(stores).await;
}

#[tokio::test]
async fn revoking_a_member_or_a_family_invalidates_their_tokens() {
    let Some((stores, _dir)) = stores_with_redis_tokens().await else {
        return;
    };
    contract::revoking_a_member_or_a_family_invalidates_their_tokens(stores).await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid() {
    let Some((stores, _dir)) = stores_with_redis_tokens().await else {
        return;
    };
    contract::an_expired_refresh_token_is_invalid(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_concurrent_rotations_on_two_instances_one_wins_one_is_a_reuse() {
    let Some((conns, _)) = instances(2).await else { return };
    let stores: Vec<_> = conns.into_iter().map(RedisRefreshTokens::new).collect();
    let (m, family) = (member(), TokenFamilyId(Uuid::now_v7()));
    let later = contract::now() + time::Duration::days(14);
    let old = contract::token(m, family, later);
    stores[0].insert(&old).await.unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % 2].clone();
            let (old_hash, new) = (old.token_hash.clone(), contract::token(m, family, later));
            tokio::spawn(async move { (store.rotate(&old_hash, &new, contract::now()).await.unwrap(), new) })
        })
        .collect();
    let (mut rotated, mut reused, mut invalid) = (Vec::new(), 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (RotateOutcome::Rotated { member_id, family_id }, new) => {
                assert_eq!((member_id, family_id), (m, family));
                rotated.push(new);
            }
            (RotateOutcome::Reused { member_id, family_id }, _) => {
                assert_eq!((member_id, family_id), (m, family));
                reused += 1;
            }
            (RotateOutcome::Invalid, _) => invalid += 1,
        }
    }
    // The first rotation spends the token, the second finds it spent and revokes the family,
    // the rest find the family revoked.
    assert_eq!((rotated.len(), reused, invalid), (1, 1, 18));
    // The winner's new token died with the family.
    let next = contract::token(m, family, later);
    assert_eq!(
        stores[1].rotate(&rotated[0].token_hash, &next, contract::now()).await,
        Ok(RotateOutcome::Invalid)
    );
}

#[tokio::test]
async fn revoking_a_member_revokes_families_rotated_on_another_instance() {
    let Some((conns, _)) = instances(2).await else { return };
    let (a, b) = (
        RedisRefreshTokens::new(conns[0].clone()),
        RedisRefreshTokens::new(conns[1].clone()),
    );
    let m = member();
    let later = contract::now() + time::Duration::days(14);
    let first = contract::token(m, TokenFamilyId(Uuid::now_v7()), later);
    a.insert(&first).await.unwrap();
    let second = contract::token(m, first.family_id, later);
    assert!(matches!(
        b.rotate(&first.token_hash, &second, contract::now()).await,
        Ok(RotateOutcome::Rotated { .. })
    ));

    a.revoke_member(m).await.unwrap();

    let third = contract::token(m, first.family_id, later);
    assert_eq!(
        b.rotate(&second.token_hash, &third, contract::now()).await,
        Ok(RotateOutcome::Invalid)
    );
}

// --- read-your-writes tokens -------------------------------------------------------------

#[tokio::test]
async fn the_last_token_is_recalled_on_every_instance_within_the_window() {
    let Some((conns, _)) = instances(2).await else { return };
    let window = Duration::from_secs(5);
    let (a, b) = (
        RedisConsistencyTokens::new(conns[0].clone(), window),
        RedisConsistencyTokens::new(conns[1].clone(), window),
    );
    let m = member();
    a.remember(m, &CommitToken("0/16B6C50".into())).await.unwrap();
    b.remember(m, &CommitToken("0/16B6D00".into())).await.unwrap();
    assert_eq!(a.recall(m).await, Ok(Some(CommitToken("0/16B6D00".into()))));
    assert_eq!(b.recall(member()).await, Ok(None));
}

#[tokio::test]
async fn a_token_is_forgotten_after_the_window() {
    let Some((conns, _)) = instances(1).await else { return };
    let tokens = RedisConsistencyTokens::new(conns[0].clone(), Duration::from_millis(100));
    let m = member();
    tokens.remember(m, &CommitToken("1".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(tokens.recall(m).await, Ok(None));
}

// --- every key expires ---------------------------------------------------------------------

#[tokio::test]
async fn every_key_the_adapters_write_expires() {
    let Some((conns, prefix)) = instances(1).await else {
        return;
    };
    let conn = conns[0].clone();
    let cache = RedisCache::new(conn.clone(), LOCK_TTL);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load("product:1", MINUTE, counting_loader(&calls, b"v", SHORT))
        .await
        .unwrap();
    cache.put("product:2", b"w".to_vec(), MINUTE).await.unwrap();
    RedisRateLimiter::new(conn.clone())
        .check("login:ip:1", per_minute(5))
        .await
        .unwrap();
    let gate = RedisCouponGate::new(conn.clone(), MINUTE);
    gate.try_acquire(CampaignId(Uuid::now_v7()), member(), 10)
        .await
        .unwrap();
    RedisConsistencyTokens::new(conn.clone(), MINUTE)
        .remember(member(), &CommitToken("1".into()))
        .await
        .unwrap();
    let tokens = RedisRefreshTokens::new(conn.clone());
    let (m, later) = (member(), contract::now() + time::Duration::days(14));
    let first = contract::token(m, TokenFamilyId(Uuid::now_v7()), later);
    tokens.insert(&first).await.unwrap();
    let second = contract::token(m, first.family_id, later);
    tokens
        .rotate(&first.token_hash, &second, contract::now())
        .await
        .unwrap();

    let keys = keys_with_ttl(&prefix).await;
    // cache ×2, rate, coupon, ryw, rt ×2 (index of each token), rt-family, rt-member.
    assert_eq!(keys.len(), 9, "{keys:?}");
    for (key, ttl) in keys {
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        assert!(key.contains('{') && key.contains('}'), "{key} has no hash tag");
    }
}

// --- an unreachable Redis ------------------------------------------------------------------

#[tokio::test]
async fn with_redis_unreachable_every_port_fails_fast_with_unavailable() {
    // Ports 1 and 2 refuse connections: no Redis needed.
    let conn = RedisConn::connect(&settings(crate::TARGET.unreachable_url(), "hxt:"))
        .await
        .unwrap();
    let started = Instant::now();
    let cache = RedisCache::new(conn.clone(), LOCK_TTL);
    let calls = Arc::new(AtomicUsize::new(0));
    assert!(matches!(
        cache
            .get_or_load("k", MINUTE, counting_loader(&calls, b"v", SHORT))
            .await,
        Err(CacheError::Unavailable(_))
    ));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the caller loads from the database itself"
    );
    assert!(matches!(
        cache.put("k", vec![1], MINUTE).await,
        Err(CacheError::Unavailable(_))
    ));
    assert!(matches!(
        cache.invalidate(&["k".to_owned()]).await,
        Err(CacheError::Unavailable(_))
    ));
    assert!(matches!(
        RedisRateLimiter::new(conn.clone()).check("k", per_minute(5)).await,
        Err(LimiterError::Unavailable(_))
    ));
    let gate = RedisCouponGate::new(conn.clone(), MINUTE);
    assert!(matches!(
        gate.try_acquire(CampaignId(Uuid::now_v7()), member(), 1).await,
        Err(GateError::Unavailable(_))
    ));
    assert!(matches!(
        gate.release(CampaignId(Uuid::now_v7()), member()).await,
        Err(GateError::Unavailable(_))
    ));
    let ryw = RedisConsistencyTokens::new(conn.clone(), MINUTE);
    assert!(matches!(ryw.recall(member()).await, Err(CacheError::Unavailable(_))));
    assert!(matches!(
        ryw.remember(member(), &CommitToken("1".into())).await,
        Err(CacheError::Unavailable(_))
    ));
    let tokens = RedisRefreshTokens::new(conn.clone());
    let t = contract::token(member(), TokenFamilyId(Uuid::now_v7()), contract::now());
    assert!(matches!(tokens.insert(&t).await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        tokens.rotate(&t.token_hash, &t, contract::now()).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        tokens.revoke_member(t.member_id).await,
        Err(StoreError::Unavailable(_))
    ));
    let health = RedisHealth::new(conn).health().await;
    assert_eq!(health.len(), 1);
    assert_eq!(
        (health[0].name.as_str(), health[0].status),
        ("redis", HealthStatus::Degraded)
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_reachable_redis_is_up() {
    let Some((conns, _)) = instances(1).await else { return };
    let health = RedisHealth::new(conns[0].clone()).health().await;
    assert_eq!(health.len(), 1);
    assert_eq!((health[0].name.as_str(), health[0].status), ("redis", HealthStatus::Up));
}
