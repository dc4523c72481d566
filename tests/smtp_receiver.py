"""A real SMTP server for the email notification tests: aiosmtpd (PyPI), with STARTTLS required
and AUTH (PLAIN/LOGIN) accepted only over TLS for one user. Each message received is appended
to OUT as one JSON line {"from", "to", "data"}. Prints "ready" once listening.

Usage: python smtp_receiver.py PORT CERT KEY USER PASSWORD OUT
"""
import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def main():
    port, cert, key, user, password, out = sys.argv[1:7]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        # handled=False: aiosmtpd answers "535" itself (its default, handled=True, sends nothing).
        return AuthResult(success=ok, handled=False)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                    "auth": session.authenticated,
                }) + "\n")
            return "250 OK"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
