//! Client signaling metrics, read from [`ClientStats`] at scrape time:
//! connections, refusals at the limit, messages by type and direction,
//! token refusals by reason. Presence by status comes from the route store
//! (`bridgehead_client_devices{status}`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::{ClientHub, MESSAGE_KINDS, TOKEN_REFUSALS};

#[derive(Debug)]
pub struct ClientCollector {
    pub hub: Arc<ClientHub>,
}

impl std::fmt::Debug for ClientHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHub").field("max_connections", &self.max_connections).finish_non_exhaustive()
    }
}

impl Collector for ClientCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.hub.stats;
        let connections = i64::try_from(s.connections.load(Relaxed)).unwrap_or(i64::MAX);
        ConstGauge::new(connections).encode(encoder.encode_descriptor(
            "client_connections",
            "Open client signaling connections (WSS /signal)",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(s.refused.load(Relaxed)).encode(encoder.encode_descriptor(
            "client_connections_refused",
            "Client connections refused at the connection limit",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(s.overflowed.load(Relaxed)).encode(encoder.encode_descriptor(
            "client_connections_overflowed",
            "Client connections closed because they did not read their frames",
            None,
            MetricType::Counter,
        )?)?;
        {
            let mut family = encoder.encode_descriptor(
                "client_messages",
                "Client signaling messages, by direction and type",
                None,
                MetricType::Counter,
            )?;
            for (i, kind) in MESSAGE_KINDS.iter().enumerate() {
                for (direction, counters) in [("in", &s.received), ("out", &s.sent)] {
                    let n = counters[i].load(Relaxed);
                    if n > 0 {
                        ConstCounter::new(n)
                            .encode(family.encode_family(&[("direction", direction), ("type", *kind)])?)?;
                    }
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "client_token_refusals",
                "Access tokens refused, by reason",
                None,
                MetricType::Counter,
            )?;
            for (i, reason) in TOKEN_REFUSALS.iter().enumerate() {
                ConstCounter::new(s.token_refusals[i].load(Relaxed))
                    .encode(family.encode_family(&[("reason", *reason)])?)?;
            }
        }
        Ok(())
    }
}
