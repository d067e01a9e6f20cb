//! Prometheus metrics (prometheus-client, OpenMetrics text). Names follow
//! `bridgehead_<subsystem>_<name>_<unit>`; labels are low-cardinality only.
//! The dataplane's counters live in its workers and are summed here at
//! scrape time by a collector, never pushed per packet.

use dataplane::DataplaneHandle;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub sessions_created: Counter,
    pub sessions_deleted: Counter,
    pub session_refusals: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new(dataplane: DataplaneHandle, appliance_id: &str, region: &str) -> Metrics {
        let mut registry = Registry::with_prefix("bridgehead");
        registry.register(
            "build",
            "Version of the running firmware",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("appliance".to_string(), appliance_id.to_string()),
                ("region".to_string(), region.to_string()),
            ]),
        );
        let sessions_created = Counter::default();
        let sessions_deleted = Counter::default();
        let session_refusals = Family::<Labels, Counter>::default();
        registry.register(
            "dataplane_sessions_created",
            "Media sessions created through the control API",
            sessions_created.clone(),
        );
        registry.register(
            "dataplane_sessions_deleted",
            "Media sessions deleted through the control API",
            sessions_deleted.clone(),
        );
        registry.register("dataplane_session_refusals", "Media sessions refused, by reason", session_refusals.clone());
        registry.register_collector(Box::new(DataplaneCollector { dataplane }));
        Metrics { registry, sessions_created, sessions_deleted, session_refusals }
    }

    /// Adds the SIP stack's counters (requests and responses by method and
    /// class, transactions, connections).
    pub fn register_sip(&mut self, stats: std::sync::Arc<crate::sip::transport::SipStats>) {
        self.registry.register_collector(Box::new(SipCollector { stats }));
    }

    /// Adds the HTTPS listener's connection counters.
    /// The call layer's counters and its webhook client's.
    pub fn register_calls(
        &mut self,
        stats: std::sync::Arc<crate::call::shell::CallStats>,
        webhooks: crate::instructions::http::WebhookCollector,
    ) {
        self.registry.register_collector(Box::new(CallCollector { stats }));
        self.registry.register_collector(Box::new(webhooks));
    }

    pub fn register_https(&mut self, counters: std::sync::Arc<crate::https::HttpsCounters>) {
        self.registry.register_collector(Box::new(HttpsCollector { counters }));
    }

    /// Adds the registered client devices by status
    /// (`bridgehead_client_devices{status}`), read from `routes` at scrape
    /// time.
    pub fn register_routes(&mut self, routes: std::sync::Arc<dyn crate::routes::RouteStore>) {
        self.registry.register_collector(Box::new(RoutesCollector { routes }));
    }

    /// Adds a subsystem's own collector (one read at scrape time).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[derive(Debug)]
struct DataplaneCollector {
    dataplane: DataplaneHandle,
}

