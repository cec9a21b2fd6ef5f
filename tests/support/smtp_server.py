"""A real SMTP server for the email reporter's tests: aiosmtpd on loopback, STARTTLS
required, AUTH (PLAIN, LOGIN) required over TLS with one user. Each message received
is appended to OUT as one JSON line; "ready" is printed once it listens.

Usage: python smtp_server.py PORT CERT KEY USER PASSWORD OUT
"""
import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, password, out = sys.argv[1:7]


class Auth:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        if ok:
            session.test_login = user
        return AuthResult(success=ok)


class Keep:
    async def handle_DATA(self, server, session, envelope):
        login = getattr(session, "test_login", None) if session.authenticated else None
        with open(out, "a") as f:
            f.write(
                json.dumps(
                    {
                        "mail_from": envelope.mail_from,
                        "rcpt_tos": envelope.rcpt_tos,
                        "data": envelope.content.decode("utf-8", "replace"),
                        "login": login,
                        "tls": session.ssl is not None,
                    }
                )
                + "\n"
            )
        return "250 OK"


tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
controller = Controller(
    Keep(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=tls,
    require_starttls=True,
    auth_required=True,
    auth_require_tls=True,
    authenticator=Auth(),
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
