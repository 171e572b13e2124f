//! The peer transport of quorum mode: election links and quorum links to the other
//! members, ZooKeeper 3.8's own (PEER-PROTOCOL §3, §5.1, §5.5). Runs as tasks on the
//! sequencer core's glommio executor; the sequencer owns [`Peers`] and is the only
//! caller of its send side. Received messages reach the sequencer as [`PeerEvent`]s
//! on one bounded local channel (a full channel stops the readers: backpressure on
//! the sockets).
//!
//! ```text
//!  election port: one TCP link per peer, dialled lazily when there is a
//!    notification to send; after the unframed init message (version, sid, address)
//!    only the link dialled by the higher sid survives (the lower one closes and is
//!    dialled back); frames are int-length + notification. Per peer one unsent
//!    notification is kept (a newer one replaces it) and the last one sent is sent
//!    again on a new link.
//!  quorum port: the leader accepts learners (the core refuses them otherwise); a
//!    learner dials its leader. Packets are bare jute records; after SNAP the raw
//!    snapshot stream follows, decoded here (ZkSnapDecoder) into a Tree stashed for
//!    the sequencer before the core hears the SNAP.
//!  membership: the address book follows the configs the core proposes and
//!    activates (`set_members`). With reconfig enabled a server in no config may
//!    open an election link (a joiner): its init message says where to dial it
//!    back. Without reconfig such links are refused, as before.
//! ```
//!
//! Every buffer a peer can grow is bounded: a quorum packet's data
//! (`QUORUM_DATA_BYTES_MAX`), an election frame (512 KiB, in `proto::election`), the
//! init message's address (2 KiB), each link's send queue (`SEND_QUEUE_BYTES_MAX`;
//! over it the link is closed), the event channel (`EVENT_QUEUE_MAX`) and, with
//! reconfig, the servers outside the config taken (`JOINERS_COUNT_MAX`). With quorum
//! TLS (`tls`): TLS handshakes in progress (`tls::PEER_HANDSHAKES_MAX`, each within
//! `tls::PEER_HANDSHAKE_TIMEOUT`) and, per link, rustls's own bounds (one record
//! being received, 16 KiB of decrypted bytes not yet read, records written but not
//! yet sent up to its default buffer limit). With quorum SASL (`sasl`): one login
//! packet per link being set up (`QUORUM_AUTH_PACKET_BYTES_MAX`), at most
//! `sasl::PEER_LOGINS_MAX` logins checked at once, each bounded in time
//! (`sasl::login_timeout`). A bad byte closes that link with one log line; nothing
//! else is affected.
//!
//! Link set-up, in order: TCP, TLS (`tls`), the election init message, quorum SASL
//! (`sasl`, before the higher-sid rule, as the reference), then the link's traffic.

pub mod sasl;
pub mod tls;
pub mod wire;

use crate::proto::election::{decode_frame, InitMessage};
use crate::proto::quorum::{AuthCache, QuorumPacket};
use crate::tree::zksnap::{ZkSnapDecoder, ZkSnapEncoder, ZkSnapKind};
use crate::tree::Tree;
use crate::zab::{self, ConnId, Input, Notification, Packet, ServerId, CORE_CONN_BIT};
use bytes::Bytes;
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use rustc_hash::FxHashMap;
use sasl::PeerSasl;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tls::{PeerStream, PeerTls};
use wire::Side;

/// Largest data of one quorum packet (the reference's reader bound: jute.maxbuffer +
/// extrasize, both 0xfffff by default).
pub const QUORUM_DATA_BYTES_MAX: usize = 2 * 0xfffff;
/// Bytes queued for one link before it is declared too slow and closed.
pub const SEND_QUEUE_BYTES_MAX: usize = 256 << 20;
/// Items (packets, snapshot streams) queued for one link.
const SEND_QUEUE_ITEMS_MAX: usize = 1 << 20;
/// Events from all links waiting for the sequencer.
pub const EVENT_QUEUE_MAX: usize = 8192;
/// How long a dial may take (the reference's `zookeeper.cnxTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Snapshot stream chunks written at a time.
const SNAP_CHUNK_BYTES: usize = 256 * 1024;
/// Queued packets a link writes with one syscall at most (what is already queued
/// when the writer wakes goes out together: a leader's proposals and commits of one
/// batch cost one send per follower, not one per packet).
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// What the sequencer hears from the transport.
pub enum PeerEvent {
    Input(Input),
}

/// Where a member listens.
#[derive(Debug, Clone)]
pub struct PeerAddr {
    pub election: SocketAddr,
    pub quorum: SocketAddr,
    /// The host names (not IP literals) its `server.N` line gives, which its TLS
    /// certificate may name instead of the IP (quorum TLS's host check).
    pub hosts: Vec<String>,
}

enum OutItem {
    /// Encoded packets (shared: one PROPOSAL or COMMIT encoding goes to every
    /// follower, see [`Peers::send`]).
    Bytes(Bytes),
    Snapshot(Box<ZkSnapEncoder>),
}

/// One link's send side: a bounded queue drained by its writer task.
struct Outbox {
    tx: LocalSender<OutItem>,
    counters: Rc<LinkCounters>,
}

/// A link's traffic as the reference's LearnerHandler counts it (the admin
/// `observers` command shows it), and the bytes queued that bound its outbox.
/// Written by the link's own tasks and the core, all on this one thread.
#[derive(Default)]
struct LinkCounters {
    queued_bytes: Cell<usize>,
    queued_packets: Cell<usize>,
    packets_sent: Cell<u64>,
    /// The zxid of the last packet queued that carried one (> 0).
    last_zxid_sent: Cell<i64>,
    packets_received: Cell<u64>,
    /// REQUEST packets received (writes a learner forwarded).
    requests: Cell<u64>,
}

