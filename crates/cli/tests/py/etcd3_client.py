"""PyPI's etcd3 client (python-etcd3 0.12) against a Flotilla cluster.

Run by crates/cli/tests/etcd3_py.rs with the endpoints of a live cluster:
    python3 etcd3_client.py HOST:PORT HOST:PORT
Each check asserts with a message naming what differed; prints "ALL OK".
"""
import os
import sys
import threading
import time

# python-etcd3's generated modules predate protobuf 4's C++ descriptors.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
import etcd3  # noqa: E402


def client(endpoint):
    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=10)


def kv(c):
    c.delete_prefix("/py")
    c.put("/py/a", "1")
    c.put("/py/b", "2")
    value, meta = c.get("/py/a")
    assert value == b"1", f"get /py/a: {value!r}"
    assert meta.version == 1 and meta.create_revision == meta.mod_revision, meta
    pairs = [(m.key, v) for v, m in c.get_prefix("/py/", sort_order="descend")]
    assert pairs == [(b"/py/b", b"2"), (b"/py/a", b"1")], pairs
    assert c.replace("/py/a", "1", "3"), "compare-and-swap of the right value"
    assert not c.replace("/py/a", "1", "4"), "compare-and-swap of a stale value"
    ok, _ = c.transaction(
        compare=[c.transactions.value("/py/a") == "3", c.transactions.version("/py/b") == 1],
        success=[c.transactions.put("/py/c", "5")],
        failure=[c.transactions.delete("/py/c")],
    )
    assert ok and c.get("/py/c")[0] == b"5", "transaction"
    assert c.delete("/py/c") and not c.delete("/py/c"), "delete reports whether it deleted"
    return meta.mod_revision


def watch(c, first_revision):
    seen = []
    events, cancel = c.watch_prefix("/pyw/")
    done = threading.Event()

    def read():
        for ev in events:
            seen.append((type(ev).__name__, ev.key, ev.value))
            if len(seen) == 3:
                done.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)  # the watch is created asynchronously by the client
    c.put("/pyw/x", "1")
    c.put("/pyw/y", "2")
    c.delete("/pyw/x")
    assert done.wait(10), f"live watch saw only {seen}"
    cancel()
    want = [("PutEvent", b"/pyw/x", b"1"), ("PutEvent", b"/pyw/y", b"2"), ("DeleteEvent", b"/pyw/x", b"")]
    assert seen == want, seen
    # From an old revision: the history is replayed.
    replay, cancel = c.watch_prefix("/py/", start_revision=first_revision)
    first = next(iter(replay))
    cancel()
    assert (first.key, first.value) == (b"/py/a", b"1"), (first.key, first.value)


def leases(c):
    lease = c.lease(5)
    c.put("/pyl/k", "v", lease=lease)
    assert lease.granted_ttl == 5 and 0 < lease.remaining_ttl <= 5, lease.remaining_ttl
    assert list(lease.keys) == [b"/pyl/k"], list(lease.keys)
    lease.refresh()
    lease.revoke()
    assert c.get("/pyl/k") == (None, None), "a revoked lease's key is deleted"
    short = c.lease(1)
    c.put("/pyl/short", "v", lease=short)
    deadline = time.time() + 15
    while c.get("/pyl/short")[0] is not None:
        assert time.time() < deadline, "a 1 s lease's key outlived 15 s"
        time.sleep(0.2)


def locks(a, b):
    held = a.lock("pylock", ttl=10)
    assert held.acquire(timeout=5), "a free lock"
    other = b.lock("pylock", ttl=10)
    assert not other.acquire(timeout=1), "a held lock was taken by another client"
    held.release()
    assert other.acquire(timeout=5), "a released lock"
    other.release()


def cluster(c, n):
    members = list(c.members)
    assert len(members) == n, members
    assert all(m.client_urls for m in members), [m.client_urls for m in members]
    status = c.status()
    assert status.leader is not None and status.raft_term >= 1, status
    c.delete_prefix("/py")
    assert list(c.get_prefix("/py")) == [], "delete_prefix"


def main():
    endpoints = sys.argv[1:]
    a, b = client(endpoints[0]), client(endpoints[-1])
    first = kv(a)
    watch(b, first)
    leases(a)
    locks(a, b)
    cluster(b, len(endpoints))
    print("ALL OK")


if __name__ == "__main__":
    main()
