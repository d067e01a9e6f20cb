//! The gossip transport: chitchat's messages over UDP, every datagram
//! sealed with the fleet key (ChaCha20-Poly1305, authenticated encryption).
//!
//! ```text
//!   datagram = "BHG1" | nonce (12, random) | seal( sent_at_ms u64 LE | part u8 | msg u32 LE | bytes ) | tag (16)
//!              \____ additional data ____/
//! ```
//!
//! - The key is HKDF-SHA256 of `[peers] fleet_key` (never the key itself),
//!   so the same passphrase also yields the chitchat cluster id without
//!   revealing anything about the sealing key.
//! - A datagram that does not open (no key, another fleet's key, a forged
//!   or altered byte) is dropped and counted; so is one sealed more than
//!   [`MAX_AGE`] ago or ahead, which bounds replay to that window (a replay
//!   inside it re-delivers versions chitchat already holds: a no-op).
//! - chitchat fills a datagram up to 65,507 bytes (its fixed limit, not a
//!   setting in 0.11), so a message plus the 45 bytes of sealing can
//!   exceed one UDP datagram: it is then cut in parts (`part` = index << 4
//!   | count), each sealed on its own and put together on arrival.
//! - The message inside is zstd-compressed when that makes it smaller (a
//!   zstd frame starts with its own magic number, a chitchat message with
//!   another, so the receiver tells them apart). Digests (an entry per node,
//!   ids, generations and addresses much alike) shrink about 3x; the deltas
//!   are zstd'd by chitchat already and are sent as they are when
//!   compressing again gains nothing.
//! - Counters per message kind (Syn, SynAck, Ack) and per part (digest,
//!   delta) tell where the bytes go (docs/fleet.md, "Figures").
//! - The sender also notes when it sent each peer a Syn; the peer's SynAck
//!   gives the round trip ([`RoundTrips`]), the fleet's measured latency.

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
const MAGIC: &[u8; 4] = b"BHG1";
/// The route feed's messages share the socket under their own magic.
const FEED_MAGIC: &[u8; 4] = b"BHF1";
/// What sealing adds to a route feed message.
pub const FEED_OVERHEAD: usize = FEED_MAGIC.len() + NONCE_LEN + 8 + TAG_LEN;
const TAG_LEN: usize = 16;
/// sent_at (8) + part (1) + message number (4).
const INNER_HEADER: usize = 8 + 1 + 4;
/// What sealing adds to a datagram.
pub const OVERHEAD: usize = MAGIC.len() + NONCE_LEN + INNER_HEADER + TAG_LEN;
/// The most message bytes one datagram carries.
const MAX_PART: usize = MAX_DATAGRAM - OVERHEAD;
/// A message is cut in at most this many parts (4 bits in `part`).
const MAX_PARTS: usize = 15;
/// Datagrams sealed longer ago (or further ahead, clocks drift) are refused.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// The zstd level: 1, the fastest; higher levels gain little on messages
/// of a few KB.
const ZSTD_LEVEL: i32 = 1;
/// A zstd frame's first four bytes.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// A message compressed against one the receiver sent: this marker, that
/// message's number (u32 LE) and a hash of its bytes (u32 LE: a receiver
/// that restarted numbers its messages anew, and must not decompress
/// against another message of the same number), then the zstd frame.
const REFERENCED: [u8; 4] = *b"BHR1";