/// What the admin `observers` command lists of one quorum link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub conn: ConnId,
    pub remote: String,
    pub established: std::time::SystemTime,
    pub queued_packets: usize,
    pub queued_bytes: usize,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub requests: u64,
    /// -1 before a packet with a zxid was sent (the reference's initial value).
    pub last_zxid: i64,
}

impl Outbox {
    /// False when the link is gone or over its bound.
    fn push(&self, item: OutItem) -> bool {
        // A snapshot streams after its SNAP packet and is not a packet itself.
        let (n, packets) = match &item {
            OutItem::Bytes(b) => (b.len(), 1),
            OutItem::Snapshot(_) => (0, 0),
        };
        let c = &self.counters;
        if c.queued_bytes.get() + n > SEND_QUEUE_BYTES_MAX {
            return false;
        }
        if self.tx.try_send(item).is_err() {
            return false;
        }
        c.queued_bytes.set(c.queued_bytes.get() + n);
        c.queued_packets.set(c.queued_packets.get() + packets);
        true
    }
}

#[derive(Default)]
struct ElectionPeer {
    /// The newest notification not yet sent.
    slot: Option<Notification>,
    last_sent: Option<Notification>,
    link: Option<(u64, Outbox)>,
    dialing: bool,
}

struct QuorumLink {
    outbox: Outbox,
    sid: Option<ServerId>,
    remote: String,
    established: std::time::SystemTime,
}

#[derive(Default)]
struct State {
    election: BTreeMap<ServerId, ElectionPeer>,
    quorum: FxHashMap<ConnId, QuorumLink>,
    next_accepted: ConnId,
    next_link_gen: u64,
    /// Snapshots received after SNAP, by learner connection, until installed.
    snapshots: FxHashMap<ConnId, (Tree, Vec<(i64, i32)>)>,
}

/// Servers in no config (joiners) whose election links are taken, with the
/// address their init message gave (reconfig only); beyond it more are refused.
pub const JOINERS_COUNT_MAX: usize = 1024;

/// The transport. Owned (through an `Rc`) by the sequencer core.
pub struct Peers {
    me: ServerId,
    my_election: SocketAddr,
    /// The members of the configs in use (committed and proposed).
    addrs: RefCell<BTreeMap<ServerId, PeerAddr>>,
    /// reconfigEnabled: servers in no config may connect (joiners).
    reconfig_enabled: bool,
    /// tcpKeepAlive: TCP keepalive on election links (dialled and accepted), as
    /// the reference's QuorumCnxManager sets it.
    tcp_keep_alive: bool,
    /// Joiners, and where they said they take election links (bounded by
    /// `JOINERS_COUNT_MAX`).
    joiners: RefCell<BTreeMap<ServerId, Option<SocketAddr>>>,
    events: LocalSender<PeerEvent>,
    /// Quorum TLS (sslQuorum, portUnification); `None`: plaintext links only.
    tls: Option<PeerTls>,
    /// Quorum SASL (quorum.auth.enableSasl); `None`: links do not log in.
    sasl: Option<PeerSasl>,
    state: RefCell<State>,
    /// The last PROPOSAL or COMMIT encoded, for the next follower (see `send`).
    last_broadcast: RefCell<Option<(BroadcastKey, Bytes, i64)>>,
}

/// Which broadcast packet an encoding is: a COMMIT by its zxid, a PROPOSAL by
/// its zxid and its payload's buffer (the core hands every follower the same
/// shared payload).
#[derive(PartialEq, Eq)]
enum BroadcastKey {
    Proposal(zab::Zxid, usize, usize),
    Commit(zab::Zxid),
}

impl BroadcastKey {
    fn of(p: &Packet) -> Option<BroadcastKey> {
        match p {
            Packet::Proposal(e) => Some(BroadcastKey::Proposal(
                e.zxid,
                e.payload.as_ptr() as usize,
                e.payload.len(),
            )),
            Packet::Commit { zxid } => Some(BroadcastKey::Commit(*zxid)),
            _ => None,
        }
    }
}

/// How the peer links are secured: TLS and SASL, each optional.
#[derive(Default)]
pub struct PeerSecurity {
    pub tls: Option<PeerTls>,
    pub sasl: Option<PeerSasl>,
}

impl Peers {
    /// Binds both ports and starts accepting. Returns the transport and the
    /// receiving end of its events.
    pub fn start(
        me: ServerId,
        listen_election: SocketAddr,
        listen_quorum: SocketAddr,
        addrs: BTreeMap<ServerId, PeerAddr>,
        reconfig_enabled: bool,
        tcp_keep_alive: bool,
        security: PeerSecurity,
    ) -> std::io::Result<(Rc<Peers>, LocalReceiver<PeerEvent>)> {
        let election = listen(listen_election)?;
        let quorum = listen(listen_quorum)?;
        let (tx, rx) = local_channel::new_bounded(EVENT_QUEUE_MAX);
        let my_election = addrs.get(&me).map_or(listen_election, |a| a.election);
        let peers = Rc::new(Peers {
            me,
            my_election,
            addrs: RefCell::new(addrs),
            reconfig_enabled,
            tcp_keep_alive,
            joiners: RefCell::new(BTreeMap::new()),
            events: tx,
            tls: security.tls,
            sasl: security.sasl,
            last_broadcast: RefCell::new(None),
            state: RefCell::new(State {
                next_accepted: 1,
                ..State::default()
            }),
        });
        let p = peers.clone();
        glommio::spawn_local(async move { p.accept_election(election).await }).detach();
        let p = peers.clone();
        glommio::spawn_local(async move { p.accept_quorum(quorum).await }).detach();
        Ok((peers, rx))
    }

