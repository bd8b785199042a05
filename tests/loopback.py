"""A loopback HTTP server for tests: serves bytes from a dict, honours Range requests, and can be told to
answer with server errors or to drop a connection part way through a file."""

from __future__ import annotations

import collections
import http.server
import socket
import threading
import time


class LoopbackServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.fail_first: collections.Counter = collections.Counter()  # path → 5xx answers still to give
        self.drop_after: dict[str, int] = {}  # path → bytes sent before the next response is cut off
        self.ignore_range: set[str] = set()
        self.fail_ranges: set[str] = set()  # paths whose range requests are refused (416)
        self.bytes_served: collections.Counter = collections.Counter()  # path → body bytes sent
        self.bandwidth = 0  # bytes a second per connection (0: as fast as loopback goes)
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.connections = 0  # TCP connections accepted (HTTP/1.1: a client may send many requests on one)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                server.connections += 1
                # as web servers do: a response's headers and body are separate writes, and with Nagle's algorithm
                # the body of a second response on a kept-alive connection waits for the client's delayed ACK
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                path = self.path
                server.requests.append((path, self.headers.get("Range")))
                if server.fail_first[path] > 0:
                    server.fail_first[path] -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path not in server.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files[path]
                start, end = 0, len(data)
                range_header = self.headers.get("Range")
                if range_header and path not in server.ignore_range:
                    first, _, last = range_header.split("=")[1].partition("-")
                    start, end = int(first), min(len(data), int(last) + 1 if last else len(data))
                    if start >= len(data) or path in server.fail_ranges:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start))
                self.end_headers()
                body = data[start:end]
                server.bytes_served[path] += len(body)
                cut = server.drop_after.pop(path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if server.bandwidth:  # bytes a second per connection, as a remote server gives
                    for at in range(0, len(body), 65536):
                        self.wfile.write(body[at : at + 65536])
                        time.sleep(min(65536, len(body) - at) / server.bandwidth)
                else:
                    self.wfile.write(body)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def requests_for(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()
