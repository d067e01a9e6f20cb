//! TwiML voice documents parsed into typed verbs.
//!
//! Everything that can be checked before a call acts on a document is checked
//! here (size, nesting, counts, every attribute we act on), so the interpreter
//! only meets valid verbs and a bad document fails before half of it has run.
//! Verbs the appliance does not implement are kept as [`Verb::Unsupported`],
//! never dropped, so the call can end with an error that names them.
//! Unknown *attributes* are ignored, as Twilio does: apps send newer ones
//! (`callReason`, `ringTone`, ...) that change nothing essential.

use roxmltree::{Node, NodeType, ParsingOptions};

use super::codes::ErrorCode;
use super::method::Method;

/// Twilio refuses larger responses (error 11750).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// `Response > Connect > Stream > Parameter` is the deepest real TwiML (4);
/// the margin leaves room for verbs we do not implement yet.
pub const MAX_DEPTH: usize = 8;
/// Bounds the parser's memory on hostile input (64 KiB of `<a/>`).
pub const MAX_XML_NODES: u32 = 8192;
/// Verbs in one document; real apps use a handful.
pub const MAX_VERBS: usize = 256;
/// Twilio rings at most ten `<Number>`s (or other nouns) at once.
pub const MAX_DIAL_NOUNS: usize = 10;
/// Twilio's longest `<Dial timeout>`; larger values are clamped, not refused.
pub const MAX_DIAL_TIMEOUT_S: u32 = 600;
/// Twilio's longest call: 24 hours. Larger `timeLimit`s are clamped.
pub const MAX_TIME_LIMIT_S: u32 = 24 * 3600;
/// A `<Pause>` longer than the default call time limit is a mistake.
pub const MAX_PAUSE_S: u32 = 4 * 3600;

/// Every verb TwiML defines for voice (and the messaging ones apps mix in);
/// used to tell "not implemented here" from "not TwiML" in error messages.
const TWIML_VERBS: &[&str] = &[
    "Connect", "Dial", "Echo", "Enqueue", "Gather", "Hangup", "Leave", "Message", "Pause", "Pay", "Play", "Prompt",
    "Record", "Redirect", "Refer", "Reject", "Say", "Sms", "Start", "Stop",
];

/// A parsed `<Response>`: its verbs, in order. Empty means "hang up".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    pub verbs: Vec<Verb>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Dial(Dial),
    Redirect(Redirect),
    Pause(Pause),
    Hangup,
    Reject(RejectReason),
    /// A verb (or unknown element) this appliance does not execute; the
    /// interpreter ends the call with an error naming it when it gets there.
    Unsupported {
        name: String,
    },
}

/// Whether `name` is a TwiML voice verb (as opposed to a typo or an
/// element from some other language).
pub fn is_twiml_verb(name: &str) -> bool {
    TWIML_VERBS.contains(&name)
}

/// `<Dial>`: connect the caller to one or more other parties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// Requested when the dialed call ends; its answer continues the call.
    pub action: Option<String>,
    pub method: Method,
    /// Seconds to ring before giving up (`no-answer`). Default 30.
    pub timeout_s: u32,
    pub caller_id: Option<String>,
    /// Longest the bridged call may last, seconds. Default 14400 (4 h).
    pub time_limit_s: u32,
    /// Keep the caller unanswered (hearing ringback) until the other party
    /// answers.
    pub answer_on_bridge: bool,
    pub hangup_on_star: bool,
    pub record: DialRecord,
    /// Who to ring, all at once; the first to answer wins. A plain-text
    /// `<Dial>+1555...</Dial>` becomes one [`DialNoun::Number`] here.
    pub nouns: Vec<DialNoun>,
}

impl Dial {
    pub const DEFAULT_TIMEOUT_S: u32 = 30;
    pub const DEFAULT_TIME_LIMIT_S: u32 = 4 * 3600;
}

/// `<Dial record>`; parsed now, carried out by the media services later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DialRecord {
    #[default]
    DoNotRecord,
    RecordFromAnswer,
    RecordFromRinging,
    RecordFromAnswerDual,
    RecordFromRingingDual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialNoun {
    Number(NumberNoun),
    Sip(SipNoun),
    Client(ClientNoun),
    /// Parsed so it can be reported by name; not implemented yet.
    Conference {
        name: String,
    },
    /// Parsed so it can be reported by name; not implemented yet.
    Queue {
        name: String,
    },
}

