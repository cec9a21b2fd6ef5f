//! `pbmaster start`: raises the open-file limit, wires the store, the coordinator, the
//! PB listener and the API, reconfigures on SIGHUP, and drains on SIGTERM.

use crate::accept::HttpListener;
use crate::api::{self, ApiState};
use crate::changes::gitpoll::GitPoller;
use crate::cluster;
use crate::config::{self, Config, Current};
use crate::conn::ConnConfig;
use crate::latent::credentials::Credentials;
use crate::master::{BuildSettings, ConfigAuth, Coordinator, Master, Membership, Msg};
use crate::nofile;
use crate::reload::Reloader;
use crate::reporters::Outbox;
use crate::secrets::Secrets;
use crate::server::{self, PbListener};
use crate::store::Store;
use crate::tls;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Loads the config and runs the master until it is told to stop.
pub async fn start(path: &Path) -> Result<(), String> {
    let config = config::load(path).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    run(config, path.to_owned()).await
}

/// Runs the master on `config`, read from `path` (read again on SIGHUP).
pub async fn run(config: Config, path: PathBuf) -> Result<(), String> {
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    config.hooks.read_secrets()?;
    let secrets = Arc::new(Secrets::load(&config.secrets)?);
    if !secrets.is_empty() {
        info!("secrets: {secrets:?}");
    }
    Outbox::check_secrets(&config.reporters, &secrets)?;
    if let Some((old, new)) = nofile::raise(nofile::needed(&config))? {
        info!("open-file limit raised from {old} to {new}");
    }
    let credentials = Arc::new(Credentials::default());
    let auth = Arc::new(ConfigAuth::from_config(&config)?.with_latent(credentials.clone()));
    let pb_auth: Arc<dyn crate::conn::Auth> = auth.clone();
    let api_guard = Arc::new(api::Guard::from_config(&config.api)?);
    let pb_tls = config
        .master
        .pb_tls
        .as_ref()
        .map(tls::acceptor)
        .transpose()?;
    let postgres = config
        .store
        .as_ref()
        .map(|s| {
            Ok::<_, String>(crate::store::PgTarget {
                url: s.url.clone(),
                password: s
                    .password
                    .as_ref()
                    .map(|p| p.read())
                    .transpose()
                    .map_err(|e| format!("[store] password: {e}"))?,
            })
        })
        .transpose()?;
    let mut store = Store::open_with(&config.master.data_dir, postgres.as_ref())
        .map_err(|e| format!("database: {e}"))?;
    store.lock_folder().map_err(|e| format!("database: {e}"))?;
    let member = if store.is_shared() {
        let member = join_installation(&store, &config).await?;
        store.set_member(&member.name);
        Some(Arc::new(member))
    } else {
        None
    };
    let recovered = store.recover().map_err(|e| format!("database: {e}"))?;
    let master_id = match &member {
        Some(m) => m.master_id.clone(),
        None => store.master_id().map_err(|e| format!("database: {e}"))?,
    };
    if recovered > 0 {
        info!(
            "{recovered} build(s) were running when the master stopped; their requests run again"
        );
    }
    let pb = server::listen(&config.master.pb_listen)
        .await
        .map_err(|e| format!("{}: {e}", config.master.pb_listen))?;
    let http = server::listen(&config.master.http_listen)
        .await
        .map_err(|e| format!("{}: {e}", config.master.http_listen))?;
    info!(
        pb = %pb.local_addr().map_err(|e| e.to_string())?,
        pb_tls = pb_tls.is_some(),
        http = %http.local_addr().map_err(|e| e.to_string())?,
        "listening"
    );

    let (tx, rx) = mpsc::channel(1024);
    let (idle_tx, idle_rx) = oneshot::channel();
    let membership = member.as_ref().map(|m| Membership {
        name: m.name.clone(),
    });
    let master = Master::new(&config, &store, &master_id)?.with_membership(membership);
    let events = crate::events::Events::default();
    let coordinator = Coordinator::new(
        master,
        &store,
        tx.clone(),
        credentials,
        BuildSettings {
            data_dir: config.master.data_dir.clone(),
            secrets: secrets.clone(),
            limits: config.limits,
            events: events.clone(),
        },
    );
    let tasks = TaskTracker::new();
    let master_tasks = coordinator.tasks();
    // Reports left from before a restart go out now; new ones as builds queue them.
    // It runs without reporters too: a reconfiguration may add some.
    let reports_stop = CancellationToken::new();
    let outbox = Outbox::new(
        store.clone(),
        &config.reporters,
        secrets.clone(),
        coordinator.reports_wake(),
    );
    tasks.spawn(outbox.clone().run(reports_stop.clone()));
    // Finished logs compressed, expired logs and builds deleted.
    let janitor = crate::janitor::Janitor::new(&store, config.retention, &events);
    let janitor_stop = CancellationToken::new();
    tasks.spawn(janitor.run(janitor_stop.clone()));
    tasks.spawn(coordinator.spawn(rx, idle_tx));
    // The lease and the other masters' notices, until the master has stopped.
    let cluster_stop = CancellationToken::new();
    let mut listening = None;
    if let Some(member) = &member {
        tasks.spawn(cluster::run(
            store.clone(),
            member.clone(),
            tx.clone(),
            cluster_stop.clone(),
        ));
        let listen = cluster::listen(
            store.clone(),
            member.name.clone(),
            tx.clone(),
            cluster_stop.clone(),
        );
        listening = Some(listen.map_err(|e| format!("cannot start listening: {e}"))?);
    }
    // Pollers stop when draining starts: no new work is taken then.
    let pollers_stop = CancellationToken::new();
    for source in &config.change_sources {
        let poller = GitPoller::new(source.clone(), &config.master.data_dir);
        tasks.spawn(poller.run(store.clone(), tx.clone(), pollers_stop.clone()));
    }
    let shutdown = CancellationToken::new();
    let conn_config = Arc::new(ConnConfig {
        keepalive_interval: Duration::from_secs(config.master.keepalive_interval.max(1)),
        keepalive_timeout: Duration::from_secs(config.master.keepalive_timeout.max(1)),
        login_timeout: Duration::from_secs(config.master.login_timeout.max(1)),
        ..ConnConfig::default()
    });
    let pb = PbListener {
        tcp: pb,
        max_connections: config.master.max_connections,
        tls: pb_tls,
    };
    let health = Arc::new(api::health::Health::default());
    let pb_serve = server::serve(
        pb,
        conn_config,
        pb_auth,
        tx.clone(),
        tasks.clone(),
        shutdown.clone(),
    );
    let pb_health = health.clone();
    tasks.spawn(async move {
        pb_health.set_pb_listening(true);
        pb_serve.await;
        pb_health.set_pb_listening(false);
    });
    let grace = Duration::from_secs(config.master.shutdown_grace);
    let current = Arc::new(Current::new(Arc::new(config)));
    let reloader = Arc::new(Reloader {
        path,
        current: current.clone(),
        auth,
        guard: api_guard.clone(),
        outbox,
        secrets,
        master: tx.clone(),
        serial: Default::default(),
    });
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let (hup_reloader, hup_stop) = (reloader.clone(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => hup_reloader.on_signal().await,
                _ = hup_stop.cancelled() => break,
            }
        }
    });
    let state = ApiState {
        store,
        master: tx.clone(),
        config: current,
        guard: api_guard,
        health: health.clone(),
        events,
        reloader: Some(reloader),
    };
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let _ = axum::serve(HttpListener::new(http), api::service(state))
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await;
    });

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    info!("stop requested: draining (a second signal stops at once)");
    health.set_draining();
    pollers_stop.cancel();
    let _ = tx.send(Msg::Drain { grace }).await;
    tokio::select! {
        _ = idle_rx => info!("no build running; stopping"),
        _ = term.recv() => info!("second signal: stopping now"),
        _ = int.recv() => info!("second signal: stopping now"),
    }
    // No latent instance outlives the master (bounded, in case a driver hangs).
    let (reply, stopped) = oneshot::channel();
    if tx.send(Msg::StopInstances { reply }).await.is_ok()
        && tokio::time::timeout(Duration::from_secs(60), stopped)
            .await
            .is_err()
    {
        tracing::warn!("latent instances did not all stop within 60 s");
    }
    // Listeners and connections close, the coordinator returns; then every task
    // they started is waited for, within a bound.
    shutdown.cancel();
    reports_stop.cancel();
    janitor_stop.cancel();
    cluster_stop.cancel();
    if let Some(thread) = listening {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    let _ = tx.send(Msg::Exit).await;
    tasks.close();
    master_tasks.close();
    let all_done = async {
        tasks.wait().await;
        master_tasks.wait().await;
    };
    if tokio::time::timeout(STOP_WAIT, all_done).await.is_err() {
        let (own, master) = (tasks.len(), master_tasks.len());
        tracing::warn!(
            "{own} listener or connection task(s) and {master} coordinator task(s) still \
             running after {STOP_WAIT:?}; stopping anyway"
        );
    }
    Ok(())
}

/// Joins the installation sharing the store, under `[cluster] name` (the host's name
/// by default).
async fn join_installation(store: &Store, config: &Config) -> Result<cluster::Member, String> {
    let (name, lease) = match &config.cluster {
        Some(c) => (c.name.clone(), c.lease),
        None => (default_name(), config::ClusterConfig::DEFAULT_LEASE),
    };
    cluster::join(
        store,
        &name,
        lease,
        &config.master.pb_listen,
        &config.master.http_listen,
    )
    .await
}

/// The machine's name: one master per machine needs no `[cluster]` section.
fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "master".into())
}

/// How long stopping waits for tasks to end once connections are closed.
const STOP_WAIT: Duration = Duration::from_secs(5);
