//! Finds the system's DPDK with pkg-config, generates Rust bindings for the
//! headers listed in `csrc/wrapper.h` into `OUT_DIR`, and compiles two C files
//! into a static library: the wrappers bindgen writes for DPDK's `static
//! inline` functions (the burst and mbuf fast path lives there) and our shim
//! for what DPDK offers only as macros.
//!
//! # Driver loading
//!
//! We link the shared DPDK libraries (`pkg-config --libs libdpdk`, no
//! `--static`) and link **no** poll-mode driver. Debian's `librte_eal.so`
//! is built with a default plugin directory
//! (`/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0`, the `RTE_EAL_PMD_PATH` baked
//! into the library), and in a shared build `rte_eal_init` `dlopen`s every
//! driver found there before it probes the buses. So `--vdev=net_null0`,
//! `net_ring0`, `net_tap0` and `net_af_packet0` work with nothing linked, and
//! so do the PCI drivers of real NICs. The alternatives are worse:
//! linking `librte_net_null.so` and friends with `--no-as-needed` needs an
//! rpath to that non-standard directory and then loads the drivers twice
//! (once linked, once from the plugin directory, which EAL scans anyway); the
//! static archives drag in every driver's system dependencies (ibverbs,
//! libbpf, IPSec_MB, ...). A caller who wants drivers from somewhere else
//! passes EAL's own `-d DIR_OR_FILE` in the arguments to `Eal::init`.

use std::env;
use std::path::PathBuf;

/// The DPDK release these bindings are written against (Debian 12).
const DPDK_VERSION: &str = "22.11";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let csrc = manifest_dir.join("csrc");
    let wrapper = csrc.join("wrapper.h");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", csrc.display());

    // Emits the -L / -l lines for the shared libraries (see "Driver
    // loading" above for why no driver is among them).
    pkg_config::Config::new().atleast_version(DPDK_VERSION).probe("libdpdk").unwrap_or_else(|e| {
        panic!("libdpdk >= {DPDK_VERSION} not found by pkg-config (Debian: apt-get install libdpdk-dev): {e}")
    });

    // Passed whole to both clang (bindgen) and cc: the -I paths, `-include
    // rte_config.h` and the `-march=` the inline functions in DPDK's headers
    // need.
    let cflags = pkg_config_cflags();

    let builder = bindgen::Builder::default()
        .header(wrapper.to_string_lossy())
        .clang_arg(format!("-I{}", csrc.display()))
        .clang_args(cflags.iter().cloned())
        .allowlist_function("rte_.*")
        .allowlist_function("bh_.*")
        .allowlist_item("BH_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        // The only layout bindgen 0.72 cannot express in Rust: a
        // `__rte_packed` struct holding a union whose bitfield struct is
        // 2-aligned (rustc: "packed type cannot transitively contain a
        // `#[repr(align)]` type", E0588). Opaque keeps its size and alignment
        // as a byte blob, so the structs embedding it still lay out right.
        // The other packed protocol headers (rte_arp_ipv4, rte_gtp_psc_*)
        // generate fine. We parse protocol headers in Rust, not through these.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .derive_default(true)
        .derive_debug(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .wrap_static_fns(true)
        .wrap_static_fns_path(out_dir.join("static_fns"))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));

    let bindings = builder.generate().expect("bindgen could not generate the DPDK bindings");
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("could not write bindings.rs to OUT_DIR");

    let mut c = cc::Build::new();
    c.file(out_dir.join("static_fns.c")).file(csrc.join("shim.c")).include(&csrc).warnings(false).opt_level(3);
    for flag in &cflags {
        c.flag(flag);
    }
    c.compile("bridgehead_dpdk_shim");
}

/// `pkg-config --cflags libdpdk`, split into words (`-include FILE` stays
/// two words, which clang and cc both take).
fn pkg_config_cflags() -> Vec<String> {
    let out = std::process::Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("could not run pkg-config");
    assert!(out.status.success(), "pkg-config --cflags libdpdk failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("pkg-config printed non-UTF-8").split_whitespace().map(str::to_owned).collect()
}
