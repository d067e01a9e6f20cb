#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Made from the project's own fixtures, read in place and never copied into
the repository: the RFC 4475 torture messages (../shared/testdata/rfc4475),
the sipp scenarios' messages (test-harness/sipp), the example configuration;
plus the small hand-written seeds in fuzz/seeds/<target>/, and tokens,
fleet proofs and packets built here (signed with the keys the targets use).
The corpora are not committed (fuzz/.gitignore); scripts/fuzz.sh runs this
before fuzzing. Usage: scripts/fuzz-seeds.py [OUT_DIR]
"""

import base64
import hashlib
import hmac
import json
import pathlib
import re
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"
RFC4475 = ROOT.parent / "shared" / "testdata" / "rfc4475"
if not RFC4475.is_dir():
    # A worktree sits beside main: shared/ is beside the workspace root.
    RFC4475 = pathlib.Path("/work/shared/testdata/rfc4475")

corpora = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    corpora.setdefault(target, []).append(data)


# ---------------------------------------------------------------- SIP, SDP


def sip_messages():
    if RFC4475.is_dir():
        for f in sorted(RFC4475.glob("*.sip")):
            yield f.read_bytes()
    else:
        print(f"fuzz-seeds: {RFC4475} not found, no RFC 4475 seeds", file=sys.stderr)
    placeholders = {
        "service": "1000", "target": "192.0.2.1:5060", "tr": "UDP", "tr_param": "udp",
        "local_ip": "192.0.2.9", "local_port": "5062", "pid": "77", "call_number": "1",
        "caller": "+15550100", "call_id": "1-77@192.0.2.9", "rtp_ip": "192.0.2.9",
        "rtp_port": "6000", "cseq": "1", "media_ip": "192.0.2.1",
    }
    for f in sorted((ROOT / "test-harness" / "sipp").glob("*.xml")):
        for block in re.findall(r"<!\[CDATA\[(.*?)\]\]>", f.read_text(), re.S):
            lines = [line.strip() for line in block.strip("\n").split("\n")]
            text = "\r\n".join(lines).strip("\r\n")
            text = re.sub(r"\[last_[A-Za-z-]+:?\]", "", text)
            text = re.sub(r"\[(\w+)\]", lambda m: placeholders.get(m.group(1), "x"), text)
            head, _, body = text.partition("\r\n\r\n")
            body = body + "\r\n" if body else ""
            head = head.replace("Content-Length: [len]", f"Content-Length: {len(body)}")
            head = re.sub(r"Content-Length: *x", f"Content-Length: {len(body)}", head)
            yield (head + "\r\n\r\n" + body).encode()


def body_of(message):
    _, sep, body = message.partition(b"\r\n\r\n")
    return body if sep else b""


for i, m in enumerate(sip_messages()):
    seed("sip_message", m)
    # The stream target's first byte picks the read sizes.
    seed("sip_stream", bytes([i % 256]) + m + b"\r\n\r\n" + m)
    if b"v=0" in body_of(m):
        seed("sdp", body_of(m))

# ---------------------------------------------------------------- tokens

NOW = 1_700_000_000
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
KEY = "SK0123456789abcdef0123456789abcdef"
SECRET = b"fuzz-secret-fuzz-secret-fuzz-0001"  # fuzz/fuzz_targets/token.rs


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header, claims, alg=hashlib.sha256):
    signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(SECRET, signing.encode(), alg).digest())


def claims(**over):
    c = {
        "jti": f"{KEY}-{NOW}", "iss": KEY, "sub": ACCOUNT, "iat": NOW, "nbf": NOW, "exp": NOW + 3600,
        "grants": {"identity": "alice", "voice": {
            "incoming": {"allow": True},
            "outgoing": {"application_sid": "AP0123456789abcdef0123456789abcdef", "params": {"to": "+15550100001"}},
        }},
    }
    c.update(over)
    return c


HEADER = {"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"}
tokens = [
    jwt(HEADER, claims()),
    jwt(dict(HEADER, alg="HS384"), claims(), hashlib.sha384),
    jwt(dict(HEADER, alg="HS512"), claims(), hashlib.sha512),
    jwt(HEADER, claims(exp=NOW - 1)),
    jwt(HEADER, claims(nbf=NOW + 7200)),
    jwt(HEADER, claims(grants={"identity": ""})),
    jwt(dict(HEADER, alg="none"), claims()),
]
for t in tokens:
    seed("token", t)

# ---------------------------------------------------------------- client frames

for t in tokens[:1]:
    seed("client_protocol", json.dumps({"type": "listen", "version": "1.6", "payload": {"token": t}}))
OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n"
seed("client_protocol", json.dumps({"type": "invite", "version": "1.6", "payload": {
    "callsid": "TJSce7c3bc2-4e68", "sdp": OFFER, "twilio": {"params": "to=%2B15550100&x=a+b&y"}}}))
seed("client_protocol", json.dumps({"type": "register", "version": "1.6", "payload": {"media": {"audio": True}}}))
seed("client_protocol", "\n")
seed("sdp", OFFER)

# ---------------------------------------------------------------- fleet proofs

FLEET_KEY = b"fuzz-fleet-key"  # fuzz/fuzz_targets/fleet_proof.rs
derived = hashlib.sha256(b"bridgehead fleet sip v1\0" + FLEET_KEY).digest()
subject = "call-1@192.0.2.9\nAC0123456789abcdef0123456789abcdef\nalice\nanchor"
for appliance, ts, now in [("us1-a", NOW, NOW), ("de1", NOW, NOW + 61), ("x", 0, 0)]:
    sig = hmac.new(derived, f"{appliance}\n{ts}\n{subject}".encode(), hashlib.sha256).hexdigest()
    seed("fleet_proof", struct.pack("<Q", now) + f"{appliance};ts={ts};sig={sig}\0{subject}".encode())

# ---------------------------------------------------------------- config

seed("config", (ROOT / "controlplane" / "config" / "bridgehead.example.toml").read_bytes())

# ---------------------------------------------------------------- packets


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
V4_A, V4_B = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 1])
V6_A = bytes.fromhex("20010db8000000000000000000000010")
V6_B = bytes.fromhex("20010db8000000000000000000000001")


def rtp(pt=0, seq=1, ts=160, ssrc=0x11223344, payload=b"\xd5" * 160, marker=False):
    return bytes([0x80, (0x80 if marker else 0) | pt]) + struct.pack("!HII", seq, ts, ssrc) + payload


RTP = rtp()
RTP_EXT = bytes([0x90, 0]) + struct.pack("!HII", 2, 320, 1) + struct.pack("!HH", 0xBEDE, 1) + b"\x10\xff\0\0" + b"\xd5" * 20
RTP_PAD = bytes([0xA1, 8]) + struct.pack("!HII", 3, 480, 1) + struct.pack("!I", 7) + b"\x55" * 20 + b"\0\0\x03"
DTMF = rtp(pt=101, marker=True, payload=bytes([5, 0x0A, 0x01, 0x40]))
SR = bytes([0x81, 200]) + struct.pack("!H", 12) + struct.pack("!I", 0x11223344) + b"\0" * 20 + b"\0" * 24
SDES = bytes([0x81, 202]) + struct.pack("!H", 6) + struct.pack("!I", 0x11223344) + b"\x01\x0ecarrier@host!!" + b"\0\0"
BYE = bytes([0x81, 203]) + struct.pack("!H", 3) + struct.pack("!I", 0x11223344) + b"\x03bye"
STUN = struct.pack("!HHI", 0x0001, 8, 0x2112A442) + b"\x01" * 12 + struct.pack("!HH", 0x0006, 4) + b"user"
DTLS = bytes([22, 0xFE, 0xFD]) + b"\0" * 10


def udp4(payload, sport=4000, dport=20000):
    u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = V4_A + V4_B + struct.pack("!BBH", 0, 17, len(u))
    return u[:6] + struct.pack("!H", csum(pseudo + u) or 0xFFFF) + u[8:]


def ipv4(payload, proto=17):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, V4_A, V4_B)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def ipv6(payload, nh=17, hop=64):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, hop) + V6_A + V6_B + payload


def eth(payload, ethertype, vlan=None):
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return MAC_B + MAC_A + tag + struct.pack("!H", ethertype) + payload


ns = bytearray(struct.pack("!BBHI", 135, 0, 0, 0) + V6_B + bytes([1, 1]) + MAC_A)
ns[2:4] = struct.pack("!H", csum(V6_A + V6_B + struct.pack("!IxxxB", len(ns), 58) + bytes(ns)))
arp_req = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + MAC_A + V4_A + b"\0" * 6 + V4_B
for frame in [
    eth(ipv4(udp4(RTP)), 0x0800),
    eth(ipv4(udp4(SR + SDES)), 0x0800, vlan=100),
    eth(ipv6(struct.pack("!HHHH", 4000, 20000, 8 + len(STUN), 0) + STUN), 0x86DD),
    eth(ipv6(bytes(ns), nh=58, hop=255), 0x86DD),
    eth(arp_req + b"\0" * 18, 0x0806),
]:
    seed("wire_frame", frame)

media = [RTP, RTP_EXT, RTP_PAD, DTMF, SR + SDES + BYE, STUN, DTLS]
for p in media:
    seed("media_packet", p)
# A stream through the engine: length byte (top bit: leg), datagram.
stream = b""
for i, p in enumerate([rtp(seq=s) for s in range(1, 4)] + [SR + SDES, DTMF, rtp(pt=8, seq=9, ssrc=5)]):
    p = p[:127]
    stream += bytes([len(p) | (0x80 if i % 3 == 2 else 0)]) + p
seed("media_packet", stream)

# ---------------------------------------------------------------- hand-written

seeds = ROOT / "fuzz" / "seeds"
for target_dir in sorted(p for p in seeds.iterdir() if p.is_dir()):
    for f in sorted(target_dir.iterdir()):
        seed(target_dir.name, f.read_bytes())

for target, items in sorted(corpora.items()):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    for data in items:
        (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)
    print(f"fuzz-seeds: {target}: {len(items)} seeds")
