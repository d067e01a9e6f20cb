//! Twilio's own Python helper library, driven from tests: access tokens
//! minted exactly as a customer's server mints them, and the REST API used
//! exactly as a customer's code uses it.
//!
//! Needs `python3` with the `twilio` package (scripts/test.sh installs it
//! into target/venv and puts that first on PATH); fails with a message
//! saying so, never skips.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::netns::Netns;

/// Mints one token per case with `AccessToken` + `VoiceGrant`. A case:
/// `{"account", "key", "secret", "identity", "ttl", "incoming"?, "app"?,
/// "params"?, "nbf"?, "algorithm"?}`; prints the tokens as a JSON list.
const MINT: &str = r#"
import json, sys
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

out = []
for case in json.load(sys.stdin):
    t = AccessToken(case["account"], case["key"], case["secret"], identity=case["identity"],
                    ttl=case["ttl"], nbf=case.get("nbf"))
    if case.get("algorithm"):
        t.algorithm = case["algorithm"]
    t.add_grant(VoiceGrant(
        incoming_allow=case.get("incoming"),
        outgoing_application_sid=case.get("app"),
        outgoing_application_params=case.get("params"),
    ))
    out.append(t.to_jwt())
print(json.dumps(out))
"#;

/// Twilio's helper library against the appliance's REST API: prints one
/// JSON line (a call record, a list of them, a raw JSON answer, or
/// `{"rest_error": ...}`).
///
/// usage: python3 -c REST BASE ACCOUNT TOKEN CAFILE OP ARGS_JSON with OP
/// `calls` (list), `create` (calls.create keywords), `update` (`sid` and
/// calls(sid).update keywords), `get` (ARGS: `path` under the API base,
/// answered as raw JSON) or `delete_key` (ARGS: `sid`).
const REST: &str = r#"
import json, sys
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TWILIO = "https://api.twilio.com"

class Appliance(TwilioHttpClient):
    def __init__(self, base, cafile):
        super().__init__()
        self.base = base
        self.session.trust_env = False
        self.session.verify = cafile

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        if url.startswith(TWILIO):
            url = self.base + url[len(TWILIO):]
        return super().request(method, url, params=params, data=data, headers=headers, auth=auth,
                               timeout=timeout, allow_redirects=allow_redirects)

def when(d):
    return d.isoformat() if d is not None else None

def record(client, account, c):
    raw = client.request("GET", "%s/2010-04-01/Accounts/%s/Calls/%s.json" % (TWILIO, account, c.sid))
    extra = json.loads(raw.text)
    return {"sid": c.sid, "parent_call_sid": c.parent_call_sid, "account_sid": c.account_sid,
            "to": c.to, "from": c._from, "status": c.status, "direction": c.direction,
            "duration": c.duration, "start_time": when(c.start_time), "end_time": when(c.end_time),
            "error_code": extra.get("error_code"), "error_message": extra.get("error_message")}

base, account, token, cafile, op = sys.argv[1:6]
args = json.loads(sys.argv[6])
client = Client(account, token, http_client=Appliance(base, cafile))
try:
    if op == "calls":
        out = [record(client, account, c) for c in client.calls.list()]
    elif op == "create":
        out = record(client, account, client.calls.create(**args))
    elif op == "update":
        sid = args.pop("sid")
        out = record(client, account, client.calls(sid).update(**args))
    elif op == "get":
        raw = client.request("GET", "%s/2010-04-01/Accounts/%s/%s" % (TWILIO, account, args["path"]))
        out = {"status": raw.status_code, "body": json.loads(raw.text)}
    elif op == "delete_key":
        out = {"deleted": client.keys(args["sid"]).delete()}
    else:
        raise SystemExit("unknown op " + op)
except TwilioRestException as e:
    out = {"rest_error": {"status": e.status, "code": e.code, "message": e.msg}}
print(json.dumps(out))
"#;

fn check_python() -> Result<()> {
    let probe = Command::new("python3").args(["-c", "import twilio.jwt.access_token, twilio.rest"]).output();
    match probe {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!(
            "python3 cannot import the twilio package ({}); run scripts/test.sh or `pip install twilio`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!("python3 is not available ({e}); install it and `pip install twilio`"),
    }
}

/// Access tokens minted by Twilio's `AccessToken`, one per case, in order.
pub fn mint(cases: &[Value]) -> Result<Vec<String>> {
    check_python()?;
    let mut child = Command::new("python3")
        .args(["-c", MINT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn python3")?;
    let input = Value::Array(cases.to_vec()).to_string();
    child.stdin.take().ok_or_else(|| anyhow!("python3 stdin"))?.write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("minting tokens failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Where the REST API is and who calls it.
pub struct RestClient<'a> {
    /// The namespace to run in (where `base` is reachable).
    pub netns: Option<&'a Netns>,
    /// `https://host:port`.
    pub base: String,
    pub account: String,
    pub token: String,
    pub cafile: &'a Path,
}

impl RestClient<'_> {
    /// Runs one operation (see [`REST`]) and returns its JSON line.
    pub fn run(&self, op: &str, args: &Value) -> Result<Value> {
        check_python()?;
        let python = Path::new("python3");
        let mut command = match self.netns {
            Some(ns) => ns.command(python),
            None => Command::new(python),
        };
        let out = command
            .arg("-c")
            .arg(REST)
            .arg(&self.base)
            .args([&self.account, &self.token])
            .arg(self.cafile)
            .arg(op)
            .arg(args.to_string())
            .output()
            .context("running python3 with Twilio's helper library")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        match serde_json::from_str(last) {
            Ok(v) if out.status.success() => Ok(v),
            _ => bail!(
                "REST {op} {args}: {}\nstdout:\n{stdout}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
