//! The announcer: every second, this appliance's resources into its
//! gossip announcement (what the route policy weighs on the other boxes).

use super::super::policy::{ApplianceId, ApplianceState, Region, Service};
use super::super::{Announcement, RouteStore};
use dataplane::DataplaneHandle;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the announcer needs besides the dataplane's live figures.
pub struct AnnouncerConfig {
    pub region: String,
    /// Where peers send SIP for the clients held here.
    pub sip: Option<SocketAddr>,
    /// The SIP over TLS address and the SHA-256 of its certificate.
    pub sip_tls: Option<(SocketAddr, [u8; 32])>,
    /// Filled every second with the certificates the other appliances
    /// announced (their SIP over TLS is trusted by these).
    pub fleet_certs: crate::tls::FleetCerts,
    /// Set through the admin API (`/drain`).
    pub draining: Arc<AtomicBool>,
}

/// Announces every second until the task is aborted.
pub async fn run(routes: Arc<dyn RouteStore>, dataplane: DataplaneHandle, config: AnnouncerConfig) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut cpu = CpuSampler::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // What can still be created: the port range may run out before the table.
        let free = dataplane.free_sessions();
        let state = ApplianceState {
            id: ApplianceId::new(routes.appliance()),
            region: Region::new(config.region.clone()),
            draining: config.draining.load(Ordering::Relaxed),
            free_media_sessions: u32::try_from(free).unwrap_or(u32::MAX),
            load: cpu.sample().map_or(0.0, |share| (share / cores) as f32),
            // The dataplane relays; transcoding, recording and mixing are
            // announced as they land.
            services: [Service::Relay].into(),
            alive: true,
        };
        routes.announce(Announcement {
            state,
            sip: config.sip,
            sip_tls: config.sip_tls,
            media_ip: Some(dataplane.media_ip()),
        });
        let me = routes.appliance().to_owned();
        config.fleet_certs.replace(
            routes
                .appliances()
                .iter()
                // Every appliance the fleet announced, live or lately dead:
                // a call may pick a peer the moment it comes back.
                .filter(|a| a.state.id.0 != me)
                .filter_map(|a| a.sip_tls.map(|(_, cert)| cert)),
        );
    }
}

/// The process's CPU time share since the last sample, from /proc/self/stat.
struct CpuSampler {
    last: Option<(Instant, f64)>,
}

impl CpuSampler {
    fn new() -> CpuSampler {
        CpuSampler { last: None }
    }

    /// CPU seconds per wall second since the previous call (1.0 = one core busy).
    fn sample(&mut self) -> Option<f64> {
        let now = Instant::now();
        let cpu = process_cpu_seconds()?;
        let previous = self.last.replace((now, cpu));
        let (then, cpu_then) = previous?;
        let wall = now.duration_since(then).as_secs_f64();
        (wall > 0.0).then(|| ((cpu - cpu_then) / wall).max(0.0))
    }
}

/// utime + stime of this process, in seconds. /proc counts in USER_HZ,
/// which Linux fixes at 100 for user space on every architecture it runs.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_cpu_time() {
        let first = process_cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_seconds().unwrap() >= first);
        let mut s = CpuSampler::new();
        assert_eq!(s.sample(), None, "the first sample has nothing to compare with");
        assert!(s.sample().is_some_and(|share| share >= 0.0));
    }
}
