//! Instructions: what a call does, as told by the customer's web application.
//!
//! A call's application answers HTTP requests with TwiML; this module turns
//! those answers into actions, without doing any I/O itself:
//!
//! ```text
//!   call layer ──Input──▶ Interpreter ──Output──▶ call layer / HTTP shell
//!                           │  uses
//!                           ├── twiml      document -> typed verbs (limits, attribute checks)
//!                           ├── params     the form parameters a Twilio app expects
//!                           └── fetch      what to request, resolve URLs, fetch errors
//!   HTTP shell (http::WebhookClient) ── signature ──▶ X-Twilio-Signature on every request
//!   codes: the Twilio error codes every failure is reported with
//! ```
//!
//! The interpreter is a sans-IO state machine (see DESIGN.md, "Sans-IO
//! cores"): the HTTP client that performs [`Output::Fetch`] and the call
//! machinery that performs `StartDial`, `Answer`, `Hangup` live elsewhere and
//! feed results back as [`Input`]s.

pub mod codes;
pub mod fetch;
pub mod http;
pub mod interpreter;
pub mod method;
pub mod params;
pub mod signature;
pub mod twiml;

pub use codes::ErrorCode;
pub use fetch::{Fetch, FetchError, FetchId, FetchPurpose};
pub use interpreter::{
    CallContext, DialCallStatus, DialOutcome, ErrorRecord, Input, Interpreter, Limits, Output, Webhook,
};
pub use method::Method;
pub use twiml::{Document, ParseError, Verb};
