//! `Application`: build (database, migrations, state, bus) → bound port → run.

use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod job_handlers;
mod process;
mod reload;
pub mod services;

use crate::config::{Config, ExposeSecret, Pooler};
use crate::db::embedded::{Durability, EmbeddedPostgres};
use crate::db::migrate::{MigrationSet, migrate_control};
use crate::db::notify::{self, BusEvent};
use crate::db::{TenantPool, build_pool, check_reachable};
use crate::error::AppError;
use crate::http::LiveSockets;
use crate::jobs::{Registry, Worker, WorkerSettings};
use crate::plans::PlanCatalog;
pub use crate::state::AppState;

/// How often `serve` counts tenants that lag behind its migrations.
const LAG_EVERY: Duration = Duration::from_secs(15);

/// Keeps the count of lagging tenants fresh (`/readyz`, gauge `tenants_migration_lagging`).
async fn watch_migration_lag(state: AppState) {
    let mut every = tokio::time::interval(LAG_EVERY);
    loop {
        every.tick().await;
        if let Err(err) = state.migration_lag.refresh(&state.pool).await {
            tracing::warn!(error = ?err, "counting tenants behind the migrations failed");
        }
    }
}

/// Hourly upkeep of this process's memory and of ended throttle windows: forget recovered
/// throttle entries and idle usage. (Cluster-wide upkeep, such as purging deleted tenants, runs as
/// recurring jobs: `jobs::product`.)
async fn maintain(state: AppState) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        if let Ok(client) = state.pool.get().await
            && let Err(err) = crate::auth::throttle::prune_windows(&client).await
        {
            tracing::warn!(error = ?err, "dropping ended throttle windows failed");
        }
        crate::usage::prune(&state.usage, &state.pool).await;
    }
}

/// Reacts to the notification bus: drops what changed, or everything after a reconnect
/// (notifications may have been missed while disconnected).
///
/// Open websockets affected by a change check their access again, after the caches forgot it.
async fn on_bus_event(state: &AppState, sockets: &LiveSockets, event: BusEvent) {
    let BusEvent::Notice { channel, payload } = event else {
        // A missed `tenant_migrated` could leave stale statements: drop them too.
        state.pool.manager().statement_caches.clear();
        state.tenants.clear();
        state.access.clear();
        state.members.clear();
        state.api_keys.clear();
        sockets.recheck_all();
        return;
    };
    match channel.as_str() {
        notify::TENANT_CHANGED => {
            // Host names may have moved too, and they cannot be found by id: forget them all.
            state.tenants.clear();
            match payload.parse() {
                Ok(id) => {
                    state.access.invalidate(id).await;
                    sockets.tenant_changed(id);
                }
                Err(_) => {
                    state.access.clear();
                    sockets.recheck_all();
                }
            }
        }
        notify::MEMBER_CHANGED => match payload.split_once(':').map(|(t, u)| (t.parse(), u.parse())) {
            Some((Ok(tenant), Ok(user))) => {
                state.members.forget(tenant, user).await;
                state.usage.gauges.members_changed(tenant).await;
                sockets.member_changed(tenant, user);
            }
            _ => {
                state.members.clear();
                sockets.recheck_all();
            }
        },
        notify::USAGE => state.usage.on_notice(&payload),
        notify::STORAGE => {
            if let Some((Ok(tenant), Ok(bytes))) =
                payload.split_once(':').map(|(t, b)| (t.parse(), b.parse()))
            {
                state.usage.gauges.set_storage(tenant, bytes).await;
            }
        }
        notify::API_KEY_CHANGED => {
            state.api_keys.forget(&payload).await;
            sockets.api_key_changed();
        }
        notify::TENANT_MIGRATED => {
            // The tenant's next load carries its new migration version, and requests key their
            // cached statements by it: the old statements are never used again (the size cap
            // evicts them), and every other tenant's stay cached.
            match payload.parse() {
                Ok(id) => state.access.invalidate(id).await,
                Err(_) => state.access.clear(),
            }
        }
        _ => {}
    }
}

/// The database a process uses: `DATABASE_URL`, or the embedded cluster (which it then owns).
pub struct Database {
    pub url: String,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    pub async fn open(config: &Config, durability: Durability) -> anyhow::Result<Self> {
        if let Some(url) = &config.database_url {
            return Ok(Self { url: url.expose_secret().to_owned(), embedded: None });
        }
        let data_dir = config.data_dir.clone();
        let pg =
            tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data_dir, durability)).await??;
        ensure_database(&pg.connection_string("postgres"), "tenantry").await?;
        Ok(Self { url: pg.connection_string("tenantry"), embedded: Some(pg) })
    }

    /// Stops the embedded cluster if this process started it.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Some(mut pg) = self.embedded {
            tokio::task::spawn_blocking(move || pg.stop()).await??;
        }
        Ok(())
    }
}