    async fn emit(&self, input: Input) {
        let _ = self.events.send(PeerEvent::Input(input)).await;
    }

    // ----- membership -------------------------------------------------------------------

    /// The members of the configs now in use (a config was proposed or activated):
    /// new members are dialled where they say, departed ones are no longer dialled
    /// (links already up stay until they end).
    pub fn set_members(&self, addrs: BTreeMap<ServerId, PeerAddr>) {
        let mut joiners = self.joiners.borrow_mut();
        for sid in addrs.keys() {
            joiners.remove(sid);
        }
        *self.addrs.borrow_mut() = addrs;
    }

    fn election_addr(&self, sid: ServerId) -> Option<SocketAddr> {
        let known = self.addrs.borrow().get(&sid).map(|a| a.election);
        known.or_else(|| self.joiners.borrow().get(&sid).copied().flatten())
    }

    fn quorum_addr(&self, sid: ServerId) -> Option<SocketAddr> {
        self.addrs.borrow().get(&sid).map(|a| a.quorum)
    }

    /// Whether an election link from `sid` is taken: a member, or (reconfig) a
    /// joiner, up to `JOINERS_COUNT_MAX` of them, whose init message may say where
    /// to dial it back.
    fn accepts_election_link(&self, sid: ServerId, init: &InitMessage) -> bool {
        if self.addrs.borrow().contains_key(&sid) {
            return true;
        }
        if !self.reconfig_enabled {
            return false;
        }
        let mut joiners = self.joiners.borrow_mut();
        if joiners.len() >= JOINERS_COUNT_MAX && !joiners.contains_key(&sid) {
            tracing::warn!(
                "election port: {JOINERS_COUNT_MAX} servers outside the config already \
                 connected (JOINERS_COUNT_MAX): refusing server {sid}"
            );
            return false;
        }
        let addr = init
            .election_addr
            .as_deref()
            .and_then(|a| a.split('|').next())
            .and_then(|a| a.parse::<SocketAddr>().ok());
        joiners.insert(sid, addr);
        true
    }

    // ----- the election port ---------------------------------------------------------

    /// Queues a notification for `to`; dials it if there is no link.
    pub fn notify(self: &Rc<Self>, to: ServerId, n: Notification) {
        let mut st = self.state.borrow_mut();
        let peer = st.election.entry(to).or_default();
        match &peer.link {
            Some((_, outbox)) => {
                let mut b = Vec::new();
                wire::encode_notification(&n, &mut b);
                if outbox.push(OutItem::Bytes(b.into())) {
                    peer.last_sent = Some(n);
                } else {
                    peer.slot = Some(n);
                    peer.link = None;
                }
            }
            None => {
                peer.slot = Some(n);
                if !peer.dialing {
                    peer.dialing = true;
                    drop(st);
                    let me = self.clone();
                    glommio::spawn_local(async move { me.dial_election(to).await }).detach();
                }
            }
        }
    }

    async fn dial_election(self: Rc<Self>, to: ServerId) {
        let result = self.try_dial_election(to).await;
        let mut st = self.state.borrow_mut();
        if let Some(p) = st.election.get_mut(&to) {
            p.dialing = false;
        }
        drop(st);
        match result {
            Ok(Some((stream, received))) => self.adopt_election(to, stream, received),
            Ok(None) => {} // the higher sid dials us back
            // A refused TLS handshake or login is a setup problem worth a line; a
            // member that is down is not (it is dialled again and again).
            Err(e @ (DialError::Tls(_) | DialError::Sasl(_))) => {
                tracing::warn!("election link to server {to}: {e}")
            }
            Err(e @ DialError::Io(_)) => tracing::debug!("election link to server {to}: {e}"),
        }
    }

    /// No delay and, with tcpKeepAlive, keepalive: an election link's options.
    fn election_sock_opts(&self, stream: &TcpStream, peer: &dyn std::fmt::Display) {
        let _ = stream.set_nodelay(true);
        if self.tcp_keep_alive {
            crate::server::set_keep_alive(stream, peer);
        }
    }

    /// Dials `to`'s election port: TLS, the init message, quorum SASL. The link and
    /// the bytes that came with the login, or `None` when `to` keeps its own link.
    async fn try_dial_election(
        &self,
        to: ServerId,
    ) -> Result<Option<(PeerStream, Vec<u8>)>, DialError> {
        let Some(addr) = self.election_addr(to) else {
            return Ok(None);
        };
        let stream = (TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await)
            .map_err(std::io::Error::from)?;
        self.election_sock_opts(&stream, &addr);
        let mut stream = self.secure_dialled(stream, addr).await?;
        let mut b = Vec::new();
        InitMessage::v1(self.me as i64, &self.my_election.to_string()).encode(&mut b);
        stream.write_all(&b).await?;
        stream.flush().await?;
        // Before the higher-sid rule, as the reference: a member that requires
        // the login would otherwise not dial back.
        let received = self.learn(&mut stream).await?;
        if to > self.me {
            // Only the link the higher sid dialled survives.
            let _ = stream.close().await;
            return Ok(None);
        }
        Ok(Some((stream, received)))
    }

    /// Quorum SASL's learner side on a dialled link (nothing when it is off).
    async fn learn(&self, stream: &mut PeerStream) -> Result<Vec<u8>, DialError> {
        match &self.sasl {
            None => Ok(Vec::new()),
            Some(sasl) => sasl.learn(stream).await.map_err(DialError::Sasl),
        }
    }