impl DialNoun {
    /// The element name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            DialNoun::Number(_) => "Number",
            DialNoun::Sip(_) => "Sip",
            DialNoun::Client(_) => "Client",
            DialNoun::Conference { .. } => "Conference",
            DialNoun::Queue { .. } => "Queue",
        }
    }
}

/// Which call progress events a noun's `statusCallback` wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallProgressEvents {
    pub initiated: bool,
    pub ringing: bool,
    pub answered: bool,
    pub completed: bool,
}

impl Default for CallProgressEvents {
    /// Twilio's default is `completed` only.
    fn default() -> Self {
        Self { initiated: false, ringing: false, answered: false, completed: true }
    }
}

/// `statusCallback`, `statusCallbackMethod`, `statusCallbackEvent` of a noun.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusCallback {
    pub url: Option<String>,
    pub method: Method,
    pub events: CallProgressEvents,
}

/// `<Number>`: a phone number, dialed out through a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberNoun {
    /// As written (trimmed): E.164 or a loosely formatted national number.
    pub number: String,
    /// DTMF to play once answered (`0-9 * # w`).
    pub send_digits: Option<String>,
    /// TwiML run on the called party before bridging (whisper).
    pub url: Option<String>,
    pub method: Method,
    pub status_callback: StatusCallback,
}

/// `<Sip>`: a SIP URI, optionally with digest credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipNoun {
    pub uri: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub url: Option<String>,
    pub method: Method,
    pub status_callback: StatusCallback,
}

/// `<Client>`: a client application identity, with custom parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNoun {
    pub identity: String,
    pub parameters: Vec<(String, String)>,
    pub url: Option<String>,
    pub method: Method,
    pub status_callback: StatusCallback,
}

/// `<Redirect>`: replace the current document with the one at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub url: String,
    pub method: Method,
}

/// `<Pause>`: wait `length_s` seconds (default 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub length_s: u32,
}

/// `<Reject reason>`: refuse an unanswered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RejectReason {
    #[default]
    Rejected,
    Busy,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Rejected => "rejected",
            RejectReason::Busy => "busy",
        }
    }
}

/// Why a document was refused. [`ParseError::code`] gives Twilio's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("document is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("document is empty")]
    Empty,
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("the root element is <{0}>, it must be <Response>")]
    RootNotResponse(String),
    #[error("elements are nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("more than {0} verbs")]
    TooManyVerbs(usize),
    #[error("<Dial> has more than {0} nouns")]
    TooManyNouns(usize),
    #[error("<{element}> has an invalid {attribute}={value:?}: {expected}")]
    InvalidAttribute { element: &'static str, attribute: &'static str, value: String, expected: &'static str },
    #[error("<{parent}> may not contain {child}")]
    InvalidNesting { parent: String, child: String },
    #[error("<{element}> needs {what}")]
    Missing { element: &'static str, what: &'static str },
}

impl ParseError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::TooLarge { .. } => ErrorCode::RESPONSE_TOO_LARGE,
            ParseError::Empty | ParseError::Xml(_) => ErrorCode::DOCUMENT_PARSE_FAILURE,
            ParseError::RootNotResponse(_) => ErrorCode::ROOT_NOT_RESPONSE,
            ParseError::InvalidNesting { parent, .. } if parent == "Dial" => ErrorCode::DIAL_INVALID_NESTED_ELEMENT,
            ParseError::InvalidAttribute { element, attribute, .. } => match (*element, *attribute) {
                ("Dial", "method") => ErrorCode::DIAL_INVALID_METHOD,
                ("Dial", "timeout") => ErrorCode::DIAL_INVALID_TIMEOUT,
                ("Dial", "hangupOnStar") => ErrorCode::DIAL_INVALID_HANGUP_ON_STAR,
                ("Dial", "callerId") => ErrorCode::DIAL_INVALID_CALLER_ID,
                ("Dial", "timeLimit") => ErrorCode::DIAL_INVALID_TIME_LIMIT,
                ("Dial" | "Number", "number") => ErrorCode::DIAL_INVALID_PHONE_NUMBER_FORMAT,
                ("Number", "method") => ErrorCode::NUMBER_INVALID_METHOD,
                ("Number", "sendDigits") => ErrorCode::NUMBER_INVALID_SEND_DIGITS,
                ("Redirect", "method") => ErrorCode::REDIRECT_INVALID_METHOD,
                ("Pause", "length") => ErrorCode::PAUSE_INVALID_LENGTH,
                _ => ErrorCode::SCHEMA_VALIDATION,
            },
            _ => ErrorCode::SCHEMA_VALIDATION,
        }
    }
}

