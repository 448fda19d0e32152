#!/usr/bin/env python3
"""Time to first render of the web console in headless Chromium.

Usage: bench/console-render.py URL [RUNS]   (e.g. http://127.0.0.1:13379/)

For each run a fresh headless Chromium (Debian's `chromium`) with an empty
profile loads URL over the DevTools protocol and reports, in real time:
first contentful paint (the page's own paint timing), the load event, and
the moment the page first shows data (the members table filled for the
etcd console, the task table for the MapReduce one, the groups table for
the shard server's), found by asking the
page every 5 ms. Prints each run and the medians, and the page's weight
(bytes of HTML as served; the page loads nothing else but its JSON).

Only the Python standard library: the DevTools WebSocket is spoken here
(RFC 6455 text frames, client-masked), enough for request/response.
"""

import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PORT = 9339
# The page shows data: the etcd console's members rows, the MapReduce
# console's task rows, or the shard server's group rows.
SHOWS_DATA = (
    "document.querySelectorAll('#members tr, #tasks tr, #groups tr').length > 0"
)
TIMING = (
    "JSON.stringify({fcp: (performance.getEntriesByName('first-contentful-paint')[0]"
    " || {}).startTime, load: (performance.getEntriesByType('navigation')[0]"
    " || {}).loadEventEnd})"
)


class DevTools:
    """One WebSocket to a page target; call() sends and waits for the answer."""

    def __init__(self, ws_url):
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head!r}")
        self.next_id = 0

    def _send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = bytes([0x81, 0x80 | n])
        elif n < 1 << 16:
            header = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + body)

    def _exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            out += chunk
        return out

    def _recv(self):
        first, second = self._exact(2)
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(self._exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._exact(8), "big")
        payload = self._exact(n)
        return json.loads(payload) if first & 0x0F == 1 else None

    def call(self, method, **params):
        """Sends one command; skips events until its answer comes."""
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg is not None and msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def value(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")


def page_target():
    """The WebSocket URL of Chromium's first page, once it listens."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Chromium's DevTools did not answer on port {PORT}")
        time.sleep(0.05)


def measure(dt, url):
    """Navigates; (first contentful paint, load end, data shown), in ms
    of the page's clock."""
    dt.call("Page.enable")
    dt.call("Page.navigate", url=url)
    deadline = time.monotonic() + 20
    shown = None
    while shown is None and time.monotonic() < deadline:
        shown = dt.value(f"({SHOWS_DATA}) ? performance.now() : null")
        time.sleep(0.005)
    t = {}
    while not (t.get("fcp") and t.get("load")) and time.monotonic() < deadline:
        t = json.loads(dt.value(TIMING))
        time.sleep(0.005)
    if shown is None or not (t.get("fcp") and t.get("load")):
        raise RuntimeError(f"{url}: no data, paint or load within 20 s ({t}, shown {shown})")
    return t["fcp"], t["load"], shown


def one_run(url):
    profile = tempfile.mkdtemp(prefix="flotilla-render-")
    browser = subprocess.Popen(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            f"--remote-debugging-port={PORT}", f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return measure(DevTools(page_target()), url)
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: bench/console-render.py URL [RUNS]")
    url = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) == 3 else 5
    if shutil.which("chromium") is None:
        sys.exit("console-render: chromium is not installed (Debian package chromium)")
    with urllib.request.urlopen(url, timeout=5) as r:
        weight = len(r.read())
    print(f"{url}: {weight} bytes of HTML (scripts and styles inline)")
    rows = []
    for i in range(runs):
        fcp, load, shown = one_run(url)
        rows.append((fcp, load, shown))
        print(f"run {i + 1}: first contentful paint {fcp:.1f} ms, load {load:.1f} ms, "
              f"data shown {shown:.1f} ms")
    med = [statistics.median(r[k] for r in rows) for k in range(3)]
    print(f"median of {runs}: first contentful paint {med[0]:.1f} ms, load {med[1]:.1f} ms, "
          f"data shown {med[2]:.1f} ms")


if __name__ == "__main__":
    main()
