//! The control API: how the control plane programs the dataplane.
//!
//! The [`DataplaneHandle`] owns the allocation of session slots and local
//! ports, so a full table or an exhausted port range is refused right here,
//! with the existing sessions untouched. Installing, updating and removing a
//! session become [`Command`]s on the owning worker's lock-free queue; the
//! worker applies them between bursts and never waits for the control plane.
//! Counters are read straight from the shared single-writer atomics;
//! [`Event`]s (media timeout, address latched) come back on a lock-free queue.

use crate::config::{Backend, DataplaneConfig};
use crate::engine::counters::{LegCounters, LegSnapshot, WorkerCounters, WorkerSnapshot};
use crate::session::table::SessionTable;
use crate::session::{LegSettings, LocalEndpoint, PortIndex, SessionId};
use crossbeam_queue::ArrayQueue;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Commands a worker applies between bursts.
#[derive(Debug)]
pub enum Command {
    Install {
        id: SessionId,
        locals: [LocalEndpoint; 2],
        settings: [LegSettings; 2],
    },
    Update {
        id: SessionId,
        side: usize,
        settings: LegSettings,
    },
    Remove {
        id: SessionId,
    },
    /// Socket backend: close the sockets of these ports, which no session
    /// uses (the process ran out of files).
    CloseIdle {
        locals: Vec<LocalEndpoint>,
    },
    /// Play RFC 4733 events (`crate::engine::tones`) out of leg `side`,
    /// with payload type `pt`.
    Digits {
        id: SessionId,
        side: usize,
        events: Vec<u8>,
        pt: u8,
    },
}

/// A command with the sockets the socket backend needs for it.
#[derive(Debug)]
pub struct WorkerCommand {
    pub command: Command,
    /// Socket backend, with `Install`: the ports the session receives on
    /// (per leg its RTP port and, without rtcp-mux, its RTCP port), each
    /// with a newly bound socket where the worker holds none yet.
    pub ports: Vec<(LocalEndpoint, Option<UdpSocket>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// No packet in either direction for the configured media timeout.
    MediaTimeout { session: SessionId },
    /// A leg learned its peer's address from traffic.
    Latched { session: SessionId, side: u8, rtcp: bool, remote: SocketAddr },
}

/// State the workers and the control plane both see.
pub struct Shared {
    pub workers: Vec<WorkerCounters>,
    /// Indexed by global leg: `slot * 2 + side`.
    pub legs: Vec<LegCounters>,
    pub events: ArrayQueue<Event>,
    pub media_timeout_ms: u64,
    pub running: Vec<AtomicBool>,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new(workers: usize, sessions: usize, media_timeout: Duration) -> Shared {
        Shared {
            workers: (0..workers).map(|_| WorkerCounters::default()).collect(),
            legs: (0..sessions * 2).map(|_| LegCounters::default()).collect(),
            events: ArrayQueue::new(65_536),
            media_timeout_ms: media_timeout.as_millis() as u64,
            running: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            stop: AtomicBool::new(false),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("session table full ({0} sessions)")]
    TableFull(usize),
    #[error("no free media port left")]
    PortsExhausted,
    #[error("session {0} not found")]
    NotFound(SessionId),
    #[error("worker {0} command queue full; retry")]
    Busy(usize),
    #[error("cannot bind media port {0}: {1}")]
    BindSocket(SocketAddr, std::io::Error),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// What the control plane asks for when it creates a session.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionRequest {
    pub legs: [LegSettings; 2],
    /// RTCP is multiplexed on the RTP port (RFC 5761); otherwise each leg also
    /// listens on its odd RTCP port.
    pub rtcp_mux: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LegInfo {
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
    /// The remote address came from traffic rather than signalling.
    pub latched: bool,
    pub rtcp_remote: Option<SocketAddr>,
    pub strict: bool,
    pub ssrc_rewrite: bool,
    pub pt_map: Vec<(u8, u8)>,
    pub clock_rate: u32,
    pub counters: LegSnapshot,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub worker: usize,
    pub rtcp_mux: bool,
    pub created_unix_ms: u64,
    pub timed_out: bool,
    pub legs: [LegInfo; 2],
}

struct SessionRecord {
    worker: usize,
    locals: [LocalEndpoint; 2],
    settings: [LegSettings; 2],
    latched: [Option<SocketAddr>; 2],
    rtcp_latched: [Option<SocketAddr>; 2],
    rtcp_mux: bool,
    created_unix_ms: u64,
    timed_out: bool,
}

struct Registry {
    sessions: HashMap<u32, SessionRecord>,
    generations: Vec<u32>,
    free_slots: Vec<Vec<u32>>,
    /// Free leg endpoints (even RTP ports), oldest-freed first so a port is
    /// not reused while stray packets of its last call may still arrive.
    free_endpoints: Vec<VecDeque<LocalEndpoint>>,
    /// Socket backend: the ports whose worker holds a bound socket (kept
    /// open between sessions), by `port_index`.
    bound: Vec<bool>,
    /// When idle sockets were last handed back for closing: a burst of
    /// failing binds before the workers closed them closes no more.
    closed_idle_at: Option<std::time::Instant>,
}

/// Idle sockets each worker is asked to close when binding runs out of files.
const CLOSE_WHEN_OUT_OF_FILES: usize = 256;

struct Inner {
    config: DataplaneConfig,
    shared: Arc<Shared>,
    queues: Vec<ArrayQueue<WorkerCommand>>,
    wakers: Vec<crate::io::Waker>,
    registry: Mutex<Registry>,
}

/// The control plane's handle on the dataplane. Cheap to clone.
#[derive(Clone)]
pub struct DataplaneHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DataplaneHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataplaneHandle").field("backend", &self.inner.config.backend).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid dataplane configuration: {0}")]
    Config(String),
    #[error("the session table needs {needed_mib} MiB but only {available_mib} MiB of memory is available")]
    NotEnoughMemory { needed_mib: usize, available_mib: usize },
    #[error("backend: {0}")]
    Backend(String),
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
}

