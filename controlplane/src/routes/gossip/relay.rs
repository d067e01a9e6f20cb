//! The route feed on the wire (`feed.rs` is what it carries): one task per
//! appliance that takes feed messages from the gossip socket, applies them
//! to the index, and every [`FeedTiming::flush`] sends what it learned to
//! its tree neighbours; its own changes leave every [`FeedTiming::batch`].
//!
//! ```text
//!   origin --batch--> neighbours --flush--> their neighbours ...   (each edge carries a change once)
//!   receiver --pull(from)--> origin --repair (log) | snapshot-->  receiver      (gaps, joins)
//! ```

use super::feed::{
    get_u32, get_varint, pack, put_varint, region_tree, Group, Member, Outcome, COMPRESSED, KIND_PULL, KIND_RELAY,
    KIND_REPAIR, KIND_SNAPSHOT, MAX_MESSAGE,
};
use super::sealed::{FleetKey, GossipCounters, Refusal};
use super::{Fleet, Inner, Op, FEED_KEY};
use crate::routes::view::Holder;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// How the feed paces itself (`GossipSettings`).
#[derive(Debug, Clone, Copy)]
pub struct FeedTiming {
    /// This appliance's changes gather this long before they leave (more
    /// per message: fewer bytes of headers and seals per change).
    pub batch: Duration,
    /// Relayed changes wait at most this long at each hop.
    pub flush: Duration,
    /// Children per appliance in the relay tree.
    pub fanout: usize,
}

impl Default for FeedTiming {
    fn default() -> FeedTiming {
        FeedTiming { batch: Duration::from_millis(300), flush: Duration::from_millis(100), fanout: 4 }
    }
}

/// An unanswered pull is sent again after this.
const PULL_RETRY: Duration = Duration::from_millis(500);
/// A peer announcing changes this appliance lacks, with no progress for
/// this long, is pulled from (the last changes of a burst were lost).
const STALLED: Duration = Duration::from_secs(1);
/// Pulls of whole feeds (a box joining a fleet pulls every peer's) in
/// flight at once: each answer is a burst of snapshot datagrams, and the
/// socket's receive buffer (~200 KB by default) holds a few at a time.
const PULLS_IN_FLIGHT: usize = 2;
/// Answers to pulls waiting at most (~20 MB): past it a pull is not
/// answered (the asker pulls again later).
const MAX_BACKLOG: usize = 16_384;
/// A snapshot is answered again, unchanged, for this long: an asker that
/// lost parts gets the same ones (same number) and completes, and askers
/// pulling together share one.
const SNAPSHOT_REUSE: Duration = Duration::from_secs(10);
/// Answers to pulls (repairs, snapshots) sent per flush at most (~10
/// Mbit/s at 100 ms): a box of 100,000 devices answers a joining one with
/// ~2,000 datagrams, which at once would overflow the asker's receive
/// buffer every time it asked again.
const ANSWERS_PER_FLUSH: usize = 128;
/// How often the head of the feed is published in chitchat (key `f`).
const PUBLISH_HEAD: Duration = Duration::from_secs(3);
/// Messages waiting for the feed task at most (beyond: dropped, pulled later).
pub(super) const INBOUND_QUEUE: usize = 8_192;
/// A compressed message opens to at most this much.
const MAX_OPENED: usize = 64 * 1024;

/// A snapshot's messages, shared by the askers it is queued for.
type Snapshot = Arc<Vec<Arc<[u8]>>>;

/// The relay's state, kept in the index lock with the feeds it serves.
#[derive(Debug)]
pub(super) struct Relay {
    /// This appliance's neighbours in the tree.
    pub neighbours: Vec<SocketAddr>,
    /// Groups to send at the next flush, with the neighbour each came from.
    outbox: Vec<(Option<SocketAddr>, Group)>,
    last_batch: Instant,
    published: (u64, Instant),
    /// Groups of origins not (yet) in the view.
    pub unknown_origin: u64,
    /// Answers to pulls waiting to go, [`ANSWERS_PER_FLUSH`] at a time.
    backlog: std::collections::VecDeque<(SocketAddr, Arc<[u8]>)>,
    /// The last snapshot made, answered again to later pulls for a while.
    snapshot: Option<(Instant, Snapshot)>,
}

