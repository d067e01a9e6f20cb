//! The run-to-completion loop of one worker: receive a burst, relay each
//! datagram, send, and between bursts apply the control plane's commands and
//! look for media timeouts. Written once, monomorphised per backend.

use super::{Engine, Now};
use crate::control::{Command, WorkerCommand, IDLE_WAIT};
use crate::engine::counters::{bump, DropReason};
use crate::io::{AnyIo, PacketIo};
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Bursts between two rounds of housekeeping (timeouts, the backend's own) while busy.
const CONTROL_EVERY: u64 = 16;
/// How many datagrams ahead of the one being relayed its state is prefetched.
const AHEAD: usize = 4;
/// Commands applied per look, so a flood of them cannot starve the packets.
const COMMANDS_PER_TICK: usize = 256;

pub fn run(engine: Engine, io: AnyIo, commands: &ArrayQueue<WorkerCommand>, epoch: Instant) {
    match io {
        AnyIo::Sockets(io) => run_loop(engine, *io, commands, epoch),
        #[cfg(feature = "dpdk")]
        AnyIo::Dpdk(io) => run_loop(engine, io, commands, epoch),
        AnyIo::AfXdp(io) => run_loop(engine, *io, commands, epoch),
    }
}

fn now(epoch: Instant) -> Now {
    Now { us: epoch.elapsed().as_micros() as u64 }
}

pub fn run_loop<Io: PacketIo>(mut engine: Engine, mut io: Io, commands: &ArrayQueue<WorkerCommand>, epoch: Instant) {
    let shared = engine.shared.clone();
    let w = engine.worker as usize;
    let counters = &shared.workers[w];
    shared.running[w].store(true, Ordering::Release);
    tracing::info!(worker = w, "dataplane worker running");
    let mut idle = false;
    let mut tick = 0u64;
    loop {
        // Commands first, then the sockets: a datagram read after a
        // session's `Install` was queued belongs to that session (a socket
        // backend's port stays watched between sessions, and a backend
        // woken for a command returns before reading; `PacketIo::rx_burst`).
        let mut commands_left = false;
        if !commands.is_empty() {
            commands_left = apply_queued(&mut engine, &mut io, now(epoch), commands);
        }
        let batch = io.rx_burst((idle && !commands_left).then_some(IDLE_WAIT));
        let received = batch.len();
        let t = now(epoch);
        // Software pipelining: while datagram i is relayed, the session
        // state of i + AHEAD is on its way from memory, and the flow-index
        // entry of i + 2 * AHEAD (which says where that state is). Far
        // enough ahead to hide a memory access, near enough not to swamp
        // the CPU's few outstanding-miss slots (a whole burst at once did).
        for dg in batch.iter().take(2 * AHEAD) {
            if let Some(line) = engine.flow_line(dg) {
                Io::prefetch(line);
            }
        }
        for dg in batch.iter().take(AHEAD) {
            engine.session_lines(dg, Io::prefetch);
        }
        for i in 0..received {
            if let Some(dg) = batch.get(i + 2 * AHEAD) {
                if let Some(line) = engine.flow_line(dg) {
                    Io::prefetch(line);
                }
            }
            if let Some(dg) = batch.get(i + AHEAD) {
                engine.session_lines(dg, Io::prefetch);
            }
            engine.relay(t, &mut batch[i]);
        }
        if received > 0 {
            io.tx_burst(counters);
        }
        idle = received == 0;
        bump(&counters.loops, 1);
        if idle {
            bump(&counters.idle_loops, 1);
        }
        tick += 1;
        // Commands left over: look again before blocking. The control
        // plane wakes a worker only for a command that finds its queue
        // empty (`DataplaneHandle::send`), so a worker must never sleep on
        // a queue that is not.
        if commands_left {
            idle = false;
        }
        if idle || tick.is_multiple_of(CONTROL_EVERY) {
            engine.scan_timeouts_paced(t);
            engine.play_tones(t, |o| {
                if io.send_local(o.from, o.to, &o.packet) {
                    bump(&counters.tx_packets, 1);
                    bump(&counters.tx_bytes, o.packet.len() as u64);
                } else {
                    counters.drop(DropReason::TxFailed);
                }
            });
            io.housekeeping(counters);
            if shared.stop.load(Ordering::Acquire) {
                break;
            }
        }
    }
    engine.publish_all();
    shared.running[w].store(false, Ordering::Release);
    tracing::info!(worker = w, "dataplane worker stopped");
}

/// Applies up to [`COMMANDS_PER_TICK`] queued commands; true when some are left.
fn apply_queued<Io: PacketIo>(
    engine: &mut Engine,
    io: &mut Io,
    now: Now,
    commands: &ArrayQueue<WorkerCommand>,
) -> bool {
    for _ in 0..COMMANDS_PER_TICK {
        let Some(cmd) = commands.pop() else { return false };
        apply(engine, io, now, cmd);
    }
    !commands.is_empty()
}

fn apply<Io: PacketIo>(engine: &mut Engine, io: &mut Io, now: Now, cmd: WorkerCommand) {
    let WorkerCommand { command, mut ports } = cmd;
    let (id, install) = match &command {
        Command::Install { id, locals, .. } => (*id, Some(*locals)),
        Command::Update { id, .. } | Command::Remove { id } | Command::Digits { id, .. } => (*id, None),
        Command::CloseIdle { locals } => {
            io.close_idle(locals);
            return;
        }
    };
    let remove = matches!(command, Command::Remove { .. });
    let local_leg = (id.slot() / shared_workers(engine)) * 2;
    if let Err(e) = engine.apply(now, command) {
        // The control plane allocates slots and ports, so this is a bug, not input.
        tracing::error!(session = %id, error = %e, "dataplane command refused");
        // The control plane counts these ports' sockets as the worker's: kept, idle.
        io.adopt(ports);
        return;
    }
    if let Some(locals) = install {
        for (side, local) in locals.iter().enumerate() {
            let rtcp_ep = crate::session::LocalEndpoint { port: local.port + 1, ..*local };
            let mut take = |ep| ports.iter().position(|(l, _)| *l == ep).map(|i| ports.swap_remove(i));
            let rtp = take(*local);
            let rtcp = take(rtcp_ep);
            io.attach(local_leg + side as u32, rtp.into_iter().chain(rtcp).collect());
        }
    }
    if remove {
        io.detach(local_leg);
        io.detach(local_leg + 1);
    }
}

fn shared_workers(engine: &Engine) -> u32 {
    engine.shared.workers.len() as u32
}