    /// Quorum SASL's server side on an accepted link whose first bytes are
    /// `received`: the bytes its reader starts from, or `None` (logged) when refused.
    async fn serve(
        &self,
        stream: &mut PeerStream,
        received: Vec<u8>,
        port: Port,
        peer: &str,
    ) -> Option<Vec<u8>> {
        let Some(sasl) = &self.sasl else {
            return Some(received);
        };
        match sasl.serve(stream, received).await {
            Ok(rest) => Some(rest),
            // A probe that connects and closes (no init message either) is not
            // worth a warning; a member that closes after its init message is.
            Err(sasl::LoginRefused::Closed) if port == Port::Quorum => {
                tracing::debug!("{port} port: {peer} closed without a byte");
                None
            }
            Err(sasl::LoginRefused::Closed) => {
                tracing::warn!(
                    "{port} port: dropping a link from {peer}: the member did not log in \
                     (quorum.auth.serverRequireSasl=true): it closed after its init message"
                );
                None
            }
            Err(sasl::LoginRefused::Failed(why)) => {
                tracing::warn!("{port} port: dropping a link from {peer}: {why}");
                None
            }
        }
    }

    async fn accept_election(self: Rc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let me = self.clone();
                    glommio::spawn_local(async move { me.election_handshake(stream).await })
                        .detach();
                }
                Err(e) => {
                    tracing::warn!("election port: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// A dialled link's stream: TLS with sslQuorum (`PeerTls::dial`), else the
    /// socket itself.
    async fn secure_dialled(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
    ) -> Result<PeerStream, DialError> {
        match &self.tls {
            None => Ok(PeerStream::Plain(stream)),
            Some(tls) => {
                let members = self.addrs.borrow().clone();
                (tls.dial(stream, addr, &members).await).map_err(DialError::Tls)
            }
        }
    }

    /// An accepted link's stream: as `PeerTls::accept` says, else the socket
    /// itself. `None` (logged) when refused.
    async fn secure_accepted(
        &self,
        stream: TcpStream,
        port: Port,
        peer: &str,
    ) -> Option<PeerStream> {
        let Some(tls) = &self.tls else {
            return Some(PeerStream::Plain(stream));
        };
        let members = self.addrs.borrow().clone();
        match tls.accept(stream, &members).await {
            Ok(tls::Accepted { stream, silent }) => {
                if silent {
                    tracing::info!(
                        "{port} port: {peer} sent nothing within {:?}: taken as plaintext \
                         (portUnification=true)",
                        tls::DETECT_TIMEOUT
                    );
                }
                Some(stream)
            }
            Err(tls::AcceptError::ClosedSilent) => {
                tracing::debug!("{port} port: {peer} closed without a byte");
                None
            }
            Err(tls::AcceptError::Refused(why)) => {
                tracing::warn!("{port} port: dropping a link from {peer}: quorum TLS: {why}");
                None
            }
        }
    }

    /// Reads the init message of an accepted link and applies the higher-sid rule.
    /// Bytes that came with the init message (a first frame) stay for the reader.
    async fn election_handshake(self: Rc<Self>, stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        self.election_sock_opts(&stream, &peer);
        let Some(mut stream) = self.secure_accepted(stream, Port::Election, &peer).await else {
            return;
        };
        let mut buf = Vec::new();
        let read = glommio::timer::timeout(CONNECT_TIMEOUT, async {
            loop {
                match InitMessage::decode(&buf) {
                    Ok(Some((m, used))) => return Ok(Ok((m, used))),
                    Ok(None) => {}
                    Err(e) => return Ok(Err(e.to_string())),
                }
                let mut chunk = [0u8; 512];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(Err("closed before its init message".to_string()));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let init = match read {
            Ok(Ok((m, used))) => {
                buf.drain(..used);
                m
            }
            Ok(Err(why)) => {
                tracing::warn!("election port: dropping a link from {peer}: {why}");
                return;
            }
            Err(e) => {
                tracing::warn!("election port: dropping a link from {peer}: {e}");
                return;
            }
        };
        // The login before anything of the init message is used (a joiner's
        // address is taken below), as the reference.
        let Some(buf) = self.serve(&mut stream, buf, Port::Election, &peer).await else {
            return;
        };
        let sid = init.sid;
        if sid < 0 || !self.accepts_election_link(sid as u64, &init) {
            // A first long >= 0 is a pre-3.5 peer's bare sid, or bytes of no peer.
            let legacy = if init.election_addr.is_none() {
                " (a pre-3.5 init message, or not a peer)"
            } else {
                ""
            };
            tracing::warn!(
                "election port: dropping a link from {peer}: server id {sid}{legacy} is not in the configuration"
            );
            return;
        }
        let sid = sid as u64;
        if sid == self.me {
            tracing::warn!("election port: a link from {peer} claims our own server id {sid}");
        } else if sid < self.me {
            // The higher sid keeps the link: close this one and dial back.
            let _ = stream.close().await;
            let me = self.clone();
            let dial = {
                let mut st = self.state.borrow_mut();
                let p = st.election.entry(sid).or_default();
                let dial = !p.dialing && p.link.is_none();
                p.dialing |= dial;
                dial
            };
            if dial {
                glommio::spawn_local(async move { me.dial_election(sid).await }).detach();
            }
        } else {
            self.adopt_election(sid, stream, buf);
        }
    }

    /// A link to `sid` is up: replaces any older one, starts its reader (on the
    /// bytes already `received`) and writer, and sends the unsent notification (or
    /// the last one again).
    fn adopt_election(self: &Rc<Self>, sid: ServerId, stream: PeerStream, received: Vec<u8>) {
        let (rd, wr) = stream.split();
        let (outbox, rx) = self.new_outbox();
        let gen = {
            let mut st = self.state.borrow_mut();
            st.next_link_gen += 1;
            let gen = st.next_link_gen;
            let p = st.election.entry(sid).or_default();
            let first = p.slot.take().or_else(|| p.last_sent.clone());
            if let Some(n) = first {
                let mut b = Vec::new();
                wire::encode_notification(&n, &mut b);
                outbox.push(OutItem::Bytes(b.into()));
                p.last_sent = Some(n);
            }
            p.link = Some((gen, outbox));
            gen
        };
        glommio::spawn_local(write_link(wr, rx, None)).detach();
        let me = self.clone();
        glommio::spawn_local(async move {
            match me.read_election(sid, rd, received).await {
                LinkEnd::Closed(why) => {
                    tracing::debug!("election link to server {sid} ended: {why}")
                }
                LinkEnd::Refused(why) => {
                    tracing::warn!("election link to server {sid}: {why}; dropping it")
                }
            }
            let mut st = me.state.borrow_mut();
            if let Some(p) = st.election.get_mut(&sid) {
                if p.link.as_ref().is_some_and(|(g, _)| *g == gen) {
                    p.link = None;
                }
            }
        })
        .detach();
    }

    async fn read_election(
        &self,
        sid: ServerId,
        mut rd: ReadHalf<PeerStream>,
        mut buf: Vec<u8>,
    ) -> LinkEnd {
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let mut at = 0;
            loop {
                match decode_frame(&buf[at..]) {
                    Ok(Some((body, used))) => {
                        match wire::decode_notification(body) {
                            Ok(n) => self.emit(Input::Notification { from: sid, n }).await,
                            // The reference skips a message it cannot read.
                            Err(e) => tracing::debug!("notification from server {sid}: {e}"),
                        }
                        at += used;
                    }
                    Ok(None) => break,
                    Err(e) => return LinkEnd::Refused(e.to_string()),
                }
            }
            buf.drain(..at);
            match rd.read(&mut chunk).await {
                Ok(0) => return LinkEnd::Closed("closed".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return read_failed(e),
            }
        }
    }

    // ----- the quorum port --------------------------------------------------------------

    fn new_outbox(&self) -> (Outbox, LocalReceiver<OutItem>) {
        let (tx, rx) = local_channel::new_bounded(SEND_QUEUE_ITEMS_MAX);
        (
            Outbox {
                tx,
                counters: Rc::new(LinkCounters {
                    last_zxid_sent: Cell::new(-1),
                    ..LinkCounters::default()
                }),
            },
            rx,
        )
    }

    async fn accept_quorum(self: Rc<Self>, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("quorum port: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let conn = {
                let mut st = self.state.borrow_mut();
                let c = st.next_accepted;
                st.next_accepted += 1;
                debug_assert!(c < CORE_CONN_BIT);
                c
            };
            let _ = stream.set_nodelay(true);
            if self.tls.is_none() && self.sasl.is_none() {
                // Inline: a full event channel holds the accepting, as before.
                let stream = PeerStream::Plain(stream);
                self.open_quorum(conn, stream, Side::Leader, None, Vec::new())
                    .await;
                continue;
            }
            // A TLS handshake or a login must not hold up the next learner.
            let me = self.clone();
            glommio::spawn_local(async move {
                let peer = (stream.peer_addr().map(|a| a.to_string())).unwrap_or_default();
                let Some(mut stream) = me.secure_accepted(stream, Port::Quorum, &peer).await else {
                    return;
                };
                if let Some(rest) = me.serve(&mut stream, Vec::new(), Port::Quorum, &peer).await {
                    me.open_quorum(conn, stream, Side::Leader, None, rest).await;
                }
            })
            .detach();
        }
    }

    /// Learner: dials the leader's quorum port for the core's connection `conn`.
    pub fn connect(self: &Rc<Self>, conn: ConnId, to: ServerId) {
        let me = self.clone();
        glommio::spawn_local(async move {
            let Some(addr) = me.quorum_addr(to) else {
                me.emit(Input::Closed { conn }).await;
                return;
            };
            let stream = match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::info!("cannot reach the leader (server {to}) at {addr}: {e}");
                    me.emit(Input::Closed { conn }).await;
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let secured = async {
                let mut stream = me.secure_dialled(stream, addr).await?;
                let received = me.learn(&mut stream).await?;
                Ok::<_, DialError>((stream, received))
            };
            match secured.await {
                Ok((stream, received)) => {
                    me.open_quorum(conn, stream, Side::Learner, Some(to), received)
                        .await
                }
                Err(e) => {
                    tracing::warn!("cannot follow the leader (server {to}) at {addr}: {e}");
                    me.emit(Input::Closed { conn }).await;
                }
            }
        })
        .detach();
    }

    /// A quorum link is up (accepted by a leader, or dialled to leader `sid`), the
    /// bytes already read from it in `received`: it is registered, the core hears
    /// of it (Accepted / Connected), and only then its reader starts. glommio runs a spawned task at once, up to its first
    /// wait, and a TLS stream may hold bytes (or the end) already: a reader started
    /// earlier could hand the core a packet, or the link's end, before the link
    /// itself.
    async fn open_quorum(
        self: &Rc<Self>,
        conn: ConnId,
        stream: PeerStream,
        side: Side,
        sid: Option<ServerId>,
        received: Vec<u8>,
    ) {
        let peer = (stream.tcp())
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let (rd, wr) = stream.split();
        let (outbox, rx) = self.new_outbox();
        let counters = outbox.counters.clone();
        let link = QuorumLink {
            outbox,
            sid,
            remote: peer.clone(),
            established: std::time::SystemTime::now(),
        };
        self.state.borrow_mut().quorum.insert(conn, link);
        glommio::spawn_local(write_link(wr, rx, Some(counters.clone()))).detach();
        let up = match side {
            Side::Leader => Input::Accepted { conn },
            Side::Learner => Input::Connected { conn },
        };
        self.emit(up).await;
        let me = self.clone();
        glommio::spawn_local(async move {
            let end = me.read_quorum(conn, rd, received, side, &counters).await;
            // Still ours (not closed by the core): the core hears the end.
            let link = me.state.borrow_mut().quorum.remove(&conn);
            if let Some(link) = link {
                let who = match (side, link.sid) {
                    (Side::Learner, Some(sid)) => format!("to the leader (server {sid}) at {peer}"),
                    _ => format!("from {peer}"),
                };
                match end {
                    LinkEnd::Closed(why) => tracing::info!("quorum link {conn} {who} ended: {why}"),
                    LinkEnd::Refused(why) => {
                        tracing::warn!("quorum link {conn} {who}: {why}; dropping it")
                    }
                }
                me.emit(Input::Closed { conn }).await;
            }
        })
        .detach();
    }

    async fn read_quorum(
        &self,
        conn: ConnId,
        mut rd: ReadHalf<PeerStream>,
        mut buf: Vec<u8>,
        side: Side,
        counters: &LinkCounters,
    ) -> LinkEnd {
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        let mut snap: Option<(ZkSnapDecoder, i64)> = None;
        // A learner forwards each write with its session's ids: decode each
        // distinct vector once per link.
        let mut auth_cache = AuthCache::default();
        loop {
            let mut at = 0;
            loop {
                if let Some((dec, zxid)) = snap.as_mut() {
                    match dec.feed(&buf[at..]) {
                        Ok(used) => at += used,
                        Err(e) => return LinkEnd::Refused(format!("bad snapshot after SNAP: {e}")),
                    }
                    if !dec.is_done() {
                        break;
                    }
                    let zxid = *zxid;
                    let (dec, _) = snap.take().unwrap();
                    match dec.finish() {
                        Ok(state) => {
                            self.state.borrow_mut().snapshots.insert(conn, state);
                        }
                        Err(e) => return LinkEnd::Refused(format!("bad snapshot after SNAP: {e}")),
                    }
                    let packet = Packet::Snap {
                        zxid: zab::Zxid(zxid as u64),
                    };
                    self.emit(Input::Packet { conn, packet }).await;
                    continue;
                }
                let cache = Some(&mut auth_cache);
                match QuorumPacket::decode_cached(&buf[at..], QUORUM_DATA_BYTES_MAX, cache) {
                    Ok(Some((qp, used))) => {
                        at += used;
                        counters
                            .packets_received
                            .set(counters.packets_received.get() + 1);
                        if qp.kind == crate::proto::quorum::PacketType::Request {
                            counters.requests.set(counters.requests.get() + 1);
                        }
                        if side == Side::Learner
                            && qp.kind == crate::proto::quorum::PacketType::Snap
                        {
                            // The core hears SNAP once the whole snapshot is here.
                            snap = Some((ZkSnapDecoder::new(ZkSnapKind::Snap, qp.zxid), qp.zxid));
                            continue;
                        }
                        match wire::decode(qp, side) {
                            Ok(packet) => self.emit(Input::Packet { conn, packet }).await,
                            Err(e) => return LinkEnd::Refused(format!("bad packet: {e}")),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return LinkEnd::Refused(format!("bad packet: {e}")),
                }
            }
            buf.drain(..at);
            match rd.read(&mut chunk).await {
                Ok(0) => return closed_at_eof(snap.map(|(dec, _)| dec)),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return read_failed(e),
            }
        }
    }

    fn link(&self, conn: ConnId) -> Option<std::cell::RefMut<'_, QuorumLink>> {
        std::cell::RefMut::filter_map(self.state.borrow_mut(), |st| st.quorum.get_mut(&conn)).ok()
    }

    /// Queues a packet on a quorum link (dropped if the link is gone). The
    /// leader sends each PROPOSAL and COMMIT to every follower in a row: the
    /// encoding of the last one is kept and shared (one encode and one
    /// allocation per broadcast, not per follower).
    pub fn send(self: &Rc<Self>, conn: ConnId, packet: &Packet) {
        let key = BroadcastKey::of(packet);
        let cached = match (&key, &*self.last_broadcast.borrow()) {
            (Some(k), Some((last, b, zxid))) if k == last => Some((b.clone(), *zxid)),
            _ => None,
        };
        let (b, zxid) = cached.unwrap_or_else(|| {
            let qp = wire::encode(packet);
            let mut v = Vec::with_capacity(qp.encoded_len());
            qp.encode(&mut v);
            let b = Bytes::from(v);
            if let Some(k) = key {
                *self.last_broadcast.borrow_mut() = Some((k, b.clone(), qp.zxid));
            }
            (b, qp.zxid)
        });
        self.push(conn, OutItem::Bytes(b), (zxid > 0).then_some(zxid));
    }

    /// The traffic of these quorum links (those still open), for the admin
    /// `observers` command.
    pub fn link_infos(&self, conns: &[ConnId]) -> Vec<LinkInfo> {
        let st = self.state.borrow();
        (conns.iter())
            .filter_map(|c| st.quorum.get(c).map(|l| (*c, l)))
            .map(|(conn, l)| {
                let c = &l.outbox.counters;
                LinkInfo {
                    conn,
                    remote: l.remote.clone(),
                    established: l.established,
                    queued_packets: c.queued_packets.get(),
                    queued_bytes: c.queued_bytes.get(),
                    packets_received: c.packets_received.get(),
                    packets_sent: c.packets_sent.get(),
                    requests: c.requests.get(),
                    last_zxid: c.last_zxid_sent.get(),
                }
            })
            .collect()
    }

    /// Queues the snapshot stream of `tree` right after the SNAP packet.
    pub fn send_snapshot(
        self: &Rc<Self>,
        conn: ConnId,
        tree: Arc<Tree>,
        sessions: Vec<(i64, i32)>,
    ) {
        let enc = ZkSnapEncoder::new(tree, sessions, ZkSnapKind::Snap, SNAP_CHUNK_BYTES);
        self.push(conn, OutItem::Snapshot(Box::new(enc)), None);
    }

    /// Queues `item` on the link (one lookup), noting `zxid` as the last one
    /// sent on it (the `observers` command's last_zxid).
    fn push(self: &Rc<Self>, conn: ConnId, item: OutItem, zxid: Option<i64>) {
        let ok = match self.link(conn) {
            Some(l) => {
                if let Some(z) = zxid {
                    l.outbox.counters.last_zxid_sent.set(z);
                }
                l.outbox.push(item)
            }
            None => return,
        };
        if !ok {
            tracing::warn!(
                "quorum link {conn}: more than {SEND_QUEUE_BYTES_MAX} bytes unsent; closing it"
            );
            self.close(conn);
            let me = self.clone();
            glommio::spawn_local(async move { me.emit(Input::Closed { conn }).await }).detach();
        }
    }

    /// Closes a quorum link once what was queued on it is written.
    pub fn close(&self, conn: ConnId) {
        // Dropping the sender ends the writer after the queue drains; the writer
        // then closes the socket, which ends the reader.
        self.state.borrow_mut().quorum.remove(&conn);
    }

    /// The snapshot a learner link received, for `Event::InstallSnapshot`.
    pub fn take_snapshot(&self, conn: ConnId) -> Option<(Tree, Vec<(i64, i32)>)> {
        self.state.borrow_mut().snapshots.remove(&conn)
    }

    /// Which server a quorum link belongs to, if known.
    pub fn link_sid(&self, conn: ConnId) -> Option<ServerId> {
        self.state.borrow().quorum.get(&conn).and_then(|l| l.sid)
    }
}

/// A listener with SO_REUSEADDR (glommio's `bind` sets only SO_REUSEPORT): a
/// member restarted on its ports, or replacing another server on them, must not
/// be refused because of the previous owner's connections in TIME_WAIT.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.bind(&addr.into())?;
    sk.listen(1024)?;
    // SAFETY: the fd is a listening TCP socket we own; the listener takes it over.
    Ok(unsafe { TcpListener::from_raw_fd(sk.into_raw_fd()) })
}

/// A member's two peer ports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Election,
    Quorum,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Port::Election => "election",
            Port::Quorum => "quorum",
        })
    }
}