/// FNV-1a of a reference message.
fn reference_hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}
/// Messages this socket sent that peers may compress against (~2.5 KB each
/// at 50 appliances: ~1.3 MB).
const SENT_KEPT: usize = 512;
/// A peer's last message is a reference for this long: past it, the peer
/// has most likely dropped it from its own [`SENT_KEPT`].
const REFERENCE_AGE: Duration = Duration::from_secs(20);
/// A compressed message opens to at most this many bytes (bounds memory;
/// chitchat's messages are at most 65,507 bytes plus a digest).
const MAX_MESSAGE: usize = MAX_PARTS * MAX_PART;
/// Parts of a message waiting for the rest are dropped after this.
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many messages wait for parts at once (a bound on memory;
/// only authenticated parts ever get here).
const MAX_PENDING: usize = 64;

/// The sealing key and the cluster id, both derived from `[peers] fleet_key`.
pub struct FleetKey {
    key: LessSafeKey,
    cluster_id: String,
}

/// `hkdf::KeyType` for an output of `.0` bytes.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl FleetKey {
    /// Derives the keys from the operator's passphrase. Fails only if
    /// `ring` refuses its own algorithms' sizes, which it does not.
    pub fn derive(fleet_key: &str) -> Result<FleetKey, KeyError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"bridgehead fleet gossip v1").extract(fleet_key.as_bytes());
        let mut key = [0u8; 32];
        let mut id = [0u8; 8];
        prk.expand(&[b"chacha20-poly1305 key"], Len(key.len()))
            .and_then(|okm| okm.fill(&mut key))
            .and_then(|()| prk.expand(&[b"cluster id"], Len(id.len())))
            .and_then(|okm| okm.fill(&mut id))
            .map_err(|_| KeyError)?;
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| KeyError)?);
        let cluster_id = format!("bridgehead-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
        Ok(FleetKey { key, cluster_id })
    }

    /// The chitchat cluster id of this fleet: fleets with other keys never
    /// mix even if their datagrams reached each other.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Seals `part` of message `msg` into `out` (cleared first).
    fn seal(&self, now: SystemTime, part: u8, msg: u32, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
        let mut head = [0u8; 5];
        head[0] = part;
        head[1..].copy_from_slice(&msg.to_le_bytes());
        self.seal_with(MAGIC, now, &head, bytes, out)
    }

    /// Seals a route feed message into `out` (cleared first).
    pub(super) fn seal_feed(&self, now: SystemTime, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
        self.seal_with(FEED_MAGIC, now, &[], bytes, out)
    }

    /// `magic | nonce | seal(sent_at | head | bytes) | tag`, the magic
    /// authenticated too (a gossip datagram never opens as a feed one).
    fn seal_with(
        &self,
        magic: &'static [u8; 4],
        now: SystemTime,
        head: &[u8],
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| Refusal::Unsealable)?;
        out.clear();
        out.extend_from_slice(magic);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(&unix_ms(now).to_le_bytes());
        out.extend_from_slice(head);
        out.extend_from_slice(bytes);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(magic), &mut out[start..])
            .map_err(|_| Refusal::Unsealable)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a datagram in place: its (part, message number, bytes).
    fn open<'a>(&self, now: SystemTime, datagram: &'a mut [u8]) -> Result<(u8, u32, &'a [u8]), Refusal> {
        let plain = self.open_with(MAGIC, now, datagram)?;
        if plain.len() < INNER_HEADER - 8 {
            return Err(Refusal::Malformed);
        }
        let mut msg = [0u8; 4];
        msg.copy_from_slice(&plain[1..5]);
        Ok((plain[0], u32::from_le_bytes(msg), &plain[5..]))
    }

    /// Opens a datagram sealed with `magic`: what follows its time.
    fn open_with<'a>(
        &self,
        magic: &'static [u8; 4],
        now: SystemTime,
        datagram: &'a mut [u8],
    ) -> Result<&'a [u8], Refusal> {
        if datagram.len() < magic.len() + NONCE_LEN + 8 + TAG_LEN || &datagram[..magic.len()] != magic {
            return Err(Refusal::Malformed);
        }
        let (head, sealed) = datagram.split_at_mut(magic.len() + NONCE_LEN);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&head[magic.len()..]);
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(magic), sealed)
            .map_err(|_| Refusal::Unauthentic)?;
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&plain[..8]);
        let sent = u64::from_le_bytes(ms);
        let now_ms = unix_ms(now);
        if now_ms.abs_diff(sent) > MAX_AGE.as_millis() as u64 {
            return Err(Refusal::Stale);
        }
        Ok(&plain[8..])
    }
}

/// The fleet key could not be derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot derive the gossip key from [peers] fleet_key")]
pub struct KeyError;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Too short, or not our magic: not a sealed gossip datagram.
    Malformed,
    /// Does not open with the fleet key: another key, or forged/altered.
    Unauthentic,
    /// Sealed more than [`MAX_AGE`] ago (or ahead): a replay or a bad clock.
    Stale,
    /// Opened, but the parts or the chitchat message inside do not decode.
    Undecodable,
    /// Could not seal (no randomness for the nonce): not sent.
    Unsealable,
}

/// Counters of the gossip transport, for metrics.
#[derive(Debug, Default)]
pub struct GossipCounters {
    pub datagrams_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub datagrams_accepted: AtomicU64,
    pub bytes_received: AtomicU64,
    pub refused_malformed: AtomicU64,
    pub refused_unauthentic: AtomicU64,
    pub refused_stale: AtomicU64,
    pub refused_undecodable: AtomicU64,
    pub send_errors: AtomicU64,
    /// Per kind: datagrams and bytes sent as sealed on the wire.
    pub syn: KindCounters,
    pub syn_ack: KindCounters,
    pub ack: KindCounters,
    /// Route feed messages (sealed bytes on the wire).
    pub feed: KindCounters,
    /// Feed messages dropped at arrival: the feed's queue was full.
    pub feed_overflow: AtomicU64,
    /// Syns chitchat asked for beyond the round's budget ([`SynBudget`]).
    pub syns_skipped: AtomicU64,
    /// Messages compressed against one of ours no longer kept (dropped).
    pub refused_unreferenced: AtomicU64,
    /// Route feed: pulls sent (a gap, a join, a stalled origin), and the
    /// answers this appliance sent from its log or as a snapshot.
    pub feed_pulls: AtomicU64,
    pub feed_repairs: AtomicU64,
    pub feed_snapshots: AtomicU64,
    /// Serialized (before our compression) digest and delta bytes sent.
    pub digest_bytes: AtomicU64,
    pub delta_bytes: AtomicU64,
    /// Serialized message bytes sent, before and after our compression.
    pub plain_bytes: AtomicU64,
    pub packed_bytes: AtomicU64,
}

