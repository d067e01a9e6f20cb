//! The TwiML interpreter: one call's instructions as a sans-IO state machine.
//!
//! It is given `now` and [`Input`]s (a fetched document, how a `<Dial>`
//! ended, a timer, the caller hanging up, a REST redirect) and queues
//! [`Output`]s (fetch this URL, answer, dial, wait, hang up) that the call
//! layer drains with [`Interpreter::poll_output`]. It never does I/O and never
//! reads the clock, so tests run it on virtual time.
//!
//! ```text
//!  new ──▶ Fetching ──Document ok──▶ run verbs ──Dial──▶ Dialing ──DialOutcome──┐
//!            ▲  │ error: ErrorRecord,        │  ──Pause─▶ Pausing ──Timeout─────┤
//!            │  └─ fallback URL once, else   │  ──Redirect / action────────────▶ Fetching
//!            │     Hangup + Done             └─ end / Hangup / Reject ─▶ Done
//!            └──────────── Redirected (REST) from any state but Done
//! ```
//!
//! Contract with the call layer: after `StartDial` it reports exactly one
//! `DialOutcome`, also after `CancelDial`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::codes::ErrorCode;
use super::fetch::{resolve_url, Fetch, FetchError, FetchId, FetchPurpose, InvalidUrl};
use super::method::Method;
use super::params::{self, CallFacts, CallStatus};
use super::twiml::{self, Dial, DialNoun, RejectReason, Verb};

/// A URL and how to request it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub method: Method,
}

/// Bounds on what one call's instructions may make us do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Documents fetched over the whole call (voice URL, fallback, actions,
    /// redirects), so a misbehaving app cannot keep a call busy forever.
    pub max_documents: u32,
    /// `<Redirect>`s followed without a `<Dial>` or `<Pause>` in between: a
    /// redirect loop does nothing useful, and is cut short long before
    /// `max_documents`.
    pub max_redirects_in_a_row: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_documents: 100, max_redirects_in_a_row: 10 }
    }
}

/// What the interpreter needs to know about its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    pub call: CallFacts,
    /// The application's voice URL: the first document.
    pub voice: Webhook,
    /// Requested once, on the first failure to get or parse a document.
    pub fallback: Option<Webhook>,
    /// True when the call is already up when instructions start (calls
    /// placed through the REST API fetch their URL once answered).
    pub answered: bool,
    pub limits: Limits,
}

/// How a `<Dial>` ended, as Twilio's `DialCallStatus` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialCallStatus {
    Completed,
    Answered,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl DialCallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DialCallStatus::Completed => "completed",
            DialCallStatus::Answered => "answered",
            DialCallStatus::Busy => "busy",
            DialCallStatus::NoAnswer => "no-answer",
            DialCallStatus::Failed => "failed",
            DialCallStatus::Canceled => "canceled",
        }
    }

    fn was_answered(self) -> bool {
        matches!(self, DialCallStatus::Completed | DialCallStatus::Answered)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOutcome {
    pub status: DialCallStatus,
    /// The SID of the child call that answered (or the last one tried).
    pub dial_call_sid: Option<String>,
    /// Seconds the parties were bridged.
    pub duration_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The answer to [`Output::Fetch`] `fetch`; `url` is where it finally
    /// came from (after HTTP redirects), the base for relative URLs in it.
    Document {
        fetch: FetchId,
        url: String,
        body: Result<String, FetchError>,
    },
    DialOutcome(DialOutcome),
    /// The time given in [`Output::Wait`] has come.
    Timeout,
    /// The caller hung up (or the call was ended through the REST API).
    CallEnded,
    /// The REST API redirected the live call to new instructions.
    Redirected {
        url: String,
        method: Method,
    },
}

/// An error to record against the call (and show through the REST API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    pub code: ErrorCode,
    pub message: String,
    /// The URL whose document or request failed, if one did.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Fetch(Fetch),
    /// Answer the caller (once, before the first verb that needs media).
    Answer,
    /// Ring the dial's nouns; their URLs are already absolute.
    StartDial(Dial),
    /// Stop the dial (REST redirect, caller gone); its outcome still comes.
    CancelDial,
    /// Send [`Input::Timeout`] at `until`.
    Wait {
        until: Instant,
    },
    Error(ErrorRecord),
    /// End the call: BYE if answered, a final error response if not.
    Hangup,
    /// Refuse the unanswered call.
    Reject(RejectReason),
    /// Nothing more will come out; later inputs are ignored.
    Done,
}

