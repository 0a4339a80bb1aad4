#!/usr/bin/env python3
"""Recording reverse proxy for capture.sh.

Usage: proxy.py LISTEN_PORT UPSTREAM_HOST:PORT OUT_DIR

Forwards every request to the upstream API server over plain http and saves each request body
sent as application/vnd.kubernetes.protobuf to OUT_DIR/NNN-METHOD-path.bin, numbered in order.
"""
import http.client
import http.server
import itertools
import os
import re
import sys

LISTEN, UPSTREAM, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.makedirs(OUT, exist_ok=True)
COUNTER = itertools.count()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if body and self.headers.get("Content-Type", "").startswith("application/vnd.kubernetes.protobuf"):
            path = re.sub(r"[^A-Za-z0-9]+", "_", self.path.split("?")[0]).strip("_")
            with open(os.path.join(OUT, f"{next(COUNTER):03d}-{self.command}-{path}.bin"), "wb") as f:
                f.write(body)
        host, port = UPSTREAM.rsplit(":", 1)
        upstream = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{self.command} {self.path}\n")


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
