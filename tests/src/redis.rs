//! The two Redis deployments the Redis test sets run on: one server (`TEST_REDIS_URL`) and a
//! Redis Cluster of three masters with a replica each (`TEST_REDIS_CLUSTER_URL`, both from
//! `scripts/infra.sh`), and what the cluster tests need to look inside a cluster: its nodes,
//! which master holds a key, every master's keys.

use std::time::{Duration, Instant};

use crate::services;

/// Which Redis a test binary runs its suite on (each binary's `main.rs` sets `TARGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server.
    Single,
    /// A Redis Cluster, named by a `redis+cluster://` URL.
    Cluster,
}

impl RedisTarget {
    /// The URL to connect to, or `None` when it is missing and skipping was asked for.
    ///
    /// # Panics
    /// When it is missing and skipping is not asked for, with how to provide it.
    pub async fn url(self) -> Option<String> {
        match self {
            Self::Single => services::redis().await,
            Self::Cluster => services::redis_cluster(),
        }
    }

    /// A URL of the same kind on which nothing listens (ports 1 and 2 refuse connections).
    pub fn unreachable_url(self) -> &'static str {
        match self {
            Self::Single => "redis://127.0.0.1:1",
            Self::Cluster => "redis+cluster://127.0.0.1:1,127.0.0.1:2",
        }
    }
}

/// One node of a Redis Cluster as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// `host:port`.
    pub address: String,
    pub port: u16,
    pub master: bool,
    /// Flagged `fail` (or `fail?`) by the node asked.
    pub failed: bool,
    /// The slot ranges it serves (masters only), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    pub fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    pub fn holds(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(first, last)| (first..=last).contains(&slot))
    }

    /// Its component name in `scripts/infra.sh` (`rediscluster-N`, N from its port).
    pub fn component(&self) -> String {
        let first = std::env::var("HEXRIDE_REDIS_CLUSTER_PORT")
            .ok()
            .and_then(|port| port.parse::<u16>().ok())
            .unwrap_or(27001);
        format!("rediscluster-{}", self.port - first + 1)
    }
}

async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// The seed node URLs of the cluster URL `url`.
///
/// # Panics
/// When `url` does not name a cluster.
pub fn seeds(url: &str) -> Vec<String> {
    adapters_redis::conn::cluster_nodes(url)
        .expect("a redis+cluster:// URL")
        .expect("with nodes")
}

/// The cluster's nodes as the first seed that answers sees them.
///
/// # Panics
/// When no seed answers.
pub async fn cluster_nodes(url: &str) -> Vec<ClusterNode> {
    for seed in seeds(url) {
        let Ok(mut con) = connect(&seed).await else { continue };
        let Ok(listing) = redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut con).await else {
            continue;
        };
        return listing.lines().filter_map(parse_node).collect();
    }
    panic!("no seed of {url} answers CLUSTER NODES");
}

/// `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>…`
fn parse_node(line: &str) -> Option<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let address = fields.get(1)?.split('@').next()?.to_owned();
    let port = address.rsplit(':').next()?.parse().ok()?;
    let flags = fields.get(2)?;
    let slots = fields
        .iter()
        .skip(8)
        .filter(|slot| !slot.starts_with('['))
        .filter_map(|slot| match slot.split_once('-') {
            Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
            None => slot.parse().ok().map(|one| (one, one)),
        })
        .collect();
    Some(ClusterNode {
        address,
        port,
        master: flags.split(',').any(|flag| flag == "master"),
        failed: flags.split(',').any(|flag| flag == "fail" || flag == "fail?"),
        slots,
    })
}

/// The slot of `key` (`CLUSTER KEYSLOT`).
pub async fn slot_of(url: &str, key: &str) -> u16 {
    let mut con = connect(&seeds(url)[0]).await.expect("a seed answers");
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut con)
        .await
        .expect("CLUSTER KEYSLOT")
}

/// The live master serving `slot`, once the cluster has one (after a failover, the promoted
/// replica), waiting up to `within`.
///
/// # Panics
/// When no live master serves it by then.
pub async fn master_of(url: &str, slot: u16, within: Duration) -> ClusterNode {
    let deadline = Instant::now() + within;
    loop {
        let nodes = cluster_nodes(url).await;
        if let Some(master) = nodes.into_iter().find(|n| n.master && !n.failed && n.holds(slot)) {
            return master;
        }
        assert!(
            Instant::now() < deadline,
            "no live master serves slot {slot} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `redis://` URL of each server holding keys: every live master of a cluster, or `url`
/// itself for one server.
pub async fn key_holders(url: &str) -> Vec<String> {
    if adapters_redis::conn::cluster_nodes(url).is_none() {
        return vec![url.to_owned()];
    }
    cluster_nodes(url)
        .await
        .iter()
        .filter(|node| node.master && !node.failed && !node.slots.is_empty())
        .map(ClusterNode::url)
        .collect()
}

/// Every key under `prefix`, with its remaining TTL in ms (-1: none), from every server
/// holding keys.
pub async fn keys_with_ttl(url: &str, prefix: &str) -> Vec<(String, i64)> {
    let mut keys = Vec::new();
    for holder in key_holders(url).await {
        let mut con = connect(&holder).await.expect("a key holder answers");
        let mut cursor = 0_u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await
                .expect("SCAN");
            for key in batch {
                let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut con).await.expect("PTTL");
                keys.push((key, ttl));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_nodes_line_is_read_with_its_slots() {
        let master =
            parse_node("71db 127.0.0.1:27001@28001 myself,master - 0 0 1 connected 0-5460 5500 [5461->-f419]").unwrap();
        assert_eq!(master.address, "127.0.0.1:27001");
        assert_eq!(master.port, 27001);
        assert!(master.master && !master.failed);
        assert_eq!(master.slots, vec![(0, 5460), (5500, 5500)]);
        assert!(master.holds(0) && master.holds(5460) && master.holds(5500) && !master.holds(5461));
        let replica = parse_node("3180 127.0.0.1:27004@28004 slave,fail 71db 0 0 1 disconnected").unwrap();
        assert!(!replica.master && replica.failed && replica.slots.is_empty());
    }
}