#[derive(Debug)]
enum State {
    /// `params` are kept to repeat them to the fallback URL.
    Fetching {
        id: FetchId,
        params: Vec<(String, String)>,
    },
    Running,
    Dialing {
        action: Option<Webhook>,
    },
    Pausing {
        until: Instant,
    },
    Done,
}

/// The document being executed and where we are in it.
#[derive(Debug)]
struct Program {
    base_url: String,
    verbs: VecDeque<Verb>,
}

pub struct Interpreter {
    ctx: CallContext,
    state: State,
    program: Option<Program>,
    out: VecDeque<Output>,
    answered: bool,
    caller_gone: bool,
    fallback_used: bool,
    documents: u32,
    redirects_in_a_row: u32,
    next_fetch: u64,
}

impl Interpreter {
    /// Starts the call's instructions: the first output is the voice URL fetch.
    pub fn new(ctx: CallContext) -> Self {
        let mut me = Self {
            answered: ctx.answered,
            ctx,
            state: State::Running,
            program: None,
            out: VecDeque::new(),
            caller_gone: false,
            fallback_used: false,
            documents: 0,
            redirects_in_a_row: 0,
            next_fetch: 0,
        };
        let voice = me.ctx.voice.clone();
        let params = me.voice_params();
        me.fetch(voice, params);
        me
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.is_done() {
            return;
        }
        match input {
            Input::Document { fetch, url, body } => self.on_document(now, fetch, url, body),
            Input::DialOutcome(outcome) => self.on_dial_outcome(now, outcome),
            Input::Timeout => {
                if let State::Pausing { until } = self.state {
                    if now >= until {
                        self.state = State::Running;
                        self.run(now);
                    }
                }
            }
            Input::CallEnded => self.on_call_ended(),
            Input::Redirected { url, method } => self.on_redirected(url, method),
        }
    }

    fn on_document(&mut self, now: Instant, id: FetchId, url: String, body: Result<String, FetchError>) {
        let State::Fetching { id: pending, .. } = &self.state else {
            return;
        };
        if *pending != id {
            return; // superseded by a REST redirect
        }
        let parsed = match body {
            Err(e) => Err((e.code(), format!("fetching the document failed: {e}"))),
            Ok(text) => twiml::parse(&text).map_err(|e| (e.code(), format!("invalid TwiML: {e}"))),
        };
        match parsed {
            Ok(document) => {
                self.program = Some(Program { base_url: url, verbs: document.verbs.into() });
                self.state = State::Running;
                self.run(now);
            }
            Err((code, message)) => self.document_failed(code, message, url),
        }
    }

    fn on_dial_outcome(&mut self, now: Instant, outcome: DialOutcome) {
        let State::Dialing { action } = &mut self.state else {
            return; // the dial was cancelled by a redirect; nothing waits for it
        };
        let action = action.take();
        if outcome.status.was_answered() {
            self.answered = true; // answerOnBridge answers the caller with the callee
        }
        let Some(action) = action else {
            if self.caller_gone {
                self.finish();
            } else {
                self.state = State::Running;
                self.run(now);
            }
            return;
        };
        let mut params = self.voice_params();
        params.push(("DialCallStatus".into(), outcome.status.as_str().into()));
        if let Some(sid) = outcome.dial_call_sid {
            params.push(("DialCallSid".into(), sid));
        }
        if outcome.status.was_answered() {
            params.push(("DialCallDuration".into(), outcome.duration_s.to_string()));
        }
        if self.caller_gone {
            // Twilio still tells the app how the dial ended, and ignores its answer.
            let id = self.fetch_id();
            self.out.push_back(Output::Fetch(Fetch {
                id,
                url: action.url,
                method: action.method,
                params,
                purpose: FetchPurpose::Notification,
            }));
            self.finish();
        } else {
            self.redirects_in_a_row = 0;
            self.fetch(action, params);
        }
    }

    fn on_call_ended(&mut self) {
        self.caller_gone = true;
        match &self.state {
            State::Dialing { action: Some(_) } => self.out.push_back(Output::CancelDial),
            State::Dialing { action: None } => {
                self.out.push_back(Output::CancelDial);
                self.finish();
            }
            _ => self.finish(),
        }
    }

