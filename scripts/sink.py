#!/usr/bin/env python3
"""Test receivers for tokenwatch's alert and revocation channels.

- SMTP (aiosmtpd) capturing every message;
- HTTP capturing every request, and checking each channel's contract:
  /generic   Standard Webhooks signature, verified with the official
             `standardwebhooks` library and the shared secret;
  /caep      an RFC 8935 push of an RFC 8417 SET, verified with PyJWT
             (ES256, the public half of --caep-key; typ secevent+jwt);
  /pagerduty answers 202 like Events v2; /alertmanager/api/v2/alerts 200;
  anything else 200/204.
GET /__records returns everything captured (JSON), GET /__mail the mail.

Usage: sink.py --smtp-port P --http-port Q --webhook-secret whsec_... --caep-key key.pem
Prints "ready" once both listen.
"""
import argparse
import email
import email.policy
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from standardwebhooks.webhooks import Webhook

records, mail = [], []
lock = threading.Lock()


class Mail:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = {}
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_type()] = part.get_content()
        with lock:
            mail.append({"from": envelope.mail_from, "to": envelope.rcpt_tos, "subject": str(msg["subject"]),
                         "message_id": str(msg["message-id"]), "parts": parts})
        return "250 OK"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smtp-port", type=int, required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--webhook-secret", required=True)
    ap.add_argument("--caep-key", required=True)
    ap.add_argument("--caep-audience", default="https://receiver.test")
    a = ap.parse_args()
    wh = Webhook(a.webhook_secret)
    with open(a.caep_key, "rb") as f:
        public = serialization.load_pem_private_key(f.read(), password=None).public_key()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, body=b"", ctype="application/json"):
            self.send_response(code)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with lock:
                if self.path == "/__records":
                    return self.reply(200, json.dumps(records).encode())
                if self.path == "/__mail":
                    return self.reply(200, json.dumps(mail).encode())
            self.reply(404)

        def handle_any(self):
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n) if n else b""
            rec = {"method": self.command, "path": self.path, "at": time.time(),
                   "headers": {k.lower(): v for k, v in self.headers.items()}, "body": raw.decode("utf-8", "replace")}
            code, out = 200, b"{}"
            if self.path == "/generic":
                try:
                    wh.verify(raw, {k: v for k, v in self.headers.items()})
                    rec["verified"] = True
                except Exception as e:  # noqa: BLE001 - any failure is recorded
                    rec["verified"] = False
                    rec["error"] = str(e)
                    code = 401
            elif self.path == "/caep":
                try:
                    hdr = jwt.get_unverified_header(raw)
                    claims = jwt.decode(raw, public, algorithms=["ES256"], audience=a.caep_audience)
                    rec["verified"] = hdr.get("typ") == "secevent+jwt"
                    rec["claims"] = claims
                    code, out = 202, b""
                except Exception as e:  # noqa: BLE001
                    rec["verified"] = False
                    rec["error"] = str(e)
                    code = 400
            elif self.path == "/pagerduty":
                code = 202
                out = json.dumps({"status": "success", "message": "Event processed",
                                  "dedup_key": json.loads(raw or b"{}").get("dedup_key")}).encode()
            elif self.path == "/slow":
                time.sleep(2)
            with lock:
                records.append(rec)
            self.reply(code, out)

        do_POST = do_PUT = do_DELETE = handle_any

    http = ThreadingHTTPServer(("127.0.0.1", a.http_port), H)
    smtp = Controller(Mail(), hostname="127.0.0.1", port=a.smtp_port)
    smtp.start()
    print("ready", flush=True)
    try:
        http.serve_forever()
    finally:
        smtp.stop()


if __name__ == "__main__":
    sys.exit(main())