/// Why a dial gave no link.
enum DialError {
    /// The member cannot be reached (down, not listening yet): dialled again later.
    Io(std::io::Error),
    /// Quorum TLS refused the link: a setup problem, worth a warning.
    Tls(String),
    /// The quorum SASL login failed: a setup problem too.
    Sasl(String),
}

impl From<std::io::Error> for DialError {
    fn from(e: std::io::Error) -> DialError {
        DialError::Io(e)
    }
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Io(e) => e.fmt(f),
            DialError::Tls(why) => write!(f, "quorum TLS: {why}"),
            DialError::Sasl(why) => f.write_str(why),
        }
    }
}

/// How a link's reader ended (quorum or election): the peer went away, or it sent
/// what we refuse.
enum LinkEnd {
    Closed(String),
    Refused(String),
}

/// A link's read failed. From a TLS stream, bad data is a TLS error (often the
/// other end's alert: under TLS 1.3 a refused certificate shows only here, on the
/// end that dialled): worth a warning, unlike a reset.
fn read_failed(e: std::io::Error) -> LinkEnd {
    match e.kind() {
        std::io::ErrorKind::InvalidData => LinkEnd::Refused(format!("quorum TLS: {e}")),
        _ => LinkEnd::Closed(e.to_string()),
    }
}