/// Datagrams and sealed bytes of one message kind.
#[derive(Debug, Default)]
pub struct KindCounters {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
}

/// A copy of [`KindCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub datagrams: u64,
    pub bytes: u64,
}

/// A copy of [`GossipCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipCounts {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_accepted: u64,
    pub bytes_received: u64,
    /// Not a sealed gossip datagram (too short, wrong magic).
    pub refused_malformed: u64,
    /// Did not open with the fleet key: a non-member or a forgery.
    pub refused_unauthentic: u64,
    /// Sealed too long ago: a replay (or a clock off by more than 30 s).
    pub refused_stale: u64,
    /// Authentic but not a chitchat message (a bug or a version mismatch).
    pub refused_undecodable: u64,
    pub send_errors: u64,
    pub syn: KindCounts,
    pub syn_ack: KindCounts,
    pub ack: KindCounts,
    pub feed: KindCounts,
    pub feed_overflow: u64,
    pub syns_skipped: u64,
    pub refused_unreferenced: u64,
    pub feed_pulls: u64,
    pub feed_repairs: u64,
    pub feed_snapshots: u64,
    /// Serialized digests sent (before compression).
    pub digest_bytes: u64,
    /// Serialized deltas sent (chitchat compresses these itself).
    pub delta_bytes: u64,
    /// Serialized messages sent, before and after our compression.
    pub plain_bytes: u64,
    pub packed_bytes: u64,
}

