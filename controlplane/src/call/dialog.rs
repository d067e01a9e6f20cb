//! One SIP dialog of a call leg (RFC 3261 12): what we need to send
//! requests inside it (BYE, re-INVITE, ACK for a 2xx) and to build the
//! responses and requests that create it.

use bytes::Bytes;

use crate::sip::layer::Peer;
use crate::sip::message::{Method, Request, Response};
use crate::sip::{Contact, Header, HeaderName, Headers};

/// The state of one dialog, from our side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dialog {
    pub(crate) call_id: String,
    /// Our address-of-record with our tag: From of what we send.
    pub(crate) local: String,
    /// Theirs with their tag: To of what we send.
    pub(crate) remote: String,
    /// Request-URI of what we send: their Contact.
    pub(crate) remote_target: String,
    /// Route header values of what we send, in order.
    pub(crate) route_set: Vec<String>,
    pub(crate) local_cseq: u32,
    /// Where in-dialog requests go. The route set is put in the request,
    /// but the next hop is where the dialog-creating message came from (a
    /// trunk or a SIP URI we resolved): no DNS in the core.
    pub(crate) peer: Peer,
}

/// The first Contact URI of a message, if it has one.
pub(crate) fn contact_uri(headers: &Headers) -> Option<String> {
    match headers.contact().ok()? {
        Some(Contact::Addrs(list)) => list.first().map(|a| a.uri_str.to_string()),
        _ => None,
    }
}

/// `<uri>` of every Record-Route entry, in the order received.
fn record_route(headers: &Headers) -> Vec<String> {
    headers.record_routes().map(|l| l.iter().map(|a| format!("<{}>", a.uri_str)).collect()).unwrap_or_default()
}

fn header_str(headers: &Headers, id: HeaderName) -> Option<String> {
    headers.get(id).and_then(|h| h.value_str()).map(str::to_string)
}

impl Dialog {
    /// The dialog we form as UAS by answering `invite` with `local_tag`.
    pub(crate) fn as_uas(invite: &Request, peer: Peer, local_tag: &str) -> Option<Dialog> {
        let h = &invite.headers;
        Some(Dialog {
            call_id: h.call_id().ok()?.to_string(),
            local: format!("{};tag={local_tag}", header_str(h, HeaderName::To)?),
            remote: header_str(h, HeaderName::From)?,
            remote_target: contact_uri(h)?,
            route_set: record_route(h),
            local_cseq: 0,
            peer,
        })
    }

    /// The dialog a 2xx (or 1xx with a tag) to our `invite` forms (UAC).
    pub(crate) fn as_uac(invite: &Request, response: &Response, peer: Peer) -> Option<Dialog> {
        let mut route_set = record_route(&response.headers);
        route_set.reverse();
        Some(Dialog {
            call_id: invite.headers.call_id().ok()?.to_string(),
            local: header_str(&invite.headers, HeaderName::From)?,
            remote: header_str(&response.headers, HeaderName::To)?,
            remote_target: contact_uri(&response.headers).unwrap_or_else(|| invite.uri_str().to_string()),
            route_set,
            local_cseq: invite.headers.cseq().ok()?.seq,
            peer,
        })
    }

    fn build(&self, method: Method, cseq: u32) -> Request {
        let mut headers = Headers::new();
        headers.push(Header::new(HeaderName::MaxForwards, "70"));
        headers.push(Header::new(HeaderName::From, self.local.clone()));
        headers.push(Header::new(HeaderName::To, self.remote.clone()));
        headers.push(Header::new(HeaderName::CallId, self.call_id.clone()));
        headers.push(Header::new(HeaderName::CSeq, format!("{cseq} {}", method.as_str())));
        for r in &self.route_set {
            headers.push(Header::new(HeaderName::Route, r.clone()));
        }
        Request { method, uri: Bytes::from(self.remote_target.clone()), headers, body: Bytes::new() }
    }

    /// A new request in the dialog (not ACK): the next CSeq number.
    pub(crate) fn request(&mut self, method: Method) -> Request {
        self.local_cseq += 1;
        self.build(method, self.local_cseq)
    }

    /// The ACK for the 2xx to our INVITE with CSeq number `cseq`.
    pub(crate) fn ack(&self, cseq: u32) -> Request {
        self.build(Method::Ack, cseq)
    }
}

/// Puts an SDP body on a message's headers.
pub(crate) fn with_sdp(headers: &mut Headers, body: &mut Bytes, sdp: String) {
    headers.set(HeaderName::ContentType, "application/sdp");
    *body = Bytes::from(sdp);
}

/// The CANCEL for our `invite` (RFC 3261 9.1): same Request-URI, Call-ID,
/// From, To, CSeq number and Route; the top Via (with the INVITE's branch)
/// is added by whoever sends it.
pub(crate) fn cancel_for(invite: &Request) -> Request {
    let mut headers = Headers::new();
    for id in [HeaderName::MaxForwards, HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::Route] {
        for h in invite.headers.get_all(id) {
            headers.push(h.clone());
        }
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    headers.push(Header::new(HeaderName::CSeq, format!("{seq} CANCEL")));
    Request { method: Method::Cancel, uri: invite.uri.clone(), headers, body: Bytes::new() }
}