/// The running dataplane: its workers and the handle to program it.
pub struct Dataplane {
    handle: DataplaneHandle,
    threads: Vec<JoinHandle<()>>,
}

impl Dataplane {
    /// Checks the configuration against this machine, allocates every table
    /// and starts the workers.
    pub fn start(config: DataplaneConfig) -> Result<Dataplane, StartError> {
        validate(&config)?;
        let workers = config.workers;
        let addrs = config.media_ips.len();
        let port_count = usize::from(*config.ports.end() - *config.ports.start()) + 1;
        let needed = SessionTable::bytes_for(config.sessions, addrs, port_count)
            + config.sessions * 2 * std::mem::size_of::<LegCounters>()
            + config.sessions * 8;
        if let Some(available) = available_memory() {
            if needed > available / 2 {
                return Err(StartError::NotEnoughMemory { needed_mib: needed >> 20, available_mib: available >> 20 });
            }
        }
        let shared = Arc::new(Shared::new(workers, config.sessions, config.media_timeout));

        let mut free_slots = vec![Vec::new(); workers];
        for slot in (0..config.sessions as u32).rev() {
            free_slots[slot as usize % workers].push(slot);
        }
        let mut free_endpoints = vec![VecDeque::new(); workers];
        let mut pair = 0usize;
        let first_even = config.ports.start() + config.ports.start() % 2;
        // Sockets: a port's socket stays open once bound, so the range in
        // use is what the open-file limit leaves room for.
        let pairs_allowed = match config.backend {
            Backend::Sockets => socket_budget(&config) / 2,
            Backend::Dpdk | Backend::AfXdp => usize::MAX,
        };
        if pairs_allowed < 2 * workers {
            return Err(StartError::Config(format!(
                "the open-file limit leaves room for {} media sockets: too few for one session per worker \
                 ({workers} workers); raise the limit (ulimit -n)",
                pairs_allowed * 2
            )));
        }
        'deal: for port in (first_even..*config.ports.end()).step_by(2) {
            for addr in 0..addrs as u8 {
                if pair == pairs_allowed {
                    tracing::warn!(
                        ports = %format!("{}-{}", config.ports.start(), config.ports.end()),
                        used_up_to = port,
                        "the media port range is wider than the open-file limit allows one socket per port; \
                         only its first ports are used"
                    );
                    break 'deal;
                }
                // Deal whole sessions (two legs) to each worker in turn.
                free_endpoints[(pair / 2) % workers].push_back(LocalEndpoint { addr, port });
                pair += 1;
            }
        }
        let bound = vec![false; if config.backend == Backend::Sockets { addrs * port_count } else { 0 }];
        let registry = Registry {
            sessions: HashMap::new(),
            generations: vec![0; config.sessions],
            free_slots,
            free_endpoints,
            bound,
            closed_idle_at: None,
        };

