//! Running an instance: the HTTP server and the background workers (outbox relay, Kafka
//! consumers, scheduled jobs, metrics upkeep), with graceful shutdown — stop accepting, finish
//! in-flight requests, let the relay finish its batch and the consumers commit, flush the
//! producer, close the pools.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use futures::FutureExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::{self, AppState, HttpSettings, OutageLog};
use crate::runtime::Runtime;
use application::jobs::{JobError, JobRunner, RunOutcome};
use application::licences::{REVERIFY_JOB, ReverifyLicences};
use application::members::{ANONYMISE_JOB, AnonymiseWithdrawn};
use application::orders::{CancelStaleOrders, STALE_ORDERS_JOB};

/// After the listeners close, how long connections accepted just before have to send
/// their request before every connection is told to finish.
const LAST_CONNECTIONS_GRACE: Duration = Duration::from_millis(250);

/// Bucket bounds (seconds) of every `…_seconds` histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder (installed once, shared by every app in a process).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latency as histograms with buckets: quantiles of several instances cannot be
            // combined, bucket counts can (histogram_quantile over the sum of the rates).
            // (It refuses only an empty bucket list.)
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// A shutdown signal that any number of tasks can wait on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(mut self) {
        // An error means the sender is gone: shut down too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A started instance.
pub struct Running {
    /// Where HTTP listens (port 0 in the config picks a free one).
    pub addr: Option<SocketAddr>,
    /// Where the admin listener listens (`server.admin_listen`).
    pub admin_addr: Option<SocketAddr>,
    pub runtime: Arc<Runtime>,
    stop: watch::Sender<bool>,
    stop_listening: watch::Sender<bool>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    admin: Option<JoinHandle<std::io::Result<()>>>,
    workers: Vec<JoinHandle<()>>,
    grace: Duration,
    drain: Duration,
    draining: Arc<AtomicBool>,
}

impl Running {
    /// Graceful stop. An instance that serves the API drains first: readiness answers 503
    /// and every response closes its connection for `server.drain_secs`, while requests are
    /// still served. Then the listeners close, in-flight requests finish (up to the grace
    /// period), the relay finishes its batch (no lease is left behind), consumers commit and
    /// leave their groups, pools close.
    pub async fn shutdown(mut self) {
        self.draining.store(true, Ordering::Relaxed);
        if self.http.is_some() && !self.drain.is_zero() {
            tracing::info!(
                drain_secs = self.drain.as_secs(),
                "draining: readiness 503, still serving"
            );
            tokio::time::sleep(self.drain).await;
        }
        // Stop listening first, and give the connections accepted last the time to send
        // their request: told to finish at once, a connection whose request has not been
        // read yet would be closed under it (a reset the client cannot tell from a crash).
        let _ = self.stop_listening.send(true);
        if self.http.is_some() {
            tokio::time::sleep(LAST_CONNECTIONS_GRACE).await;
        }
        let _ = self.stop.send(true);
        for http in [self.http.take(), self.admin.take()].into_iter().flatten() {
            match tokio::time::timeout(self.grace, http).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => tracing::error!(%error, "HTTP server error"),
                Ok(Err(error)) => tracing::error!(%error, "HTTP server task failed"),
                Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
            }
        }
        for worker in self.workers.drain(..) {
            if tokio::time::timeout(self.grace, worker).await.is_err() {
                tracing::warn!("a worker did not stop within the grace period");
            }
        }
        self.runtime.close().await;
        tracing::info!("stopped");
    }
}

/// The state the routers share, not draining.
pub fn app_state(runtime: &Runtime) -> AppState {
    app_state_draining(runtime, Arc::default())
}

fn app_state_draining(runtime: &Runtime, draining: Arc<AtomicBool>) -> AppState {
    let c = &runtime.config;
    AppState {
        services: Arc::new(runtime.services.clone()),
        ports: Arc::new(runtime.ports.clone()),
        http: Arc::new(HttpSettings {
            insurer_secret: c.insurer.webhook_secret.clone(),
            api_quota: ports::Quota {
                limit: c.auth.api_per_member_per_minute,
                period: Duration::from_secs(60),
            },
            trusted_proxies: c.server.trusted_proxies.clone(),
            request_timeout: c.server.request_timeout,
            max_body_bytes: c.server.max_body_bytes,
        }),
        health: Arc::new(runtime.health.clone()),
        metrics: prometheus(),
        outage_log: Arc::new(OutageLog::default()),
        draining,
    }
}

/// Builds the runtime and starts what its role asks for: HTTP, workers, or both.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let role = config.server.role;
    let listen = config.server.listen.clone();
    let admin_listen = config.server.admin_listen.clone();
    let (grace, drain) = (config.server.shutdown_grace, config.server.drain);
    let draining = Arc::new(AtomicBool::new(false));
    let runtime = Arc::new(Runtime::build(config).await?);
    let (stop, shutdown) = Shutdown::new();
    let (stop_listening, listening) = Shutdown::new();

    // Every role: the exporter's upkeep and the component gauges.
    let mut workers = vec![spawn_metrics_upkeep(&runtime, &shutdown)];
    if role.runs_workers() {
        workers.extend(spawn_workers(&runtime, &shutdown)?);
    }
    let state = app_state_draining(&runtime, draining.clone());
    let (addr, http) = if role.serves_http() {
        let (addr, server) = serve(&listen, http::router(state.clone()), &listening, &shutdown).await?;
        tracing::info!(%addr, "listening");
        (Some(addr), Some(server))
    } else {
        (None, None)
    };
    // Every instance has one, workers included: their metrics and readiness count too.
    let (admin_addr, admin) = serve(&admin_listen, http::admin_router(state), &listening, &shutdown).await?;
    tracing::info!(addr = %admin_addr, "admin listener (metrics, readiness details, /docs)");
    Ok(Running {
        addr,
        admin_addr: Some(admin_addr),
        admin: Some(admin),
        runtime,
        stop,
        stop_listening,
        http,
        workers,
        grace,
        drain,
        draining,
    })
}