/// The peer closed the link; in the middle of a snapshot stream that is a
/// truncated snapshot (nothing of it reaches the core).
fn closed_at_eof(snap: Option<ZkSnapDecoder>) -> LinkEnd {
    match snap.map(ZkSnapDecoder::finish) {
        Some(Err(e)) => LinkEnd::Refused(format!(
            "closed in the middle of the snapshot after SNAP (truncated: {e})"
        )),
        _ => LinkEnd::Closed("closed by the peer".into()),
    }
}

/// Drains a link's queue onto its socket; closes the socket when the queue's
/// sender is dropped (the link was closed) or a write fails. Packets already queued
/// when it wakes are written together (up to [`WRITE_BATCH_BYTES_MAX`]), in order.
async fn write_link(
    mut wr: WriteHalf<PeerStream>,
    rx: LocalReceiver<OutItem>,
    bytes: Option<Rc<LinkCounters>>,
) {
    let mut chunk = Vec::with_capacity(SNAP_CHUNK_BYTES);
    let mut batch: Vec<u8> = Vec::new();
    let mut next = rx.recv().await;
    while let Some(item) = next.take() {
        let (ok, after) = match item {
            OutItem::Bytes(b) => {
                batch.clear();
                take_bytes(&mut batch, &b, &bytes);
                let after = gather_queued(&rx, &mut batch, &bytes);
                (wr.write_all(&batch).await.is_ok(), after)
            }
            OutItem::Snapshot(mut enc) => {
                let ok = write_snapshot(&mut wr, &mut enc, &mut chunk).await;
                (ok, Queued::Empty)
            }
        };
        if !ok || wr.flush().await.is_err() {
            break;
        }
        next = match after {
            Queued::Empty => rx.recv().await,
            Queued::Next(item) => Some(item),
            Queued::Closed => None,
        };
    }
    let _ = wr.flush().await;
    let _ = wr.close().await;
}

