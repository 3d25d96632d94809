"""The retrying client against a real HTTP server on loopback that cuts its first answer off."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.client import Client

ANSWER = json.dumps({"prediction": "1", "model_version": 3}).encode()


class CutsTheFirstAnswer(BaseHTTPRequestHandler):
    """Headers promising the whole body, then nothing: a replica killed mid-answer."""

    answered = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        type(self).answered += 1
        if type(self).answered > 1:
            self.wfile.write(ANSWER)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_cut_off_mid_body_is_retried_not_raised():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CutsTheFirstAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_address[1]}", backoff_s=0.01)
        assert client.predict({"age": 41}) == json.loads(ANSWER)
        assert client.retried == 1 and CutsTheFirstAnswer.answered == 2
    finally:
        server.shutdown()
        server.server_close()
