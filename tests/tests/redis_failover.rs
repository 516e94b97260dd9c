//! A Redis Cluster master SIGKILLed under a coupon rush on two instances: its replica takes
//! its slots over, the instances follow it without a restart, exactly the campaign's quantity
//! is issued, nobody twice, and no read or issue that should succeed fails. The killed node
//! comes back as a replica. Its own test binary: it kills a node of the cluster that the
//! `*_cluster` suites share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tests::cluster::{self, background_reads, client, counts, issue, readiness, refused, stop_reads};
use tests::redis::{ClusterNode, cluster_nodes, master_of, slot_of};

/// The cluster's nodes that `scripts/infra.sh` runs, all started (a run that failed half-way
/// may have left one down) and the cluster healthy.
async fn every_node_started(url: &str) {
    for n in 1..=6 {
        tests::services::infra_await(&["start", &format!("rediscluster-{n}")]).await;
    }
    assert_eq!(
        cluster_nodes(url)
            .await
            .iter()
            .filter(|n| n.master && !n.failed)
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_failover_under_a_coupon_rush_issues_exactly_the_campaigns_quantity() {
    let Some(url) = tests::services::redis_cluster() else {
        return;
    };
    every_node_started(&url).await;
    let Some(cluster) = cluster::start(2, &url, |_| {}).await else {
        return;
    };
    let cluster = Arc::new(cluster);
    let client = client();
    let runtime = cluster.instances[0].runtime();
    let product = runtime.services.catalog.create("Helmet", 30_000, 100).await.unwrap();
    let campaign = cluster.campaign(300).await;
    let riders = cluster.riders(600).await;

    // The master holding the campaign's gate, which is about to die.
    let gate_key = format!("{}coupon:{{{campaign}}}:admitted", cluster.redis_prefix);
    let slot = slot_of(&url, &gate_key).await;
    let doomed: ClusterNode = master_of(&url, slot, Duration::from_secs(5)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let readers = background_reads(
        &cluster,
        format!("/products/{}", product.id),
        riders.clone(),
        Arc::clone(&stop),
    );

    // Phase 1: 200 members race for coupons; the gate's master is SIGKILLed a quarter of the
    // way through. Until its replica takes over the gate is unavailable and the database
    // alone decides.
    let progress = AtomicUsize::new(0);
    let (phase1, killed) = tokio::join!(issue(&cluster, &client, campaign, &riders[..200], &progress), async {
        while progress.load(Ordering::SeqCst) < 50 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tests::services::infra_await(&["kill", &doomed.component()]).await;
        Instant::now()
    });
    assert_eq!(phase1, counts(&[(201, "", 200)]));

    // The replica is promoted (cluster-node-timeout 1 s, then an election).
    let promoted = master_of(&url, slot, Duration::from_secs(15)).await;
    assert_ne!(promoted.address, doomed.address);
    eprintln!(
        "slot {slot}: {} took over from {} within {:?} of the kill",
        promoted.address,
        doomed.address,
        killed.elapsed()
    );

    // Phase 2, on the promoted master: the gate admits again (it may have lost the last
    // admissions the dead master had not yet replicated) and the database refuses what it
    // already issued: exactly the remaining 100 are issued.
    let phase2 = issue(&cluster, &client, campaign, &riders[200..400], &progress).await;
    assert_eq!(phase2, counts(&[(201, "", 100), (409, "coupon.sold_out", 100)]));
    assert_eq!(
        readiness(&cluster, &client).await,
        vec![(200, "up".into(), "up".into()); 2],
        "both instances follow the new master without a restart"
    );

    // Phase 3: the killed node starts again, empty, and rejoins as the new master's replica;
    // everyone else, and every winner trying again, is refused.
    tests::services::infra_await(&["start", &doomed.component()]).await;
    let rejoined = cluster_nodes(&url).await;
    let back = rejoined
        .iter()
        .find(|n| n.address == doomed.address)
        .expect("the node is back");
    assert!(!back.master && !back.failed, "{back:?}");
    let phase3 = issue(&cluster, &client, campaign, &riders[400..], &progress).await;
    assert_eq!(phase3, counts(&[(409, "coupon.sold_out", 200)]));
    let retries = issue(&cluster, &client, campaign, &riders[..50], &progress).await;
    assert_eq!(refused(&retries), 50, "{retries:?}");

    stop_reads(&stop, readers).await;
    assert_eq!(cluster.issued(campaign).await, (300, 300, 300));
    Arc::into_inner(cluster).expect("readers stopped").shutdown().await;
}
