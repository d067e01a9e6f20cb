#!/usr/bin/env python3
"""Drives the appliance's REST API with Twilio's own helper library (PyPI
`twilio`), as an application written for Twilio would, and prints what it
saw as one JSON line for test-harness/tests/rest_api.rs to check.

The only change from talking to Twilio: an HTTP client that sends
`https://api.twilio.com/...` to the appliance instead, trusting the
appliance's certificate (its `cert.pem`) rather than the public CAs.

usage: rest_client.py --base https://127.0.0.1:8443 --account AC... --token ...
                      --key-sid SK... --key-secret ... --cafile cert.pem
"""

import argparse
import datetime
import json
import sys
import traceback

try:
    from twilio.base.exceptions import TwilioException, TwilioRestException
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client
except ImportError as e:  # the Rust test reports this with the fix
    print(json.dumps({"fatal": f"the twilio helper library is missing ({e}): pip install twilio"}))
    sys.exit(3)

TWILIO = "https://api.twilio.com"


class ApplianceHttpClient(TwilioHttpClient):
    """Twilio's HTTP client, pointed at the appliance."""

    def __init__(self, base, cafile):
        super().__init__()
        self.base = base.rstrip("/")
        # Neither proxies nor REQUESTS_CA_BUNDLE from the environment: the
        # appliance is local and its certificate is the only one trusted.
        self.session.trust_env = False
        self.session.verify = cafile
        self.requests = 0

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        if url.startswith(TWILIO):
            url = self.base + url[len(TWILIO):]
        self.requests += 1
        return super().request(method, url, params=params, data=data, headers=headers, auth=auth,
                               timeout=timeout, allow_redirects=allow_redirects)


def rest_error(call):
    """Runs `call`, expecting an error answer: its status, code and message.
    Fetches and writes raise TwilioRestException; lists raise a plain
    TwilioException holding the response (as they do against Twilio)."""
    try:
        call()
    except TwilioRestException as e:
        return {"status": e.status, "code": e.code, "message": e.msg}
    except TwilioException as e:
        response = e.args[1] if len(e.args) > 1 else None
        if response is None or not hasattr(response, "status_code"):
            raise
        body = json.loads(response.text)
        return {"status": response.status_code, "code": body.get("code"), "message": body.get("message")}
    return {"status": None, "code": None, "message": "no error"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--account", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--key-sid", required=True)
    p.add_argument("--key-secret", required=True)
    p.add_argument("--cafile", required=True)
    a = p.parse_args()

    http = ApplianceHttpClient(a.base, a.cafile)
    client = Client(a.account, a.token, http_client=http)
    out = {}

    account = client.api.v2010.accounts(a.account).fetch()
    out["account"] = {"sid": account.sid, "status": account.status,
                      "date_created_is_datetime": isinstance(account.date_created, datetime.datetime)}

    # Applications: create, list (paged), fetch, update, delete.
    app = client.applications.create(
        friendly_name="rest-e2e",
        voice_url="http://127.0.0.1:8080/voice",
        voice_method="GET",
        status_callback="http://127.0.0.1:8080/status",
    )
    out["app_created"] = {"sid": app.sid, "friendly_name": app.friendly_name, "voice_url": app.voice_url,
                          "voice_method": app.voice_method, "account_sid": app.account_sid,
                          "api_version": app.api_version,
                          "date_created_is_datetime": isinstance(app.date_created, datetime.datetime)}
    extra = [client.applications.create(friendly_name=f"page-{i}").sid for i in range(4)]
    before = http.requests
    listed = client.applications.list(page_size=2)
    out["app_list"] = {"sids": [x.sid for x in listed], "requests": http.requests - before}
    out["app_list_limited"] = len(client.applications.list(limit=3))
    page = client.applications.page(page_size=2)
    out["app_page"] = {"next_page_url": page.next_page_url, "count": len(list(page))}
    out["app_expected"] = [app.sid] + extra
    fetched = client.applications(app.sid).fetch()
    out["app_fetched"] = {"sid": fetched.sid, "voice_url": fetched.voice_url}
    updated = client.applications(app.sid).update(voice_url="https://127.0.0.1:8443/next",
                                                  voice_fallback_url="http://127.0.0.1:8080/fallback")
    out["app_updated"] = {"voice_url": updated.voice_url, "voice_fallback_url": updated.voice_fallback_url,
                          "voice_method": updated.voice_method}

    # Incoming phone numbers.
    number = client.incoming_phone_numbers.create(phone_number="+15550100042", voice_application_sid=app.sid)
    out["number_created"] = {"sid": number.sid, "phone_number": number.phone_number,
                             "voice_application_sid": number.voice_application_sid}
    found = client.incoming_phone_numbers.list(phone_number="+15550100042")
    out["number_list"] = [n.sid for n in found]
    out["number_taken"] = rest_error(
        lambda: client.incoming_phone_numbers.create(phone_number="+15550100042"))
    out["app_in_use"] = rest_error(lambda: client.applications(app.sid).delete())

    # Keys: the secret once, listed, usable, deleted, refused afterwards.
    new_key = client.new_keys.create(friendly_name="rest-e2e-key")
    out["key_created"] = {"sid": new_key.sid, "has_secret": bool(new_key.secret),
                          "friendly_name": new_key.friendly_name}
    out["key_list"] = [k.sid for k in client.keys.list()]
    out["key_fetched"] = client.keys(new_key.sid).fetch().friendly_name
    keyed = Client(new_key.sid, new_key.secret, a.account, http_client=http)
    out["key_auth_apps"] = len(keyed.applications.list())
    seeded = Client(a.key_sid, a.key_secret, a.account, http_client=http)
    out["seeded_key_fetch"] = seeded.applications(app.sid).fetch().sid
    out["key_deleted"] = client.keys(new_key.sid).delete()
    out["key_after_delete"] = rest_error(lambda: keyed.applications.list())

    # Calls: records only (placing calls needs the call machinery).
    out["calls_to"] = [c.sid for c in client.calls.list(to="+15550100042")]
    out["calls_all"] = len(client.calls.list(status="completed", limit=20))
    out["call_missing"] = rest_error(lambda: client.calls("CA" + "0" * 32).fetch())
    out["call_create"] = rest_error(lambda: client.calls.create(
        to="+15550100099", from_="+15550100042", url="http://127.0.0.1:8080/voice"))

    # Credentials.
    wrong = Client(a.account, "not-the-token", http_client=http)
    out["wrong_password"] = rest_error(lambda: wrong.applications.list())

    # Clean up, and the 404 after.
    out["number_deleted"] = client.incoming_phone_numbers(number.sid).delete()
    out["app_deleted"] = client.applications(app.sid).delete()
    out["app_gone"] = rest_error(lambda: client.applications(app.sid).fetch())
    out["requests"] = http.requests
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, for the Rust test to show
        print(json.dumps({"fatal": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}))
        sys.exit(1)
