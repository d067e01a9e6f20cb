//! The fleet's gossip in `/metrics`: datagrams and bytes each way, bytes
//! per message kind and part (digest, delta), refusals by reason, live
//! peers, and whether this box is draining.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use super::GossipRoutes;

pub struct GossipCollector {
    pub gossip: Arc<GossipRoutes>,
    pub draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for GossipCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipCollector").finish_non_exhaustive()
    }
}

impl Collector for GossipCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.gossip.counters();
        for (name, help, value) in [
            ("gossip_datagrams_sent", "Sealed gossip datagrams sent", c.datagrams_sent),
            ("gossip_sent_bytes", "Bytes of sealed gossip sent", c.bytes_sent),
            ("gossip_datagrams_accepted", "Gossip datagrams that opened with the fleet key", c.datagrams_accepted),
            ("gossip_received_bytes", "Bytes of gossip received", c.bytes_received),
            ("gossip_send_errors", "Gossip datagrams the socket failed to send", c.send_errors),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        {
            let mut family = encoder.encode_descriptor(
                "gossip_datagrams_refused",
                "Gossip datagrams dropped: not sealed (malformed), not opened by the fleet key (unauthentic: a non-member or a forgery), sealed too long ago (stale), not a gossip message (undecodable), or compressed against a message of ours no longer kept (unreferenced)",
                None,
                MetricType::Counter,
            )?;
            for (reason, value) in [
                ("malformed", c.refused_malformed),
                ("unauthentic", c.refused_unauthentic),
                ("stale", c.refused_stale),
                ("undecodable", c.refused_undecodable),
                ("unreferenced", c.refused_unreferenced),
            ] {
                ConstCounter::new(value).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "gossip_sent_kind_bytes",
                "Bytes of sealed gossip sent per message kind: syn (a digest), synack (a digest and a delta), ack (a delta), feed (route changes)",
                None,
                MetricType::Counter,
            )?;
            for (kind, value) in
                [("syn", c.syn.bytes), ("synack", c.syn_ack.bytes), ("ack", c.ack.bytes), ("feed", c.feed.bytes)]
            {
                ConstCounter::new(value).encode(family.encode_family(&[("kind", kind)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "route_feed_events",
                "Route feed: pulls sent (a gap, a join, a stalled origin), answers sent from the log (repair) or as a snapshot, messages dropped on arrival (the feed's queue full), and membership Syns skipped beyond a round's budget",
                None,
                MetricType::Counter,
            )?;
            for (event, value) in [
                ("pull", c.feed_pulls),
                ("repair", c.feed_repairs),
                ("snapshot", c.feed_snapshots),
                ("overflow", c.feed_overflow),
                ("syn_skipped", c.syns_skipped),
            ] {
                ConstCounter::new(value).encode(family.encode_family(&[("event", event)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "gossip_sent_part_bytes",
                "Digest and delta bytes sent as chitchat serialized them, before the transport's compression",
                None,
                MetricType::Counter,
            )?;
            for (part, value) in [("digest", c.digest_bytes), ("delta", c.delta_bytes)] {
                ConstCounter::new(value).encode(family.encode_family(&[("part", part)])?)?;
            }
        }
        let peers = i64::try_from(self.gossip.live_peers()).unwrap_or(i64::MAX);
        ConstGauge::new(peers).encode(encoder.encode_descriptor(
            "fleet_peers",
            "Other appliances the failure detector holds alive",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(i64::from(self.draining.load(Relaxed))).encode(encoder.encode_descriptor(
            "fleet_draining",
            "1 while this appliance is draining (it takes no new media)",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}
