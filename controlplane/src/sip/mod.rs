//! SIP message layer: a sans-IO parser and serializer of our own
//! (RFC 3261 syntax, checked against the RFC 4475 torture messages).
//!
//! ```text
//!   transport (UDP datagrams, TCP/TLS streams: next step)
//!     │ bytes                 framing   StreamFramer: cut a stream into messages,
//!     ▼                                 CRLF keep-alives, size limits
//!   validate::verdict ──────► Accept(Message) → transactions (next step)
//!     │                       Reject{status, response bytes} → send back
//!     │                       Drop
//!     ├── message    Message = Request | Response: start line, headers in
//!     │              order (one shared buffer, `Bytes` slices), body
//!     ├── header     HeaderName: canonical + compact names, case-insensitive
//!     ├── typed      Via, NameAddr (From/To/Contact/Route), CSeq, MediaType,
//!     │              Auth (digest params)... decoded on demand, borrowed
//!     ├── uri        Uri / SipUri (sip, sips, tel; others opaque)
//!     ├── serialize  Response::for_request, to_bytes with Content-Length
//!     └── lex        character classes, LWS/folding, quotes, comma lists
//! ```
//!
//! Parsing a message allocates the header index (`Vec<Header>`) and
//! nothing else; names, values and the body are slices of the received
//! buffer. Typed views borrow from the values.
//!
//! Use:
//! ```
//! use controlplane::sip::{verdict, Verdict};
//! let dgram = b"OPTIONS sip:gw@192.0.2.1 SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nFrom: <sip:a@192.0.2.9>;tag=1\r\n\
//! To: <sip:gw@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n";
//! match verdict(dgram) {
//!     Verdict::Accept(msg) => assert_eq!(msg.headers().cseq().unwrap().seq, 1),
//!     Verdict::Reject { response, .. } => { /* send `response` back */ }
//!     Verdict::Drop { .. } => {}
//! }
//! ```

pub mod digest;
pub mod framing;
pub mod header;
pub mod layer;
mod lex;
pub mod message;
pub mod serialize;
pub mod transaction;
pub mod transport;
pub mod typed;
pub mod uri;
pub mod validate;

pub use framing::{classify_datagram, DatagramKind, Frame, FramingError, StreamFramer};
pub use header::{Header, HeaderName, Headers};
pub use lex::Params;
pub use message::{BodyFraming, Limits, Message, Method, ParseError, Request, Response};
pub use serialize::default_reason;
pub use typed::{Auth, CSeq, Contact, HeaderError, MediaType, NameAddr, Via};
pub use uri::{Host, Scheme, SipUri, Uri, UriError};
pub use validate::{verdict, verdict_with, Policy, Verdict};

#[cfg(test)]
mod proptests;