impl GossipCounters {
    pub fn snapshot(&self) -> GossipCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GossipCounts {
            datagrams_sent: get(&self.datagrams_sent),
            bytes_sent: get(&self.bytes_sent),
            datagrams_accepted: get(&self.datagrams_accepted),
            bytes_received: get(&self.bytes_received),
            refused_malformed: get(&self.refused_malformed),
            refused_unauthentic: get(&self.refused_unauthentic),
            refused_stale: get(&self.refused_stale),
            refused_undecodable: get(&self.refused_undecodable),
            send_errors: get(&self.send_errors),
            syn: KindCounts { datagrams: get(&self.syn.datagrams), bytes: get(&self.syn.bytes) },
            syn_ack: KindCounts { datagrams: get(&self.syn_ack.datagrams), bytes: get(&self.syn_ack.bytes) },
            ack: KindCounts { datagrams: get(&self.ack.datagrams), bytes: get(&self.ack.bytes) },
            feed: KindCounts { datagrams: get(&self.feed.datagrams), bytes: get(&self.feed.bytes) },
            feed_overflow: get(&self.feed_overflow),
            syns_skipped: get(&self.syns_skipped),
            refused_unreferenced: get(&self.refused_unreferenced),
            feed_pulls: get(&self.feed_pulls),
            feed_repairs: get(&self.feed_repairs),
            feed_snapshots: get(&self.feed_snapshots),
            digest_bytes: get(&self.digest_bytes),
            delta_bytes: get(&self.delta_bytes),
            plain_bytes: get(&self.plain_bytes),
            packed_bytes: get(&self.packed_bytes),
        }
    }

    pub(super) fn refused(&self, why: Refusal) {
        let counter = match why {
            Refusal::Malformed => &self.refused_malformed,
            Refusal::Unauthentic => &self.refused_unauthentic,
            Refusal::Stale => &self.refused_stale,
            Refusal::Undecodable => &self.refused_undecodable,
            Refusal::Unsealable => &self.send_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Smoothed gossip round trips per peer address (Syn sent -> SynAck back).
#[derive(Debug, Default)]
pub struct RoundTrips {
    inner: Mutex<RoundTripTable>,
}

#[derive(Debug, Default)]
struct RoundTripTable {
    syn_sent: HashMap<SocketAddr, Instant>,
    smoothed_ms: HashMap<SocketAddr, f64>,
}

impl RoundTrips {
    fn table(&self) -> std::sync::MutexGuard<'_, RoundTripTable> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn syn_sent(&self, to: SocketAddr, at: Instant) {
        self.table().syn_sent.insert(to, at);
    }

    fn syn_ack_received(&self, from: SocketAddr, at: Instant) {
        let mut t = self.table();
        let Some(sent) = t.syn_sent.remove(&from) else { return };
        let sample = at.duration_since(sent).as_secs_f64() * 1000.0;
        // An exponential average over about 8 rounds: one slow answer (the
        // peer busy computing a large delta) moves it little.
        let smoothed = t.smoothed_ms.entry(from).or_insert(sample);
        *smoothed += (sample - *smoothed) / 8.0;
    }

    /// The smoothed round trip to each peer address heard from, in ms.
    pub fn snapshot(&self) -> Vec<(SocketAddr, f64)> {
        self.table().smoothed_ms.iter().map(|(a, ms)| (*a, *ms)).collect()
    }
}

/// How many live peers a gossip round talks to. chitchat 0.11 sends a Syn
/// (a digest of every node) to 3 random live peers each round, a constant,
/// so membership costs 3 digests of N entries (and their answers) per
/// round: at 50 appliances that alone is ~150 kbit/s per appliance at
/// 150 ms. Beyond [`SMALL_FLEET`] live peers the transport lets the first
/// `per_round` of them go and drops the rest (counted); smaller fleets keep
/// chitchat's 3 (cheap there, and a faster failure detector). Syns to peers
/// not known live (a dead one probed, a seed) always go: they are how
/// partitions heal. Rounds are told apart by the pause between them (a
/// round's Syns leave back to back).
/// Fleets of at most this many live peers keep chitchat's 3 Syns a round.
pub const SMALL_FLEET: usize = 8;

#[derive(Debug)]
pub struct SynBudget {
    per_round: usize,
    /// A pause longer than this starts a new round.
    round_gap: Duration,
    live: Mutex<std::collections::HashSet<SocketAddr>>,
}

impl SynBudget {
    pub fn new(per_round: usize, gossip_interval: Duration) -> SynBudget {
        SynBudget { per_round: per_round.max(1), round_gap: gossip_interval / 3, live: Mutex::default() }
    }

    /// The gossip addresses of the peers now live.
    pub fn set_live(&self, live: std::collections::HashSet<SocketAddr>) {
        *self.live.lock().unwrap_or_else(PoisonError::into_inner) = live;
    }

    /// Whether `addr` is a live peer, and this round's budget of Syns to them.
    fn live_budget(&self, addr: &SocketAddr) -> (bool, usize) {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        (live.contains(addr), if live.len() <= SMALL_FLEET { 3 } else { self.per_round })
    }
}

/// A [`Transport`] that seals chitchat's messages with the fleet key.
/// It hands chitchat a socket bound beforehand, so the caller knows the
/// port (and reports the bind error) before chitchat starts.
pub struct SealedTransport {
    key: Arc<FleetKey>,
    counters: Arc<GossipCounters>,
    round_trips: Arc<RoundTrips>,
    socket: Mutex<Option<Arc<tokio::net::UdpSocket>>>,
    compress: bool,
    feed: tokio::sync::mpsc::Sender<(SocketAddr, Vec<u8>)>,
    syns: Arc<SynBudget>,
}

impl SealedTransport {
    pub fn new(
        key: Arc<FleetKey>,
        counters: Arc<GossipCounters>,
        round_trips: Arc<RoundTrips>,
        socket: Arc<tokio::net::UdpSocket>,
        compress: bool,
        feed: tokio::sync::mpsc::Sender<(SocketAddr, Vec<u8>)>,
        syns: Arc<SynBudget>,
    ) -> SealedTransport {
        SealedTransport { key, counters, round_trips, socket: Mutex::new(Some(socket)), compress, feed, syns }
    }
}

#[async_trait]
impl Transport for SealedTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(socket) = socket else {
            anyhow::bail!("the gossip socket for {listen_addr} was already opened");
        };
        Ok(Box::new(SealedSocket {
            key: self.key.clone(),
            counters: self.counters.clone(),
            round_trips: self.round_trips.clone(),
            socket,
            plain: Vec::with_capacity(MAX_DATAGRAM),
            packed: Vec::with_capacity(MAX_DATAGRAM),
            compressor: if self.compress { zstd::bulk::Compressor::new(ZSTD_LEVEL).ok() } else { None },
            decompressor: zstd::bulk::Decompressor::new().ok(),
            sealed: Vec::with_capacity(MAX_DATAGRAM),
            recv_buf: vec![0u8; MAX_DATAGRAM + 1].into_boxed_slice(),
            next_msg: 0,
            pending: HashMap::new(),
            feed: self.feed.clone(),
            syns: self.syns.clone(),
            last_syn: Instant::now(),
            syns_this_round: 0,
            sent: HashMap::new(),
            sent_order: std::collections::VecDeque::new(),
            heard: HashMap::new(),
        }))
    }
}