impl Relay {
    pub fn new() -> Relay {
        let now = Instant::now();
        Relay {
            neighbours: Vec::new(),
            outbox: Vec::new(),
            last_batch: now,
            published: (0, now),
            unknown_origin: 0,
            backlog: std::collections::VecDeque::new(),
            snapshot: None,
        }
    }

    /// Recomputes this appliance's neighbours from the live fleet (this
    /// appliance included).
    pub fn retree(&mut self, fleet: Vec<Member>, me: &str, fanout: usize) {
        self.neighbours = region_tree(fleet, me, fanout);
    }
}

/// A pull for `tag`'s changes from `from` on.
fn pull_message(tag: u32, asker: u32, from: u64) -> Vec<u8> {
    let mut m = vec![KIND_PULL];
    m.extend_from_slice(&tag.to_le_bytes());
    m.extend_from_slice(&asker.to_le_bytes());
    put_varint(from, &mut m);
    m
}

/// Asks `holder`'s origin for what follows what is held, unless a pull
/// went out lately.
fn want_pull(fleet: &mut Fleet, holder: Holder, counters: &GossipCounters, sends: &mut Vec<(SocketAddr, Vec<u8>)>) {
    let Some(feed) = fleet.feeds.get_mut(&holder) else { return };
    if feed.pulled_at.is_some_and(|at| at.elapsed() < PULL_RETRY) || feed.receiving_snapshot() {
        return;
    }
    feed.pulled_at = Some(Instant::now());
    let tag = fleet.tags.iter().find(|(_, h)| **h == holder).map(|(t, _)| *t);
    if let Some(tag) = tag {
        sends.push((feed.addr, pull_message(tag, fleet.local.tag, feed.applied + 1)));
        counters.feed_pulls.fetch_add(1, Ordering::Relaxed);
    }
}