/// Parses a TwiML voice document. Never panics, whatever `text` is.
pub fn parse(text: &str) -> Result<Document, ParseError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(ParseError::TooLarge { size: text.len(), limit: MAX_DOCUMENT_BYTES });
    }
    // Twilio chokes on whitespace or a BOM before `<?xml`; apps that work
    // there never send it, and being lenient here costs nothing.
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    let options = ParsingOptions { allow_dtd: false, nodes_limit: MAX_XML_NODES, ..ParsingOptions::default() };
    let xml = roxmltree::Document::parse_with_options(text, options).map_err(|e| ParseError::Xml(e.to_string()))?;
    check_depth(xml.root())?;
    let root = xml.root_element();
    if root.tag_name().name() != "Response" {
        return Err(ParseError::RootNotResponse(root.tag_name().name().to_owned()));
    }
    let mut verbs = Vec::new();
    for child in root.children() {
        match child.node_type() {
            NodeType::Element => {
                if verbs.len() == MAX_VERBS {
                    return Err(ParseError::TooManyVerbs(MAX_VERBS));
                }
                verbs.push(parse_verb(child)?);
            }
            NodeType::Text => no_text(child, "Response")?,
            _ => {}
        }
    }
    Ok(Document { verbs })
}

/// Walks the tree without recursion, so depth is checked before anything
/// recurses over it.
fn check_depth(root: Node<'_, '_>) -> Result<(), ParseError> {
    let mut stack = vec![(root, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep(MAX_DEPTH));
        }
        stack.extend(node.children().filter(Node::is_element).map(|c| (c, depth + 1)));
    }
    Ok(())
}

fn parse_verb(node: Node<'_, '_>) -> Result<Verb, ParseError> {
    let name = node.tag_name().name();
    Ok(match name {
        "Dial" => Verb::Dial(parse_dial(node)?),
        "Redirect" => {
            leaf(node, "Redirect")?;
            let url = text_of(node);
            if url.is_empty() {
                return Err(ParseError::Missing { element: "Redirect", what: "a URL" });
            }
            Verb::Redirect(Redirect { url, method: method(node, "Redirect", "method")? })
        }
        "Pause" => {
            empty(node, "Pause")?;
            Verb::Pause(Pause { length_s: integer(node, "Pause", "length", 1, 0, MAX_PAUSE_S, false)? })
        }
        "Hangup" => {
            empty(node, "Hangup")?;
            Verb::Hangup
        }
        "Reject" => {
            empty(node, "Reject")?;
            Verb::Reject(match node.attribute("reason").map(str::trim) {
                None | Some("rejected") => RejectReason::Rejected,
                Some("busy") => RejectReason::Busy,
                Some(other) => {
                    return Err(invalid("Reject", "reason", other, "rejected or busy"));
                }
            })
        }
        other => Verb::Unsupported { name: other.to_owned() },
    })
}