        let queues: Vec<_> = (0..workers).map(|_| ArrayQueue::new(16_384)).collect();
        let specs = crate::io::prepare(&config).map_err(StartError::Backend)?;
        let wakers = specs.iter().map(|s| s.waker()).collect();
        let inner = Arc::new(Inner { config, shared, queues, wakers, registry: Mutex::new(registry) });
        let handle = DataplaneHandle { inner };
        let epoch = std::time::Instant::now();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let mut joins = Vec::new();
        for (w, spec) in specs.into_iter().enumerate() {
            let h = handle.clone();
            let opened = opened_tx.clone();
            let join = std::thread::Builder::new()
                .name(format!("dp-worker-{w}"))
                .spawn(move || {
                    let io = match spec.open() {
                        Ok(io) => io,
                        Err(e) => {
                            let _ = opened.send(Err(e));
                            return;
                        }
                    };
                    let _ = opened.send(Ok(()));
                    let table = SessionTable::new(
                        w as u32,
                        workers as u32,
                        h.inner.config.sessions,
                        addrs,
                        h.inner.config.ports.clone(),
                    );
                    let engine = crate::engine::Engine::new(w as u32, table, h.inner.shared.clone());
                    crate::engine::worker::run(engine, io, &h.inner.queues[w], epoch)
                })
                .map_err(StartError::Thread)?;
            joins.push(join);
        }
        drop(opened_tx);
        let dataplane = Dataplane { handle, threads: joins };
        for _ in 0..workers {
            match opened_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    dataplane.stop();
                    return Err(StartError::Backend(e));
                }
                Err(_) => break,
            }
        }
        Ok(dataplane)
    }

    pub fn handle(&self) -> DataplaneHandle {
        self.handle.clone()
    }

    /// Stops the workers and waits for them.
    pub fn stop(self) {
        self.handle.inner.shared.stop.store(true, Ordering::Release);
        for w in &self.handle.inner.wakers {
            w.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn validate(config: &DataplaneConfig) -> Result<(), StartError> {
    let bad = |m: String| Err(StartError::Config(m));
    if config.workers == 0 || config.workers > 64 {
        return bad(format!("workers = {} (1 to 64)", config.workers));
    }
    if *config.ports.start() == 0 {
        return bad("ports: port 0 cannot be a media port".into());
    }
    if config.media_ips.is_empty() || config.media_ips.len() > 64 {
        return bad("media_ips: between 1 and 64 addresses".into());
    }
    if config.sessions == 0 || config.sessions > u32::MAX as usize / 2 {
        return bad(format!("sessions = {} out of range", config.sessions));
    }
    // Each session needs two legs, each an even/odd port pair.
    let pairs = config.endpoint_count() / 2;
    if pairs < 2 * config.workers {
        return bad(format!(
            "ports {}-{} give {} port pairs: too few for one session per worker ({} workers)",
            config.ports.start(),
            config.ports.end(),
            pairs,
            config.workers
        ));
    }
    if config.backend == Backend::Dpdk && !cfg!(feature = "dpdk") {
        return bad("backend = \"dpdk\" but this build has no DPDK support (cargo feature `dpdk`)".into());
    }
    Ok(())
}

/// Media sockets the socket backend may hold open: one per port, within
/// the process's open-file limit less a reserve for everything else
/// (SIP, HTTP, webhooks, the database, client connections beyond it are
/// sized from the same limit by the control plane).
pub fn socket_budget(config: &DataplaneConfig) -> usize {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX));
    let reserve = (limit / 2).min(SOCKET_RESERVE);
    config.endpoint_count().min(limit - reserve)
}

/// Open files kept for everything but media sockets (the control plane's
/// client limit keeps the same reserve).
pub const SOCKET_RESERVE: usize = 1_000;

