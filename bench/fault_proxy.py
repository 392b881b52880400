"""A fault-injecting HTTP/1.1 proxy for the soak benchmark (bench/soak.py), the Python twin of
tests/it/support/fault_proxy.rs: one request per connection (`Connection: close` both ways), and
for each request a fault drawn at random:

  pass      forwarded to the upstream server and its answer relayed
  5xx       answered 503 (MLflow-shaped JSON) without asking the upstream
  timeout   read, then held unanswered for `hang` seconds and closed
  drop      read, then the connection closed without an answer
  truncate  forwarded, but the answer cut off after its head and half its body

Standard library only (threads); `FaultProxy(upstream, weights).start()` returns its URL.
"""

from __future__ import annotations

import collections
import random
import socket
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port: int, weights: dict[str, float], hang: float, seed: int = 0):
        self.upstream_port = upstream_port
        self.weights = weights
        self.hang = hang
        self.random = random.Random(seed)
        self.counts: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.enabled = True

    def start(self) -> str:
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()
        return self.url

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _pick(self) -> str:
        with self.lock:
            if not self.enabled:
                fault = "pass"
            else:
                names = list(self.weights)
                fault = self.random.choices(names, [self.weights[n] for n in names])[0]
            self.counts[fault] += 1
            return fault

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(60)
        try:
            head, body = read_request(client)
            if head is None:
                return
            fault = self._pick()
            if fault == "5xx":
                payload = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected"}'
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                               b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
                return
            if fault == "timeout":
                time.sleep(self.hang)
                return
            if fault == "drop":
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60)
            with upstream:
                upstream.sendall(with_close(head) + body)
                answer = read_all(upstream)
            if fault == "truncate":
                split = answer.find(b"\r\n\r\n") + 4
                answer = answer[:split + max(0, (len(answer) - split) // 2)]
            client.sendall(answer)
        except OSError:
            pass
        finally:
            try:
                client.close()
            except OSError:
                pass


def read_request(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head, rest


def with_close(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n")
             if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"


def read_all(sock: socket.socket) -> bytes:
    """The upstream's whole answer (it closes after one, as asked); its head gets
    `Connection: close` so that the client does not reuse the connection."""
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    return with_close(head) + body if sep else bytes(data)