fn parse_dial(node: Node<'_, '_>) -> Result<Dial, ParseError> {
    const E: &str = "Dial";
    let mut nouns = Vec::new();
    for child in node.children().filter(Node::is_element) {
        if nouns.len() == MAX_DIAL_NOUNS {
            return Err(ParseError::TooManyNouns(MAX_DIAL_NOUNS));
        }
        nouns.push(parse_noun(child)?);
    }
    let text = text_of(node);
    if !text.is_empty() {
        if !nouns.is_empty() {
            return Err(ParseError::InvalidNesting { parent: E.to_owned(), child: "text beside nouns".to_owned() });
        }
        nouns.push(DialNoun::Number(NumberNoun {
            number: phone_number(&text, E)?,
            send_digits: None,
            url: None,
            method: Method::Post,
            status_callback: StatusCallback::default(),
        }));
    }
    if nouns.is_empty() {
        return Err(ParseError::Missing { element: E, what: "a number or a noun to dial" });
    }
    let timeout_s = integer(node, E, "timeout", Dial::DEFAULT_TIMEOUT_S, 1, MAX_DIAL_TIMEOUT_S, true)?;
    let time_limit_s = integer(node, E, "timeLimit", Dial::DEFAULT_TIME_LIMIT_S, 1, MAX_TIME_LIMIT_S, true)?;
    let record = match node.attribute("record").map(str::trim) {
        None | Some("do-not-record" | "false") => DialRecord::DoNotRecord,
        Some("record-from-answer" | "true") => DialRecord::RecordFromAnswer,
        Some("record-from-ringing") => DialRecord::RecordFromRinging,
        Some("record-from-answer-dual") => DialRecord::RecordFromAnswerDual,
        Some("record-from-ringing-dual") => DialRecord::RecordFromRingingDual,
        Some(other) => {
            return Err(invalid(E, "record", other, "do-not-record or record-from-answer/ringing[-dual]"));
        }
    };
    Ok(Dial {
        action: optional(node, "action"),
        method: method(node, E, "method")?,
        timeout_s,
        caller_id: optional(node, "callerId"),
        time_limit_s,
        answer_on_bridge: boolean(node, E, "answerOnBridge")?,
        hangup_on_star: boolean(node, E, "hangupOnStar")?,
        record,
        nouns,
    })
}

fn parse_noun(node: Node<'_, '_>) -> Result<DialNoun, ParseError> {
    Ok(match node.tag_name().name() {
        "Number" => {
            const E: &str = "Number";
            leaf(node, E)?;
            let send_digits = optional(node, "sendDigits");
            if let Some(digits) = &send_digits {
                if !digits.chars().all(|c| c.is_ascii_digit() || "*#wW".contains(c)) {
                    return Err(invalid(E, "sendDigits", digits, "digits, * # and w"));
                }
            }
            DialNoun::Number(NumberNoun {
                number: phone_number(&text_of(node), E)?,
                send_digits,
                url: optional(node, "url"),
                method: method(node, E, "method")?,
                status_callback: status_callback(node, E)?,
            })
        }
        "Sip" => {
            const E: &str = "Sip";
            leaf(node, E)?;
            let uri = text_of(node);
            let lower = uri.to_ascii_lowercase();
            if !(lower.starts_with("sip:") || lower.starts_with("sips:")) || uri.len() < 5 {
                return Err(invalid(E, "uri", &uri, "a sip: or sips: URI"));
            }
            DialNoun::Sip(SipNoun {
                uri,
                username: optional(node, "username"),
                password: optional(node, "password"),
                url: optional(node, "url"),
                method: method(node, E, "method")?,
                status_callback: status_callback(node, E)?,
            })
        }
        "Client" => DialNoun::Client(parse_client(node)?),
        "Conference" => DialNoun::Conference { name: named_text(node, "Conference")? },
        "Queue" => DialNoun::Queue { name: named_text(node, "Queue")? },
        other => {
            return Err(ParseError::InvalidNesting { parent: "Dial".to_owned(), child: format!("<{other}>") });
        }
    })
}

/// `<Client>` takes its identity either as text or as an `<Identity>` child
/// (the form needed once `<Parameter>`s are present).
fn parse_client(node: Node<'_, '_>) -> Result<ClientNoun, ParseError> {
    const E: &str = "Client";
    let mut identity = text_of(node);
    let mut parameters = Vec::new();
    for child in node.children().filter(Node::is_element) {
        match child.tag_name().name() {
            "Identity" => {
                leaf(child, "Identity")?;
                identity = text_of(child);
            }
            "Parameter" => {
                empty(child, "Parameter")?;
                let name = child.attribute("name").unwrap_or_default().trim();
                if name.is_empty() {
                    return Err(ParseError::Missing { element: "Parameter", what: "a name" });
                }
                let value = child.attribute("value").unwrap_or_default();
                parameters.push((name.to_owned(), value.to_owned()));
            }
            other => {
                return Err(ParseError::InvalidNesting { parent: E.to_owned(), child: format!("<{other}>") });
            }
        }
    }
    if identity.is_empty() {
        return Err(ParseError::Missing { element: E, what: "an identity" });
    }
    Ok(ClientNoun {
        identity,
        parameters,
        url: optional(node, "url"),
        method: method(node, E, "method")?,
        status_callback: status_callback(node, E)?,
    })
}

