//! The `bpf(2)` system call, and the XDP program that steers media to the
//! appliance's AF_XDP sockets.
//!
//! The program is small enough to write as instructions (the eBPF
//! instruction set, Documentation/bpf/standardization/instruction-set.rst),
//! and writing it here lets the media addresses and the port range be
//! constants of the program itself rather than a map it reads per packet:
//!
//! ```text
//!   frame shorter than Ethernet + IPv4 + UDP  ─▶ pass
//!   IPv4: IHL not 5, not UDP, a fragment      ─▶ pass   (IP options, reassembly: the kernel's)
//!   IPv6: next header not UDP                 ─▶ pass   (extension headers, fragments: the kernel's)
//!   another EtherType                         ─▶ pass   (802.1Q, ARP, ...)
//!   destination not a media address           ─▶ pass
//!   destination port outside the media range  ─▶ pass
//!   otherwise ─▶ bpf_redirect_map(xsks, rx queue, fallback)
//! ```
//!
//! `fallback` is what the hook does when no socket sits at the queue's slot:
//! `XDP_PASS` in service, `XDP_DROP` in tests, which makes "steered" visible
//! in a test run without any socket.

use crate::{Error, Result};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// XDP verdicts (`enum xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

// `enum bpf_cmd`.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE` / `XDP_FLAGS_DRV_MODE` (linux/if_link.h).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// Big enough for every `union bpf_attr` member used here; the kernel wants
/// the bytes it does not know to be zero, and they are.
const ATTR_LEN: usize = 128;

/// Where the hook runs the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver, before any socket buffer is built (veth, most 10G+
    /// NICs); AF_XDP may then run zero-copy.
    Driver,
    /// Generic XDP, after the socket buffer is built: works on every
    /// interface, loopback included; AF_XDP copies.
    Generic,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Driver => "driver",
            AttachMode::Generic => "generic",
        }
    }
}

/// `bpf(cmd, attr, size)`: returns the call's non-negative result.
fn sys_bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_LEN], what: &'static str) -> Result<i64> {
    // SAFETY: `attr` is a live, writable buffer of ATTR_LEN bytes laid out
    // as the `union bpf_attr` member of `cmd`; the pointers written into it
    // by the callers point to buffers that outlive this call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_LEN as libc::c_uint) };
    if r < 0 {
        return Err(Error::last(what));
    }
    Ok(r)
}

fn put_u32(attr: &mut [u8; ATTR_LEN], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; ATTR_LEN], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(attr: &[u8; ATTR_LEN], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&attr[at..at + 4]);
    u32::from_ne_bytes(b)
}

/// A file descriptor the bpf call returned.
fn owned(fd: i64) -> Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| Error::Invalid(format!("bpf returned fd {fd}")))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing
    // else in the process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An XSKMAP: rx queue index -> AF_XDP socket.
#[derive(Debug)]
pub struct SocketMap {
    fd: OwnedFd,
    slots: u32,
}

impl SocketMap {
    pub fn new(slots: u32) -> Result<SocketMap> {
        let mut attr = [0u8; ATTR_LEN];
        put_u32(&mut attr, 0, BPF_MAP_TYPE_XSKMAP);
        put_u32(&mut attr, 4, 4); // key: the queue index
        put_u32(&mut attr, 8, 4); // value: a socket's fd
        put_u32(&mut attr, 12, slots.max(1));
        attr[28..28 + 8].copy_from_slice(b"bh_xsks\0");
        let fd = owned(sys_bpf(BPF_MAP_CREATE, &mut attr, "creating the XSKMAP")?)?;
        Ok(SocketMap { fd, slots: slots.max(1) })
    }

    /// Puts the socket `socket` at `queue`'s slot.
    pub fn insert(&self, queue: u32, socket: &impl AsRawFd) -> Result<()> {
        if queue >= self.slots {
            return Err(Error::Invalid(format!("queue {queue} outside the map's {} slots", self.slots)));
        }
        let key = queue;
        let value = socket.as_raw_fd() as u32;
        let mut attr = [0u8; ATTR_LEN];
        put_u32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        put_u64(&mut attr, 8, &key as *const u32 as u64);
        put_u64(&mut attr, 16, &value as *const u32 as u64);
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr, "putting a socket in the XSKMAP")?;
        Ok(())
    }
}

