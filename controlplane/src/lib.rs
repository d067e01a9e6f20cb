//! Bridgehead's control plane: configuration, the admin HTTP server (health,
//! Prometheus metrics, the dataplane's JSON control API), and the appliance
//! process that ties them to the dataplane.
//!
//! ```text
//!   bridgehead (main.rs)
//!     ├── config      one TOML file, every error at once
//!     ├── appliance   starts the dataplane, the admin server, the event pump;
//!     │               stops them on SIGTERM/SIGINT
//!     ├── admin       /live /ready /metrics, /v1/dataplane/...
//!     │     └── metrics  prometheus-client collectors read at scrape time
//!     ├── store       accounts, keys, applications, numbers, trunks, call
//!     │               records: the `Store` trait, on SQLite (docs/store.md)
//!     └── token       Twilio-shaped access tokens: sans-IO verify, mint
//!                     (docs/tokens.md)
//! ```
//!
//! Calls, clients, instructions and routes land here in later releases,
//! each in a module named after its concept (see docs/architecture.md).

pub mod admin;
pub mod api;
pub mod appliance;
pub mod call;
pub mod client;
pub mod config;
pub mod https;
pub mod instructions;
pub mod net;
pub mod routes;
pub mod sdp;
pub mod sip;
pub mod store;
pub mod tls;
pub mod token;