impl Inner {
    /// One feed message from `from` (opened): applied, answered or relayed.
    fn feed_message(
        &self,
        fleet: &mut Fleet,
        from: SocketAddr,
        message: &[u8],
        sends: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let Some((&kind, body)) = message.split_first() else {
            return self.counters.refused(Refusal::Undecodable);
        };
        let opened;
        let body = if kind & COMPRESSED != 0 {
            match zstd::bulk::decompress(body, MAX_OPENED) {
                Ok(b) => {
                    opened = b;
                    &opened[..]
                }
                Err(_) => return self.counters.refused(Refusal::Undecodable),
            }
        } else {
            body
        };
        let mut moves = Vec::new();
        match kind & !COMPRESSED {
            k @ (KIND_RELAY | KIND_REPAIR) => {
                let Some(groups) = Group::decode_all(body) else {
                    return self.counters.refused(Refusal::Undecodable);
                };
                for group in groups {
                    let Some(&holder) = fleet.tags.get(&group.tag) else {
                        fleet.relay.unknown_origin += 1;
                        continue;
                    };
                    let Some(feed) = fleet.feeds.get_mut(&holder) else { continue };
                    match feed.apply(&mut fleet.view, &group, &mut moves) {
                        Outcome::Applied => {
                            if k == KIND_REPAIR {
                                // Not relayed: its groups are cut apart from
                                // the batches, and a neighbour holding part
                                // of one would see an overlap (a gap). Those
                                // below pull for themselves.
                                feed.pulled_at = None;
                            } else {
                                fleet.relay.outbox.push((Some(from), group));
                            }
                        }
                        Outcome::Duplicate => {}
                        Outcome::Gap | Outcome::Malformed => want_pull(fleet, holder, &self.counters, sends),
                    }
                }
            }
            KIND_PULL => {
                let mut b = body;
                let (Some(tag), Some(asker), Some(start)) = (get_u32(&mut b), get_u32(&mut b), get_varint(&mut b))
                else {
                    return self.counters.refused(Refusal::Undecodable);
                };
                // A pull for an earlier life of this appliance: the asker
                // learns of this one from chitchat.
                if tag != fleet.local.tag {
                    return;
                }
                // Answered only to a live member, at the gossip address it
                // advertises (not the datagram's source): a pull replayed
                // from a forged source reflects nothing onto it.
                let Some(to) = fleet.tags.get(&asker).and_then(|h| fleet.feeds.get(h)).map(|f| f.addr) else {
                    fleet.relay.unknown_origin += 1;
                    return;
                };
                // What waits for the next batch goes first: a snapshot
                // holds it, and the batch must not overlap the snapshot.
                for group in fleet.local.take_unsent() {
                    fleet.relay.outbox.push((None, group));
                }
                let replies: Vec<Arc<[u8]>> = match fleet.local.since(start) {
                    Some(groups) => {
                        self.counters.feed_repairs.fetch_add(1, Ordering::Relaxed);
                        pack(KIND_REPAIR, &groups).into_iter().map(Arc::from).collect()
                    }
                    None => {
                        let reuse = fleet.relay.snapshot.as_ref().filter(|(at, _)| at.elapsed() < SNAPSHOT_REUSE);
                        let parts = match reuse {
                            Some((_, parts)) => parts.clone(),
                            None => {
                                self.counters.feed_snapshots.fetch_add(1, Ordering::Relaxed);
                                let parts: Vec<Arc<[u8]>> =
                                    fleet.local.snapshot(&fleet.view).into_iter().map(Arc::from).collect();
                                let parts = Arc::new(parts);
                                fleet.relay.snapshot = Some((Instant::now(), parts.clone()));
                                parts
                            }
                        };
                        parts.iter().cloned().collect()
                    }
                };
                // Paced through the backlog, one answer per asker: a
                // repeated pull replaces the copy not yet sent.
                fleet.relay.backlog.retain(|(queued, _)| *queued != to);
                if fleet.relay.backlog.len() + replies.len() > MAX_BACKLOG {
                    return;
                }
                fleet.relay.backlog.extend(replies.into_iter().map(|m| (to, m)));
            }
            KIND_SNAPSHOT => {
                let mut b = body;
                let parsed = (|| {
                    let (tag, seq, device) = (get_u32(&mut b)?, get_varint(&mut b)?, get_varint(&mut b)?);
                    Some((tag, (seq, device), get_varint(&mut b)?, get_varint(&mut b)?))
                })();
                let Some((tag, at, part, parts)) = parsed else {
                    return self.counters.refused(Refusal::Undecodable);
                };
                let Some(&holder) = fleet.tags.get(&tag) else {
                    fleet.relay.unknown_origin += 1;
                    return;
                };
                let Some(feed) = fleet.feeds.get_mut(&holder) else { return };
                if feed.snapshot_part(&mut fleet.view, at, part as usize, parts as usize, b, &mut moves) {
                    feed.pulled_at = None;
                }
            }
            _ => self.counters.refused(Refusal::Undecodable),
        }
        self.tell_all(moves);
    }

