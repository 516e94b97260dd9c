//! The database paths at the database's speed (issue 13): the order + payment loop and the
//! members mix over HTTP, on SQLite (the embedded default) and on PostgreSQL with its
//! streaming replica, and pgbench (TPC-B and select-only) on the same PostgreSQL primary in
//! the same run, so the figures are compared with what the database itself does on this
//! machine at that moment.
//!
//! Each store gets a fresh database and a real `app-server` in this process (the client
//! shares the cores, as a load generator on the same machine does). Per CONNECTIONS client:
//! one member with points; the order loop places an order of one unit (over 100 products)
//! and pays it with an `Idempotency-Key`; the members mix is three reads of the member's own
//! data (profile, balance, ledger) and one keyed point charge.
//!
//! ```sh
//! eval "$(scripts/infra.sh up)"
//! cargo run --release -p tests --example db_bench -- [SECONDS] [CONNECTIONS]
//! ```
//!
//! With `DB_BENCH_SQLITE_ONLY=1` it runs the SQLite loops alone (no services needed);
//! `DB_BENCH_SQLITE_SYNCHRONOUS=full` runs SQLite with `database.sqlite_synchronous = "full"`
//! (an fsync of the WAL at every commit) instead of the default `normal`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;

use app_server::config::Config;
use app_server::server::{self, Running};
use tests::load::{self, Charges, Tally};

/// The stores the loops run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres,
}

/// A server on a fresh database of `store`, its guard (dropping it drops the database), and
/// the primary's URL for PostgreSQL.
async fn start(store: Store) -> (Running, Box<dyn std::any::Any + Send>, Option<String>) {
    let mut config = Config::defaults().expect("defaults");
    let (guard, primary): (Box<dyn std::any::Any + Send>, Option<String>) = match store {
        Store::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            config.database.url = format!("sqlite://{}", dir.path().join("hexride.db").display()).into();
            if std::env::var("DB_BENCH_SQLITE_SYNCHRONOUS").is_ok_and(|v| v == "full") {
                config.database.sqlite_synchronous = adapters_sqlite::Synchronous::Full;
            }
            (Box::new(dir), None)
        }
        Store::Postgres => {
            let pg = tests::services::postgres_with_replica()
                .await
                .expect("PostgreSQL with its replica (scripts/infra.sh up)");
            let db = tests::services::fresh_pg(&pg).await;
            config.database.url = db.primary_url.clone().into();
            config.database.replica_urls = vec![db.replica_url.clone().into()];
            let primary = db.primary_url.clone();
            (Box::new(db), Some(primary))
        }
    };
    tests::cluster::for_load(&mut config);
    config.log.level = "error".into();
    let running = server::start(config).await.expect("the server starts");
    (running, guard, primary)
}

struct Figures {
    orders: Tally,
    mix: Tally,
    /// Primary transactions committed per paid order (PostgreSQL's `xact_commit`).
    commits_per_order: Option<f64>,
    /// CPU per paid order during the order loop.
    order_cpu: Cpu,
}

/// CPU time (user + system), in seconds, used so far by the processes that do the work: this
/// process (the server and the client) and, on PostgreSQL, the primary's and the replica's
/// server processes. The difference of two readings is where a loop's time went.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    own: f64,
    primary: f64,
    replica: f64,
}

impl Cpu {
    fn per(self, before: Cpu, units: f64) -> Cpu {
        let units = units.max(1.0);
        Cpu {
            own: (self.own - before.own) / units,
            primary: (self.primary - before.primary) / units,
            replica: (self.replica - before.replica) / units,
        }
    }

    fn describe(self) -> String {
        let ms = |s: f64| s * 1000.0;
        format!(
            "this process (server + client) {:.2} ms, primary {:.2} ms, replica {:.2} ms",
            ms(self.own),
            ms(self.primary),
            ms(self.replica)
        )
    }
}

/// `(ppid, utime + stime, cutime + cstime)` of a process, in clock ticks, from `/proc/PID/stat`.
fn proc_stat(pid: &str) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces), from the state (field 3) on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((
        u32::try_from(field(4)?).ok()?,
        field(14)? + field(15)?,
        field(16)? + field(17)?,
    ))
}