/// Binds `listen` and serves `router` on it: accepting until `listening` ends, the
/// connections until `shutdown` (each in-flight request finishes first).
async fn serve(
    listen: &str,
    router: axum::Router,
    listening: &Shutdown,
    shutdown: &Shutdown,
) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let listener = ClosingListener {
        listener: Some(listener),
        addr,
        closing: listening.0.clone(),
    }
    .tap_io(|stream| {
        // Small answers leave at once rather than waiting for Nagle's timer.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY refused");
        }
    });
    let signal = shutdown.clone().wait();
    let server = tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(signal)
            .await
    });
    Ok((addr, server))
}

/// A TCP listener that stops listening when `closing` turns true, before the server tells
/// its connections to finish: the connections that completed their handshake by then are
/// accepted and served (not reset with the socket), and later ones are refused, which a load
/// balancer retries elsewhere. Then it accepts nothing, ever.
struct ClosingListener {
    listener: Option<tokio::net::TcpListener>,
    addr: SocketAddr,
    closing: watch::Receiver<bool>,
}

impl axum::serve::Listener for ClosingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(listener) = &self.listener else {
                return std::future::pending().await;
            };
            if *self.closing.borrow() {
                // Whatever waits in the accept queue, then close.
                match listener.accept().now_or_never() {
                    Some(Ok(accepted)) => return accepted,
                    Some(Err(error)) if is_connection_error(&error) => continue,
                    _ => {
                        self.listener = None;
                        continue;
                    }
                }
            }
            let closing = self.closing.changed();
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => return accepted,
                    Err(error) if is_connection_error(&error) => {}
                    Err(error) => {
                        // Out of file descriptors, say: wait for some to be given back.
                        tracing::error!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                changed = closing => {
                    if changed.is_err() {
                        // The instance is gone without a shutdown: stop listening too.
                        self.listener = None;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// An error of one connection (the client gave up during the handshake), not of the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Every 5 s: the exporter's upkeep, and `health_component_status{component}` (2 up,
/// 1 degraded, 0 down) from the same checks as readiness, so alerts see what it sees.
fn spawn_metrics_upkeep(runtime: &Arc<Runtime>, shutdown: &Shutdown) -> JoinHandle<()> {
    let handle = prometheus();
    let checks = Arc::new(runtime.health.clone());
    spawn_every(Duration::from_secs(5), shutdown, move || {
        let (handle, checks) = (handle.clone(), checks.clone());
        async move {
            handle.run_upkeep();
            let reports = futures::future::join_all(checks.iter().map(|c| c.health())).await;
            for component in reports.into_iter().flatten() {
                let value = match component.status {
                    ports::HealthStatus::Up => 2.0,
                    ports::HealthStatus::Degraded => 1.0,
                    ports::HealthStatus::Down => 0.0,
                };
                metrics::gauge!("health_component_status", "component" => component.name).set(value);
            }
        }
    })
}

/// Runs `tick` every `interval` until `shutdown`; a slow tick delays the next one.
fn spawn_every<F, Fut>(interval: Duration, shutdown: &Shutdown, mut tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = stop.wait();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                _ = ticker.tick() => tick().await,
            }
        }
    })
}

/// The relay, the scheduled jobs and, with Kafka, one consumer per handler.
fn spawn_workers(runtime: &Arc<Runtime>, shutdown: &Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let owner = format!("relay-{}", uuid::Uuid::now_v7());
    let relay = runtime.relay(&owner);
    let stop = shutdown.clone();
    let relay_task = tokio::spawn(async move {
        tracing::info!(owner = %owner, "outbox relay started");
        relay.run(stop.wait()).await;
    });

    let interval = runtime.config.jobs.interval;
    let runner = runtime.job_runner();
    tracing::info!(holder = runner.holder(), "scheduled jobs started");
    let jobs_runtime = runtime.clone();
    let jobs_task = spawn_every(interval, shutdown, move || {
        let (runtime, runner) = (jobs_runtime.clone(), runner.clone());
        async move { run_jobs(&runtime, &runner).await }
    });

    let mut workers = vec![relay_task, jobs_task];
    workers.extend(crate::kafka::spawn_consumers(runtime, shutdown)?);
    Ok(workers)
}

/// One round of the scheduled jobs. Each reads its work list from a replica and works it
/// in chunks, on one instance at a time, under its lease ([`JobRunner`]).
pub async fn run_jobs(runtime: &Runtime, runner: &JobRunner) {
    let ports = &runtime.ports;
    let stale = CancelStaleOrders::new(ports.clone(), runtime.services.catalog.clone());
    report(STALE_ORDERS_JOB, runner.run(&stale).await);
    report(ANONYMISE_JOB, runner.run(&AnonymiseWithdrawn::new(ports.clone())).await);
    let reverify = ReverifyLicences::new(ports.clone(), runtime.config.licences.due_policy());
    report(REVERIFY_JOB, runner.run(&reverify).await);
}

/// Logs how a job's run ended.
fn report(job: &str, outcome: Result<RunOutcome, JobError>) {
    match outcome {
        Ok(RunOutcome::HeldElsewhere) => tracing::debug!(job, "another instance runs the job"),
        Ok(RunOutcome::Finished { done: 0, failed: 0 }) => {}
        Ok(RunOutcome::Finished { done, failed }) => tracing::info!(job, done, failed, "job run finished"),
        Err(error) => tracing::warn!(job, %error, "job run stopped; the next run resumes after its last chunk"),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}