fn available_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl DataplaneHandle {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves consistent data (every update
        // is completed before anything can fail), so poisoning is ignored.
        self.inner.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &DataplaneConfig {
        &self.inner.config
    }

    pub fn running_workers(&self) -> usize {
        self.inner.shared.running.iter().filter(|r| r.load(Ordering::Acquire)).count()
    }

    /// Every worker has started its loop.
    pub fn ready(&self) -> bool {
        self.inner.shared.running.iter().all(|r| r.load(Ordering::Acquire))
    }

    fn socket_addr(&self, local: LocalEndpoint) -> SocketAddr {
        SocketAddr::new(self.inner.config.media_ips[usize::from(local.addr)], local.port)
    }

    pub fn media_ip(&self) -> IpAddr {
        self.inner.config.media_ips[0]
    }

    /// Queues a command and wakes the worker, unless the queue already
    /// held one: the push that queued that one woke the worker, which
    /// empties its queue before it blocks again (`engine::worker`). Waking
    /// a sleeping worker costs both threads a few microseconds; the two
    /// updates of a call's answer come back to back and now wake it once.
    fn send(&self, worker: usize, command: WorkerCommand) -> Result<(), ControlError> {
        let queue = &self.inner.queues[worker];
        queue.push(command).map_err(|_| ControlError::Busy(worker))?;
        // <= 1, not == 1: the worker may have taken it already (a spare wake).
        if queue.len() <= 1 {
            self.inner.wakers[worker].wake();
        }
        Ok(())
    }

    /// Creates a session: takes a slot and two port pairs, binds sockets when
    /// the backend needs them, and installs it on its worker.
    pub fn create_session(&self, request: SessionRequest) -> Result<SessionInfo, ControlError> {
        let mut reg = self.registry();
        let workers = self.inner.config.workers;
        // The worker with the most free slots, among those with ports left.
        let worker = (0..workers)
            .filter(|&w| reg.free_endpoints[w].len() >= 2)
            .max_by_key(|&w| reg.free_slots[w].len())
            .ok_or(ControlError::PortsExhausted)?;
        if reg.free_slots[worker].is_empty() {
            return Err(ControlError::TableFull(self.inner.config.sessions));
        }
        let mut locals = Vec::with_capacity(2);
        let mut ports = Vec::new();
        // Ports another program holds are skipped (and kept out of the pool
        // until they come back round).
        let mut skipped = Vec::new();
        while locals.len() < 2 {
            let Some(local) = reg.free_endpoints[worker].pop_front() else {
                reg.free_endpoints[worker].extend(locals.drain(..));
                reg.free_endpoints[worker].extend(skipped);
                return Err(ControlError::PortsExhausted);
            };
            if self.inner.config.backend == Backend::Sockets {
                match self.bind_leg(&reg, local, request.rtcp_mux) {
                    Ok(mut s) => ports.append(&mut s),
                    Err(ControlError::BindSocket(addr, e)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        tracing::debug!(%addr, "media port in use elsewhere; skipped");
                        skipped.push(local);
                        continue;
                    }
                    Err(e) => {
                        reg.free_endpoints[worker].extend(locals.drain(..));
                        reg.free_endpoints[worker].push_front(local);
                        reg.free_endpoints[worker].extend(skipped);
                        if let ControlError::BindSocket(_, io) = &e {
                            let out_of_files = [nix::errno::Errno::EMFILE, nix::errno::Errno::ENFILE];
                            if out_of_files.iter().any(|e| io.raw_os_error() == Some(*e as i32)) {
                                self.close_idle(&mut reg);
                            }
                        }
                        return Err(e);
                    }
                }
            }
            locals.push(local);
        }
        reg.free_endpoints[worker].extend(skipped);
        let locals = [locals[0], locals[1]];
        let Some(slot) = reg.free_slots[worker].pop() else {
            return Err(ControlError::TableFull(self.inner.config.sessions));
        };
        reg.generations[slot as usize] = reg.generations[slot as usize].wrapping_add(1);
        let id = SessionId::new(slot, reg.generations[slot as usize]);
        let command = Command::Install { id, locals, settings: request.legs };
        let newly_bound: Vec<LocalEndpoint> =
            ports.iter().filter(|(_, socket)| socket.is_some()).map(|(local, _)| *local).collect();
        if let Err(e) = self.send(worker, WorkerCommand { command, ports }) {
            reg.free_slots[worker].push(slot);
            reg.free_endpoints[worker].extend(locals);
            return Err(e);
        }
        for local in newly_bound {
            if let Some(i) = self.port_index(local) {
                reg.bound[i] = true;
            }
        }
        reg.sessions.insert(
            slot,
            SessionRecord {
                worker,
                locals,
                settings: request.legs,
                latched: [None; 2],
                rtcp_latched: [None; 2],
                rtcp_mux: request.rtcp_mux,
                created_unix_ms: unix_ms(),
                timed_out: false,
            },
        );
        let record = &reg.sessions[&slot];
        Ok(self.info(id, record))
    }

    /// The ports a leg at `local` receives on, each with a new socket
    /// where its worker holds none yet.
    fn bind_leg(
        &self,
        reg: &Registry,
        local: LocalEndpoint,
        rtcp_mux: bool,
    ) -> Result<Vec<(LocalEndpoint, Option<UdpSocket>)>, ControlError> {
        let mut out = Vec::with_capacity(2);
        let ports = if rtcp_mux { 1 } else { 2 };
        for p in 0..ports {
            let ep = LocalEndpoint { port: local.port + p, ..local };
            if self.port_index(ep).is_some_and(|i| reg.bound[i]) {
                out.push((ep, None));
                continue;
            }
            let addr = self.socket_addr(ep);
            let socket = crate::io::sockets::bind_media_socket(addr).map_err(|e| ControlError::BindSocket(addr, e))?;
            out.push((ep, Some(socket)));
        }
        Ok(out)
    }

    /// Where a port's flag lives in `Registry::bound`.
    fn port_index(&self, local: LocalEndpoint) -> Option<usize> {
        PortIndex::new(self.inner.config.media_ips.len(), &self.inner.config.ports).of(local)
    }

    /// Out of files: each worker closes the idle sockets of its most
    /// recently freed ports (the last to be reused), so that the session
    /// after this one can bind. The one that failed is refused.
    fn close_idle(&self, reg: &mut Registry) {
        if reg.closed_idle_at.is_some_and(|at| at.elapsed() < Duration::from_millis(100)) {
            return;
        }
        reg.closed_idle_at = Some(std::time::Instant::now());
        let mut closed = 0;
        for worker in 0..self.inner.config.workers {
            // The idle ports with a socket, and where their flags are.
            let (mut locals, mut flags) = (Vec::new(), Vec::new());
            for &local in reg.free_endpoints[worker].iter().rev() {
                if locals.len() >= CLOSE_WHEN_OUT_OF_FILES * 2 {
                    break;
                }
                for ep in [local, LocalEndpoint { port: local.port + 1, ..local }] {
                    if let Some(i) = self.port_index(ep).filter(|&i| reg.bound[i]) {
                        locals.push(ep);
                        flags.push(i);
                    }
                }
            }
            if locals.is_empty() {
                continue;
            }
            let command = WorkerCommand { command: Command::CloseIdle { locals }, ports: Vec::new() };
            // Flags follow the sockets: cleared only once the worker will close them.
            if self.send(worker, command).is_ok() {
                for &i in &flags {
                    reg.bound[i] = false;
                }
                closed += flags.len();
            }
        }
        tracing::warn!(closed, "out of open files binding a media port: idle media sockets closed");
    }

    /// Changes one leg's settings (new remote after a re-INVITE, payload-type
    /// map, SSRC rewrite on or off). A new remote clears what was latched.
    pub fn update_session(
        &self,
        id: SessionId,
        side: usize,
        settings: LegSettings,
    ) -> Result<SessionInfo, ControlError> {
        if side > 1 {
            return Err(ControlError::Invalid(format!("leg {side}: a session has legs 0 and 1")));
        }
        let mut reg = self.registry();
        let record = lookup(&mut reg, id)?;
        let worker = record.worker;
        self.send(worker, WorkerCommand { command: Command::Update { id, side, settings }, ports: Vec::new() })?;
        let record = lookup(&mut reg, id)?;
        record.settings[side] = settings;
        record.latched[side] = None;
        record.rtcp_latched[side] = None;
        let record = &reg.sessions[&id.slot()];
        Ok(self.info(id, record))
    }

    /// Plays DTMF `digits` (`0-9 * # A-D`, `w` a 500 ms pause) as RFC 4733
    /// events with payload type `pt` into the stream leg `side` sends its
    /// peer (`engine::tones`).
    pub fn send_digits(&self, id: SessionId, side: usize, digits: &str, pt: u8) -> Result<(), ControlError> {
        if side > 1 || pt > 127 || digits.is_empty() || digits.len() > 64 {
            return Err(ControlError::Invalid(format!(
                "digits: 1 to 64 of 0-9 * # A-D w, leg 0 or 1, payload type 0-127 (got {digits:?}, leg {side}, pt {pt})"
            )));
        }
        let events = digits
            .chars()
            .map(|c| crate::engine::tones::event_code(c).ok_or(c))
            .collect::<Result<Vec<u8>, char>>()
            .map_err(|c| ControlError::Invalid(format!("{c:?} is not a DTMF digit (0-9 * # A-D, w to pause)")))?;
        let mut reg = self.registry();
        let worker = lookup(&mut reg, id)?.worker;
        let command = Command::Digits { id, side, events, pt };
        self.send(worker, WorkerCommand { command, ports: Vec::new() })
    }

    pub fn delete_session(&self, id: SessionId) -> Result<SessionInfo, ControlError> {
        let mut reg = self.registry();
        let record = lookup(&mut reg, id)?;
        self.send(record.worker, WorkerCommand { command: Command::Remove { id }, ports: Vec::new() })?;
        let info = self.info(id, record);
        let record = reg.sessions.remove(&id.slot()).ok_or(ControlError::NotFound(id))?;
        reg.free_slots[record.worker].push(id.slot());
        reg.free_endpoints[record.worker].extend(record.locals);
        Ok(info)
    }

    pub fn session(&self, id: SessionId) -> Result<SessionInfo, ControlError> {
        let mut reg = self.registry();
        let record = lookup(&mut reg, id)?;
        Ok(self.info(id, record))
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let reg = self.registry();
        let mut out: Vec<_> = reg
            .sessions
            .iter()
            .map(|(&slot, r)| self.info(SessionId::new(slot, reg.generations[slot as usize]), r))
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// The settings the control plane gave each leg (not what was latched).
    pub fn settings(&self, id: SessionId) -> Result<[LegSettings; 2], ControlError> {
        let mut reg = self.registry();
        Ok(lookup(&mut reg, id)?.settings)
    }

    pub fn session_count(&self) -> usize {
        self.registry().sessions.len()
    }

    pub fn capacity(&self) -> usize {
        self.inner.config.sessions
    }

    /// Sessions that can still be created: per worker, the fewer of its
    /// free table slots and its free port pairs (two per session), summed.
    /// Less than `capacity - session_count` when the port range, not the
    /// table, runs out first.
    pub fn free_sessions(&self) -> usize {
        let reg = self.registry();
        reg.free_slots.iter().zip(&reg.free_endpoints).map(|(slots, ports)| slots.len().min(ports.len() / 2)).sum()
    }

    pub fn worker_stats(&self) -> Vec<WorkerSnapshot> {
        self.inner.shared.workers.iter().map(|w| w.snapshot()).collect()
    }

    /// Takes the events the workers reported since the last call, recording
    /// latched addresses and timeouts in the registry on the way.
    pub fn take_events(&self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = self.inner.shared.events.pop() {
            events.push(e);
        }
        if !events.is_empty() {
            let mut reg = self.registry();
            for e in &events {
                record_event(&mut reg, e);
            }
        }
        events
    }

    fn info(&self, id: SessionId, r: &SessionRecord) -> SessionInfo {
        let leg = |side: usize| {
            let s = r.settings[side];
            let remote = r.latched[side].or(s.remote);
            LegInfo {
                local: self.socket_addr(r.locals[side]),
                remote,
                latched: r.latched[side].is_some(),
                rtcp_remote: r.rtcp_latched[side]
                    .or(s.remote.map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))),
                strict: s.strict,
                ssrc_rewrite: s.ssrc_rewrite,
                pt_map: s.pt_map.pairs().to_vec(),
                clock_rate: s.clock_rate,
                counters: {
                    let first = id.slot() as usize * 2;
                    let legs = &self.inner.shared.legs;
                    legs[first + side].snapshot(&legs[first + (side ^ 1)])
                },
            }
        };
        SessionInfo {
            id,
            worker: r.worker,
            rtcp_mux: r.rtcp_mux,
            created_unix_ms: r.created_unix_ms,
            timed_out: r.timed_out,
            legs: [leg(0), leg(1)],
        }
    }
}

fn lookup(reg: &mut Registry, id: SessionId) -> Result<&mut SessionRecord, ControlError> {
    if reg.generations.get(id.slot() as usize) != Some(&id.generation()) {
        return Err(ControlError::NotFound(id));
    }
    reg.sessions.get_mut(&id.slot()).ok_or(ControlError::NotFound(id))
}

fn record_event(reg: &mut Registry, event: &Event) {
    match *event {
        Event::MediaTimeout { session } => {
            if let Ok(r) = lookup(reg, session) {
                r.timed_out = true;
            }
        }
        Event::Latched { session, side, rtcp, remote } => {
            if let Ok(r) = lookup(reg, session) {
                let side = usize::from(side & 1);
                if rtcp {
                    r.rtcp_latched[side] = Some(remote);
                } else {
                    r.latched[side] = Some(remote);
                }
            }
        }
    }
}

/// Default wait of a worker with nothing to do, between checks of its queue.
pub const IDLE_WAIT: Duration = Duration::from_millis(20);
