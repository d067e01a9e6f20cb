//! RFC 3261 section 17 transaction state machines, without I/O.
//!
//! A transaction is given `now` and inputs (a response or a retransmitted
//! request that matched it, a timer firing) and returns what to do: send
//! these bytes, tell the transaction user (the call) about a response or a
//! timeout, or forget the transaction. The transaction layer (matching
//! messages to transactions by branch, running the timers) is the thin
//! shell around these.
//!
//! ```text
//! INVITE client:     Calling ─1xx─▶ Proceeding ─300-699─▶ Completed ─D─▶ Terminated
//!                       └────────────── 2xx (to the TU) ───────────────────▶ Terminated
//! non-INVITE client: Trying ─1xx─▶ Proceeding ─final─▶ Completed ─K─▶ Terminated
//! INVITE server:     Proceeding ─300-699─▶ Completed ─ACK─▶ Confirmed ─I─▶ Terminated
//!                       └── 2xx ──▶ Terminated (the TU retransmits 2xx until ACK)
//! non-INVITE server: Trying ─1xx─▶ Proceeding ─final─▶ Completed ─J─▶ Terminated
//! ```

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// RFC 3261 timer values (17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate.
    pub t1: Duration,
    /// Largest retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Longest time a message stays in the network.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

/// What a transaction asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the transaction's peer.
    Transmit(Bytes),
    /// Hand this response (by status) to the transaction user.
    Deliver(u16),
    /// The INVITE got a 300-699 final: the shell must build the ACK and give
    /// it to [`ClientTransaction::ack`] (it is part of this transaction).
    NeedAck(u16),
    /// No final response in time (timer B or F), or the ACK never came (H):
    /// the transaction user treats it as a 408 / a dead dialog.
    Timeout,
    /// The transaction is over; forget it.
    Terminated,
}

/// The three timers of a transaction, by role: retransmit (A, E, G), give
/// up (B, F, H) and linger to absorb retransmissions (D, K, I, J).
#[derive(Debug, Default)]
struct TxTimers {
    retransmit: Option<(Instant, Duration)>,
    give_up: Option<Instant>,
    linger_until: Option<Instant>,
}

/// Which timer fired, most important first.
enum Fired {
    GiveUp,
    LingerOver,
    /// Retransmit now; the interval that just ran out.
    Retransmit(Duration),
    Nothing,
}

impl TxTimers {
    fn fire(&self, now: Instant) -> Fired {
        if self.give_up.is_some_and(|t| now >= t) {
            Fired::GiveUp
        } else if self.linger_until.is_some_and(|t| now >= t) {
            Fired::LingerOver
        } else {
            match self.retransmit {
                Some((at, interval)) if now >= at => Fired::Retransmit(interval),
                _ => Fired::Nothing,
            }
        }
    }

    fn next(&self) -> Option<Instant> {
        [self.retransmit.map(|(at, _)| at), self.give_up, self.linger_until].into_iter().flatten().min()
    }

