//! A fault-injecting TCP proxy between ensemble members: one forwarder per
//! ordered pair (from → to) and per peer port (quorum, election), so member
//! `from`'s zoo.cfg lists the forwarder's ports as `to`'s address (see
//! `Ensemble::route_peers`). The nemesis then cuts, stalls or delays the
//! traffic of a pair, both directions of a link at once.
//!
//! Runs on plain threads in the test process: one acceptor per forwarder and two
//! copiers per connection (from → to and back), all blocking std sockets with
//! short timeouts so they notice a mode change and the proxy's drop. Bytes flow
//! client socket → copier → upstream socket; before forwarding a chunk a
//! copier looks at its link's [`LinkMode`]:
//! - `Pass`: forward at once; `Delay(ms)`: sleep, then forward;
//! - `Stall`: hold the chunk (a dropped-packets partition: connections hang
//!   until the members' own timeouts fire); new connections are accepted and
//!   held too;
//! - `Cut`: close both sockets; new connections are closed at once (a
//!   refused-connection partition).
//!
//! The election port needs one rewrite: a ZooKeeper 3.5+ member's first
//! message on it names its own election address, and the receiver with the
//! higher sid dials the lower one back *at that address*, past the proxy. The
//! forwarder from → to therefore replaces that address by its twin to → from,
//! so the dial-back goes through the proxy as well. corral dials back by its
//! own config and does not care.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes one copier reads and forwards at a time.
const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// How long a blocked read or a held chunk waits before looking at the mode again.
const MODE_POLL_MS: u64 = 20;
/// Longest election init message the rewrite reads (the reference's own bound is larger,
/// but a member's address is a few dozen bytes).
const INIT_MESSAGE_BYTES_MAX: usize = 4096;
/// ZooKeeper's election init message versions (negative first long).
const INIT_VERSION_V1: i64 = -65536;
const INIT_VERSION_V2: i64 = -65535;

/// What a link does with its traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Pass,
    /// Each chunk waits this many ms before it is forwarded.
    Delay(u64),
    /// Nothing is forwarded; connections stay open.
    Stall,
    /// Connections are closed and new ones refused.
    Cut,
}

/// Which peer port a forwarder stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerPort {
    Quorum,
    Election,
}

/// The mode of every undirected link, shared by all forwarders.
#[derive(Default)]
struct Links {
    modes: Mutex<BTreeMap<(u64, u64), LinkMode>>,
}

impl Links {
    fn key(a: u64, b: u64) -> (u64, u64) {
        (a.min(b), a.max(b))
    }

    fn mode(&self, a: u64, b: u64) -> LinkMode {
        let modes = self.modes.lock().unwrap();
        modes
            .get(&Self::key(a, b))
            .copied()
            .unwrap_or(LinkMode::Pass)
    }
}

/// Forwarders for every ordered pair of an ensemble's members.
pub struct PeerProxy {
    links: Arc<Links>,
    /// (from, to, port) → the forwarder's listening port.
    ports: BTreeMap<(u64, u64, PeerPort), u16>,
    stop: Arc<AtomicBool>,
    /// Open sockets, so a cut and the drop can close them.
    conns: Arc<Mutex<Vec<(u64, u64, TcpStream)>>>,
    acceptors: Vec<JoinHandle<()>>,
}

/// One forwarder's fixed facts, shared by its acceptor and copiers.
#[derive(Clone)]
struct Forward {
    from: u64,
    to: u64,
    port: PeerPort,
    target: u16,
    /// For the election port: the forwarder to → from, named in the rewritten init message.
    twin: u16,
    links: Arc<Links>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<(u64, u64, TcpStream)>>>,
}

impl PeerProxy {
    /// Listens for every ordered pair of `members` (sid → its real (quorum,
    /// election) ports), avoiding `taken` ports (the members' own, free but
    /// not yet bound).
    pub fn start(members: &BTreeMap<u64, (u16, u16)>, taken: &HashSet<u16>) -> PeerProxy {
        let mut listeners = BTreeMap::new();
        for &from in members.keys() {
            for &to in members.keys().filter(|&&t| t != from) {
                for port in [PeerPort::Quorum, PeerPort::Election] {
                    listeners.insert((from, to, port), bind_avoiding(taken));
                }
            }
        }
        let ports: BTreeMap<_, _> = listeners
            .iter()
            .map(|(k, l)| (*k, l.local_addr().unwrap().port()))
            .collect();
        let mut proxy = PeerProxy {
            links: Arc::default(),
            ports,
            stop: Arc::default(),
            conns: Arc::default(),
            acceptors: Vec::new(),
        };
        for ((from, to, port), listener) in listeners {
            let (q, e) = members[&to];
            let fwd = Forward {
                from,
                to,
                port,
                target: if port == PeerPort::Quorum { q } else { e },
                twin: proxy.ports[&(to, from, PeerPort::Election)],
                links: proxy.links.clone(),
                stop: proxy.stop.clone(),
                conns: proxy.conns.clone(),
            };
            proxy
                .acceptors
                .push(std::thread::spawn(move || accept_loop(listener, fwd)));
        }
        proxy
    }

