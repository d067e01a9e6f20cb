//! The appliance process: starts the dataplane, the admin server and the
//! event pump from a [`Config`], and stops them in order on SIGTERM/SIGINT.

use crate::admin::{self, events::EventLog, metrics::Metrics, AdminState};
use crate::call::shell::ShellConfig;
use crate::client::ClientHub;
use crate::config::{Config, StoreConfig};
use crate::instructions::http::{WebhookClient, WebhookConfig};
use crate::instructions::interpreter::Limits;
use crate::routes::gossip::{announcer, GossipError};
use crate::routes::{GossipRoutes, GossipSettings, InProcessRoutes, RouteStore};
use crate::store::{PostgresStore, SqliteStore, Store};
use crate::tls::TlsIdentity;
use dataplane::{Dataplane, DataplaneHandle};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create state directory {0}: {1}")]
    StateDir(std::path::PathBuf, std::io::Error),
    #[error("dataplane: {0}")]
    Dataplane(#[from] dataplane::control::StartError),
    #[error("cannot bind the admin listener on {0}: {1}")]
    BindAdmin(std::net::SocketAddr, std::io::Error),
    #[error("cannot bind the https listener on {0}: {1}")]
    BindHttps(std::net::SocketAddr, std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("start-up task failed: {0}")]
    Task(String),
    #[error("SIP: {0}")]
    Sip(#[from] crate::sip::transport::TransportError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("fleet gossip: {0}")]
    Gossip(#[from] GossipError),
}

/// Opens the durable store and writes the configuration's accounts into it
/// on first start (an account already in the database wins: with a fleet
/// sharing PostgreSQL, the first appliance to start seeds it).
fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let (store, place): (Arc<dyn Store>, String) = match &config.store {
        StoreConfig::Sqlite(path) => (Arc::new(SqliteStore::open(path)?), path.display().to_string()),
        StoreConfig::Postgres { url, pool } => (Arc::new(PostgresStore::open(url, *pool)?), url.to_string()),
    };
    let report = crate::store::seed(store.as_ref(), &config.accounts)?;
    tracing::info!(store = %place, seeded = report.created.len(), kept = report.kept.len(), "store open");
    Ok(store)
}

/// Binds the SIP listeners (UDP, TCP, TLS) and starts the call layer on
/// them; returns the stack's counters, the call layer's counters, the REST
/// API's door to live calls and the webhook client (for its metrics).
async fn start_calls(
    config: &Config,
    tls: &TlsIdentity,
    fleet_certs: crate::tls::FleetCerts,
    store: Arc<dyn Store>,
    dataplane: DataplaneHandle,
    clients: ClientLayer,
) -> Result<CallLayer, StartError> {
    let listeners = crate::sip::transport::Listeners {
        udp: config.listen.sip_udp,
        tcp: config.listen.sip_tcp,
        tls: Some((config.listen.sip_tls, tls.server_config(&[])?)),
        tls_client: Some(Arc::new(
            crate::instructions::http::sip_tls_config(
                &WebhookConfig { accept_invalid_certs: config.calls.sip_tls_insecure, ..WebhookConfig::default() },
                fleet_certs.clone(),
            )
            .map_err(|e| StartError::Task(e.to_string()))?,
        )),
    };
    let (sip, events) = crate::sip::transport::start(listeners).await?;
    tracing::info!(udp = %sip.udp, tcp = %sip.tcp, tls = ?sip.tls, "SIP listening");
    let sip_stats = sip.stats.clone();
    let webhook_config = WebhookConfig {
        timeout: config.calls.webhook_timeout,
        accept_invalid_certs: config.calls.webhook_insecure_tls,
        ..WebhookConfig::default()
    };
    let webhooks = WebhookClient::new(webhook_config).map_err(|e| StartError::Task(e.to_string()))?;
    // Peers must reach what we put in Contact: the SIP address, or the
    // media address when SIP listens on every interface.
    let sip_ip = match config.listen.sip_udp.ip() {
        ip if ip.is_unspecified() => config.dataplane.media_ips[0],
        ip => ip,
    };
    let shell = ShellConfig {
        local_sip: std::net::SocketAddr::new(sip_ip, sip.udp.port()).to_string(),
        limits: Limits::default(),
        max_calls: config.calls.max_calls,
        fleet_key: config.peers.as_ref().map(|p| p.fleet_key.clone()),
        latency_ms: config.peers.as_ref().map(|p| p.latency_ms.clone()).unwrap_or_default(),
        fleet_certs,
    };
    let (call_stats, control, media_timeouts) =
        crate::call::shell::spawn(shell, sip, events, store, dataplane, webhooks.clone(), Some(clients));
    Ok(CallLayer { sip_stats, call_stats, control, webhooks, media_timeouts })
}

type ClientLayer = (Arc<ClientHub>, tokio::sync::mpsc::UnboundedReceiver<crate::client::ClientEvent>);

/// Client signaling's shared state: presence (the fleet's gossip store
/// when `[peers]` is set, else the in-process one) and the hub of
/// connections, sized from the open-file limit.
async fn client_hub(
    config: &Config,
    store: Arc<dyn Store>,
) -> Result<(ClientLayer, Option<Arc<GossipRoutes>>), StartError> {
    let media_sockets = match config.dataplane.backend {
        dataplane::Backend::Sockets => dataplane::control::socket_budget(&config.dataplane),
        dataplane::Backend::Dpdk | dataplane::Backend::AfXdp => 0,
    };
    let max_connections = client_connection_limit(media_sockets, config.clients.max_connections);
    let gossip = match &config.peers {
        Some(peers) => Some(Arc::new(GossipRoutes::start(gossip_settings(config, peers, max_connections)).await?)),
        None => None,
    };
    let routes: Arc<dyn RouteStore> = match &gossip {
        Some(g) => g.clone(),
        None => Arc::new(InProcessRoutes::new(config.appliance.id.clone(), max_connections)),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let hub = ClientHub::new(store, routes, tx, max_connections, config.appliance.id.clone());
    tracing::info!(max_connections, "client signaling sized");
    Ok(((hub, rx), gossip))
}

/// `[peers]` as the gossip store takes it. Peers must reach the advertised
/// address: `advertise`, else `listen` when concrete, else the media IP
/// (the box's public face) with the listen port.
fn gossip_settings(config: &Config, peers: &crate::config::PeersConfig, max_devices: usize) -> GossipSettings {
    let mut s = GossipSettings::new(config.appliance.id.clone(), peers.listen, peers.fleet_key.clone());
    s.advertise = peers.advertise.or_else(|| {
        peers
            .listen
            .ip()
            .is_unspecified()
            .then(|| std::net::SocketAddr::new(config.dataplane.media_ips[0], peers.listen.port()))
    });
    s.seeds = peers.seeds.clone();
    s.gossip_interval = peers.gossip_interval;
    s.phi_threshold = peers.phi_threshold;
    s.max_devices = max_devices;
    s
}

/// Client connections the process can hold: its open-file limit less the
/// media sockets (one per media port) and a reserve for SIP, HTTP,
/// webhooks and the database. Every connection is one descriptor.
/// `[clients] max_connections` lowers it (never raises it: past the file
/// limit, accepting fails for every listener of the process).
fn client_connection_limit(media_sockets: usize, configured: Option<usize>) -> usize {
    const RESERVE: usize = 1_000;
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    let allowed = limit.saturating_sub(media_sockets + RESERVE).max(16);
    match configured {
        Some(wanted) if wanted > allowed => {
            tracing::warn!(
                wanted,
                allowed,
                open_files = limit,
                "clients.max_connections is above what the open-file limit allows; using the lower figure"
            );
            allowed
        }
        Some(wanted) => wanted,
        None => allowed,
    }
}

struct CallLayer {
    sip_stats: Arc<crate::sip::transport::SipStats>,
    call_stats: Arc<crate::call::shell::CallStats>,
    control: Arc<crate::call::control::ShellControl>,
    webhooks: WebhookClient,
    media_timeouts: tokio::sync::mpsc::UnboundedSender<dataplane::session::SessionId>,
}

/// The TLS identity the signaling and HTTPS listeners will present.
fn tls_identity(config: &Config) -> Result<TlsIdentity, StartError> {
    let files = config.tls.as_ref().map(|t| (t.cert.as_path(), t.key.as_path()));
    // Loopback by address too: a box without name resolution (a fresh
    // chroot, a minimal image) still reaches its own API with TLS verified.
    let names = vec![
        config.appliance.id.clone(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        config.dataplane.media_ips[0].to_string(),
    ];
    let identity = crate::tls::load_or_generate(files, &config.appliance.state_dir, &names)?;
    tracing::info!(origin = ?identity.origin, sha256 = %identity.fingerprint(), "TLS certificate");
    Ok(identity)
}

/// Runs the appliance until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.appliance.state_dir)
        .map_err(|e| StartError::StateDir(config.appliance.state_dir.clone(), e))?;
    let store_config = config.clone();
    let _store = tokio::task::spawn_blocking(move || open_store(&store_config))
        .await
        .unwrap_or_else(|e| Err(StartError::Task(e.to_string())))?;
    let _tls = tls_identity(&config)?;
    let dp_config = config.dataplane.clone();
    let dataplane = tokio::task::spawn_blocking(move || Dataplane::start(dp_config))
        .await
        .unwrap_or_else(|e| Err(dataplane::control::StartError::Backend(format!("start-up task failed: {e}"))))?;
    let handle = dataplane.handle();
    tracing::info!(
        backend = ?config.dataplane.backend,
        workers = config.dataplane.workers,
        sessions = config.dataplane.sessions,
        media_ip = %handle.media_ip(),
        ports = %format!("{}-{}", config.dataplane.ports.start(), config.dataplane.ports.end()),
        "dataplane started"
    );
    let ((hub, client_events), gossip) = match client_hub(&config, _store.clone()).await {
        Ok(layer) => layer,
        Err(e) => {
            dataplane.stop();
            return Err(e);
        }
    };
    let fleet_certs = crate::tls::FleetCerts::default();
    let clients = (hub.clone(), client_events);
    let calls = match start_calls(&config, &_tls, fleet_certs.clone(), _store.clone(), handle.clone(), clients).await {
        Ok(calls) => calls,
        Err(e) => {
            dataplane.stop();
            return Err(e);
        }
    };

    let listener = match crate::net::listen(config.listen.admin) {
        Ok(l) => l,
        Err(e) => {
            dataplane.stop();
            return Err(StartError::BindAdmin(config.listen.admin, e));
        }
    };
    // ---- https listener: REST API (api/, https.rs) -------------------------
    let https_listener = match crate::net::listen(config.listen.https) {
        Ok(l) => l,
        Err(e) => {
            dataplane.stop();
            return Err(StartError::BindHttps(config.listen.https, e));
        }
    };
    let https_tls = match _tls.server_config(&crate::https::ALPN) {
        Ok(c) => c,
        Err(e) => {
            dataplane.stop();
            return Err(e.into());
        }
    };
    let api = crate::api::ApiState::with_routes(_store.clone(), Some(calls.control.clone()), hub.routes.clone());
    hub.spawn_watchers(api.subscribe_revocations());
    let https_counters = Arc::new(crate::https::HttpsCounters::default());
    let (stop_https, https_stopped) = tokio::sync::oneshot::channel::<()>();
    let https = tokio::spawn(crate::https::serve(
        https_listener,
        https_tls,
        crate::api::router(api).merge(crate::client::ws::router(hub.clone())),
        https_counters.clone(),
        async move {
            let _ = https_stopped.await;
        },
    ));
    tracing::info!(https = %config.listen.https, "REST API listening");
    // ---- end https listener ------------------------------------------------
    let events = Arc::new(EventLog::default());
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The fleet hears this appliance's resources every second.
    let announcing = gossip.as_ref().map(|g| {
        let sip_ip = match config.listen.sip_tcp.ip() {
            ip if ip.is_unspecified() => config.dataplane.media_ips[0],
            ip => ip,
        };
        let tls_ip = match config.listen.sip_tls.ip() {
            ip if ip.is_unspecified() => config.dataplane.media_ips[0],
            ip => ip,
        };
        let announced = announcer::AnnouncerConfig {
            region: config.appliance.region.clone(),
            sip: Some(std::net::SocketAddr::new(sip_ip, config.listen.sip_tcp.port())),
            sip_tls: Some((std::net::SocketAddr::new(tls_ip, config.listen.sip_tls.port()), _tls.sha256())),
            fleet_certs: fleet_certs.clone(),
            draining: draining.clone(),
        };
        tokio::spawn(announcer::run(g.clone(), handle.clone(), announced))
    });
    let mut metrics = Metrics::new(handle.clone(), &config.appliance.id, &config.appliance.region);
    metrics.register_sip(calls.sip_stats.clone());
    metrics.register_calls(calls.call_stats.clone(), calls.webhooks.collector());
    metrics.register_https(https_counters);
    metrics.register_routes(hub.routes.clone());
    metrics.register_collector(Box::new(crate::client::metrics::ClientCollector { hub: hub.clone() }));
    if let Some(g) = &gossip {
        let collector =
            crate::routes::gossip::metrics::GossipCollector { gossip: g.clone(), draining: draining.clone() };
        metrics.register_collector(Box::new(collector));
    }
    let state = Arc::new(AdminState {
        dataplane: handle.clone(),
        metrics,
        events: events.clone(),
        admin_token: config.listen.admin_token.clone(),
        draining: draining.clone(),
    });
    let pump = tokio::spawn(admin::events::pump(handle.clone(), events, Some(calls.media_timeouts.clone())));
    tracing::info!(
        appliance = %config.appliance.id,
        region = %config.appliance.region,
        admin = %config.listen.admin,
        "appliance running"
    );

    let shutdown = shutdown_signal().map_err(StartError::Signals)?;
    // The admin API keeps serving (metrics, /drain) while calls drain.
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = tokio::spawn(async move {
        let served = axum::serve(listener, admin::router(state))
            .with_graceful_shutdown(async move {
                let _ = admin_stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    shutdown.await;
    drain_calls(&calls, &draining, config.appliance.drain).await;
    let _ = stop_admin.send(());
    let _ = admin.await;
    tracing::info!("stopping");
    // ---- https listener: stop ----
    let _ = stop_https.send(());
    let _ = https.await;
    // ---- end https listener ----
    pump.abort();
    if let Some(task) = announcing {
        task.abort();
    }
    if let Some(gossip) = &gossip {
        // Peers see this appliance die and withdraw its routes.
        gossip.shutdown().await;
    }
    tokio::task::spawn_blocking(move || dataplane.stop()).await.ok();
    tracing::info!("stopped");
    Ok(())
}

/// The appliance is asked to stop: it takes no new call (503) and tells
/// the fleet it is draining; calls in progress get up to `grace` to end
/// (a second SIGTERM or SIGINT cuts it short), then the ones left are hung
/// up (BYE, not silence) and given a moment for that to go out.
async fn drain_calls(calls: &CallLayer, draining: &std::sync::atomic::AtomicBool, grace: std::time::Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    let busy = || calls.call_stats.active.load(Relaxed) + calls.call_stats.gateway_legs.load(Relaxed);
    draining.store(true, Relaxed);
    calls.control.drain();
    if busy() > 0 {
        tracing::info!(calls = busy(), grace_s = grace.as_secs(), "draining calls before stopping");
        let again = shutdown_signal();
        let wait = async {
            while busy() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        match again {
            Ok(again) => {
                tokio::select! {
                    () = wait => {}
                    () = tokio::time::sleep(grace) => {}
                    () = again => {}
                }
            }
            Err(_) => {
                let _ = tokio::time::timeout(grace, wait).await;
            }
        }
    }
    if busy() > 0 {
        calls.control.hang_up_all();
        let bye = async {
            while busy() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bye).await;
        tracing::info!(left = busy(), "calls hung up");
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