/// Clock ticks per second (`getconf CLK_TCK`, asked once).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds of a PostgreSQL server so far: its postmaster, the children it has reaped and
/// those alive (backends, WAL sender or startup process, background workers).
fn server_cpu(postmaster: u32) -> f64 {
    let Some((_, own, reaped)) = proc_stat(&postmaster.to_string()) else {
        return 0.0;
    };
    let live: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let (ppid, ticks, _) = proc_stat(&name)?;
            (ppid == postmaster).then_some(ticks)
        })
        .sum();
    (own + reaped + live) as f64 / clock_ticks()
}

/// The postmaster of the server at `url`: the parent of a backend of it.
async fn postmaster(url: &str) -> u32 {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let backend: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("pg_backend_pid");
    // Read while the backend lives: it exits when the pool closes.
    let parent = proc_stat(&backend.to_string()).expect("the backend's /proc entry").0;
    pool.close().await;
    parent
}

/// The servers whose CPU a reading includes.
#[derive(Debug, Clone, Copy, Default)]
struct Servers {
    primary: Option<u32>,
    replica: Option<u32>,
}

impl Servers {
    fn cpu(self) -> Cpu {
        let own = proc_stat("self").map_or(0, |(_, ticks, _)| ticks) as f64 / clock_ticks();
        Cpu {
            own,
            primary: self.primary.map_or(0.0, server_cpu),
            replica: self.replica.map_or(0.0, server_cpu),
        }
    }
}

async fn xact_commit(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let commits: i64 =
        sqlx::query_scalar("select xact_commit from pg_stat_database where datname = current_database()")
            .fetch_one(&pool)
            .await
            .expect("pg_stat_database");
    pool.close().await;
    commits
}

async fn measure(store: Store, seconds: u64, connections: usize) -> Figures {
    let (running, guard, primary) = start(store).await;
    let api = format!("http://{}/api/v1", running.addr.expect("listening"));
    let client = Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .expect("client");
    let catalog = &running.runtime.services.catalog;
    let mut products = Vec::new();
    for i in 0..100 {
        let product = catalog
            .create(&format!("Bench {i}"), 100, 1_000_000)
            .await
            .expect("a product");
        products.push(product.id.to_string());
    }
    let products = Arc::new(products);
    let members = Arc::new(load::members(&client, &api, connections).await);
    for member in members.iter() {
        load::charge_points(&client, &api, &member.token, 1_000_000)
            .await
            .expect("points to pay with");
    }
    let duration = Duration::from_secs(seconds);

    let servers = match store {
        Store::Sqlite => Servers::default(),
        Store::Postgres => {
            let pg = tests::services::postgres_with_replica().await.expect("PostgreSQL");
            Servers {
                primary: Some(postmaster(&pg.primary).await),
                replica: Some(postmaster(&pg.replica).await),
            }
        }
    };
    let before = match &primary {
        Some(url) => Some(xact_commit(url).await),
        None => None,
    };
    let cpu_before = servers.cpu();
    let orders = load::orders_for(&client, &api, &members, &products, duration).await;
    let order_cpu = servers.cpu().per(cpu_before, orders.ok as f64);
    let commits_per_order = match (&primary, before) {
        (Some(url), Some(before)) => {
            let paid = orders.ok as f64;
            Some((xact_commit(url).await - before) as f64 / paid.max(1.0))
        }
        _ => None,
    };

    let mix = load::run_for(&client, &api, &members, Charges::Keyed, duration).await;

    running.shutdown().await;
    drop(guard);
    Figures {
        orders,
        mix,
        commits_per_order,
        order_cpu,
    }
}

/// A PostgreSQL client program: from `HEXRIDE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (where Debian puts pgbench), as `scripts/infra.sh` finds them.
fn pg_bin(name: &str) -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("HEXRIDE_PG_BIN") {
        return std::path::Path::new(&dir).join(name);
    }
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql (the Debian PostgreSQL packages)")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join(name).exists())
        .collect();
    dirs.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .unwrap_or_else(|| panic!("no {name} under /usr/lib/postgresql/*/bin"))
        .join(name)
}

