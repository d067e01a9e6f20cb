//! The bench's own network namespace, so that nothing it does reaches the
//! host's interfaces (the AF_XDP part attaches an XDP program to `lo`).

use nix::sched::{unshare, CloneFlags};

/// Moves this (still single-threaded) process into a new network namespace,
/// with loopback up. Frames the AF_XDP backend sends on `lo` carry no route,
/// unlike the kernel's own loopback traffic, so they are received as if from
/// outside: 127/8 must be routable (`route_localnet`) and a local source
/// acceptable (`accept_local`). Neither changes the path of datagrams the
/// kernel itself loops back (they keep the route they were sent with).
pub fn enter_private() -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e} (needs root)"))?;
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("ip link set lo up: {e}"))?;
    if !up.success() {
        return Err("ip link set lo up failed".into());
    }
    for knob in ["route_localnet", "accept_local"] {
        let path = format!("/proc/sys/net/ipv4/conf/lo/{knob}");
        std::fs::write(&path, "1").map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}