/// What the steering program lets through to the sockets.
#[derive(Debug, Clone)]
pub struct Steering {
    pub addrs: Vec<Ipv4Addr>,
    pub addrs6: Vec<Ipv6Addr>,
    pub ports: RangeInclusive<u16>,
    /// The verdict when the queue has no socket: [`XDP_PASS`] in service.
    pub fallback: u32,
}

/// eBPF instruction encoding (`struct bpf_insn`, little-endian host).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code) | (u64::from(dst | (src << 4)) << 8) | (u64::from(off as u16) << 16) | (u64::from(imm as u32) << 32)
}

// Opcodes used (class | size/op | source).
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const TO_BE: u8 = 0xdc;
const JGT_X: u8 = 0x2d;
const JNE_K: u8 = 0x55;
const JGT_K: u8 = 0x25;
const JLT_K: u8 = 0xa5;
const JEQ_K: u8 = 0x15;
/// 32-bit compares: a media address must not be sign-extended.
const JEQ32_K: u8 = 0x16;
const JNE32_K: u8 = 0x56;
const JA: u8 = 0x05;
const LD_IMM64: u8 = 0x18;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;

/// Offsets in `struct xdp_md`.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE: i16 = 16;
/// Ethernet + IPv4 without options + UDP.
const HEADERS: i32 = 14 + 20 + 8;
/// Ethernet + IPv6 + UDP.
const HEADERS6: i32 = 14 + 40 + 8;

/// A tiny assembler: instructions, and jumps to labels resolved at the end.
struct Asm {
    code: Vec<u64>,
    /// (instruction index, label) of each jump to patch.
    jumps: Vec<(usize, Label)>,
    /// Where each label is (None: not placed yet).
    labels: Vec<Option<usize>>,
}

#[derive(Debug, Clone, Copy)]
struct Label(usize);