/// A message waiting for its other parts.
struct Pending {
    first_seen: Instant,
    parts: Vec<Option<Vec<u8>>>,
}

struct SealedSocket {
    key: Arc<FleetKey>,
    counters: Arc<GossipCounters>,
    round_trips: Arc<RoundTrips>,
    socket: Arc<tokio::net::UdpSocket>,
    plain: Vec<u8>,
    /// `plain` compressed, when that is smaller.
    packed: Vec<u8>,
    /// Reused contexts (creating one per message costs more than a small
    /// message's compression). `None` only if zstd cannot allocate one:
    /// messages then go uncompressed (sending) or are refused (receiving).
    compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    sealed: Vec<u8>,
    recv_buf: Box<[u8]>,
    next_msg: u32,
    pending: HashMap<(SocketAddr, u32), Pending>,
    /// Where route feed messages go (opened), by their own magic.
    feed: tokio::sync::mpsc::Sender<(SocketAddr, Vec<u8>)>,
    syns: Arc<SynBudget>,
    last_syn: Instant,
    /// Syns to live peers sent in this round.
    syns_this_round: usize,
    /// The plain messages sent lately, by number (a peer compresses its
    /// answer against the message it answers: their digests are alike).
    sent: HashMap<u32, Arc<[u8]>>,
    sent_order: std::collections::VecDeque<u32>,
    /// Each peer's last plain message: its number, when, the bytes.
    heard: HashMap<SocketAddr, (u32, Instant, Arc<[u8]>)>,
}