/// What the queue held after a batch was gathered.
enum Queued {
    /// Nothing more now: wait.
    Empty,
    /// An item that did not go in the batch (a snapshot, or the batch was full).
    Next(OutItem),
    /// The link was closed (its sender dropped).
    Closed,
}

fn take_bytes(batch: &mut Vec<u8>, b: &[u8], counters: &Option<Rc<LinkCounters>>) {
    if let Some(c) = counters {
        c.queued_bytes
            .set(c.queued_bytes.get().saturating_sub(b.len()));
        c.queued_packets
            .set(c.queued_packets.get().saturating_sub(1));
        c.packets_sent.set(c.packets_sent.get() + 1);
    }
    batch.extend_from_slice(b);
}

/// Appends the packets already queued to `batch`, up to [`WRITE_BATCH_BYTES_MAX`].
fn gather_queued(
    rx: &LocalReceiver<OutItem>,
    batch: &mut Vec<u8>,
    bytes: &Option<Rc<LinkCounters>>,
) -> Queued {
    use futures::FutureExt;
    while batch.len() < WRITE_BATCH_BYTES_MAX {
        match rx.recv().now_or_never() {
            Some(Some(OutItem::Bytes(b))) => take_bytes(batch, &b, bytes),
            Some(Some(item)) => return Queued::Next(item),
            Some(None) => return Queued::Closed,
            None => return Queued::Empty,
        }
    }
    match rx.recv().now_or_never() {
        Some(Some(item)) => Queued::Next(item),
        Some(None) => Queued::Closed,
        None => Queued::Empty,
    }
}