    fn clear(&mut self) {
        *self = TxTimers::default();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A client transaction: our request and its retransmissions.
#[derive(Debug)]
pub struct ClientTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ClientState,
    request: Bytes,
    ack: Option<Bytes>,
    /// A or E (retransmit), B or F (give up), D or K (absorb retransmitted responses).
    clock: TxTimers,
    actions: VecDeque<Action>,
}

impl ClientTransaction {
    /// Starts the transaction: the request goes out at once.
    pub fn new(now: Instant, invite: bool, request: Bytes, reliable: bool, timers: Timers) -> Self {
        let retransmit = (!reliable).then_some((now + timers.t1, timers.t1));
        ClientTransaction {
            invite,
            reliable,
            timers,
            state: if invite { ClientState::Calling } else { ClientState::Trying },
            request: request.clone(),
            ack: None,
            clock: TxTimers { retransmit, give_up: Some(now + timers.t1 * 64), linger_until: None },
            actions: VecDeque::from([Action::Transmit(request)]),
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// A response matched this transaction.
    pub fn on_response(&mut self, now: Instant, status: u16) {
        use ClientState::*;
        let provisional = status < 200;
        match (self.state, self.invite) {
            (Calling | Trying | Proceeding, _) if provisional => {
                if self.state != Proceeding {
                    self.state = Proceeding;
                    if self.invite {
                        // INVITE: retransmissions stop once the far end answered at all.
                        self.clock.retransmit = None;
                    }
                }
                self.actions.push_back(Action::Deliver(status));
            }
            (Calling | Proceeding, true) if status < 300 => {
                // 2xx: the dialog layer takes over (ACK is a new transaction).
                self.actions.push_back(Action::Deliver(status));
                self.terminate();
            }
            (Calling | Proceeding, true) => {
                self.actions.push_back(Action::Deliver(status));
                self.actions.push_back(Action::NeedAck(status));
                self.complete(now, Duration::from_secs(32));
            }
            (Trying | Proceeding, false) => {
                self.actions.push_back(Action::Deliver(status));
                self.complete(now, self.timers.t4);
            }
            (Completed, true) if !provisional => {
                // A retransmitted final: answer it with the same ACK.
                if let Some(ack) = &self.ack {
                    self.actions.push_back(Action::Transmit(ack.clone()));
                }
            }
            _ => {} // late or duplicate: absorbed
        }
    }

    /// The ACK for a 300-699 final, built by the shell after [`Action::NeedAck`].
    pub fn ack(&mut self, ack: Bytes) {
        self.actions.push_back(Action::Transmit(ack.clone()));
        self.ack = Some(ack);
    }

    fn complete(&mut self, now: Instant, linger: Duration) {
        self.state = ClientState::Completed;
        self.clock.clear();
        // Over a reliable transport there is nothing to absorb.
        if self.reliable {
            self.terminate();
        } else {
            self.clock.linger_until = Some(now + linger);
        }
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.clock.clear();
        self.actions.push_back(Action::Terminated);
    }

    /// Fires the timers that are due.
    pub fn on_timeout(&mut self, now: Instant) {
        match self.clock.fire(now) {
            Fired::GiveUp => {
                self.actions.push_back(Action::Timeout);
                self.terminate();
            }
            Fired::LingerOver => self.terminate(),
            Fired::Retransmit(interval) => {
                self.actions.push_back(Action::Transmit(self.request.clone()));
                // INVITE doubles without bound (until B); others cap at T2,
                // and retransmit every T2 once in Proceeding (17.1.2.2).
                let next = match (self.invite, self.state) {
                    (true, _) => interval * 2,
                    (false, ClientState::Proceeding) => self.timers.t2,
                    (false, _) => (interval * 2).min(self.timers.t2),
                };
                self.clock.retransmit = Some((now + next, next));
            }
            Fired::Nothing => {}
        }
    }

    /// When `on_timeout` should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.clock.next()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Terminated,
}

/// A server transaction: a request we received and our responses to it.
#[derive(Debug)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ServerState,
    last_response: Option<Bytes>,
    /// G (retransmit a 300-699 final to an INVITE until the ACK), H (give up
    /// waiting for it), I or J (absorb retransmitted requests).
    clock: TxTimers,
    actions: VecDeque<Action>,
}

impl ServerTransaction {
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> Self {
        ServerTransaction {
            invite,
            reliable,
            timers,
            state: if invite { ServerState::Proceeding } else { ServerState::Trying },
            last_response: None,
            clock: TxTimers::default(),
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The request came again: repeat our last response, if any.
    pub fn on_retransmitted_request(&mut self) {
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed) {
            if let Some(r) = &self.last_response {
                self.actions.push_back(Action::Transmit(r.clone()));
            }
        }
    }

    /// The ACK for our 300-699 final to an INVITE arrived.
    pub fn on_ack(&mut self, now: Instant) {
        if self.invite && self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            self.clock.clear();
            if self.reliable {
                self.terminate();
            } else {
                self.clock.linger_until = Some(now + self.timers.t4);
            }
        }
    }

