//! The appliance's SIP user agent while the call machinery is being built:
//! it answers OPTIONS (carriers ping with it), refuses requests from
//! addresses no trunk allows with 403 at no further cost, and answers the
//! methods it does not serve yet with 501 and an `Allow` header.

use super::layer::Event;
use super::message::{Method, Response};
use super::transport::SipHandle;
use super::{Header, HeaderName};
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::mpsc;

const ALLOW: &str = "OPTIONS";

pub async fn run(sip: SipHandle, mut events: mpsc::UnboundedReceiver<Event>, store: Arc<dyn Store>) {
    while let Some(event) = events.recv().await {
        let Event::Request { key, peer, request } = event else { continue };
        let code = match request.method {
            Method::Options => 200,
            _ => {
                let source = peer.addr.ip();
                let store = store.clone();
                let trunk = tokio::task::spawn_blocking(move || store.trunk_for_source(source)).await;
                match trunk {
                    Ok(Ok(Some(_))) => 501,
                    Ok(Ok(None)) => 403,
                    _ => 500,
                }
            }
        };
        let mut response = Response::for_request(&request, code, "");
        response.set_to_tag(&format!("bh{:x}", rand_tag()));
        response.headers.push(Header::new(HeaderName::Allow, ALLOW));
        if code == 200 {
            response.headers.push(Header::new(HeaderName::Accept, "application/sdp"));
        }
        sip.respond(key, response);
    }
}

fn rand_tag() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}