    fn on_redirected(&mut self, url: String, method: Method) {
        if matches!(self.state, State::Dialing { .. }) {
            self.out.push_back(Output::CancelDial);
        }
        self.program = None;
        self.redirects_in_a_row = 0;
        match resolve_url(&self.ctx.voice.url, &url) {
            Ok(url) => {
                let params = self.voice_params();
                self.fetch(Webhook { url, method }, params);
            }
            Err(e) => self.fail(invalid_url(e)),
        }
    }

    /// Executes verbs until one has to wait for the world, or the document ends.
    fn run(&mut self, now: Instant) {
        while matches!(self.state, State::Running) {
            let Some(program) = self.program.as_mut() else {
                return self.hang_up();
            };
            let base = program.base_url.clone();
            let Some(verb) = program.verbs.pop_front() else {
                return self.hang_up(); // the end of the document hangs up
            };
            match verb {
                Verb::Dial(dial) => self.start_dial(&base, dial),
                Verb::Redirect(redirect) => {
                    self.redirects_in_a_row += 1;
                    if self.redirects_in_a_row > self.ctx.limits.max_redirects_in_a_row {
                        return self.fail(ErrorRecord {
                            code: ErrorCode::HTTP_TOO_MANY_REDIRECTS,
                            message: format!(
                                "redirect loop: more than {} <Redirect>s in a row",
                                self.ctx.limits.max_redirects_in_a_row
                            ),
                            url: Some(base),
                        });
                    }
                    match resolve_url(&base, &redirect.url) {
                        Ok(url) => {
                            let params = self.voice_params();
                            self.fetch(Webhook { url, method: redirect.method }, params);
                        }
                        Err(e) => self.fail(invalid_url(e)),
                    }
                }
                Verb::Pause(pause) => {
                    self.answer();
                    self.redirects_in_a_row = 0;
                    if pause.length_s > 0 {
                        let until = now + Duration::from_secs(u64::from(pause.length_s));
                        self.state = State::Pausing { until };
                        self.out.push_back(Output::Wait { until });
                    }
                }
                Verb::Hangup => {
                    // Twilio answers before hanging up: the call ends `completed`.
                    self.answer();
                    self.hang_up();
                }
                Verb::Reject(reason) => {
                    if self.answered {
                        self.hang_up(); // too late to refuse; end it
                    } else {
                        self.out.push_back(Output::Reject(reason));
                        self.finish();
                    }
                }
                Verb::Unsupported { name } => {
                    let message = if twiml::is_twiml_verb(&name) {
                        format!("<{name}> is not supported by this appliance")
                    } else {
                        format!("<{name}> is not a TwiML verb")
                    };
                    self.fail(ErrorRecord { code: ErrorCode::SCHEMA_VALIDATION, message, url: Some(base) });
                }
            }
        }
    }

    fn start_dial(&mut self, base: &str, mut dial: Dial) {
        if let Some(noun) =
            dial.nouns.iter().find(|n| matches!(n, DialNoun::Conference { .. } | DialNoun::Queue { .. }))
        {
            return self.fail(ErrorRecord {
                code: ErrorCode::SCHEMA_VALIDATION,
                message: format!("<Dial><{}> is not supported by this appliance", noun.name()),
                url: Some(base.to_owned()),
            });
        }
        let action = match absolute_urls(base, &mut dial) {
            Ok(action) => action,
            Err(e) => return self.fail(invalid_url(e)),
        };
        if !dial.answer_on_bridge {
            self.answer();
        }
        self.redirects_in_a_row = 0;
        self.state = State::Dialing { action: action.map(|url| Webhook { url, method: dial.method }) };
        self.out.push_back(Output::StartDial(dial));
    }

    /// A document could not be had: record it, then try the fallback URL
    /// (once per call, with Twilio's `ErrorCode`/`ErrorUrl`), else end the call.
    fn document_failed(&mut self, code: ErrorCode, message: String, url: String) {
        let State::Fetching { params, .. } = std::mem::replace(&mut self.state, State::Running) else {
            return;
        };
        self.out.push_back(Output::Error(ErrorRecord { code, message, url: Some(url.clone()) }));
        match self.ctx.fallback.clone() {
            Some(fallback) if !self.fallback_used => {
                self.fallback_used = true;
                let mut params = params;
                params.push(("ErrorCode".into(), code.0.to_string()));
                params.push(("ErrorUrl".into(), url));
                self.fetch(fallback, params);
            }
            _ => self.hang_up(),
        }
    }