    /// The transaction user responds.
    pub fn respond(&mut self, now: Instant, status: u16, bytes: Bytes) {
        if matches!(self.state, ServerState::Completed | ServerState::Confirmed | ServerState::Terminated) {
            return; // a final response was already sent
        }
        self.actions.push_back(Action::Transmit(bytes.clone()));
        self.last_response = Some(bytes);
        if status < 200 {
            self.state = ServerState::Proceeding;
            return;
        }
        if self.invite && status < 300 {
            // 2xx: the transaction ends; the dialog retransmits until ACK.
            self.terminate();
            return;
        }
        self.state = ServerState::Completed;
        if self.invite {
            if !self.reliable {
                self.clock.retransmit = Some((now + self.timers.t1, self.timers.t1));
            }
            self.clock.give_up = Some(now + self.timers.t1 * 64);
        } else if self.reliable {
            self.terminate();
        } else {
            self.clock.linger_until = Some(now + self.timers.t1 * 64);
        }
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.clock.clear();
        self.actions.push_back(Action::Terminated);
    }

    pub fn on_timeout(&mut self, now: Instant) {
        match self.clock.fire(now) {
            Fired::GiveUp => {
                self.actions.push_back(Action::Timeout);
                self.terminate();
            }
            Fired::LingerOver => self.terminate(),
            Fired::Retransmit(interval) => {
                if let Some(r) = &self.last_response {
                    self.actions.push_back(Action::Transmit(r.clone()));
                }
                let next = (interval * 2).min(self.timers.t2);
                self.clock.retransmit = Some((now + next, next));
            }
            Fired::Nothing => {}
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.clock.next()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_client(t: &mut ClientTransaction) -> Vec<Action> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    fn drain_server(t: &mut ServerTransaction) -> Vec<Action> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    fn req() -> Bytes {
        Bytes::from_static(b"INVITE")
    }

    /// Runs the timers on virtual time until `end`, collecting transmissions.
    fn run_client(t: &mut ClientTransaction, start: Instant, end: Instant) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        while let Some(at) = t.next_timeout() {
            if at > end {
                break;
            }
            t.on_timeout(at);
            out.extend(drain_client(t).into_iter().map(|a| (at - start, a)));
        }
        out
    }

    #[test]
    fn invite_over_udp_retransmits_doubling_then_times_out_at_64_t1() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, true, req(), false, Timers::default());
        assert_eq!(drain_client(&mut t), [Action::Transmit(req())]);
        let events = run_client(&mut t, t0, t0 + Duration::from_secs(60));
        let sends: Vec<u64> = events
            .iter()
            .filter(|(_, a)| matches!(a, Action::Transmit(_)))
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        assert_eq!(sends, [500, 1500, 3500, 7500, 15500, 31500]);
        let (at, _) = events.iter().find(|(_, a)| *a == Action::Timeout).unwrap();
        assert_eq!(*at, Duration::from_secs(32), "timer B = 64 * T1");
        assert_eq!(t.state(), ClientState::Terminated);
    }

