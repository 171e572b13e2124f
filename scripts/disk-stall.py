#!/usr/bin/env python3
"""One member's disk stalls: what a 3-member ensemble's writers see.

Starts 3 members of one kind (corral or the reference) on 127.0.0.1 with the
sync-stall shim (tests/common/stall_sync_shim.c, built here with cc) preloaded,
one kazoo writer doing sequential setData through a follower, then holds every
fsync/fdatasync of the leader (or of the writer's follower) for HOLD seconds.
Prints the writes acknowledged before (per second), during the stall, and the
longest gap between two acknowledgements.

  scripts/disk-stall.py corral leader          # corral: target/release/corral
  scripts/disk-stall.py zookeeper follower --hold 3
  scripts/disk-stall.py corral leader --corral /tmp/corral-old --cfg corral.inlineSyncMaxMicros=0

Needs kazoo, cc, and for the reference java and the Debian package's jars.
Everything binds 127.0.0.1; the members are killed at the end.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JARS = ("zookeeper zookeeper-jute slf4j-api slf4j-simple metrics-core commons-cli snappy-java "
        "jackson-databind jackson-core jackson-annotations netty-handler netty-common "
        "netty-buffer netty-transport netty-codec netty-resolver netty-transport-native-epoll "
        "netty-transport-native-unix-common").split()
SERVING_POLLS_MAX = 300  # × 0.2 s
WARM_S = 2.0
AFTER_S = 3.0


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def four_letter(port, word):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(word.encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out.decode()
    except OSError:
        return ""


def mode(port):
    for line in four_letter(port, "srvr").splitlines():
        if line.startswith("Mode: "):
            return line[6:]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["corral", "zookeeper"])
    ap.add_argument("victim", choices=["leader", "follower"])
    ap.add_argument("--hold", type=float, default=3.0, help="seconds the stall is held")
    ap.add_argument("--corral", default=os.path.join(ROOT, "target/release/corral"))
    ap.add_argument("--cfg", action="append", default=[], help="extra zoo.cfg line (repeatable)")
    args = ap.parse_args()
    from kazoo.client import KazooClient

    work = tempfile.mkdtemp(prefix="corral-disk-stall-")
    shim = os.path.join(work, "stall.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim,
                    os.path.join(ROOT, "tests/common/stall_sync_shim.c"), "-ldl"], check=True)
    ports = free_ports(9)
    members = {sid: tuple(ports[3 * (sid - 1):3 * sid]) for sid in (1, 2, 3)}  # client, quorum, election
    servers = "".join(f"server.{s}=127.0.0.1:{q}:{e}:participant;127.0.0.1:{c}\n"
                      for s, (c, q, e) in members.items())
    cp = ":".join(f"/usr/share/java/{j}.jar" for j in JARS if os.path.exists(f"/usr/share/java/{j}.jar"))
    procs = {}
    try:
        for sid in members:
            d = os.path.join(work, f"m{sid}")
            os.makedirs(os.path.join(d, "data"))
            with open(os.path.join(d, "data/myid"), "w") as f:
                f.write(f"{sid}\n")
            with open(os.path.join(d, "zoo.cfg"), "w") as f:
                f.write(f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={d}/data\n"
                        "admin.enableServer=false\n4lw.commands.whitelist=*\nstandaloneEnabled=false\n"
                        "reconfigEnabled=false\nmaxClientCnxns=0\nforceSync=yes\n" + servers
                        + "".join(line + "\n" for line in args.cfg))
            env = dict(os.environ, LD_PRELOAD=shim, STALL_SYNC_FILE=os.path.join(d, "stall"))
            cfg = os.path.join(d, "zoo.cfg")
            cmd = ([args.corral, "server", "--config", cfg] if args.kind == "corral" else
                   ["java", "-Xmx512m", "-cp", cp, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg])
            procs[sid] = subprocess.Popen(cmd, env=env, stdout=open(os.path.join(d, "log"), "w"),
                                          stderr=subprocess.STDOUT)
        leader = None
        for _ in range(SERVING_POLLS_MAX):
            modes = {sid: mode(p[0]) for sid, p in members.items()}
            if sorted(filter(None, modes.values())) == ["follower", "follower", "leader"]:
                leader = next(s for s, m in modes.items() if m == "leader")
                break
            time.sleep(0.2)
        if leader is None:
            sys.exit(f"no leader and two followers: {modes}; logs in {work}")
        follower = next(s for s in members if s != leader)
        zk = KazooClient(hosts=f"127.0.0.1:{members[follower][0]}", timeout=30)
        zk.start()
        zk.create("/disk-stall", b"0")
        acks, stop = [], threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                try:
                    zk.set("/disk-stall", str(i).encode())
                    acks.append(time.time())
                    i += 1
                except Exception as e:  # a lost connection: count it, go on
                    print(f"write failed: {type(e).__name__}", file=sys.stderr)
                    time.sleep(0.05)

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(WARM_S)
        victim = leader if args.victim == "leader" else follower
        stall = os.path.join(work, f"m{victim}", "stall")
        t0 = time.time()
        open(stall, "w").close()
        time.sleep(args.hold)
        os.remove(stall)
        t1 = time.time()
        time.sleep(AFTER_S)
        stop.set()
        t.join()
        zk.stop()
        before = [a for a in acks if a < t0]
        during = [a for a in acks if t0 <= a < t1]
        gap = max((b - a for a, b in zip(acks, acks[1:])), default=0)
        print(f"{args.kind} {' '.join(args.cfg)}: {args.victim} {victim}'s disk stalled {args.hold:.1f} s "
              f"(leader {leader}, writer on {follower}): {len(before) / WARM_S:.0f} writes/s before, "
              f"{len(during)} acknowledged during the stall, longest gap {gap * 1000:.0f} ms; "
              f"modes after: {({sid: mode(p[0]) for sid, p in members.items()})}")
    finally:
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