    fn fetch(&mut self, request: Webhook, params: Vec<(String, String)>) {
        if self.documents >= self.ctx.limits.max_documents {
            return self.fail(ErrorRecord {
                code: ErrorCode::HTTP_TOO_MANY_REDIRECTS,
                message: format!("more than {} documents for one call", self.ctx.limits.max_documents),
                url: Some(request.url),
            });
        }
        self.documents += 1;
        let id = self.fetch_id();
        self.out.push_back(Output::Fetch(Fetch {
            id,
            url: request.url,
            method: request.method,
            params: params.clone(),
            purpose: FetchPurpose::Instructions,
        }));
        self.state = State::Fetching { id, params };
    }

    fn fetch_id(&mut self) -> FetchId {
        self.next_fetch += 1;
        FetchId(self.next_fetch)
    }

    fn voice_params(&self) -> Vec<(String, String)> {
        let status = if self.caller_gone {
            CallStatus::Completed
        } else if self.answered {
            CallStatus::InProgress
        } else {
            CallStatus::Ringing
        };
        params::voice_request(&self.ctx.call, status)
    }

    fn answer(&mut self) {
        if !self.answered {
            self.answered = true;
            self.out.push_back(Output::Answer);
        }
    }

    fn fail(&mut self, error: ErrorRecord) {
        self.out.push_back(Output::Error(error));
        self.hang_up();
    }

    fn hang_up(&mut self) {
        self.out.push_back(Output::Hangup);
        self.finish();
    }

    fn finish(&mut self) {
        self.program = None;
        self.state = State::Done;
        self.out.push_back(Output::Done);
    }
}

/// Resolves the dial's `action` and every noun URL against the document URL,
/// so the call layer never needs to know where the document came from.
fn absolute_urls(base: &str, dial: &mut Dial) -> Result<Option<String>, InvalidUrl> {
    let resolve = |url: &mut Option<String>| -> Result<(), InvalidUrl> {
        if let Some(u) = url.as_mut() {
            *u = resolve_url(base, u)?;
        }
        Ok(())
    };
    for noun in &mut dial.nouns {
        let (url, status) = match noun {
            DialNoun::Number(n) => (&mut n.url, &mut n.status_callback.url),
            DialNoun::Sip(s) => (&mut s.url, &mut s.status_callback.url),
            DialNoun::Client(c) => (&mut c.url, &mut c.status_callback.url),
            DialNoun::Conference { .. } | DialNoun::Queue { .. } => continue,
        };
        resolve(url)?;
        resolve(status)?;
    }
    let mut action = dial.action.take();
    resolve(&mut action)?;
    dial.action = action.clone();
    Ok(action)
}

