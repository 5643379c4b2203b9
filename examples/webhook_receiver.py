"""A webhook receiver for `make demo`: an HTTP server on 127.0.0.1 that verifies each call's
Standard Webhooks signature (docs/webhooks.md) and prints what it got.

    python -m examples.webhook_receiver whsec_...   # prints its URL, then each call
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class WebhookReceiver:
    """Serves in a thread; `events` holds the verified events, in arrival order."""

    def __init__(self, secret: str, say: Any = print, host: str = "127.0.0.1") -> None:
        """`host`: where it listens; the demo's is the real node's bridge address, where the
        worker pods that deliver the callbacks reach it."""
        self.events: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        verifier = Webhook(secret)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    event: dict[str, Any] = verifier.verify(body, dict(self.headers.items()))
                except WebhookVerificationError as error:
                    say(f"refused a call to {self.path}: {error}")
                    self.send_response(401)
                    self.end_headers()
                    return
                data = event["data"]
                say(
                    f"{self.path}: {event['type']} for task {data['id']} ({data['name']} in "
                    f"{data['queue']}), signature verified, webhook-id "
                    f"{self.headers['webhook-id']}; result {json.dumps(data['result'])}"
                )
                self.send_response(204)
                self.end_headers()
                with receiver._arrived:
                    receiver.events.append(event)
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the handler prints what matters."""

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, count: int, limit: float) -> bool:
        """Whether `count` events arrived within `limit` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.events) >= count, limit)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].startswith("whsec_"):
        sys.exit("usage: python -m examples.webhook_receiver whsec_<base64 secret>")
    receiver = WebhookReceiver(sys.argv[1], say=lambda line: print(line, flush=True))
    receiver.start()
    print(f"listening on {receiver.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    main()
