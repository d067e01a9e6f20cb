#!/usr/bin/env python3
"""A customer's voice application, for the tests: a real HTTP server that
checks every webhook with Twilio's own RequestValidator, answers with what
the test configured for the path, and records what it received.

    customer_app.py --auth-token TOKEN [--bind 127.0.0.1] [--port 0]
                    [--tls-cert cert.pem --tls-key key.pem]

The first line on stdout is the port it listens on. With --tls-cert and
--tls-key that port speaks HTTPS, and a second line gives a plain HTTP port
(same app, same state) for the control endpoints. SIGTERM stops it.

Control endpoints (not signed, not recorded):
    POST /_control/route     {"path": "/voice", "status": 200, "body": "<Response/>",
                              "delay_ms": 0, "content_type": "text/xml",
                              "headers": {"Location": "/next"}}
    GET  /_control/requests?path=/voice    -> {"requests": [...]} (all paths without ?path)
    POST /_control/clear                   forgets the recorded requests

A path without a route answers 404. Signed requests with a bad signature
answer 403 (and are recorded with "signature_valid": false).
"""

import argparse
import json
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from twilio.request_validator import RequestValidator


class State:
    def __init__(self, auth_token):
        self.validator = RequestValidator(auth_token)
        self.lock = threading.Lock()
        self.routes = {}
        self.requests = []

    def route(self, path):
        with self.lock:
            return self.routes.get(path)


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the appliance's client pools connections.
    protocol_version = "HTTP/1.1"
    server_version = "CustomerApp/1.0"
    state = None  # set in main

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, body, content_type="text/plain", headers=None):
        data = body.encode("utf-8") if isinstance(body, str) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test); nothing to tell it.
            self.close_connection = True

    def handle_any(self, method):
        body = self.read_body()
        split = urlsplit(self.path)
        if split.path.startswith("/_control/"):
            return self.control(method, split, body)

        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True) if method == "POST" else []
        url = "%s://%s%s" % (self.server.scheme, self.headers.get("Host", ""), self.path)
        signature = self.headers.get("X-Twilio-Signature")
        # The validator reads POST parameters as a web framework hands them over.
        valid = signature is not None and self.state.validator.validate(url, dict(form), signature)
        record = {
            "method": method,
            "path": split.path,
            "query": parse_qsl(split.query, keep_blank_values=True),
            "form": form,
            "headers": {name: value for name, value in self.headers.items()},
            "url": url,
            "signature_valid": bool(valid),
            "received_at": time.time(),
        }
        with self.state.lock:
            self.state.requests.append(record)
        if not valid:
            return self.answer(403, "invalid X-Twilio-Signature")
        route = self.state.route(split.path)
        if route is None:
            return self.answer(404, "no route for %s" % split.path)
        if route.get("delay_ms"):
            time.sleep(route["delay_ms"] / 1000.0)
        self.answer(
            route.get("status", 200),
            route.get("body", ""),
            route.get("content_type", "text/xml"),
            route.get("headers"),
        )

    def control(self, method, split, body):
        if method == "POST" and split.path == "/_control/route":
            route = json.loads(body or b"{}")
            if not isinstance(route.get("path"), str):
                return self.answer(400, "a route needs a path")
            with self.state.lock:
                self.state.routes[route["path"]] = route
            return self.answer(200, "{}", "application/json")
        if method == "POST" and split.path == "/_control/clear":
            with self.state.lock:
                self.state.requests.clear()
            return self.answer(200, "{}", "application/json")
        if method == "GET" and split.path == "/_control/requests":
            wanted = dict(parse_qsl(split.query)).get("path")
            with self.state.lock:
                found = [r for r in self.state.requests if wanted is None or r["path"] == wanted]
            return self.answer(200, json.dumps({"requests": found}), "application/json")
        return self.answer(404, "unknown control endpoint")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()

    Handler.state = State(args.auth_token)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    if ":" in args.bind:
        ThreadingHTTPServer.address_family = socket.AF_INET6
    main_server = ThreadingHTTPServer((args.bind, args.port), Handler)
    main_server.scheme = "http"
    servers = [main_server]
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake runs in accept(); a client refusing our certificate
        # makes accept() fail, which socketserver ignores.
        main_server.socket = context.wrap_socket(main_server.socket, server_side=True)
        main_server.scheme = "https"
        plain = ThreadingHTTPServer((args.bind, 0), Handler)
        plain.scheme = "http"
        servers.append(plain)

    def stop(signum, frame):
        # shutdown() waits for serve_forever, so it cannot run on this thread.
        for server in servers:
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for server in servers:
        print(server.server_address[1], flush=True)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}) for s in servers[1:]]
    for thread in threads:
        thread.start()
    main_server.serve_forever(poll_interval=0.1)
    for thread in threads:
        thread.join()
    for server in servers:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