    #[test]
    fn provisional_stops_invite_retransmission() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, true, req(), false, Timers::default());
        drain_client(&mut t);
        t.on_response(t0 + Duration::from_millis(100), 100);
        assert_eq!(drain_client(&mut t), [Action::Deliver(100)]);
        let events = run_client(&mut t, t0, t0 + Duration::from_secs(20));
        assert!(!events.iter().any(|(_, a)| matches!(a, Action::Transmit(_))), "{events:?}");
    }

    #[test]
    fn invite_error_final_needs_ack_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, true, req(), false, Timers::default());
        drain_client(&mut t);
        t.on_response(t0, 486);
        assert_eq!(drain_client(&mut t), [Action::Deliver(486), Action::NeedAck(486)]);
        t.ack(Bytes::from_static(b"ACK"));
        assert_eq!(drain_client(&mut t), [Action::Transmit(Bytes::from_static(b"ACK"))]);
        // The 486 again: the same ACK again, no second delivery.
        t.on_response(t0 + Duration::from_secs(1), 486);
        assert_eq!(drain_client(&mut t), [Action::Transmit(Bytes::from_static(b"ACK"))]);
        // Timer D (32 s) ends it.
        let events = run_client(&mut t, t0, t0 + Duration::from_secs(40));
        assert_eq!(events, [(Duration::from_secs(32), Action::Terminated)]);
    }

    #[test]
    fn invite_2xx_goes_to_the_tu_and_ends_the_transaction() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, true, req(), true, Timers::default());
        drain_client(&mut t);
        t.on_response(t0, 180);
        t.on_response(t0, 200);
        assert_eq!(drain_client(&mut t), [Action::Deliver(180), Action::Deliver(200), Action::Terminated]);
    }

    #[test]
    fn non_invite_caps_at_t2_and_times_out() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, false, req(), false, Timers::default());
        drain_client(&mut t);
        let events = run_client(&mut t, t0, t0 + Duration::from_secs(40));
        let sends: Vec<u64> = events
            .iter()
            .filter(|(_, a)| matches!(a, Action::Transmit(_)))
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        assert_eq!(&sends[..6], [500, 1500, 3500, 7500, 11500, 15500]);
        assert!(events.contains(&(Duration::from_secs(32), Action::Timeout)));
    }

    #[test]
    fn reliable_transport_never_retransmits() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, false, req(), true, Timers::default());
        drain_client(&mut t);
        t.on_response(t0, 200);
        assert_eq!(drain_client(&mut t), [Action::Deliver(200), Action::Terminated]);
    }

    #[test]
    fn invite_server_retransmits_error_final_until_ack() {
        let t0 = Instant::now();
        let mut s = ServerTransaction::new(true, false, Timers::default());
        s.respond(t0, 100, Bytes::from_static(b"100"));
        s.on_retransmitted_request();
        assert_eq!(
            drain_server(&mut s),
            [Action::Transmit(Bytes::from_static(b"100")), Action::Transmit(Bytes::from_static(b"100"))]
        );
        s.respond(t0, 486, Bytes::from_static(b"486"));
        drain_server(&mut s);
        s.on_timeout(t0 + Duration::from_millis(500));
        s.on_timeout(t0 + Duration::from_millis(1500));
        assert_eq!(drain_server(&mut s).len(), 2, "timer G");
        s.on_ack(t0 + Duration::from_secs(2));
        assert_eq!(s.state(), ServerState::Confirmed);
        s.on_timeout(t0 + Duration::from_secs(7));
        assert_eq!(drain_server(&mut s), [Action::Terminated], "timer I = T4");
    }

    #[test]
    fn invite_server_gives_up_without_ack() {
        let t0 = Instant::now();
        let mut s = ServerTransaction::new(true, true, Timers::default());
        s.respond(t0, 603, Bytes::from_static(b"603"));
        drain_server(&mut s);
        s.on_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain_server(&mut s), [Action::Timeout, Action::Terminated]);
    }

    #[test]
    fn non_invite_server_answers_retransmissions_then_lingers() {
        let t0 = Instant::now();
        let mut s = ServerTransaction::new(false, false, Timers::default());
        s.respond(t0, 200, Bytes::from_static(b"200"));
        s.on_retransmitted_request();
        assert_eq!(drain_server(&mut s).len(), 2);
        s.respond(t0, 500, Bytes::from_static(b"500"));
        assert!(drain_server(&mut s).is_empty(), "one final only");
        s.on_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain_server(&mut s), [Action::Terminated], "timer J = 64 * T1");
    }
}
