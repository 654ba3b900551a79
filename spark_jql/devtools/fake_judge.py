"""A local fake chat-completions server: tests and the judge throughput benchmark talk to it, never to a real LLM.

It answers POST /v1/chat/completions after ``latency`` seconds with "Educational
score: N", where N is the digit after "level" in the document (0 without one).
Markers in the document choose other behaviour, so one server serves every test:

    SLOW       answer after one more second         BROKEN     503 every time
    STUCK      answer after 30 more seconds (only a client that gives up ends it)
    FLAKY      503 on the first request, then ok    BAD        400 (not retried)
    RATED      429 with Retry-After: 1 first        GIBBERISH  an answer without a score
    DECIMAL    "Educational score: 3.5"

``refuse=True`` answers 503 to everything (a server that is up but failing). ``slots=N`` lets
at most N requests generate at once, the rest queue (a replica's capacity, for the benchmark).
Like vLLM, it aborts a request whose client has gone (timed out, connection closed) instead of
finishing it: ``cancelled`` counts those. It counts requests per document, the peak number in
flight, and keeps request bodies and headers.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_DOCUMENT = (re.compile(r"The extract: (.*)\.\n\nAfter examining", re.S),  # fineweb-edu
             re.compile(r"The extract: (.*)\.(?:\\n| \\\n)After examining", re.S),  # ml-filter (literal backslash-n)
             re.compile(r"<document>\n(.*)\n</document>", re.S))


def document_of(prompt: str) -> str:
    for pattern in _DOCUMENT:
        found = pattern.search(prompt)
        if found:
            return found.group(1)
    return prompt


class FakeJudgeServer:
    """``with FakeJudgeServer(latency=0.05) as server: ... server.url`` (http://127.0.0.1:<port>/v1)."""

    def __init__(self, latency: float = 0.0, refuse: bool = False, slots: int | None = None):
        self.latency = latency
        self.refuse = refuse
        self.slots = threading.BoundedSemaphore(slots) if slots else None
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.total = 0
        self.cancelled = 0
        self.cancelled_after: list[float] = []  # seconds each aborted request had run on the server
        self.requests: dict[str, int] = {}
        self.times: dict[str, list[float]] = {}
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                doc = document_of(body["messages"][-1]["content"])
                with server.lock:
                    server.in_flight += 1
                    server.total += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.requests[doc] = server.requests.get(doc, 0) + 1
                    started = time.monotonic()
                    server.times.setdefault(doc, []).append(started)
                    seen = server.requests[doc]
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                try:
                    if server.slots is not None:
                        while not server.slots.acquire(timeout=0.02):  # queued: still notice a client that left
                            if self._client_gone(0):
                                return self._cancelled(started)
                    try:
                        marked = 30.0 if "STUCK" in doc else 1.0 if "SLOW" in doc else 0.0
                        if not self._wait(server.latency + marked):
                            return self._cancelled(started)
                        status, payload, extra = self._answer(doc, body, seen)
                    finally:
                        if server.slots is not None:
                            server.slots.release()
                finally:  # counted out before the answer is sent: the client cannot start its next request earlier
                    with server.lock:
                        server.in_flight -= 1
                self._send(status, payload, extra)

            def _cancelled(self, started: float):
                with server.lock:
                    server.cancelled += 1
                    server.cancelled_after.append(time.monotonic() - started)
                self.close_connection = True

            def _client_gone(self, timeout: float) -> bool:
                """The client closed its end (readable with nothing to read): the request is abandoned."""
                readable, _, _ = select.select([self.connection], [], [], timeout)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _wait(self, seconds: float) -> bool:
                """Generate for ``seconds``; False as soon as the client has gone."""
                end = time.monotonic() + seconds
                while (left := end - time.monotonic()) > 0:
                    if self._client_gone(min(left, 0.02)):
                        return False
                    time.sleep(min(max(end - time.monotonic(), 0), 0.005))
                return True

            def _answer(self, doc, body, seen):
                if self.path != "/v1/chat/completions":
                    return 404, {"error": "not found"}, {}
                if server.refuse or "BROKEN" in doc or ("FLAKY" in doc and seen == 1):
                    return 503, {"error": "overloaded"}, {}
                if "RATED" in doc and seen == 1:
                    return 429, {"error": "slow down"}, {"Retry-After": "1"}
                if "BAD" in doc:
                    return 400, {"error": "context too long"}, {}
                if "GIBBERISH" in doc:
                    answer = "I cannot decide."
                elif "DECIMAL" in doc:
                    answer = "Half way there.\nEducational score: 3.5"
                else:
                    level = re.search(r"level (\d)", doc)
                    answer = f"Some reasoning.\nEducational score: {level.group(1) if level else 0}"
                return 200, {"id": "x", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer}}]}, {}

            def _send(self, status, payload, extra):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256

            def handle_error(self, request, client_address):  # a client that timed out: not worth a traceback
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