#[async_trait]
impl Socket for SealedSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let (kind, digest, delta) = match &msg {
            ChitchatMessage::Syn { digest, .. } => {
                let now = Instant::now();
                if now.duration_since(self.last_syn) > self.syns.round_gap {
                    self.syns_this_round = 0;
                }
                self.last_syn = now;
                let (live, budget) = self.syns.live_budget(&to);
                if live {
                    if self.syns_this_round >= budget {
                        self.counters.syns_skipped.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    self.syns_this_round += 1;
                }
                self.round_trips.syn_sent(to, now);
                (Some(&self.counters.syn), digest.serialized_len(), 0)
            }
            ChitchatMessage::SynAck { digest, delta } => {
                (Some(&self.counters.syn_ack), digest.serialized_len(), delta.serialized_len())
            }
            ChitchatMessage::Ack { delta } => (Some(&self.counters.ack), 0, delta.serialized_len()),
            _ => (None, 0, 0),
        };
        self.plain.clear();
        msg.serialize(&mut self.plain);
        self.next_msg = self.next_msg.wrapping_add(1);
        // An Ack is a delta only, which chitchat compressed already.
        let plain: Arc<[u8]> = Arc::from(self.plain.as_slice());
        self.sent.insert(self.next_msg, plain);
        self.sent_order.push_back(self.next_msg);
        if self.sent_order.len() > SENT_KEPT {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        let reference = self.heard.get(&to).filter(|(_, at, _)| at.elapsed() < REFERENCE_AGE).cloned();
        let packed = match &mut self.compressor {
            Some(_) if matches!(msg, ChitchatMessage::Ack { .. }) => false,
            Some(c) => {
                self.packed.clear();
                self.packed.reserve(zstd::zstd_safe::compress_bound(self.plain.len()) + 8);
                match reference {
                    // Against the peer's own last message: the digests
                    // share every node's id, generation and address.
                    Some((number, _, against)) => {
                        self.packed.extend_from_slice(&REFERENCED);
                        self.packed.extend_from_slice(&number.to_le_bytes());
                        self.packed.extend_from_slice(&reference_hash(&against).to_le_bytes());
                        let ok = c.set_dictionary(ZSTD_LEVEL, &against).is_ok() && {
                            let mut frame = Vec::with_capacity(self.plain.len());
                            let done = c.compress_to_buffer(&self.plain, &mut frame).is_ok();
                            self.packed.extend_from_slice(&frame);
                            done
                        };
                        // Back to no dictionary; if that fails, stop compressing.
                        if c.set_dictionary(ZSTD_LEVEL, &[]).is_err() {
                            self.compressor = None;
                        }
                        ok && self.packed.len() < self.plain.len()
                    }
                    None => {
                        c.compress_to_buffer(&self.plain, &mut self.packed).is_ok()
                            && self.packed.len() < self.plain.len()
                    }
                }
            }
            None => false,
        };
        let message = if packed { &self.packed } else { &self.plain };
        self.counters.plain_bytes.fetch_add(self.plain.len() as u64, Ordering::Relaxed);
        self.counters.packed_bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
        self.counters.digest_bytes.fetch_add(digest as u64, Ordering::Relaxed);
        self.counters.delta_bytes.fetch_add(delta as u64, Ordering::Relaxed);
        let count = message.len().div_ceil(MAX_PART).max(1);
        if count > MAX_PARTS {
            // chitchat never builds a message this large (65,507 bytes at most).
            self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let now = SystemTime::now();
        for index in 0..count {
            let end = ((index + 1) * MAX_PART).min(message.len());
            let bytes = &message[index * MAX_PART..end];
            let part = ((index as u8) << 4) | count as u8;
            if let Err(why) = self.key.seal(now, part, self.next_msg, bytes, &mut self.sealed) {
                self.counters.refused(why);
                return Ok(());
            }
            match self.socket.send_to(&self.sealed, to).await {
                Ok(n) => {
                    self.counters.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(kind) = kind {
                        kind.datagrams.fetch_add(1, Ordering::Relaxed);
                        kind.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                // A peer gone or a full buffer loses this datagram, as UDP
                // may; gossip sends again next round. Only a broken socket
                // would stop chitchat, and send_to does not tell them apart.
                Err(_) => {
                    self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (n, from) = match self.socket.recv_from(&mut self.recv_buf).await {
                Ok(r) => r,
                // ICMP errors of earlier sends (a peer gone) surface here.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(anyhow::Error::new(e).context("gossip socket receive failed")),
            };
            let now = SystemTime::now();
            if self.recv_buf[..n].starts_with(FEED_MAGIC) {
                match self.key.open_with(FEED_MAGIC, now, &mut self.recv_buf[..n]) {
                    Ok(plain) => {
                        self.counters.datagrams_accepted.fetch_add(1, Ordering::Relaxed);
                        self.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                        // A full queue loses the message as the network
                        // might: the feed pulls what it misses.
                        if self.feed.try_send((from, plain.to_vec())).is_err() {
                            self.counters.feed_overflow.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(why) => self.counters.refused(why),
                }
                continue;
            }
            let opened = self.key.open(now, &mut self.recv_buf[..n]);
            let (part, msg, bytes) = match opened {
                Ok(p) => p,
                Err(why) => {
                    self.counters.refused(why);
                    continue;
                }
            };
            let whole = match reassemble(&mut self.pending, from, part, msg, bytes) {
                Ok(Some(whole)) => whole,
                Ok(None) => {
                    self.counters.datagrams_accepted.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                    continue;
                }
                Err(why) => {
                    self.counters.refused(why);
                    continue;
                }
            };
            let unpacked;
            let mut slice = whole.as_ref();
            if let Some(rest) = slice.strip_prefix(&REFERENCED) {
                let against = rest.get(..8).and_then(|b| {
                    let number = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    let hash = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                    self.sent.get(&number).filter(|m| reference_hash(m) == hash).cloned()
                });
                let (Some(against), Some(d)) = (against, &mut self.decompressor) else {
                    // A reference to a message no longer kept: lost, as a
                    // datagram may be; the next round carries it again.
                    self.counters.refused_unreferenced.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let opened = d.set_dictionary(&against).ok().and_then(|()| d.decompress(&rest[8..], MAX_MESSAGE).ok());
                if d.set_dictionary(&[]).is_err() {
                    self.decompressor = None;
                }
                match opened {
                    Some(bytes) => unpacked = bytes,
                    None => {
                        self.counters.refused(Refusal::Undecodable);
                        continue;
                    }
                }
                slice = &unpacked;
            } else if slice.starts_with(&ZSTD_MAGIC) {
                let Some(d) = &mut self.decompressor else {
                    self.counters.refused(Refusal::Undecodable);
                    continue;
                };
                match d.decompress(slice, MAX_MESSAGE) {
                    Ok(bytes) => unpacked = bytes,
                    Err(_) => {
                        self.counters.refused(Refusal::Undecodable);
                        continue;
                    }
                }
                slice = &unpacked;
            }
            let plain: Arc<[u8]> = Arc::from(slice);
            match ChitchatMessage::deserialize(&mut slice) {
                Ok(message) => {
                    // Only digests make good references (an Ack is a delta).
                    if matches!(message, ChitchatMessage::Syn { .. } | ChitchatMessage::SynAck { .. }) {
                        self.heard.insert(from, (msg, Instant::now(), plain));
                    }
                    self.counters.datagrams_accepted.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                    if matches!(message, ChitchatMessage::SynAck { .. }) {
                        self.round_trips.syn_ack_received(from, Instant::now());
                    }
                    return Ok((from, message));
                }
                Err(_) => self.counters.refused(Refusal::Undecodable),
            }
        }
    }
}

/// The message of which `bytes` is a part, once every part arrived.
fn reassemble<'a>(
    pending: &mut HashMap<(SocketAddr, u32), Pending>,
    from: SocketAddr,
    part: u8,
    msg: u32,
    bytes: &'a [u8],
) -> Result<Option<std::borrow::Cow<'a, [u8]>>, Refusal> {
    let (index, count) = (usize::from(part >> 4), usize::from(part & 0x0f));
    if count == 0 || index >= count {
        return Err(Refusal::Undecodable);
    }
    if count == 1 {
        return Ok(Some(std::borrow::Cow::Borrowed(bytes)));
    }
    let now = Instant::now();
    pending.retain(|_, p| now.duration_since(p.first_seen) < REASSEMBLY_TIMEOUT);
    if pending.len() >= MAX_PENDING && !pending.contains_key(&(from, msg)) {
        return Err(Refusal::Undecodable);
    }
    let entry = pending.entry((from, msg)).or_insert_with(|| Pending { first_seen: now, parts: vec![None; count] });
    if entry.parts.len() != count {
        return Err(Refusal::Undecodable);
    }
    entry.parts[index] = Some(bytes.to_vec());
    if entry.parts.iter().any(Option::is_none) {
        return Ok(None);
    }
    let parts = pending.remove(&(from, msg)).map(|p| p.parts).unwrap_or_default();
    Ok(Some(std::borrow::Cow::Owned(parts.into_iter().flatten().flatten().collect())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &FleetKey, at: SystemTime, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        key.seal(at, 0x01, 7, bytes, &mut out).unwrap();
        out
    }

    #[test]
    fn seal_then_open() {
        let key = FleetKey::derive("correct horse battery staple").unwrap();
        let now = SystemTime::now();
        let mut d = sealed(&key, now, b"hello fleet");
        assert_eq!(d.len(), OVERHEAD + 11);
        assert_eq!(&d[..4], MAGIC);
        assert!(!d.windows(11).any(|w| w == b"hello fleet"), "the payload is encrypted");
        let (part, msg, bytes) = key.open(now, &mut d).unwrap();
        assert_eq!((part, msg, bytes), (0x01, 7, &b"hello fleet"[..]));
        // A fresh nonce each time: the same message never seals the same.
        assert_ne!(sealed(&key, now, b"x"), sealed(&key, now, b"x"));
    }

    #[test]
    fn wrong_key_forged_stale_and_junk_are_refused() {
        let key = FleetKey::derive("correct horse battery staple").unwrap();
        let other = FleetKey::derive("another fleet's passphrase").unwrap();
        assert_ne!(key.cluster_id(), other.cluster_id());
        let now = SystemTime::now();
        let good = sealed(&key, now, b"route update");
        assert_eq!(other.open(now, &mut good.clone()).err(), Some(Refusal::Unauthentic));
        for i in [4, 16, 20, good.len() - 1] {
            let mut forged = good.clone();
            forged[i] ^= 0x40;
            assert_eq!(key.open(now, &mut forged).err(), Some(Refusal::Unauthentic), "byte {i} flipped");
        }
        let mut old = sealed(&key, now - MAX_AGE - Duration::from_secs(1), b"replayed");
        assert_eq!(key.open(now, &mut old).err(), Some(Refusal::Stale));
        let mut ahead = sealed(&key, now + MAX_AGE + Duration::from_secs(1), b"from the future");
        assert_eq!(key.open(now, &mut ahead).err(), Some(Refusal::Stale));
        let mut recent = sealed(&key, now - Duration::from_secs(5), b"a bit late");
        assert!(key.open(now, &mut recent).is_ok());
        assert_eq!(key.open(now, &mut b"junk".to_vec()).err(), Some(Refusal::Malformed));
        let mut plain_chitchat = vec![0u8; 100];
        assert_eq!(key.open(now, &mut plain_chitchat).err(), Some(Refusal::Malformed));
    }

    #[test]
    fn parts_are_put_together() {
        let mut pending = HashMap::new();
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(reassemble(&mut pending, from, 0x01, 1, b"whole").unwrap().as_deref(), Some(&b"whole"[..]));
        assert_eq!(reassemble(&mut pending, from, 0x12, 2, b"world").unwrap(), None);
        let whole = reassemble(&mut pending, from, 0x02, 2, b"hello ").unwrap();
        assert_eq!(whole.as_deref(), Some(&b"hello world"[..]));
        assert!(pending.is_empty());
        assert!(reassemble(&mut pending, from, 0x22, 3, b"x").is_err(), "index beyond count");
        assert!(reassemble(&mut pending, from, 0x00, 3, b"x").is_err(), "no count");
    }

    async fn open_socket(key: &str) -> (Box<dyn Socket>, Arc<GossipCounters>, SocketAddr) {
        let k = Arc::new(FleetKey::derive(key).unwrap());
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        let counters = Arc::new(GossipCounters::default());
        // Feed messages are not what these tests send: dropped.
        let (feed, _) = tokio::sync::mpsc::channel(1);
        let syns = Arc::new(SynBudget::new(1, Duration::from_millis(100)));
        let t = SealedTransport::new(k, counters.clone(), Arc::default(), Arc::new(s), true, feed, syns);
        (t.open(addr).await.unwrap(), counters, addr)
    }

    async fn pair(key_a: &str, key_b: &str) -> (Box<dyn Socket>, Box<dyn Socket>, Arc<GossipCounters>, SocketAddr) {
        let (a, _, _) = open_socket(key_a).await;
        let (b, counters_b, addr_b) = open_socket(key_b).await;
        (a, b, counters_b, addr_b)
    }

    fn bad_cluster() -> ChitchatMessage {
        ChitchatMessage::BadCluster
    }

    /// A Syn with a digest of `nodes` entries, built from chitchat 0.11's
    /// wire format (its digest type cannot be built outside the crate).
    fn syn(nodes: u16) -> ChitchatMessage {
        let mut b = Vec::new();
        b.extend_from_slice(&45_139u16.to_le_bytes());
        b.extend_from_slice(&[0, 0]); // protocol version, Syn
        b.extend_from_slice(&nodes.to_le_bytes());
        for i in 0..nodes {
            let id = format!("bh-{i:03}");
            b.extend_from_slice(&(id.len() as u16).to_le_bytes());
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(&(1_764_000_000_000u64 + u64::from(i)).to_le_bytes());
            b.extend_from_slice(&[4, 127, 0, 0, 1]);
            b.extend_from_slice(&(40_000 + i).to_le_bytes());
            for v in [1000 + u64::from(i), 0, 2000] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b.extend_from_slice(&7u16.to_le_bytes());
        b.extend_from_slice(b"cluster");
        ChitchatMessage::deserialize(&mut b.as_slice()).unwrap()
    }

    #[tokio::test]
    async fn digests_travel_compressed() {
        let (mut a, mut b, counters_b, addr_b) = pair("fleet key number one", "fleet key number one").await;
        a.send(addr_b, syn(50)).await.unwrap();
        let (_, msg) = tokio::time::timeout(Duration::from_secs(2), b.recv()).await.unwrap().unwrap();
        assert_eq!(msg, syn(50));
        let plain = syn(50).serialize_to_vec().len();
        let received = counters_b.snapshot().bytes_received as usize;
        assert!(received < plain / 2, "{received} bytes on the wire for {plain} of digest");
    }

    async fn received(s: &mut Box<dyn Socket>) -> ChitchatMessage {
        tokio::time::timeout(Duration::from_secs(2), s.recv()).await.unwrap().unwrap().1
    }

    #[tokio::test]
    async fn an_answer_is_compressed_against_the_message_it_answers() {
        let key = "fleet key number one";
        let ((mut a, counters_a, addr_a), (mut b, counters_b, addr_b)) =
            (open_socket(key).await, open_socket(key).await);
        a.send(addr_b, syn(50)).await.unwrap();
        assert_eq!(received(&mut b).await, syn(50));
        let alone = counters_b.snapshot().bytes_received;
        // B answers with the same digest: against A's message it is tiny.
        b.send(addr_a, syn(50)).await.unwrap();
        assert_eq!(received(&mut a).await, syn(50));
        let answer = counters_a.snapshot().bytes_received;
        assert!(answer * 3 < alone, "{answer} bytes against a reference, {alone} without");
        // A reference A no longer holds (it sent SENT_KEPT messages since):
        // the answer is dropped and counted, not misread.
        for _ in 0..SENT_KEPT {
            a.send("127.0.0.1:9".parse().unwrap(), bad_cluster()).await.unwrap();
        }
        b.send(addr_a, syn(50)).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), a.recv()).await.is_err());
        assert_eq!(counters_a.snapshot().refused_unreferenced, 1);
    }

    #[tokio::test]
    async fn sockets_carry_messages_and_count_refusals() {
        let (mut a, mut b, counters, addr_b) = pair("fleet key number one", "fleet key number one").await;
        a.send(addr_b, bad_cluster()).await.unwrap();
        let (_, msg) = tokio::time::timeout(Duration::from_secs(2), b.recv()).await.unwrap().unwrap();
        assert_eq!(msg, bad_cluster());
        assert_eq!(counters.snapshot().datagrams_accepted, 1);

        let (mut stranger, mut b, counters, addr_b) = pair("not the fleet key!!", "fleet key number one").await;
        stranger.send(addr_b, bad_cluster()).await.unwrap();
        // Plain chitchat (no seal) and junk too.
        let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        raw.send_to(&bad_cluster().serialize_to_vec(), addr_b).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), b.recv()).await.is_err(), "nothing gets through");
        let c = counters.snapshot();
        assert_eq!((c.refused_unauthentic, c.refused_malformed, c.datagrams_accepted), (1, 1, 0));
    }
}