/// Streams a snapshot in chunks; false when a write failed.
async fn write_snapshot(
    wr: &mut WriteHalf<PeerStream>,
    enc: &mut Box<ZkSnapEncoder>,
    chunk: &mut Vec<u8>,
) -> bool {
    loop {
        chunk.clear();
        if !ZkSnapEncoder::next_chunk(enc, chunk) {
            return true;
        }
        if wr.write_all(chunk).await.is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zab::{Entry, Zxid};

    #[test]
    fn a_broadcast_encoding_is_shared_only_for_the_same_packet() {
        let z = Zxid::new(1, 5);
        let payload = Bytes::from_static(b"txn");
        let p = Packet::Proposal(Entry::new(z, payload.clone()));
        let same = Packet::Proposal(Entry::new(z, payload));
        let other_buffer = Packet::Proposal(Entry::new(z, Bytes::from(b"txn".to_vec())));
        assert!(BroadcastKey::of(&p) == BroadcastKey::of(&same));
        assert!(BroadcastKey::of(&p) != BroadcastKey::of(&other_buffer));
        assert!(BroadcastKey::of(&Packet::Commit { zxid: z }) != BroadcastKey::of(&p));
        assert!(BroadcastKey::of(&Packet::UpToDate).is_none());
    }

    /// A writer that wakes to a long queue takes packets into one write until
    /// the batch reaches `WRITE_BATCH_BYTES_MAX`, in queue order, and leaves the
    /// rest (the first left handed back) for the next write; each packet taken
    /// counts as sent and leaves the queue's byte count.
    #[test]
    fn a_batch_stops_at_its_bound_in_queue_order() {
        const PACKET_BYTES: usize = 10_000;
        const PACKETS: usize = 40;
        let (taken, left, sent, queued) =
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .name("peer-batch-test")
                .io_memory(64 << 10)
                .spawn(|| async {
                    let (tx, rx) = local_channel::new_bounded(PACKETS);
                    let outbox = Outbox {
                        tx,
                        counters: Rc::new(LinkCounters::default()),
                    };
                    for i in 0..PACKETS {
                        assert!(
                            outbox.push(OutItem::Bytes(Bytes::from(vec![i as u8; PACKET_BYTES])))
                        );
                    }
                    let counters = Some(outbox.counters.clone());
                    let mut batch = Vec::new();
                    let next = gather_queued(&rx, &mut batch, &counters);
                    let left = match next {
                        Queued::Next(OutItem::Bytes(b)) => b[0] as usize,
                        _ => usize::MAX,
                    };
                    let c = &outbox.counters;
                    let order_kept = batch
                        .chunks(PACKET_BYTES)
                        .enumerate()
                        .all(|(i, p)| p.iter().all(|b| *b as usize == i));
                    assert!(order_kept, "packets in queue order");
                    (
                        batch.len(),
                        left,
                        c.packets_sent.get(),
                        c.queued_bytes.get(),
                    )
                })
                .unwrap()
                .join()
                .unwrap();
        let want = WRITE_BATCH_BYTES_MAX.div_ceil(PACKET_BYTES);
        assert_eq!(taken, want * PACKET_BYTES, "whole packets up to the bound");
        assert_eq!(left, want, "the first packet left is handed back");
        assert_eq!(sent, want as u64);
        // The handed-back packet is not written yet either.
        assert_eq!(queued, (PACKETS - want) * PACKET_BYTES, "still queued");
    }
}
