//! End-to-end test tooling for Bridgehead: small networks of Linux network
//! namespaces, RTP peers, and the `bridgehead` binary run as a black box.
//!
//! ```text
//!   tests/*.rs ─ topology (MediaLan: app namespace + bridge, peers, NAT)
//!        │        └─ wan (Wan: the LAN split into regions joined by delay lines)
//!        │          └─ netns (namespaces, veth, setns-run closures)
//!        ├─ appliance (config file, start/ready/stop) ─ admin (HTTP client, JSON API)
//!        └─ rtp (send G.711 streams, receive and check them)
//! ```
//!
//! A test builds a [`topology::MediaLan`], starts an [`appliance::Appliance`]
//! in its namespace, opens [`rtp::RtpEndpoint`]s on peers and drives the
//! dataplane through [`admin::AdminClient`]. Everything is torn down by
//! guards on drop, also when the test panics. The tests need root (network
//! namespaces) and, for the NAT peer, `nft` (Debian package `nftables`).

pub mod admin;
pub mod appliance;
pub mod call_checks;
pub mod customer_app;
pub mod netns;
pub mod relay_checks;
pub mod rtp;
pub mod sip_ws_client;
pub mod sipp;
pub mod topology;
pub mod twilio_py;
pub mod voice_client;
pub mod wan;

use std::time::{Duration, Instant};

/// Probes until `done` holds or `within` passed and returns the last value
/// probed, for the caller to assert on (so a failure shows what was seen).
pub fn settle<T>(
    within: Duration,
    mut probe: impl FnMut() -> anyhow::Result<T>,
    done: impl Fn(&T) -> bool,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let value = probe()?;
        if done(&value) || Instant::now() >= deadline {
            return Ok(value);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
