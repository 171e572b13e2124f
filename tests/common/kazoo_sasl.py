"""SASL DIGEST-MD5 logins with kazoo, for tests/sasl.rs.

Usage: python3 kazoo_sasl.py PORT

Runs one fixed scenario against the server on 127.0.0.1:PORT and prints one line
per step, free of session ids, zxids and times, so that the transcripts of the
reference and of corral can be compared line for line. The server's JAAS file
holds bob/bobsecret, alice/alicesecret and super/supersecret. Every wait is bounded.
"""

import logging
import sys

from kazoo.client import KazooClient
from kazoo.security import make_acl

PORT = sys.argv[1]
TIMEOUT_S = 10


def client(user=None, password=None):
    options = None
    if user is not None:
        options = {"mechanism": "DIGEST-MD5", "username": user, "password": password}
    zk = KazooClient(
        hosts="127.0.0.1:" + PORT,
        sasl_options=options,
        timeout=TIMEOUT_S,
        connection_retry={"max_tries": 1},
        command_retry={"max_tries": 0},
    )
    zk.start(timeout=TIMEOUT_S)
    return zk


def step(name, fn):
    """Prints `name: result` or `name: ExceptionClass`."""
    try:
        result = fn()
    except Exception as e:  # the class is what both servers must agree on
        result = type(e).__name__
    print(f"{name}: {result}", flush=True)


def acl_text(acls):
    return ",".join(f"{a.id.scheme}:{a.id.id}:{a.perms}" for a in acls)


def login(user, password):
    """Starts a client and proves the login with a request (SASL runs first)."""
    zk = client(user, password)
    step(f"login {user}", lambda: zk.exists("/") is not None)
    return zk


bob = login("bob", "bobsecret")
step("bob creates /sasl", lambda: bob.create("/sasl", b"bob's", acl=[make_acl("sasl", "bob", all=True)]))
step("bob reads /sasl", lambda: bob.get("/sasl")[0])
step("bob reads the ACL", lambda: acl_text(bob.get_acls("/sasl")[0]))
step("bob creates a child", lambda: bob.create("/sasl/child", b"c", acl=[make_acl("sasl", "bob", read=True)]))
step("bob sets /sasl", lambda: bob.set("/sasl", b"v2").version)
step("bad sasl ACL id", lambda: bob.create("/bad", b"", acl=[make_acl("sasl", "a@b@c", all=True)]))
step("principal ACL id", lambda: bob.create("/principal", b"", acl=[make_acl("sasl", "zk/host@REALM", all=True)]))
bob.stop()
bob.close()

anon = client()
step("anonymous exists /sasl", lambda: anon.exists("/sasl").version)
step("anonymous reads /sasl", lambda: anon.get("/sasl")[0])
step("anonymous creates under /sasl", lambda: anon.create("/sasl/x", b""))
step("anonymous reads the ACL", lambda: acl_text(anon.get_acls("/sasl")[0]))
anon.stop()
anon.close()

alice = login("alice", "alicesecret")
step("alice reads /sasl", lambda: alice.get("/sasl")[0])
alice.stop()
alice.close()

# The SASL user `super` matches every sasl ACL.
sup = login("super", "supersecret")
step("super reads /sasl", lambda: sup.get("/sasl")[0])
step("super reads the child", lambda: sup.get("/sasl/child")[0])
sup.stop()
sup.close()

class AuthFailedSeen(logging.Handler):
    """Notes kazoo's own "AUTH_FAILED closing" report on its connection thread."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record):
        if record.getMessage().startswith("AUTH_FAILED"):
            self.seen = True


for user, password in [("bob", "wrong"), ("eve", "anything")]:
    seen = AuthFailedSeen()
    logging.getLogger("kazoo.client").addHandler(seen)
    try:
        zk = client(user, password)
    except Exception as e:
        # kazoo reports CONNECTED before it runs SASL; when the server refuses the
        # login before start() looks at the state, start() raises its time-out
        # although the cause was the refusal: print the refusal then.
        if seen.seen:
            print(f"login {user}/{password}: AuthFailedError", flush=True)
        else:
            print(f"login {user}/{password}: start {type(e).__name__}", flush=True)
        continue
    finally:
        logging.getLogger("kazoo.client").removeHandler(seen)
    # kazoo's state after the failure (AUTH_FAILED or CLOSED) races with its own
    # shutdown on either server; the failed request is what both must show.
    step(f"login {user}/{password}", lambda: zk.exists("/"))
    zk.stop()
    zk.close()