    /// The (quorum, election) ports member `from` uses to reach member `to`.
    pub fn route(&self, from: u64, to: u64) -> (u16, u16) {
        (
            self.ports[&(from, to, PeerPort::Quorum)],
            self.ports[&(from, to, PeerPort::Election)],
        )
    }

    /// A copy of the routing table, for `Ensemble::route_peers`.
    pub fn routes(&self) -> impl Fn(u64, u64) -> (u16, u16) + 'static {
        let ports = self.ports.clone();
        move |from, to| {
            (
                ports[&(from, to, PeerPort::Quorum)],
                ports[&(from, to, PeerPort::Election)],
            )
        }
    }

    /// Sets the link between `a` and `b` (both directions); a cut closes its
    /// open connections at once.
    pub fn set(&self, a: u64, b: u64, mode: LinkMode) {
        self.links
            .modes
            .lock()
            .unwrap()
            .insert(Links::key(a, b), mode);
        if mode == LinkMode::Cut {
            self.close_link(a, b);
        }
    }

    /// The mode of the link between `a` and `b`.
    pub fn mode(&self, a: u64, b: u64) -> LinkMode {
        self.links.mode(a, b)
    }

    /// Every link back to `Pass`.
    pub fn heal(&self) {
        self.links.modes.lock().unwrap().clear();
    }

    fn close_link(&self, a: u64, b: u64) {
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|(f, t, s)| {
            let hit = Links::key(*f, *t) == Links::key(a, b);
            if hit {
                let _ = s.shutdown(Shutdown::Both);
            }
            !hit
        });
    }
}

impl Drop for PeerProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, _, s) in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        for h in self.acceptors.drain(..) {
            let _ = h.join();
        }
    }
}

/// A listener on a free 127.0.0.1 port not in `taken`.
fn bind_avoiding(taken: &HashSet<u16>) -> TcpListener {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        if !taken.contains(&l.local_addr().unwrap().port()) {
            l.set_nonblocking(true).unwrap();
            return l;
        }
    }
}

/// Accepts until the proxy stops (non-blocking listener, polled).
fn accept_loop(listener: TcpListener, fwd: Forward) {
    while !fwd.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                admit(client, &fwd);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(MODE_POLL_MS))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(MODE_POLL_MS)),
        }
    }
}

/// Connects a new connection upstream (unless the link is cut) and starts its copiers.
fn admit(client: TcpStream, fwd: &Forward) {
    if fwd.links.mode(fwd.from, fwd.to) == LinkMode::Cut {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", fwd.target)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    for s in [&client, &upstream] {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_millis(MODE_POLL_MS * 5)));
    }
    {
        let mut conns = fwd.conns.lock().unwrap();
        conns.push((fwd.from, fwd.to, client.try_clone().unwrap()));
        conns.push((fwd.from, fwd.to, upstream.try_clone().unwrap()));
    }
    let rewrite = fwd.port == PeerPort::Election;
    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let n = NEXT_CONN.fetch_add(1, Ordering::SeqCst);
    let name = |dir: &str| format!("{}-{}-{:?}-{n:04}-{dir}.bin", fwd.from, fwd.to, fwd.port);
    let (tap_up, tap_down) = (tap_file(&name("up")), tap_file(&name("down")));
    let f = fwd.clone();
    std::thread::spawn(move || copy(c2, u2, &f, rewrite, tap_up));
    let f = fwd.clone();
    std::thread::spawn(move || copy(upstream, client, &f, false, tap_down));
}

/// Numbers the proxied connections, for tap file names.
static NEXT_CONN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// With `FAULTS_TAP=<dir>`, every proxied byte stream is also written to a file
/// there (`from-to-port-conn-up|down.bin`), to decode peer traffic after a failure.
fn tap_file(name: &str) -> Option<std::fs::File> {
    let dir = std::env::var_os("FAULTS_TAP")?;
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::File::create(std::path::Path::new(&dir).join(name)).ok()
}

