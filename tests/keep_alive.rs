//! TCP keepalive, as the reference's `clientTcpKeepAlive` (client connections)
//! and `tcpKeepAlive` (election links between members) set it: the server's own
//! end of each such connection, found through its `/proc/PID/fd` socket inodes in
//! `/proc/net/tcp{,6}`, must have its keepalive timer running (the `tr` column is
//! 2) with the key set, and must not without it. The reference and corral are
//! checked alike; the election links in a mixed ensemble, on every member.
//!
//! And `clientPortListenBacklog`: every listening socket of the client port has
//! that backlog (`ss`'s Send-Q of a LISTEN socket), on both servers.
//!
//! No timing is asserted: a socket's timer is read again, a bounded number of
//! times, until it shows the expected state.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::ensemble::{Ensemble, Role};
use common::{require_reference, Kind, RawClient, Server};

/// Session timeout asked for by the raw clients.
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// How many times a socket's state is read before the test gives up.
const POLLS_MAX: u32 = 100;
/// Pause between those reads.
const POLL_MS: u64 = 20;
/// `/proc/net/tcp`'s `tr` value for a socket whose keepalive timer is pending.
const TIMER_KEEPALIVE: u8 = 2;
/// `/proc/net/tcp`'s `st` value of an established connection.
const ESTABLISHED: &str = "01";

/// One established TCP socket of a process: its local and remote ports and the
/// timer it has pending (`tr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sock {
    local: u16,
    remote: u16,
    timer: u8,
}

/// The established TCP sockets `pid` holds (IPv4 and IPv6 tables: the JVM's
/// sockets are IPv6 ones with mapped addresses).
fn sockets_of(pid: u32) -> Vec<Sock> {
    let mut inodes = HashSet::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().to_string();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(n.to_string());
            }
        }
    }
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != ESTABLISHED || !inodes.contains(f[9]) {
                continue;
            }
            out.push(Sock {
                local: port(f[1]),
                remote: port(f[2]),
                timer: f[5].split(':').next().unwrap().parse().unwrap(),
            });
        }
    }
    out
}

/// Reads `pid`'s sockets picked by `pick` until every one of them (at least one)
/// has `keepalive` as its state; the last reading when they never do.
fn wait_keepalive(pid: u32, keepalive: bool, pick: impl Fn(&Sock) -> bool) -> Result<(), String> {
    let mut last = Vec::new();
    for _ in 0..POLLS_MAX {
        last = sockets_of(pid).into_iter().filter(&pick).collect();
        if !last.is_empty()
            && last
                .iter()
                .all(|s| (s.timer == TIMER_KEEPALIVE) == keepalive)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    Err(format!("keepalive {keepalive} expected; sockets: {last:?}"))
}

/// A client's connection to a standalone server of `kind` with `cfg`: the
/// server's end has keepalive exactly when `keepalive`.
fn client_connection(kind: Kind, cfg: &str, keepalive: bool) {
    let server = Server::start(kind, cfg);
    let client = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let client_port = client.local_port();
    let server_port: u16 = server.addr().rsplit(':').next().unwrap().parse().unwrap();
    let pid = server.pid().expect("the server runs");
    let picked = |s: &Sock| s.local == server_port && s.remote == client_port;
    if let Err(e) = wait_keepalive(pid, keepalive, picked) {
        panic!("{kind:?} with {cfg:?}: {e}\n{}", server.log_tail());
    }
}

#[test]
fn client_tcp_keep_alive_sets_keepalive_on_client_connections() {
    if !require_reference() {
        return;
    }
    for kind in [Kind::Reference, Kind::Corral] {
        client_connection(kind, "clientTcpKeepAlive=true\n", true);
        client_connection(kind, "", false);
    }
}

/// Every member's end of every election link (to or from another member's
/// election port) has keepalive exactly when `keepalive`.
fn election_links(cfg: &str, keepalive: bool) {
    let kinds = [Kind::Reference, Kind::Corral, Kind::Corral];
    if !Ensemble::can_start(&kinds) {
        return;
    }
    let members = kinds.map(|k| (k, Role::Participant));
    let ens = Ensemble::start_cfg(&members, cfg);
    ens.wait_leader();
    let election: Vec<u16> = ens.sids().iter().map(|&s| ens.ports(s).election).collect();
    for sid in ens.sids() {
        let pid = ens.pid(sid).expect("the member runs");
        let mine = ens.ports(sid).election;
        let picked =
            |s: &Sock| s.local == mine || (s.remote != mine && election.contains(&s.remote));
        if let Err(e) = wait_keepalive(pid, keepalive, picked) {
            panic!(
                "member {sid} ({:?}) with {cfg:?}: {e}\n{}",
                ens.kind(sid),
                ens.report()
            );
        }
    }
}

#[test]
fn tcp_keep_alive_sets_keepalive_on_election_links() {
    election_links("tcpKeepAlive=true\n", true);
}

#[test]
fn election_links_have_no_keepalive_by_default() {
    election_links("", false);
}

/// The backlogs of the sockets listening on `port` (`ss -ltnH`, Send-Q).
fn listen_backlogs(port: u16) -> Vec<u32> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

#[test]
fn client_port_listen_backlog_sets_the_listen_backlog() {
    if !require_reference() {
        return;
    }
    for kind in [Kind::Reference, Kind::Corral] {
        let server = Server::start(kind, "clientPortListenBacklog=7\n");
        let port: u16 = server.addr().rsplit(':').next().unwrap().parse().unwrap();
        let backlogs = listen_backlogs(port);
        assert!(
            !backlogs.is_empty() && backlogs.iter().all(|&b| b == 7),
            "{kind:?}: {backlogs:?}"
        );
        // One reference JVM at a time: the first server goes before the second.
        drop(server);
        let default = Server::start(kind, "");
        let port: u16 = default.addr().rsplit(':').next().unwrap().parse().unwrap();
        let defaults = listen_backlogs(port);
        eprintln!("[{kind:?}] default listen backlog: {defaults:?}");
        // The reference's JVM default is its own (50); corral's is 1024.
        if kind == Kind::Corral {
            assert!(
                !defaults.is_empty() && defaults.iter().all(|&b| b == 1024),
                "{defaults:?}"
            );
        }
    }
}