    /// The periodic work: this appliance's batch, pulls for stalled
    /// origins, the flush to the neighbours, the head published.
    fn feed_tick(&self, fleet: &mut Fleet, timing: &FeedTiming, sends: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let now = Instant::now();
        if now.duration_since(fleet.relay.last_batch) >= timing.batch {
            fleet.relay.last_batch = now;
            for group in fleet.local.take_unsent() {
                fleet.relay.outbox.push((None, group));
            }
        }
        let in_flight =
            fleet.feeds.values().filter(|f| f.pulled_at.is_some_and(|at| at.elapsed() < PULL_RETRY)).count();
        let stalled: Vec<Holder> = fleet
            .feeds
            .values()
            .filter(|f| {
                (f.applied == 0 && f.pulled_at.is_none())
                    || (f.announced > f.applied && f.moved_at.elapsed() >= STALLED)
            })
            .map(|f| f.holder)
            .take(PULLS_IN_FLIGHT.saturating_sub(in_flight))
            .collect();
        for holder in stalled {
            want_pull(fleet, holder, &self.counters, sends);
        }
        if !fleet.relay.outbox.is_empty() {
            let outbox = std::mem::take(&mut fleet.relay.outbox);
            for &n in &fleet.relay.neighbours {
                let groups = outbox.iter().filter(|(from, _)| *from != Some(n)).map(|(_, g)| g);
                sends.extend(pack(KIND_RELAY, groups).into_iter().map(|m| (n, m)));
            }
        }
        let paced = fleet.relay.backlog.len().min(ANSWERS_PER_FLUSH);
        sends.extend(fleet.relay.backlog.drain(..paced).map(|(to, m)| (to, m.to_vec())));
        let (seq, at) = fleet.relay.published;
        if fleet.local.seq != seq && at.elapsed() >= PUBLISH_HEAD {
            fleet.relay.published = (fleet.local.seq, now);
            self.publish(Op::Set(FEED_KEY.to_string(), fleet.local.seq.to_string()));
        }
    }
}

/// Seals and sends feed messages, compressing those that shrink.
struct Sender {
    socket: Arc<tokio::net::UdpSocket>,
    key: Arc<FleetKey>,
    counters: Arc<GossipCounters>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    sealed: Vec<u8>,
}

impl Sender {
    async fn send(&mut self, to: SocketAddr, mut message: Vec<u8>) {
        // Small messages (a pull, a status or two) gain nothing from zstd.
        if let (Some(c), true) = (&mut self.compressor, message.len() > 96) {
            if let Ok(frame) = c.compress(&message[1..]) {
                if frame.len() + 1 < message.len() {
                    let mut packed = Vec::with_capacity(frame.len() + 1);
                    packed.push(message[0] | COMPRESSED);
                    packed.extend_from_slice(&frame);
                    message = packed;
                }
            }
        }
        debug_assert!(message.len() <= MAX_MESSAGE + 64);
        if let Err(why) = self.key.seal_feed(SystemTime::now(), &message, &mut self.sealed) {
            return self.counters.refused(why);
        }
        match self.socket.send_to(&self.sealed, to).await {
            Ok(n) => {
                self.counters.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                self.counters.feed.datagrams.fetch_add(1, Ordering::Relaxed);
                self.counters.feed.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            // A peer gone or a full buffer: lost as UDP may lose it; the
            // receiver pulls what it misses.
            Err(_) => {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The feed task (see the module doc). Ends when the store is dropped.
pub(super) async fn run(
    inner: Weak<Inner>,
    socket: Arc<tokio::net::UdpSocket>,
    key: Arc<FleetKey>,
    compress: bool,
    mut inbound: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    timing: FeedTiming,
) {
    let counters = match inner.upgrade() {
        Some(i) => i.counters.clone(),
        None => return,
    };
    let mut sender = Sender {
        socket,
        key,
        counters,
        compressor: if compress { zstd::bulk::Compressor::new(1).ok() } else { None },
        sealed: Vec::new(),
    };
    let mut tick = tokio::time::interval(timing.flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    let mut sends = Vec::new();
    loop {
        tokio::select! {
            n = inbound.recv_many(&mut batch, 256) => {
                if n == 0 {
                    return;
                }
                let Some(inner) = inner.upgrade() else { return };
                let mut fleet = inner.fleet();
                for (from, message) in batch.drain(..) {
                    inner.feed_message(&mut fleet, from, &message, &mut sends);
                }
            }
            _ = tick.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                let mut fleet = inner.fleet();
                inner.feed_tick(&mut fleet, &timing, &mut sends);
            }
        }
        for (to, message) in sends.drain(..) {
            sender.send(to, message).await;
        }
    }
}