/// Copies `from` → `to` chunk by chunk, obeying the link's mode; closes both at the end.
fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    fwd: &Forward,
    rewrite_init: bool,
    mut tap: Option<std::fs::File>,
) {
    let mut pending = Vec::new();
    let mut init_done = !rewrite_init;
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    'conn: while !fwd.stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
        if !init_done {
            match rewrite_init_message(&pending, fwd.twin) {
                InitRewrite::NeedMore => continue,
                InitRewrite::Done(bytes) => {
                    pending = bytes;
                    init_done = true;
                }
            }
        }
        if pending.is_empty() {
            continue;
        }
        loop {
            match fwd.links.mode(fwd.from, fwd.to) {
                LinkMode::Pass => break,
                LinkMode::Delay(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    break;
                }
                LinkMode::Stall => {
                    if fwd.stop.load(Ordering::SeqCst) {
                        break 'conn;
                    }
                    std::thread::sleep(Duration::from_millis(MODE_POLL_MS))
                }
                LinkMode::Cut => break 'conn,
            }
        }
        if to.write_all(&pending).is_err() {
            break;
        }
        if let Some(t) = tap.as_mut() {
            let _ = t.write_all(&pending);
        }
        pending.clear();
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// What the election-port rewrite made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
enum InitRewrite {
    NeedMore,
    /// The bytes to forward (the init message rewritten, plus what followed it).
    Done(Vec<u8>),
}

/// Replaces the dialler's election address in a 3.5+ init message
/// (`[i64 version < 0][i64 sid][i32 len][len bytes "host:port"]`) by
/// `127.0.0.1:twin`. A pre-3.5 message (first long ≥ 0) or anything that does
/// not parse is forwarded unchanged: the members judge it themselves.
fn rewrite_init_message(buf: &[u8], twin: u16) -> InitRewrite {
    if buf.len() < 8 {
        return InitRewrite::NeedMore;
    }
    let version = i64::from_be_bytes(buf[..8].try_into().unwrap());
    if version != INIT_VERSION_V1 && version != INIT_VERSION_V2 {
        return InitRewrite::Done(buf.to_vec());
    }
    if buf.len() < 20 {
        return InitRewrite::NeedMore;
    }
    let len = i32::from_be_bytes(buf[16..20].try_into().unwrap());
    if len <= 0 || len as usize > INIT_MESSAGE_BYTES_MAX {
        return InitRewrite::Done(buf.to_vec());
    }
    let end = 20 + len as usize;
    if buf.len() < end {
        return InitRewrite::NeedMore;
    }
    let addr = format!("127.0.0.1:{twin}");
    let mut out = Vec::with_capacity(buf.len() + addr.len());
    out.extend_from_slice(&buf[..16]);
    out.extend_from_slice(&(addr.len() as i32).to_be_bytes());
    out.extend_from_slice(addr.as_bytes());
    out.extend_from_slice(&buf[end..]);
    InitRewrite::Done(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(version: i64, sid: i64, addr: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&sid.to_be_bytes());
        b.extend_from_slice(&(addr.len() as i32).to_be_bytes());
        b.extend_from_slice(addr.as_bytes());
        b
    }

    #[test]
    fn init_message_address_is_replaced_and_the_rest_kept() {
        let mut msg = init(INIT_VERSION_V1, 2, "127.0.0.1:40000");
        msg.extend_from_slice(b"tail");
        for cut in 0..msg.len() - 4 {
            assert_eq!(rewrite_init_message(&msg[..cut], 5), InitRewrite::NeedMore);
        }
        let mut want = init(INIT_VERSION_V1, 2, "127.0.0.1:5");
        want.extend_from_slice(b"tail");
        assert_eq!(rewrite_init_message(&msg, 5), InitRewrite::Done(want));
    }

    #[test]
    fn legacy_and_garbled_init_messages_pass_unchanged() {
        let legacy = 3i64.to_be_bytes().to_vec();
        assert_eq!(
            rewrite_init_message(&legacy, 5),
            InitRewrite::Done(legacy.clone())
        );
        let mut bad = init(INIT_VERSION_V2, 2, "x");
        bad[16..20].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            rewrite_init_message(&bad, 5),
            InitRewrite::Done(bad.clone())
        );
    }

    #[test]
    fn a_cut_link_closes_and_a_passing_one_forwards() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap().port();
        let members = BTreeMap::from([(1, (target, target)), (2, (target, target))]);
        let proxy = PeerProxy::start(&members, &HashSet::new());
        let (q, _) = proxy.route(1, 2);
        let mut c = TcpStream::connect(("127.0.0.1", q)).unwrap();
        let (mut s, _) = server.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        proxy.set(2, 1, LinkMode::Cut);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut one = [0u8; 1];
        assert!(matches!(c.read(&mut one), Ok(0) | Err(_)), "a cut closes");
        proxy.heal();
        assert_eq!(proxy.mode(1, 2), LinkMode::Pass);
    }
}