/// pgbench on a database of its own on the PostgreSQL primary: `(TPC-B tps, select-only tps)`
/// with `clients` clients for `seconds` each.
/// Also the CPU per TPC-B transaction of `servers`.
fn pgbench(primary_url: &str, servers: Servers, seconds: u64, clients: usize) -> (f64, f64, Cpu) {
    let bin = pg_bin("pgbench");
    let url = reqwest::Url::parse(primary_url).expect("the primary's URL");
    let (host, port, user) = (
        url.host_str().expect("host").to_owned(),
        url.port().unwrap_or(5432).to_string(),
        url.username().to_owned(),
    );
    let database = "hexride_pgbench";
    let psql = |sql: &str| {
        let status = Command::new(pg_bin("psql"))
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .args([
                "-X", "-q", "-h", &host, "-p", &port, "-U", &user, "-d", "postgres", "-c", sql,
            ])
            .status()
            .expect("psql");
        assert!(status.success(), "psql {sql}");
    };
    psql(&format!("drop database if exists {database}"));
    psql(&format!("create database {database}"));
    let common = ["-h", &host, "-p", &port, "-U", &user];
    let init = Command::new(&bin)
        .args(common)
        .args(["-i", "-q", "-s", "10", database])
        .output()
        .expect("pgbench -i");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let run = |extra: &[&str]| -> f64 {
        let out = Command::new(&bin)
            .args(common)
            .args(["-n", "-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string()])
            .args(extra)
            .arg(database)
            .output()
            .expect("pgbench");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix("tps = ")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{text}"))
    };
    let before = servers.cpu();
    let tpcb = run(&[]);
    let tpcb_cpu = servers.cpu().per(before, tpcb * seconds as f64);
    let select_only = run(&["-S"]);
    psql(&format!("drop database if exists {database}"));
    (tpcb, select_only, tpcb_cpu)
}

fn row(label: &str, tally: &Tally) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{label:<34} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   {} failed",
        tally.rate(),
        ms(tally.quantile(&[], 0.5)),
        ms(tally.quantile(&[], 0.99)),
        tally.failures.len()
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    println!("db_bench: {connections} connections, {seconds} s per loop (release build, client on the same cores)");

    let sqlite = measure(Store::Sqlite, seconds, connections).await;
    if std::env::var_os("DB_BENCH_SQLITE_ONLY").is_some() {
        println!("{}", row("SQLite: order + payment (paid)", &sqlite.orders));
        println!("{}", row("SQLite: members mix (3:1)", &sqlite.mix));
        println!("CPU per SQLite paid order:       {}", sqlite.order_cpu.describe());
        return;
    }
    let postgres = measure(Store::Postgres, seconds, connections).await;
    let pg = tests::services::postgres_with_replica().await.expect("PostgreSQL");
    let servers = Servers {
        primary: Some(postmaster(&pg.primary).await),
        replica: Some(postmaster(&pg.replica).await),
    };
    let (tpcb, select_only, tpcb_cpu) = pgbench(&pg.primary, servers, seconds, connections);

    println!();
    println!("{}", row("SQLite: order + payment (paid)", &sqlite.orders));
    println!("{}", row("SQLite: members mix (3:1)", &sqlite.mix));
    println!("{}", row("PostgreSQL+replica: order+payment", &postgres.orders));
    println!("{}", row("PostgreSQL+replica: members mix", &postgres.mix));
    println!(
        "{:<34} {tpcb:>9.0} tps",
        format!("pgbench TPC-B, {connections} clients")
    );
    println!(
        "{:<34} {select_only:>9.0} tps",
        format!("pgbench select-only, {connections} clients")
    );
    println!();
    println!(
        "PostgreSQL paid orders/s ÷ pgbench TPC-B tps:        {:>5.1} %",
        100.0 * postgres.orders.rate() / tpcb
    );
    println!(
        "PostgreSQL members mix req/s ÷ pgbench TPC-B tps:    {:>5.1} %",
        100.0 * postgres.mix.rate() / tpcb
    );
    println!(
        "PostgreSQL members mix req/s ÷ pgbench select-only:  {:>5.1} %",
        100.0 * postgres.mix.rate() / select_only
    );
    if let Some(commits) = postgres.commits_per_order {
        println!("PostgreSQL primary transactions per paid order:      {commits:>5.1}");
    }
    println!();
    println!("CPU per SQLite paid order:       {}", sqlite.order_cpu.describe());
    println!("CPU per PostgreSQL paid order:   {}", postgres.order_cpu.describe());
    println!("CPU per pgbench TPC-B txn:       {}", tpcb_cpu.describe());
}