fn per_worker<F: Fn(&dataplane::engine::counters::WorkerSnapshot) -> u64>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    workers: &[dataplane::engine::counters::WorkerSnapshot],
    value: F,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (w, snapshot) in workers.iter().enumerate() {
        let labels = [("worker", w.to_string())];
        ConstCounter::new(value(snapshot)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family per worker and per value of `label`, the pairs given
/// by `values`.
fn per_worker_by<F: Fn(&dataplane::engine::counters::WorkerSnapshot) -> Vec<(&'static str, u64)>>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    workers: &[dataplane::engine::counters::WorkerSnapshot],
    label: &str,
    values: F,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (w, snapshot) in workers.iter().enumerate() {
        for (value, count) in values(snapshot) {
            let labels = [("worker", w.to_string()), (label, value.to_string())];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl Collector for DataplaneCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let workers = self.dataplane.worker_stats();
        per_worker(&mut encoder, "dataplane_rx_packets", "Datagrams received on media ports", &workers, |w| {
            w.rx_packets
        })?;
        per_worker(&mut encoder, "dataplane_rx_bytes", "Payload bytes received on media ports", &workers, |w| {
            w.rx_bytes
        })?;
        per_worker(&mut encoder, "dataplane_tx_packets", "Datagrams relayed out", &workers, |w| w.tx_packets)?;
        per_worker(&mut encoder, "dataplane_tx_bytes", "Payload bytes relayed out", &workers, |w| w.tx_bytes)?;
        per_worker(
            &mut encoder,
            "dataplane_events_lost",
            "Events dropped because the control plane did not read them",
            &workers,
            |w| w.events_lost,
        )?;
        per_worker(&mut encoder, "dataplane_loops", "Worker loop iterations", &workers, |w| w.loops)?;
        per_worker(
            &mut encoder,
            "dataplane_idle_loops",
            "Worker loop iterations that received nothing",
            &workers,
            |w| w.idle_loops,
        )?;
        per_worker_by(&mut encoder, "dataplane_drops", "Datagrams not relayed, by reason", &workers, "reason", |w| {
            w.drops.iter().map(|&(r, n)| (r.as_str(), n)).collect()
        })?;
        per_worker_by(
            &mut encoder,
            "dataplane_backend_events",
            "What the DPDK or AF_XDP backend did besides relaying (exception path, neighbours, frames not sent), by event",
            &workers,
            "event",
            |w| w.backend.iter().map(|&(e, n)| (e.as_str(), n)).collect(),
        )?;
        let in_use = self.dataplane.session_count() as i64;
        let gauge = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64| -> Result<(), std::fmt::Error> {
            ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
        };
        gauge(&mut encoder, "dataplane_sessions", "Media sessions in the table", in_use)?;
        gauge(
            &mut encoder,
            "dataplane_sessions_capacity",
            "Capacity of the session table",
            self.dataplane.capacity() as i64,
        )?;
        gauge(
            &mut encoder,
            "dataplane_workers_running",
            "Dataplane workers running their loop",
            self.dataplane.running_workers() as i64,
        )?;
        Ok(())
    }
}

#[derive(Debug)]
struct SipCollector {
    stats: std::sync::Arc<crate::sip::transport::SipStats>,
}

impl Collector for SipCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use crate::sip::transport::COUNTED_METHODS;
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        {
            let mut family = encoder.encode_descriptor(
                "sip_requests_received",
                "SIP requests received, by method",
                None,
                MetricType::Counter,
            )?;
            for (i, c) in s.requests_in.iter().enumerate() {
                let method = COUNTED_METHODS.get(i).copied().unwrap_or("other");
                ConstCounter::new(c.load(Relaxed)).encode(family.encode_family(&[("method", method)])?)?;
            }
        }
        for (name, help, counters) in [
            ("sip_responses_received", "SIP responses received, by class", &s.responses_in),
            ("sip_responses_sent", "SIP responses sent, by class", &s.responses_out),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (i, c) in counters.iter().enumerate() {
                let class = format!("{}xx", i + 1);
                ConstCounter::new(c.load(Relaxed)).encode(family.encode_family(&[("class", class.as_str())])?)?;
            }
        }
        for (name, help, value) in [
            ("sip_requests_sent", "SIP requests sent (retransmissions included)", s.requests_out.load(Relaxed)),
            ("sip_rejected", "Malformed SIP requests answered statelessly (400, 505, ...)", s.rejected.load(Relaxed)),
            ("sip_dropped", "SIP messages dropped unanswered (unparsable)", s.dropped.load(Relaxed)),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        for (name, help, value) in [
            ("sip_transactions_client", "Client transactions alive", s.transactions_client.load(Relaxed)),
            ("sip_transactions_server", "Server transactions alive", s.transactions_server.load(Relaxed)),
            ("sip_connections", "SIP TCP and TLS connections open", s.connections.load(Relaxed)),
        ] {
            ConstGauge::new(value as i64).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct CallCollector {
    stats: std::sync::Arc<crate::call::shell::CallStats>,
}

impl Collector for CallCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use crate::call::shell::{END_STATUSES, REFUSALS};
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        let active = i64::try_from(s.active.load(Relaxed)).unwrap_or(i64::MAX);
        ConstGauge::new(active).encode(encoder.encode_descriptor(
            "calls_active",
            "Calls in progress (inbound legs with their dialed legs)",
            None,
            MetricType::Gauge,
        )?)?;
        {
            let mut family = encoder.encode_descriptor(
                "calls_started",
                "Call legs started, by direction",
                None,
                MetricType::Counter,
            )?;
            for (i, direction) in ["inbound", "outbound-api", "outbound-dial"].iter().enumerate() {
                ConstCounter::new(s.started[i].load(Relaxed))
                    .encode(family.encode_family(&[("direction", *direction)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "calls_ended",
                "Inbound calls ended, by final status",
                None,
                MetricType::Counter,
            )?;
            for (i, status) in END_STATUSES.iter().enumerate() {
                ConstCounter::new(s.ended[i].load(Relaxed))
                    .encode(family.encode_family(&[("status", status.as_str())])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "calls_refused",
                "INVITEs refused before a call existed, by reason",
                None,
                MetricType::Counter,
            )?;
            for (i, reason) in REFUSALS.iter().enumerate() {
                ConstCounter::new(s.refused[i].load(Relaxed)).encode(family.encode_family(&[("reason", *reason)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "fleet_client_legs",
                "Client legs of calls crossing appliances: sent to the peer holding the client, taken for a peer's call; over TLS or TCP",
                None,
                MetricType::Counter,
            )?;
            for (way, all, tls) in
                [("sent", &s.fleet.sent, &s.fleet.sent_tls), ("taken", &s.fleet.taken, &s.fleet.taken_tls)]
            {
                let (all, tls) = (all.load(Relaxed), tls.load(Relaxed));
                for (transport, n) in [("tls", tls), ("tcp", all.saturating_sub(tls))] {
                    ConstCounter::new(n).encode(family.encode_family(&[("way", way), ("transport", transport)])?)?;
                }
            }
        }
        ConstCounter::new(s.fleet.refused.load(Relaxed)).encode(encoder.encode_descriptor(
            "fleet_sip_refused",
            "SIP from another appliance refused: missing, stale or forged proof of fleet membership",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}

#[derive(Debug)]
struct HttpsCollector {
    counters: std::sync::Arc<crate::https::HttpsCounters>,
}

impl Collector for HttpsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        for (name, help, value) in [
            ("https_connections_accepted", "HTTPS connections accepted", c.accepted.load(Relaxed)),
            (
                "https_handshake_failures",
                "HTTPS connections whose TLS handshake failed or timed out",
                c.handshake_failures.load(Relaxed),
            ),
            (
                "https_connection_errors",
                "HTTPS connections ended by an HTTP protocol error",
                c.connection_errors.load(Relaxed),
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        Ok(())
    }
}

/// Client devices by presence status, counted by the route store.
struct RoutesCollector {
    routes: std::sync::Arc<dyn crate::routes::RouteStore>,
}

impl std::fmt::Debug for RoutesCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutesCollector").field("appliance", &self.routes.appliance()).finish()
    }
}

impl Collector for RoutesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use crate::routes::PresenceStatus;
        let counts = self.routes.counts();
        let mut family = encoder.encode_descriptor(
            "client_devices",
            "Client devices registered (present), by status",
            None,
            MetricType::Gauge,
        )?;
        // A registered device is never offline: no `offline` series.
        for status in [PresenceStatus::Available, PresenceStatus::Busy, PresenceStatus::Away] {
            let n = i64::try_from(counts.of(status)).unwrap_or(i64::MAX);
            ConstGauge::new(n).encode(family.encode_family(&[("status", status.as_str())])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{DeviceId, DeviceRoute, InProcessRoutes, PresenceStatus, RouteStore};
    use crate::store::AccountSid;
    use std::sync::Arc;

    #[test]
    fn client_devices_by_status() {
        let routes = Arc::new(InProcessRoutes::new("bh-test", 10));
        let account = AccountSid::parse("AC00000000000000000000000000000001").unwrap();
        for (d, status) in [(1, PresenceStatus::Available), (2, PresenceStatus::Busy), (3, PresenceStatus::Busy)] {
            let route = DeviceRoute {
                device: DeviceId(d),
                account: account.clone(),
                identity: format!("user{d}"),
                status,
                incoming: true,
                appliance: "bh-test".into(),
                registered_at: std::time::SystemTime::UNIX_EPOCH,
            };
            routes.register(route).unwrap();
        }
        let mut registry = Registry::with_prefix("bridgehead");
        registry.register_collector(Box::new(RoutesCollector { routes: routes.clone() }));
        let encode = |registry: &Registry| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
            out
        };
        let text = encode(&registry);
        assert!(text.contains("# TYPE bridgehead_client_devices gauge"), "{text}");
        assert!(text.contains("bridgehead_client_devices{status=\"available\"} 1"), "{text}");
        assert!(text.contains("bridgehead_client_devices{status=\"busy\"} 2"), "{text}");
        assert!(text.contains("bridgehead_client_devices{status=\"away\"} 0"), "{text}");
        routes.unregister(DeviceId(2));
        assert!(encode(&registry).contains("bridgehead_client_devices{status=\"busy\"} 1"), "read at scrape time");
    }
}