impl Asm {
    fn new() -> Asm {
        Asm { code: Vec::with_capacity(96), jumps: Vec::new(), labels: Vec::new() }
    }
    fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(insn(code, dst, src, off, imm));
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.jumps.push((self.code.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    fn place(&mut self, l: Label) {
        self.labels[l.0] = Some(self.code.len());
    }
    fn finish(mut self) -> Result<Vec<u64>> {
        for (at, l) in self.jumps {
            let to = self.labels[l.0].ok_or_else(|| Error::Invalid("steering program: a label never placed".into()))?;
            let off = i16::try_from(to as i64 - at as i64 - 1)
                .map_err(|_| Error::Invalid("steering program too long".into()))?;
            self.code[at] = (self.code[at] & !(0xffff << 16)) | (u64::from(off as u16) << 16);
        }
        Ok(self.code)
    }
}

impl Steering {
    /// The program's instructions, `map` being the XSKMAP's fd.
    pub fn assemble(&self, map: &SocketMap) -> Result<Vec<u64>> {
        if self.addrs.is_empty() && self.addrs6.is_empty() {
            return Err(Error::Invalid("no media address to steer".into()));
        }
        let mut a = Asm::new();
        let (pass, v6, port4, port6, check_port) =
            (a.new_label(), a.new_label(), a.new_label(), a.new_label(), a.new_label());
        // r6 = ctx; r2 = data; r3 = data_end.
        a.op(MOV64_X, 6, 1, 0, 0);
        a.op(LDX_W, 2, 6, MD_DATA, 0);
        a.op(LDX_W, 3, 6, MD_DATA_END, 0);
        // if data + HEADERS > data_end: pass (and the verifier knows the
        // first HEADERS bytes are readable below).
        a.op(MOV64_X, 4, 2, 0, 0);
        a.op(ADD64_K, 4, 0, 0, HEADERS);
        a.jump(JGT_X, 4, 3, 0, pass);
        // Loads are little-endian; the constants are the wire bytes read so.
        a.op(LDX_H, 5, 2, 12, 0); // EtherType
        if !self.addrs6.is_empty() {
            a.jump(JEQ_K, 5, 0, i32::from(u16::from_le_bytes([0x86, 0xdd])), v6);
        }
        if self.addrs.is_empty() {
            a.jump(JA, 0, 0, 0, pass);
        } else {
            a.jump(JNE_K, 5, 0, i32::from(u16::from_le_bytes([0x08, 0x00])), pass);
            a.op(LDX_B, 5, 2, 14, 0); // version and IHL
            a.jump(JNE_K, 5, 0, 0x45, pass);
            a.op(LDX_B, 5, 2, 23, 0); // protocol
            a.jump(JNE_K, 5, 0, 17, pass);
            a.op(LDX_H, 5, 2, 20, 0); // flags and fragment offset: MF or an offset is a fragment
            a.op(AND64_K, 5, 0, 0, i32::from(u16::from_le_bytes([0x3f, 0xff])));
            a.jump(JNE_K, 5, 0, 0, pass);
            a.op(LDX_W, 5, 2, 30, 0); // destination address
            for addr in &self.addrs {
                a.jump(JEQ32_K, 5, 0, u32::from_le_bytes(addr.octets()) as i32, port4);
            }
            a.jump(JA, 0, 0, 0, pass);
            a.place(port4);
            a.op(LDX_H, 5, 2, 36, 0); // destination port
            a.jump(JA, 0, 0, 0, check_port);
        }
        if !self.addrs6.is_empty() {
            // IPv6 with UDP as the first next header (extension headers,
            // fragments included, are the kernel's).
            a.place(v6);
            a.op(MOV64_X, 4, 2, 0, 0);
            a.op(ADD64_K, 4, 0, 0, HEADERS6);
            a.jump(JGT_X, 4, 3, 0, pass);
            a.op(LDX_B, 5, 2, 20, 0); // next header
            a.jump(JNE_K, 5, 0, 17, pass);
            for addr in &self.addrs6 {
                let next = a.new_label();
                for (i, word) in addr.octets().chunks_exact(4).enumerate() {
                    a.op(LDX_W, 5, 2, 38 + 4 * i as i16, 0); // destination address, word i
                    let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    a.jump(JNE32_K, 5, 0, w as i32, next);
                }
                a.jump(JA, 0, 0, 0, port6);
                a.place(next);
            }
            a.jump(JA, 0, 0, 0, pass);
            a.place(port6);
            a.op(LDX_H, 5, 2, 56, 0); // destination port
        }
        a.place(check_port);
        a.op(TO_BE, 5, 0, 0, 16);
        a.jump(JLT_K, 5, 0, i32::from(*self.ports.start()), pass);
        a.jump(JGT_K, 5, 0, i32::from(*self.ports.end()), pass);
        // return bpf_redirect_map(&xsks, ctx->rx_queue_index, fallback)
        a.op(LDX_W, 2, 6, MD_RX_QUEUE, 0);
        a.op(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map.fd.as_raw_fd());
        a.op(0, 0, 0, 0, 0);
        a.op(MOV64_K, 3, 0, 0, self.fallback as i32);
        a.op(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP);
        a.op(EXIT, 0, 0, 0, 0);
        a.place(pass);
        a.op(MOV64_K, 0, 0, 0, XDP_PASS as i32);
        a.op(EXIT, 0, 0, 0, 0);
        a.finish()
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads the steering program for `map` (which it keeps a reference to
    /// in the kernel).
    pub fn load(steering: &Steering, map: &SocketMap) -> Result<Program> {
        let code = steering.assemble(map)?;
        let license = b"Apache-2.0\0";
        let mut log = vec![0u8; 64 * 1024];
        let mut attr = [0u8; ATTR_LEN];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_XDP);
        put_u32(&mut attr, 4, code.len() as u32);
        put_u64(&mut attr, 8, code.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        put_u32(&mut attr, 24, 1); // log level: on failure
        put_u32(&mut attr, 28, log.len() as u32);
        put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
        attr[48..48 + 12].copy_from_slice(b"bh_steering\0");
        put_u32(&mut attr, 68, BPF_XDP);
        match sys_bpf(BPF_PROG_LOAD, &mut attr, "loading the steering program") {
            Ok(fd) => Ok(Program { fd: owned(fd)? }),
            Err(Error::Sys { source, .. }) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                Err(Error::Verifier { source, log: String::from_utf8_lossy(&log[..end]).into_owned() })
            }
            Err(e) => Err(e),
        }
    }

    /// Runs the program once on `frame` in the kernel (`BPF_PROG_TEST_RUN`)
    /// and returns its verdict.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32> {
        let mut out = vec![0u8; frame.len() + 512];
        let mut attr = [0u8; ATTR_LEN];
        put_u32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        put_u32(&mut attr, 8, frame.len() as u32);
        put_u32(&mut attr, 12, out.len() as u32);
        put_u64(&mut attr, 16, frame.as_ptr() as u64);
        put_u64(&mut attr, 24, out.as_mut_ptr() as u64);
        put_u32(&mut attr, 32, 1); // repeat
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr, "test-running the steering program")?;
        Ok(get_u32(&attr, 4))
    }

    /// Attaches the program to the interface `ifindex` in `mode`; it stays
    /// attached as long as the returned link is open.
    pub fn attach(&self, ifindex: u32, mode: AttachMode) -> Result<Link> {
        let mut attr = [0u8; ATTR_LEN];
        put_u32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        put_u32(&mut attr, 4, ifindex);
        put_u32(&mut attr, 8, BPF_XDP);
        put_u32(&mut attr, 12, if mode == AttachMode::Driver { XDP_FLAGS_DRV_MODE } else { XDP_FLAGS_SKB_MODE });
        let fd = owned(sys_bpf(BPF_LINK_CREATE, &mut attr, "attaching the steering program")?)?;
        Ok(Link { _fd: fd, mode })
    }
}

/// An attached program; closing it detaches the program.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
    pub mode: AttachMode,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP to `dst`:`port`, payload `len` bytes.
    pub fn udp_frame(dst: Ipv4Addr, port: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 42 + len];
        f[12] = 0x08;
        f[14] = 0x45;
        let total = (20 + 8 + len) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[192, 0, 2, 9]);
        f[30..34].copy_from_slice(&dst.octets());
        f[34..36].copy_from_slice(&4000u16.to_be_bytes());
        f[36..38].copy_from_slice(&port.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + len) as u16).to_be_bytes());
        f
    }

    const MEDIA6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xff00, 0x80c8);

    /// Ethernet + IPv6 + UDP to `dst`:`port`, payload `len` bytes.
    fn udp6_frame(dst: Ipv6Addr, port: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 62 + len];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((8 + len) as u16).to_be_bytes());
        f[20] = 17;
        f[21] = 64;
        f[22..38].copy_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        f[38..54].copy_from_slice(&dst.octets());
        f[54..56].copy_from_slice(&4000u16.to_be_bytes());
        f[56..58].copy_from_slice(&port.to_be_bytes());
        f[58..60].copy_from_slice(&((8 + len) as u16).to_be_bytes());
        f
    }

    fn program(fallback: u32) -> Program {
        let map = SocketMap::new(1).expect("XSKMAP (needs root and a kernel with AF_XDP)");
        let steering = Steering {
            addrs: vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(198, 51, 100, 200)],
            addrs6: vec![MEDIA6, "2001:db8::2:1".parse().unwrap()],
            ports: 20000..=29999,
            fallback,
        };
        Program::load(&steering, &map).expect("the verifier accepts the steering program")
    }

    #[test]
    fn media_is_steered_and_everything_else_passes() {
        // With no socket in the map the fallback shows what was steered.
        let p = program(XDP_DROP);
        let media = Ipv4Addr::new(198, 51, 100, 200);
        assert_eq!(p.test_run(&udp_frame(media, 20000, 172)).unwrap(), XDP_DROP);
        assert_eq!(p.test_run(&udp_frame(media, 29999, 172)).unwrap(), XDP_DROP);
        assert_eq!(p.test_run(&udp_frame(Ipv4Addr::LOCALHOST, 24000, 0)).unwrap(), XDP_DROP);
        for (why, frame) in [
            ("port below the range", udp_frame(media, 19999, 172)),
            ("port above the range", udp_frame(media, 30000, 172)),
            ("SIP", udp_frame(media, 5060, 400)),
            ("another address", udp_frame(Ipv4Addr::new(198, 51, 100, 201), 20000, 172)),
            ("too short", udp_frame(media, 20000, 0)[..41].to_vec()),
        ] {
            assert_eq!(p.test_run(&frame).unwrap(), XDP_PASS, "{why}");
        }
        let mut tcp = udp_frame(media, 20000, 172);
        tcp[23] = 6;
        let mut fragment = udp_frame(media, 20000, 172);
        fragment[20] = 0x20; // more fragments
        let mut options = udp_frame(media, 20000, 172);
        options[14] = 0x46;
        let mut vlan = udp_frame(media, 20000, 172);
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        let mut v6 = udp_frame(media, 20000, 172);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        for (why, frame) in
            [("TCP", tcp), ("fragment", fragment), ("IP options", options), ("802.1Q", vlan), ("IPv6", v6)]
        {
            assert_eq!(p.test_run(&frame).unwrap(), XDP_PASS, "{why}");
        }
    }

    #[test]
    fn ipv6_media_is_steered_and_the_rest_passes() {
        let p = program(XDP_DROP);
        assert_eq!(p.test_run(&udp6_frame(MEDIA6, 20000, 172)).unwrap(), XDP_DROP);
        assert_eq!(p.test_run(&udp6_frame("2001:db8::2:1".parse().unwrap(), 29999, 172)).unwrap(), XDP_DROP);
        let mut other_word = MEDIA6.octets();
        other_word[15] ^= 1; // differs in the last word only
        let mut hop_by_hop = udp6_frame(MEDIA6, 20000, 172);
        hop_by_hop[20] = 0;
        for (why, frame) in [
            ("port outside", udp6_frame(MEDIA6, 30000, 172)),
            ("another address", udp6_frame(Ipv6Addr::from(other_word), 20000, 172)),
            ("an extension header", hop_by_hop),
            ("too short", udp6_frame(MEDIA6, 20000, 0)[..61].to_vec()),
        ] {
            assert_eq!(p.test_run(&frame).unwrap(), XDP_PASS, "{why}");
        }
    }

    #[test]
    fn a_program_for_one_family_only_loads_and_passes_the_other() {
        let map = SocketMap::new(1).unwrap();
        let only6 = Steering { addrs: vec![], addrs6: vec![MEDIA6], ports: 20000..=29999, fallback: XDP_DROP };
        let p = Program::load(&only6, &map).expect("verifier");
        assert_eq!(p.test_run(&udp6_frame(MEDIA6, 20000, 172)).unwrap(), XDP_DROP);
        assert_eq!(p.test_run(&udp_frame(Ipv4Addr::LOCALHOST, 20000, 172)).unwrap(), XDP_PASS);
        let only4 =
            Steering { addrs: vec![Ipv4Addr::LOCALHOST], addrs6: vec![], ports: 20000..=29999, fallback: XDP_DROP };
        let p = Program::load(&only4, &map).expect("verifier");
        assert_eq!(p.test_run(&udp6_frame(MEDIA6, 20000, 172)).unwrap(), XDP_PASS);
        assert_eq!(p.test_run(&udp_frame(Ipv4Addr::LOCALHOST, 20000, 172)).unwrap(), XDP_DROP);
    }

    #[test]
    fn in_service_a_queue_without_socket_passes_media_to_the_kernel() {
        let p = program(XDP_PASS);
        assert_eq!(p.test_run(&udp_frame(Ipv4Addr::LOCALHOST, 20000, 172)).unwrap(), XDP_PASS);
    }

    #[test]
    fn an_address_with_the_top_bit_set_matches() {
        // 10.0.0.200 read little-endian is negative as an i32 immediate.
        let map = SocketMap::new(1).unwrap();
        let steering = Steering {
            addrs: vec![Ipv4Addr::new(10, 0, 0, 200)],
            addrs6: vec![],
            ports: 1..=65535,
            fallback: XDP_DROP,
        };
        let p = Program::load(&steering, &map).unwrap();
        assert_eq!(p.test_run(&udp_frame(Ipv4Addr::new(10, 0, 0, 200), 7078, 160)).unwrap(), XDP_DROP);
        assert_eq!(p.test_run(&udp_frame(Ipv4Addr::new(10, 0, 0, 201), 7078, 160)).unwrap(), XDP_PASS);
    }
}