fn named_text(node: Node<'_, '_>, element: &'static str) -> Result<String, ParseError> {
    leaf(node, element)?;
    let name = text_of(node);
    if name.is_empty() {
        return Err(ParseError::Missing { element, what: "a name" });
    }
    Ok(name)
}

fn status_callback(node: Node<'_, '_>, element: &'static str) -> Result<StatusCallback, ParseError> {
    let events = match node.attribute("statusCallbackEvent") {
        None => CallProgressEvents::default(),
        Some(list) => {
            let mut events = CallProgressEvents { initiated: false, ringing: false, answered: false, completed: false };
            // Twilio documents space-separated; helper libraries join with
            // spaces, hand-written TwiML sometimes uses commas.
            for event in list.split([' ', ',']).filter(|e| !e.is_empty()) {
                match event {
                    "initiated" => events.initiated = true,
                    "ringing" => events.ringing = true,
                    "answered" => events.answered = true,
                    "completed" => events.completed = true,
                    _ => {
                        return Err(invalid(
                            element,
                            "statusCallbackEvent",
                            list,
                            "initiated, ringing, answered, completed",
                        ));
                    }
                }
            }
            events
        }
    };
    Ok(StatusCallback {
        url: optional(node, "statusCallback"),
        method: method(node, element, "statusCallbackMethod")?,
        events,
    })
}

/// E.164 (`+15550100001`) or loosely formatted (`(415) 555-1212`): digits
/// with separators, at most one leading `+`. Dial policy normalises it later.
fn phone_number(text: &str, element: &'static str) -> Result<String, ParseError> {
    let body = text.strip_prefix('+').unwrap_or(text);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    let well_formed = body.chars().all(|c| c.is_ascii_digit() || " -().".contains(c));
    if digits == 0 || !well_formed {
        return Err(invalid(element, "number", text, "a phone number"));
    }
    Ok(text.to_owned())
}

fn method(node: Node<'_, '_>, element: &'static str, attribute: &'static str) -> Result<Method, ParseError> {
    match node.attribute(attribute) {
        None => Ok(Method::Post),
        Some(value) => value.parse().map_err(|_| invalid(element, attribute, value, "GET or POST")),
    }
}

fn boolean(node: Node<'_, '_>, element: &'static str, attribute: &'static str) -> Result<bool, ParseError> {
    match node.attribute(attribute).map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(invalid(element, attribute, v, "true or false")),
    }
}

/// An integer attribute in `min..=max`; with `clamp`, values above `max`
/// are lowered to it (Twilio's behaviour for `timeout` and `timeLimit`).
fn integer(
    node: Node<'_, '_>,
    element: &'static str,
    attribute: &'static str,
    default: u32,
    min: u32,
    max: u32,
    clamp: bool,
) -> Result<u32, ParseError> {
    let Some(raw) = node.attribute(attribute) else {
        return Ok(default);
    };
    let expected = if min == 0 { "a whole number of seconds" } else { "a positive whole number of seconds" };
    let trimmed = raw.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(element, attribute, raw, expected));
    }
    // All digits: the only parse failure left is overflow, i.e. "huge".
    let value = trimmed.parse::<u32>().unwrap_or(u32::MAX);
    if value < min {
        return Err(invalid(element, attribute, raw, expected));
    }
    if value > max {
        return if clamp {
            Ok(max)
        } else {
            Err(invalid(element, attribute, raw, "a number of seconds within the limit"))
        };
    }
    Ok(value)
}

