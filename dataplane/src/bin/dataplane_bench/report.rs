//! The run's figures: a table for people, then one JSON line for programs.

use crate::dpdk::DpdkFigures;
use crate::relay::RelayFigures;

/// Goals, as ratios measured in the same run.
pub const RELAY_VS_TESTPMD_GOAL: f64 = 0.15;
pub const SOCKET_VS_KERNEL_GOAL: f64 = 1.5;
pub const SOCKET_VS_RTPENGINE_GOAL: f64 = 3.0;

/// Everything measured; `None` where a part did not run or failed (the
/// reason is in `notes`).
#[derive(Default)]
pub struct Report {
    pub dpdk: Option<DpdkFigures>,
    pub testpmd_mpps: Option<f64>,
    pub ours: Option<RelayFigures>,
    pub kernel: Option<RelayFigures>,
    pub rtpengine: Option<RelayFigures>,
    /// Ours on the AF_XDP backend (loopback, generic XDP), same load.
    pub af_xdp: Option<RelayFigures>,
    pub socket_sessions: usize,
    /// Load offered to each relay, datagrams per second (0: as fast as possible).
    pub rate_pps: u64,
    /// Sessions the DPDK part was set up with.
    pub dpdk_sessions: usize,
    pub notes: Vec<String>,
    pub quick: bool,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn show(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn verdict(r: Option<f64>, goal: f64) -> String {
    match r {
        Some(r) if r >= goal => format!(">= {goal} met"),
        Some(_) => format!(">= {goal} MISSED"),
        None => format!(">= {goal} n/a"),
    }
}

impl Report {
    fn relay_mpps(&self) -> Option<f64> {
        self.dpdk.map(|d| d.mpps)
    }
    fn socket_kpps(&self) -> Option<f64> {
        self.ours.map(|f| f.kpps())
    }
    fn kernel_kpps(&self) -> Option<f64> {
        self.kernel.map(|f| f.kpps())
    }
    fn our_cpu(&self) -> Option<f64> {
        self.ours.and_then(|f| f.cpu_us_per_packet())
    }
    fn rtpengine_cpu(&self) -> Option<f64> {
        self.rtpengine.and_then(|f| f.cpu_us_per_packet())
    }
    fn xdp_kpps(&self) -> Option<f64> {
        self.af_xdp.map(|f| f.kpps())
    }
    fn xdp_cpu(&self) -> Option<f64> {
        self.af_xdp.and_then(|f| f.cpu_us_per_packet())
    }

    pub fn print(&self) {
        let relay_vs_testpmd = ratio(self.relay_mpps(), self.testpmd_mpps);
        let socket_vs_kernel = ratio(self.socket_kpps(), self.kernel_kpps());
        let socket_vs_rtpengine = ratio(self.rtpengine_cpu(), self.our_cpu());
        let xdp_vs_kernel = ratio(self.xdp_kpps(), self.kernel_kpps());
        let xdp_vs_rtpengine = ratio(self.rtpengine_cpu(), self.xdp_cpu());
        let rows = [
            [
                "DPDK relay, 1 core (Mpps) vs testpmd io".to_string(),
                show(self.relay_mpps(), 2),
                show(self.testpmd_mpps, 2),
                show(relay_vs_testpmd, 3),
                verdict(relay_vs_testpmd, RELAY_VS_TESTPMD_GOAL),
            ],
            [
                "DPDK relay cycles/packet".into(),
                show(self.dpdk.map(|d| d.cycles_per_packet), 1),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
            [
                "socket backend, kpps per core vs kernel relay".into(),
                show(self.socket_kpps(), 1),
                show(self.kernel_kpps(), 1),
                show(socket_vs_kernel, 2),
                verdict(socket_vs_kernel, SOCKET_VS_KERNEL_GOAL),
            ],
            [
                "CPU us/packet: socket backend vs rtpengine".into(),
                show(self.our_cpu(), 3),
                show(self.rtpengine_cpu(), 3),
                show(socket_vs_rtpengine, 2),
                verdict(socket_vs_rtpengine, SOCKET_VS_RTPENGINE_GOAL),
            ],
            [
                "AF_XDP backend, kpps per core vs kernel relay".into(),
                show(self.xdp_kpps(), 1),
                show(self.kernel_kpps(), 1),
                show(xdp_vs_kernel, 2),
                verdict(xdp_vs_kernel, SOCKET_VS_KERNEL_GOAL),
            ],
            [
                "CPU us/packet: AF_XDP backend vs rtpengine".into(),
                show(self.xdp_cpu(), 3),
                show(self.rtpengine_cpu(), 3),
                show(xdp_vs_rtpengine, 2),
                verdict(xdp_vs_rtpengine, SOCKET_VS_RTPENGINE_GOAL),
            ],
        ];
        let header = ["measure", "figure", "reference", "ratio", "goal"];
        let widths: Vec<usize> =
            (0..5).map(|c| rows.iter().map(|r| r[c].len()).chain([header[c].len()]).max().unwrap_or(0)).collect();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (s, &w))| if c == 0 { format!("{s:<w$}") } else { format!("{s:>w$}") })
                .collect();
            println!("{}", parts.join("  "));
        };
        println!();
        line(&header.map(String::from));
        for r in &rows {
            line(r);
        }
        println!();
        println!(
            "relays on loopback ({} sessions, {} offered; CPU = utime+stime of the relay process; per core = delivered / CPU seconds):",
            self.socket_sessions,
            if self.rate_pps == 0 { "as fast as possible".to_string() } else { format!("{} kpps", self.rate_pps / 1000) }
        );
        let relays = [
            ("socket backend", self.ours),
            ("kernel_relay", self.kernel),
            ("rtpengine", self.rtpengine),
            ("AF_XDP", self.af_xdp),
        ];
        for (name, f) in relays {
            if let Some(f) = f {
                println!(
                    "  {name:<15} {:>7.1} kpps per core  delivered {:>7.1} kpps  offered {:>7.1} kpps  busy {:>5.1}%  {:>6.3} us/packet{}",
                    f.kpps(),
                    f.wall_kpps(),
                    f.offered_kpps(),
                    f.busy() * 100.0,
                    f.cpu_us_per_packet().unwrap_or(f64::NAN),
                    f.self_reported
                        .map(|n| format!("  (own count {:.1} kpps)", n as f64 / f.window_s / 1e3))
                        .unwrap_or_default()
                );
            }
        }
        for (name, f) in relays {
            let Some(f) = f else { continue };
            if f.forwarded < f.offered * 9 / 10 {
                println!(
                    "note: {name} relayed {:.0}% of the load offered: it was overloaded (figures per CPU second still hold)",
                    f.forwarded as f64 * 100.0 / f.offered.max(1) as f64
                );
            }
        }
        for note in &self.notes {
            println!("note: {note}");
        }
        let json = serde_json::json!({
            "relay_mpps": self.relay_mpps(),
            "relay_cycles_per_packet": self.dpdk.map(|d| d.cycles_per_packet),
            "testpmd_io_mpps": self.testpmd_mpps,
            "relay_vs_testpmd": relay_vs_testpmd,
            "socket_kpps": self.socket_kpps(),
            "kernel_relay_kpps": self.kernel_kpps(),
            "socket_wall_kpps": self.ours.map(|f| f.wall_kpps()),
            "kernel_relay_wall_kpps": self.kernel.map(|f| f.wall_kpps()),
            "socket_busy": self.ours.map(|f| f.busy()),
            "kernel_relay_busy": self.kernel.map(|f| f.busy()),
            "rtpengine_busy": self.rtpengine.map(|f| f.busy()),
            "socket_vs_kernel": socket_vs_kernel,
            "socket_cpu_us_per_packet": self.our_cpu(),
            "kernel_relay_cpu_us_per_packet": self.kernel.and_then(|f| f.cpu_us_per_packet()),
            "rtpengine_cpu_us_per_packet": self.rtpengine_cpu(),
            "socket_vs_rtpengine": socket_vs_rtpengine,
            "xdp_kpps": self.xdp_kpps(),
            "xdp_wall_kpps": self.af_xdp.map(|f| f.wall_kpps()),
            "xdp_busy": self.af_xdp.map(|f| f.busy()),
            "xdp_cpu_us_per_packet": self.xdp_cpu(),
            "xdp_vs_kernel": xdp_vs_kernel,
            "xdp_vs_rtpengine": xdp_vs_rtpengine,
            "relay_busy": self.dpdk.map(|d| d.busy),
            "sessions": self.dpdk.map_or(self.dpdk_sessions, |d| d.sessions),
            "socket_sessions": self.socket_sessions,
            "offered_kpps": self.rate_pps as f64 / 1e3,
            "quick": self.quick,
        });
        println!("{json}");
    }
}