fn invalid_url(e: InvalidUrl) -> ErrorRecord {
    ErrorRecord { code: ErrorCode::INVALID_URL, message: e.to_string(), url: Some(e.base) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::params::Direction;

    const VOICE: &str = "http://app.test/voice";
    const FALLBACK: &str = "http://app.test/fallback";

    fn ctx() -> CallContext {
        CallContext {
            call: CallFacts {
                call_sid: "CA01".into(),
                account_sid: "AC01".into(),
                from: "+15550100002".into(),
                to: "+15550100001".into(),
                direction: Direction::Inbound,
                forwarded_from: None,
                caller_name: None,
                parent_call_sid: None,
                custom: Vec::new(),
            },
            voice: Webhook { url: VOICE.into(), method: Method::Post },
            fallback: None,
            answered: false,
            limits: Limits::default(),
        }
    }

    /// Drives one interpreter on virtual time.
    struct Driver {
        it: Interpreter,
        now: Instant,
    }

    impl Driver {
        fn new(ctx: CallContext) -> (Self, Fetch) {
            let mut d = Self { it: Interpreter::new(ctx), now: Instant::now() };
            let fetch = d.expect_fetch();
            (d, fetch)
        }

        fn outputs(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.it.poll_output()).collect()
        }

        fn expect_fetch(&mut self) -> Fetch {
            match self.outputs().as_slice() {
                [Output::Fetch(f)] => f.clone(),
                other => panic!("expected one Fetch, got {other:?}"),
            }
        }

        fn input(&mut self, input: Input) -> Vec<Output> {
            self.it.handle_input(self.now, input);
            self.outputs()
        }

        fn serve(&mut self, fetch: &Fetch, xml: &str) -> Vec<Output> {
            self.input(Input::Document { fetch: fetch.id, url: fetch.url.clone(), body: Ok(xml.into()) })
        }

        fn fail(&mut self, fetch: &Fetch, e: FetchError) -> Vec<Output> {
            self.input(Input::Document { fetch: fetch.id, url: fetch.url.clone(), body: Err(e) })
        }
    }

    fn param<'a>(fetch: &'a Fetch, name: &str) -> Option<&'a str> {
        fetch.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn the_fetch(outputs: &[Output]) -> Fetch {
        match outputs.iter().find_map(|o| if let Output::Fetch(f) = o { Some(f) } else { None }) {
            Some(f) => f.clone(),
            None => panic!("no Fetch in {outputs:?}"),
        }
    }

    fn error_code(outputs: &[Output]) -> Option<u32> {
        outputs.iter().find_map(|o| if let Output::Error(e) = o { Some(e.code.0) } else { None })
    }

    #[test]
    fn voice_url_is_fetched_first_with_call_params() {
        let (_, fetch) = Driver::new(ctx());
        assert_eq!(fetch.url, VOICE);
        assert_eq!(fetch.method, Method::Post);
        assert_eq!(fetch.purpose, FetchPurpose::Instructions);
        assert_eq!(param(&fetch, "CallSid"), Some("CA01"));
        assert_eq!(param(&fetch, "CallStatus"), Some("ringing"));
        assert_eq!(param(&fetch, "Direction"), Some("inbound"));
    }

    #[test]
    fn dial_with_action_continues_with_the_action_document() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, r#"<Response><Dial action="/done" timeout="10"><Number statusCallback="status">+15550100003</Number></Dial><Say>unreachable</Say></Response>"#);
        let [Output::Answer, Output::StartDial(dial)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(dial.action.as_deref(), Some("http://app.test/done"));
        assert_eq!(dial.timeout_s, 10);
        let DialNoun::Number(n) = &dial.nouns[0] else { panic!() };
        assert_eq!(n.status_callback.url.as_deref(), Some("http://app.test/status"));

        let out = d.input(Input::DialOutcome(DialOutcome {
            status: DialCallStatus::Completed,
            dial_call_sid: Some("CA02".into()),
            duration_s: 42,
        }));
        let action = the_fetch(&out);
        assert_eq!(out.len(), 1);
        assert_eq!(action.url, "http://app.test/done");
        assert_eq!(param(&action, "DialCallStatus"), Some("completed"));
        assert_eq!(param(&action, "DialCallSid"), Some("CA02"));
        assert_eq!(param(&action, "DialCallDuration"), Some("42"));
        assert_eq!(param(&action, "CallStatus"), Some("in-progress"));

        assert_eq!(d.serve(&action, "<Response><Hangup/></Response>"), vec![Output::Hangup, Output::Done]);
        assert!(d.it.is_done());
    }

    #[test]
    fn dial_without_action_runs_the_next_verb() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, r#"<Response><Dial>+15550100003</Dial><Pause length="2"/></Response>"#);
        assert!(matches!(out.as_slice(), [Output::Answer, Output::StartDial(_)]));
        let out = d.input(Input::DialOutcome(DialOutcome {
            status: DialCallStatus::NoAnswer,
            dial_call_sid: Some("CA02".into()),
            duration_s: 0,
        }));
        let until = d.now + Duration::from_secs(2);
        assert_eq!(out, vec![Output::Wait { until }]);

        d.now += Duration::from_secs(1); // an early timer does nothing
        assert_eq!(d.input(Input::Timeout), vec![]);
        d.now = until;
        assert_eq!(d.input(Input::Timeout), vec![Output::Hangup, Output::Done]);
    }

    #[test]
    fn no_answer_dial_action_gets_no_duration() {
        let (mut d, fetch) = Driver::new(ctx());
        d.serve(&fetch, r#"<Response><Dial action="https://other.test/a" method="GET">+1555</Dial></Response>"#);
        let out = d.input(Input::DialOutcome(DialOutcome {
            status: DialCallStatus::Busy,
            dial_call_sid: None,
            duration_s: 0,
        }));
        let action = the_fetch(&out);
        assert_eq!((action.url.as_str(), action.method), ("https://other.test/a", Method::Get));
        assert_eq!(param(&action, "DialCallStatus"), Some("busy"));
        assert_eq!(param(&action, "DialCallSid"), None);
        assert_eq!(param(&action, "DialCallDuration"), None);
    }

    #[test]
    fn answer_on_bridge_leaves_answering_to_the_dial() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d
            .serve(&fetch, r#"<Response><Dial answerOnBridge="true" action="/a"><Sip>sip:b@x</Sip></Dial></Response>"#);
        assert!(matches!(out.as_slice(), [Output::StartDial(_)]));
        let out = d.input(Input::DialOutcome(DialOutcome {
            status: DialCallStatus::Completed,
            dial_call_sid: Some("CA02".into()),
            duration_s: 5,
        }));
        assert_eq!(param(&the_fetch(&out), "CallStatus"), Some("in-progress"));
    }

    #[test]
    fn fetch_failure_uses_the_fallback_then_ends_the_call() {
        let mut c = ctx();
        c.fallback = Some(Webhook { url: FALLBACK.into(), method: Method::Get });
        let (mut d, fetch) = Driver::new(c);
        let out = d.fail(&fetch, FetchError::Status(500));
        assert_eq!(error_code(&out), Some(11200));
        let fallback = the_fetch(&out);
        assert_eq!((fallback.url.as_str(), fallback.method), (FALLBACK, Method::Get));
        assert_eq!(param(&fallback, "ErrorCode"), Some("11200"));
        assert_eq!(param(&fallback, "ErrorUrl"), Some(VOICE));
        assert_eq!(param(&fallback, "CallSid"), Some("CA01"));

        let out = d.fail(&fallback, FetchError::Timeout(15_000));
        assert_eq!(error_code(&out), Some(11205));
        assert_eq!(out[1..], [Output::Hangup, Output::Done]);
    }

    #[test]
    fn fallback_document_runs() {
        let mut c = ctx();
        c.fallback = Some(Webhook { url: FALLBACK.into(), method: Method::Post });
        let (mut d, fetch) = Driver::new(c);
        let out = d.serve(&fetch, "<html>oops</html>");
        assert_eq!(error_code(&out), Some(12102));
        let fallback = the_fetch(&out);
        let out = d.serve(&fallback, r#"<Response><Reject reason="busy"/></Response>"#);
        assert_eq!(out, vec![Output::Reject(RejectReason::Busy), Output::Done]);
    }

    #[test]
    fn unparsable_document_without_fallback_ends_the_call() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, "<Response><Dial>");
        assert_eq!(error_code(&out), Some(12100));
        assert_eq!(out[1..], [Output::Hangup, Output::Done]);
        // Anything later is ignored.
        assert_eq!(d.input(Input::Timeout), vec![]);
        assert_eq!(d.serve(&fetch, "<Response/>"), vec![]);
    }

    #[test]
    fn unsupported_verb_ends_the_call_naming_it() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, "<Response><Say>Hello</Say><Hangup/></Response>");
        let [Output::Error(e), Output::Hangup, Output::Done] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(e.code, ErrorCode::SCHEMA_VALIDATION);
        assert!(e.message.contains("<Say>"), "{}", e.message);
        assert_eq!(e.url.as_deref(), Some(VOICE));
    }

    #[test]
    fn unsupported_dial_nouns_end_the_call() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, "<Response><Dial><Conference>room</Conference></Dial></Response>");
        let [Output::Error(e), Output::Hangup, Output::Done] = out.as_slice() else { panic!("{out:?}") };
        assert!(e.message.contains("Conference"), "{}", e.message);
    }

    #[test]
    fn empty_response_hangs_up() {
        let (mut d, fetch) = Driver::new(ctx());
        assert_eq!(d.serve(&fetch, "<Response/>"), vec![Output::Hangup, Output::Done]);
    }

    #[test]
    fn hangup_answers_first_and_reject_after_answer_hangs_up() {
        let (mut d, fetch) = Driver::new(ctx());
        assert_eq!(
            d.serve(&fetch, "<Response><Hangup/></Response>"),
            vec![Output::Answer, Output::Hangup, Output::Done]
        );
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, r#"<Response><Pause length="0"/><Reject/></Response>"#);
        assert_eq!(out, vec![Output::Answer, Output::Hangup, Output::Done]);
    }

    #[test]
    fn redirect_replaces_the_document() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, r#"<Response><Redirect method="GET">next</Redirect><Hangup/></Response>"#);
        let next = the_fetch(&out);
        assert_eq!(out.len(), 1);
        assert_eq!((next.url.as_str(), next.method), ("http://app.test/next", Method::Get));
        assert_eq!(param(&next, "CallStatus"), Some("ringing"));
        assert_eq!(d.serve(&next, "<Response/>"), vec![Output::Hangup, Output::Done]);
    }

    #[test]
    fn redirect_loop_is_cut() {
        let (mut d, mut fetch) = Driver::new(ctx());
        for _ in 0..Limits::default().max_redirects_in_a_row {
            fetch = the_fetch(&d.serve(&fetch, "<Response><Redirect>/voice</Redirect></Response>"));
        }
        let out = d.serve(&fetch, "<Response><Redirect>/voice</Redirect></Response>");
        assert_eq!(error_code(&out), Some(11215));
        assert_eq!(out[1..], [Output::Hangup, Output::Done]);
    }

    #[test]
    fn documents_per_call_are_limited() {
        let mut c = ctx();
        c.limits.max_documents = 3;
        let (mut d, mut fetch) = Driver::new(c);
        // Pauses reset the redirect-in-a-row count; the document limit still holds.
        let doc = "<Response><Pause length=\"0\"/><Redirect>/voice</Redirect></Response>";
        for _ in 0..2 {
            fetch = the_fetch(&d.serve(&fetch, doc));
        }
        let out = d.serve(&fetch, doc);
        assert_eq!(error_code(&out), Some(11215));
        assert!(out.ends_with(&[Output::Hangup, Output::Done]), "{out:?}");
    }

    #[test]
    fn rest_redirect_during_a_dial_cancels_it() {
        let (mut d, fetch) = Driver::new(ctx());
        d.serve(&fetch, r#"<Response><Dial action="/a">+1555</Dial></Response>"#);
        let out = d.input(Input::Redirected { url: "http://app.test/new".into(), method: Method::Post });
        assert_eq!(out[0], Output::CancelDial);
        let next = the_fetch(&out);
        assert_eq!(next.url, "http://app.test/new");
        assert_eq!(param(&next, "CallStatus"), Some("in-progress"));
        // The cancelled dial's outcome does not trigger its action.
        let late = DialOutcome { status: DialCallStatus::Canceled, dial_call_sid: None, duration_s: 0 };
        assert_eq!(d.input(Input::DialOutcome(late)), vec![]);
        assert_eq!(d.serve(&next, "<Response/>"), vec![Output::Hangup, Output::Done]);
    }

    #[test]
    fn rest_redirect_supersedes_a_fetch_in_flight() {
        let (mut d, first) = Driver::new(ctx());
        let second = the_fetch(&d.input(Input::Redirected { url: "/other".into(), method: Method::Get }));
        assert_eq!(second.url, "http://app.test/other");
        assert_ne!(first.id, second.id);
        assert_eq!(d.serve(&first, "<Response><Hangup/></Response>"), vec![]);
        assert_eq!(d.serve(&second, "<Response/>"), vec![Output::Hangup, Output::Done]);
    }

    #[test]
    fn rest_redirect_during_a_pause_cancels_it() {
        let (mut d, fetch) = Driver::new(ctx());
        d.serve(&fetch, r#"<Response><Pause length="30"/></Response>"#);
        let next = the_fetch(&d.input(Input::Redirected { url: "/r".into(), method: Method::Post }));
        d.now += Duration::from_secs(30);
        assert_eq!(d.input(Input::Timeout), vec![]);
        assert_eq!(d.serve(&next, "<Response/>"), vec![Output::Hangup, Output::Done]);
    }

    #[test]
    fn caller_hanging_up_during_a_dial_notifies_the_action() {
        let (mut d, fetch) = Driver::new(ctx());
        d.serve(&fetch, r#"<Response><Dial action="/a">+1555</Dial></Response>"#);
        assert_eq!(d.input(Input::CallEnded), vec![Output::CancelDial]);
        let out = d.input(Input::DialOutcome(DialOutcome {
            status: DialCallStatus::Completed,
            dial_call_sid: Some("CA02".into()),
            duration_s: 7,
        }));
        let note = the_fetch(&out);
        assert_eq!(note.purpose, FetchPurpose::Notification);
        assert_eq!(param(&note, "CallStatus"), Some("completed"));
        assert_eq!(param(&note, "DialCallDuration"), Some("7"));
        assert_eq!(out.last(), Some(&Output::Done));
    }

    #[test]
    fn caller_hanging_up_elsewhere_just_ends() {
        let (mut d, fetch) = Driver::new(ctx());
        assert_eq!(d.input(Input::CallEnded), vec![Output::Done]);
        assert_eq!(d.serve(&fetch, "<Response/>"), vec![]);

        let (mut d, fetch) = Driver::new(ctx());
        d.serve(&fetch, r#"<Response><Dial>+1555</Dial></Response>"#);
        assert_eq!(d.input(Input::CallEnded), vec![Output::CancelDial, Output::Done]);
    }

    #[test]
    fn api_calls_start_answered() {
        let mut c = ctx();
        c.answered = true;
        c.call.direction = Direction::OutboundApi;
        c.voice.method = Method::Get;
        let (mut d, fetch) = Driver::new(c);
        assert_eq!(fetch.method, Method::Get);
        assert_eq!(param(&fetch, "CallStatus"), Some("in-progress"));
        assert_eq!(param(&fetch, "Direction"), Some("outbound-api"));
        let out = d.serve(&fetch, r#"<Response><Pause/></Response>"#);
        assert!(matches!(out.as_slice(), [Output::Wait { .. }]), "{out:?}");
    }

    #[test]
    fn invalid_urls_are_errors() {
        let (mut d, fetch) = Driver::new(ctx());
        let out = d.serve(&fetch, r#"<Response><Redirect>ftp://x/y</Redirect></Response>"#);
        assert_eq!(error_code(&out), Some(11100));
        assert!(out.ends_with(&[Output::Hangup, Output::Done]));
    }

    proptest::proptest! {
        /// Whatever the app answers and however dials end, every call ends:
        /// the limits bound the documents, nothing waits forever.
        #[test]
        fn every_call_ends(
            answers in proptest::collection::vec(
                proptest::sample::select(vec![
                    "<Response/>",
                    "<Response><Redirect>/r</Redirect></Response>",
                    "<Response><Pause length=\"3\"/><Redirect>/r</Redirect></Response>",
                    "<Response><Dial action=\"/a\">+1555</Dial></Response>",
                    "<Response><Dial>+1555</Dial><Redirect>/r</Redirect></Response>",
                    "<Response><Dial answerOnBridge=\"true\" action=\"/a\"><Sip>sip:x@y</Sip></Dial></Response>",
                    "<Response><Say>x</Say></Response>",
                    "<Response><Reject/></Response>",
                    "<Response><Hangup/></Response>",
                    "<Response><Dial>",
                    "",
                ]),
                1..300,
            ),
            failures in proptest::collection::vec(proptest::bool::ANY, 300),
            with_fallback in proptest::bool::ANY,
        ) {
            let mut c = ctx();
            if with_fallback {
                c.fallback = Some(Webhook { url: FALLBACK.into(), method: Method::Post });
            }
            let mut it = Interpreter::new(c);
            let mut now = Instant::now();
            let mut steps = 0;
            let mut pending: Vec<Output> = Vec::new();
            while !it.is_done() {
                steps += 1;
                proptest::prop_assert!(steps < 1000, "no end after 1000 steps");
                pending.extend(std::iter::from_fn(|| it.poll_output()));
                let Some(output) = pending.pop() else {
                    proptest::prop_assert!(false, "stuck without outputs");
                    break;
                };
                match output {
                    Output::Fetch(f) if f.purpose == FetchPurpose::Instructions => {
                        let body = if failures[steps % failures.len()] {
                            Err(FetchError::Status(503))
                        } else {
                            Ok(answers[steps % answers.len()].to_owned())
                        };
                        it.handle_input(now, Input::Document { fetch: f.id, url: f.url, body });
                    }
                    Output::StartDial(_) => it.handle_input(now, Input::DialOutcome(DialOutcome {
                        status: DialCallStatus::NoAnswer,
                        dial_call_sid: None,
                        duration_s: 0,
                    })),
                    Output::Wait { until } => {
                        now = until;
                        it.handle_input(now, Input::Timeout);
                    }
                    _ => {}
                }
            }
        }
    }
}