/// A present, non-blank attribute, trimmed. Apps often render `callerId=""`
/// for "none"; that means the default, not an error.
fn optional(node: Node<'_, '_>, attribute: &str) -> Option<String> {
    node.attribute(attribute).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The element's own text (all text children, comments skipped), trimmed.
fn text_of(node: Node<'_, '_>) -> String {
    let text: String = node.children().filter(Node::is_text).filter_map(|t| t.text()).collect();
    text.trim().to_owned()
}

/// Elements that hold text but no child elements.
fn leaf(node: Node<'_, '_>, element: &str) -> Result<(), ParseError> {
    match node.children().find(Node::is_element) {
        Some(child) => Err(ParseError::InvalidNesting {
            parent: element.to_owned(),
            child: format!("<{}>", child.tag_name().name()),
        }),
        None => Ok(()),
    }
}

/// Elements that hold nothing at all.
fn empty(node: Node<'_, '_>, element: &str) -> Result<(), ParseError> {
    leaf(node, element)?;
    if text_of(node).is_empty() {
        Ok(())
    } else {
        Err(ParseError::InvalidNesting { parent: element.to_owned(), child: "text".to_owned() })
    }
}

fn no_text(node: Node<'_, '_>, parent: &str) -> Result<(), ParseError> {
    match node.text() {
        Some(t) if !t.trim().is_empty() => {
            Err(ParseError::InvalidNesting { parent: parent.to_owned(), child: "text".to_owned() })
        }
        _ => Ok(()),
    }
}

fn invalid(element: &'static str, attribute: &'static str, value: &str, expected: &'static str) -> ParseError {
    ParseError::InvalidAttribute { element, attribute, value: value.to_owned(), expected }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verbs(xml: &str) -> Vec<Verb> {
        match parse(xml) {
            Ok(doc) => doc.verbs,
            Err(e) => panic!("{xml}: {e}"),
        }
    }

    fn error(xml: &str) -> ParseError {
        match parse(xml) {
            Ok(doc) => panic!("{xml} parsed: {doc:?}"),
            Err(e) => e,
        }
    }

    fn dial(xml: &str) -> Dial {
        match verbs(xml).as_slice() {
            [Verb::Dial(d)] => d.clone(),
            other => panic!("not one Dial: {other:?}"),
        }
    }

    #[test]
    fn plain_number_dial_with_defaults() {
        let d = dial(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial>415-123-4567</Dial></Response>"#);
        assert_eq!(d.action, None);
        assert_eq!(d.method, Method::Post);
        assert_eq!(d.timeout_s, 30);
        assert_eq!(d.time_limit_s, 14400);
        assert!(!d.answer_on_bridge && !d.hangup_on_star);
        assert_eq!(d.record, DialRecord::DoNotRecord);
        assert_eq!(
            d.nouns,
            vec![DialNoun::Number(NumberNoun {
                number: "415-123-4567".into(),
                send_digits: None,
                url: None,
                method: Method::Post,
                status_callback: StatusCallback::default(),
            })]
        );
    }

    #[test]
    fn dial_attributes_and_parallel_numbers() {
        let d = dial(
            r#"<Response>
              <Dial action="/done" method="GET" timeout="12" callerId="+15550100009"
                    timeLimit="60" answerOnBridge="true" hangupOnStar="TRUE" record="true"
                    ringTone="us">
                <Number sendDigits="ww1234#" statusCallback="https://app/st"
                        statusCallbackEvent="initiated ringing answered completed"
                        statusCallbackMethod="GET">+15550100001</Number>
                <!-- the second phone -->
                <Number url="/whisper" method="get">+15550100002</Number>
              </Dial>
            </Response>"#,
        );
        assert_eq!(d.action.as_deref(), Some("/done"));
        assert_eq!(d.method, Method::Get);
        assert_eq!((d.timeout_s, d.time_limit_s), (12, 60));
        assert_eq!(d.caller_id.as_deref(), Some("+15550100009"));
        assert!(d.answer_on_bridge && d.hangup_on_star);
        assert_eq!(d.record, DialRecord::RecordFromAnswer);
        let [DialNoun::Number(first), DialNoun::Number(second)] = d.nouns.as_slice() else { panic!("{:?}", d.nouns) };
        assert_eq!(first.number, "+15550100001");
        assert_eq!(first.send_digits.as_deref(), Some("ww1234#"));
        assert_eq!(first.status_callback.url.as_deref(), Some("https://app/st"));
        assert_eq!(first.status_callback.method, Method::Get);
        assert!(first.status_callback.events.initiated && first.status_callback.events.answered);
        assert_eq!(second.url.as_deref(), Some("/whisper"));
        assert_eq!(second.method, Method::Get);
        assert_eq!(second.status_callback.events, CallProgressEvents::default());
    }

    #[test]
    fn sip_client_conference_queue_nouns() {
        let d = dial(
            r#"<Response><Dial>
                <Sip username="u" password="p">sip:bob@example.com;transport=tcp</Sip>
                <Client><Identity>alice</Identity><Parameter name="k" value="v"/></Client>
                <Client>bob</Client>
                <Conference>room</Conference>
                <Queue>support</Queue>
            </Dial></Response>"#,
        );
        let names: Vec<_> = d.nouns.iter().map(DialNoun::name).collect();
        assert_eq!(names, ["Sip", "Client", "Client", "Conference", "Queue"]);
        let DialNoun::Sip(sip) = &d.nouns[0] else { panic!() };
        assert_eq!(sip.uri, "sip:bob@example.com;transport=tcp");
        assert_eq!((sip.username.as_deref(), sip.password.as_deref()), (Some("u"), Some("p")));
        let DialNoun::Client(alice) = &d.nouns[1] else { panic!() };
        assert_eq!(alice.identity, "alice");
        assert_eq!(alice.parameters, vec![("k".to_owned(), "v".to_owned())]);
        let DialNoun::Client(bob) = &d.nouns[2] else { panic!() };
        assert_eq!(bob.identity, "bob");
    }

    #[test]
    fn other_verbs_and_unsupported_ones_in_order() {
        let v = verbs(
            r#"<Response><Say>hi</Say><Pause/><Pause length="5"/><Redirect method="GET">/next</Redirect>
               <Gather><Say>x</Say></Gather><Reject reason="busy"/><Reject/><Hangup/><Foo/></Response>"#,
        );
        assert_eq!(
            v,
            vec![
                Verb::Unsupported { name: "Say".into() },
                Verb::Pause(Pause { length_s: 1 }),
                Verb::Pause(Pause { length_s: 5 }),
                Verb::Redirect(Redirect { url: "/next".into(), method: Method::Get }),
                Verb::Unsupported { name: "Gather".into() },
                Verb::Reject(RejectReason::Busy),
                Verb::Reject(RejectReason::Rejected),
                Verb::Hangup,
                Verb::Unsupported { name: "Foo".into() },
            ]
        );
        assert!(is_twiml_verb("Say") && !is_twiml_verb("Foo"));
    }

    #[test]
    fn empty_response_is_an_empty_document() {
        assert_eq!(verbs("<Response/>"), vec![]);
        assert_eq!(verbs("\u{feff}\n  <Response>\n</Response>\n"), vec![]);
    }

    #[test]
    fn large_timeouts_are_clamped() {
        let d = dial(r#"<Response><Dial timeout="9999" timeLimit="999999999999">+1555</Dial></Response>"#);
        assert_eq!((d.timeout_s, d.time_limit_s), (MAX_DIAL_TIMEOUT_S, MAX_TIME_LIMIT_S));
    }

    #[test]
    fn errors_carry_twilio_codes() {
        let cases: &[(&str, u32)] = &[
            ("", 12100),
            ("   ", 12100),
            ("<Response><Dial>", 12100),
            ("not xml at all", 12100),
            ("<Responses/>", 12102),
            ("<html><body>500</body></html>", 12102),
            (r#"<Response><Dial method="PUT">1</Dial></Response>"#, 13210),
            (r#"<Response><Dial timeout="0">1</Dial></Response>"#, 13212),
            (r#"<Response><Dial timeout="-5">1</Dial></Response>"#, 13212),
            (r#"<Response><Dial timeout="ten">1</Dial></Response>"#, 13212),
            (r#"<Response><Dial hangupOnStar="yes">1</Dial></Response>"#, 13213),
            (r#"<Response><Dial timeLimit="1.5">1</Dial></Response>"#, 13216),
            (r#"<Response><Dial><Say>x</Say></Dial></Response>"#, 13215),
            (r#"<Response><Dial>1<Number>2</Number></Dial></Response>"#, 13215),
            (r#"<Response><Dial><Number method="x">1</Number></Dial></Response>"#, 13221),
            (r#"<Response><Dial><Number sendDigits="12a">1</Number></Dial></Response>"#, 13222),
            (r#"<Response><Dial><Number>call me</Number></Dial></Response>"#, 13223),
            (r#"<Response><Dial>+1+555</Dial></Response>"#, 13223),
            (r#"<Response><Redirect method="PATCH">/x</Redirect></Response>"#, 13710),
            (r#"<Response><Pause length="x"/></Response>"#, 13910),
            (r#"<Response><Pause length="99999"/></Response>"#, 13910),
            (r#"<Response><Reject reason="nope"/></Response>"#, 12200),
            (r#"<Response><Dial/></Response>"#, 12200),
            (r#"<Response><Redirect/></Response>"#, 12200),
            (r#"<Response><Dial><Sip>tel:123</Sip></Dial></Response>"#, 12200),
            (r#"<Response><Dial><Client/></Dial></Response>"#, 12200),
            (r#"<Response>stray text</Response>"#, 12200),
            (r#"<Response><Hangup>now</Hangup></Response>"#, 12200),
            (r#"<Response><Dial><Number statusCallbackEvent="ended">1</Number></Dial></Response>"#, 12200),
        ];
        for (xml, code) in cases {
            assert_eq!(error(xml).code(), ErrorCode(*code), "{xml}: {}", error(xml));
        }
    }

    #[test]
    fn limits() {
        let big = format!("<Response>{}</Response>", " ".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(error(&big).code(), ErrorCode::RESPONSE_TOO_LARGE);

        let deep = format!("<Response>{}{}</Response>", "<a>".repeat(20), "</a>".repeat(20));
        assert_eq!(error(&deep), ParseError::TooDeep(MAX_DEPTH));
        // As deep as 64 KiB allows: refused, and no stack overflow on the way.
        let deepest = format!("<Response>{}</Response>", "<a>".repeat(16_000));
        assert!(parse(&deepest).is_err());
        let deepest = format!("<Response>{}{}</Response>", "<a>".repeat(8_000), "</a>".repeat(8_000));
        assert!(parse(&deepest).is_err());

        let many = format!("<Response>{}</Response>", "<Pause/>".repeat(MAX_VERBS + 1));
        assert_eq!(error(&many), ParseError::TooManyVerbs(MAX_VERBS));

        let nouns = format!("<Response><Dial>{}</Dial></Response>", "<Number>1</Number>".repeat(11));
        assert_eq!(error(&nouns), ParseError::TooManyNouns(MAX_DIAL_NOUNS));
        let ten = format!("<Response><Dial>{}</Dial></Response>", "<Number>1</Number>".repeat(10));
        assert_eq!(dial(&ten).nouns.len(), 10);

        let nodes = format!("<Response>{}</Response>", "<a/>".repeat(MAX_XML_NODES as usize));
        assert_eq!(error(&nodes).code(), ErrorCode::DOCUMENT_PARSE_FAILURE);
    }

    #[test]
    fn dtd_and_entities_are_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><Response>&a;</Response>"#;
        assert_eq!(error(laughs).code(), ErrorCode::DOCUMENT_PARSE_FAILURE);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn twiml_like_text_never_panics(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "<Response>", "</Response>", "<Dial", ">", "</Dial>", "<Number>", "</Number>",
                    " timeout=\"", "\"", "5", "-1", "+1555", "<Sip>", "</Sip>", "sip:a@b", "<Pause/>",
                    "<Redirect>", "</Redirect>", "/x", "<Client>", "</Client>", "<Parameter name=\"a\"/>",
                    "<Reject reason=\"busy\"/>", "<Say>", "</Say>", "&amp;", "<!--", "-->", " ",
                ]),
                0..40,
            )
        ) {
            let _ = parse(&parts.concat());
        }
    }
}