/// Creates database `name` unless it exists (the name is a constant, never user input).
async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let exists = client.query_opt("select 1 from pg_database where datname = $1", &[&name]).await?;
    if exists.is_none() {
        client.batch_execute(&format!("create database \"{name}\"")).await?;
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// The control-plane pool, the tenant-data pool, and the URL to LISTEN on.
///
/// Direct (`DATABASE_POOLER=none`): one pool for both. Behind PgBouncer in transaction mode,
/// tenant transactions (the bulk of the traffic) go through DATABASE_URL with unnamed statements
/// only, while the control plane, whose queries use ordinary prepared statements outside
/// transactions, and LISTEN use DATABASE_DIRECT_URL with a small pool.
async fn open_pools(config: &Config, database: &Database) -> anyhow::Result<(Pool, Pool, String)> {
    let size = config.db_pool_size;
    let (pool, tenant_pool, listen_url) = match config.database_pooler {
        Pooler::None => {
            let pool = build_pool(&database.url, size)?;
            (pool.clone(), pool, database.url.clone())
        }
        Pooler::Transaction => {
            let direct = config.database_direct_url.as_ref().map(ExposeSecret::expose_secret).context(
                "DATABASE_POOLER=transaction needs DATABASE_DIRECT_URL: a direct PostgreSQL URL for LISTEN \
                 and the control plane",
            )?;
            let control = build_pool(direct, (size / 4).max(4))?;
            let tenants = build_pool(&database.url, size)?;
            check_reachable(&tenants).await.context("through the pooler (DATABASE_URL)")?;
            (control, tenants, direct.to_owned())
        }
    };
    check_reachable(&pool).await?;
    Ok((pool, tenant_pool, listen_url))
}

/// The job worker, with pools of its own (jobs never take the connections requests wait for,
/// nor the reverse); `None` with `JOBS_CONCURRENCY=0`.
fn job_worker(
    config: &Config,
    database: &Database,
    control_url: &str,
    state: &AppState,
) -> anyhow::Result<Option<Worker>> {
    let settings = WorkerSettings::from_config(config);
    if settings.concurrency == 0 {
        return Ok(None);
    }
    let size = settings.concurrency + 2;
    let pool = build_pool(control_url, size)?;
    let tenant_pool = match config.database_pooler {
        Pooler::None => pool.clone(),
        Pooler::Transaction => build_pool(&database.url, size)?,
    };
    let tenant_pool = TenantPool::new(tenant_pool, config.database_pooler);
    let registry = job_handlers::registry(state);
    Ok(Some(Worker::new(pool, tenant_pool, registry, settings)))
}

/// Flushes every `USAGE_FLUSH_MS`; every few seconds, enqueues storage measurements (jobs) for
/// the tenants that wrote data.
async fn flush_usage(state: AppState) {
    let mut tick = tokio::time::interval(state.usage.flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_storage = Instant::now();
    loop {
        tick.tick().await;
        if let Err(err) = state.usage.flush(&state.pool).await {
            tracing::warn!(error = ?err, "usage flush failed; the counts are kept and retried");
        }
        if last_storage.elapsed() >= crate::usage::STORAGE_REFRESH {
            last_storage = Instant::now();
            if let Err(err) = state.usage.gauges.enqueue_written(&state.pool).await {
                tracing::warn!(error = ?err, "enqueueing storage measurements failed; retried next round");
            }
        }
    }
}

/// A built server: database ready, control schema migrated, port bound.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    database: Database,
    bus: JoinHandle<()>,
    extra_routes: axum::Router,
    limits: crate::http::EdgeLimits,
    http: crate::http::HttpSettings,
    /// Runs background jobs; `None` with `JOBS_CONCURRENCY=0`.
    worker: Option<Worker>,
}

/// How long in-flight requests get to finish after a shutdown signal before the process stops
/// anyway (Kubernetes' default grace period is 30 s; this leaves time to flush and close).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Configuration errors first, before anything is started.
        let plans = PlanCatalog::load(config.plans_file.as_deref())?;
        let database = Database::open(&config, Durability::Durable).await?;
        let (pool, tenant_pool, listen_url) = open_pools(&config, &database).await?;
        migrate_control(&pool).await?;
        let tenant_pool = TenantPool::new(tenant_pool, config.database_pooler);
        let http = services::http_settings(&config)?;
        let state = services::app_state(pool, tenant_pool, &config, plans, MigrationSet::tenant())?;
        let lagging = state.migration_lag.refresh(&state.pool).await.map_err(AppError::into_anyhow)?;
        if lagging > 0 {
            tracing::warn!(
                tenants.lagging = lagging,
                migration.version = state.migration_lag.target(),
                "tenants lag behind this build's migrations; run `tenantry migrate`"
            );
        }
        crate::db::tenant_role::warn_about_memberships(&state.pool).await;
        let worker = job_worker(&config, &database, &listen_url, &state)?;
        let job_wake = worker.as_ref().map(Worker::waker);
        let pg_config: tokio_postgres::Config = listen_url.parse()?;
        let bus = notify::spawn_listener(pg_config, {
            let state = state.clone();
            let sockets = http.live.clone();
            move |event| {
                let state = state.clone();
                let sockets = sockets.clone();
                let job_wake = job_wake.clone();
                async move {
                    let for_jobs = match &event {
                        BusEvent::Notice { channel, .. } => channel == notify::JOBS,
                        // Notifications may have been missed: look for due jobs now.
                        BusEvent::Connected => true,
                    };
                    if for_jobs && let Some(wake) = &job_wake {
                        wake.notify_one();
                    }
                    on_bus_event(&state, &sockets, event).await
                }
            }
        });
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {} (set BIND to another address)", config.bind))?;
        let limits = services::edge_limits(&config);
        Ok(Self { listener, state, database, bus, extra_routes: axum::Router::new(), limits, http, worker })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Adds the embedding application's own routes (REST endpoints, webhooks of its own). They
    /// are served with the same request ids, logs, metrics, CORS, headers and panic handling.
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = self.extra_routes.merge(routes);
        self
    }

    /// Adds the embedding application's own background jobs (handlers and recurring schedules).
    /// Enqueue them with `tenantry::jobs::enqueue` in the transaction of their cause.
    pub fn with_jobs(mut self, registry: Registry) -> Self {
        self.worker = self.worker.map(|w| w.with(registry));
        self
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves: stops accepting, lets in-flight requests finish (for
    /// up to `DRAIN_TIMEOUT`), then stops background work and releases the database.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(address = %self.listener.local_addr()?, "serving");
        let reload =
            tokio::spawn(reload::watch_trusted(self.http.trusted.clone(), self.http.documents.clone()));
        let router = crate::http::router_with(self.state.clone(), self.http, self.extra_routes);
        let upkeep = tokio::spawn(maintain(self.state.clone()));
        let worker = self.worker.map(Worker::spawn);
        let lag = tokio::spawn(watch_migration_lag(self.state.clone()));
        let flusher = tokio::spawn(flush_usage(self.state.clone()));
        let supervisor = self.database.embedded.as_ref().and_then(EmbeddedPostgres::supervisor);
        let supervisor = supervisor.map(|s| tokio::spawn(s.watch()));
        let draining = std::sync::Arc::new(tokio::sync::Notify::new());
        let signalled = {
            let draining = draining.clone();
            let state = self.state.clone();
            async move {
                shutdown.await;
                // Open websockets would hold the graceful shutdown open: ask them to close.
                state.usage.live.shut_down();
                draining.notify_one();
            }
        };
        let serve = crate::http::serve(self.listener, router, self.limits, signalled);
        let deadline = async {
            draining.notified().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        tokio::select! {
            () = serve => {},
            () = deadline => tracing::warn!(
                timeout_s = DRAIN_TIMEOUT.as_secs(),
                "requests still running after the drain timeout; stopping anyway"
            ),
        }
        upkeep.abort();
        // Requests are done, so no more jobs come from this process: stop claiming, let running
        // jobs finish (bounded), give the rest back to the queue.
        if let Some(worker) = worker {
            worker.shutdown().await;
        }
        lag.abort();
        if let Some(supervisor) = supervisor {
            supervisor.abort();
        }
        flusher.abort();
        reload.abort();
        // Every request that got a response has been counted: write the counts before exiting.
        match self.state.usage.flush_all(&self.state.pool).await {
            Ok(()) => tracing::info!("usage flushed"),
            Err(err) => tracing::error!(error = ?err, "usage could not be flushed before exit; counts lost"),
        }
        self.bus.abort();
        self.state.pool.close();
        self.database.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested; draining requests");
}
