//! Value types of the replication core: zxids, votes, election notifications, the
//! quorum packets as ZooKeeper 3.8 means them, the durable writes, the outputs and
//! the configuration. Plain data, no IO; owned by whichever core runs the
//! [`Replica`](super::Replica) (the sequencer core in the server, one thread in the
//! simulator). The server's transport turns [`Packet`]s into ZooKeeper's
//! `QuorumPacket` bytes and back (`crate::proto::quorum`); the core never sees bytes
//! other than opaque txn payloads.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

use super::membership::Membership;

/// A server's id in the ensemble (`server.N` in zoo.cfg).
pub type ServerId = u64;

/// One quorum-port connection, numbered by the driver (learner side: the number the
/// core chose in [`Output::Connect`]; leader side: the number the driver gave in
/// [`Input::Accepted`](super::Input::Accepted)). The two ends of one TCP connection
/// have different numbers.
pub type ConnId = u64;

/// A transaction id: `epoch << 32 | counter`. Ordered as an unsigned number, which
/// orders by epoch first. Counter 0 of an epoch is never a txn: it names the
/// epoch's start (NEWLEADER, UPTODATE acks carry such zxids).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Zxid(pub u64);

impl Zxid {
    /// The zxid before any txn.
    pub const ZERO: Zxid = Zxid(0);

    /// Builds `epoch << 32 | counter`.
    pub const fn new(epoch: u32, counter: u32) -> Zxid {
        Zxid(((epoch as u64) << 32) | counter as u64)
    }

    /// The leader epoch that issued it.
    pub const fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The position within its epoch.
    pub const fn counter(self) -> u32 {
        self.0 as u32
    }

    /// True for `epoch << 32` (a marker, not a txn).
    pub const fn is_epoch_start(self) -> bool {
        self.counter() == 0
    }

    /// Whether txn `next` may come right after `self` in a history: the next counter
    /// of the same epoch, or any zxid of a later epoch. A leader numbers its txns
    /// one by one, and the log's recovery refuses a record that skips counters
    /// (`storage::log::zxid_follows`, the same rule on raw zxids).
    pub const fn followed_by(self, next: Zxid) -> bool {
        next.0 == self.0.wrapping_add(1) || next.epoch() > self.epoch()
    }

    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }
}

impl fmt::Debug for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch(), self.counter())
    }
}

impl fmt::Display for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

/// One txn of the replicated log: ZooKeeper's txn entry bytes (TxnHeader + record +
/// digest), opaque to the core. The driver, which decodes txns, marks a reconfig
/// txn with the configuration it proposes (its version is the txn's zxid).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub zxid: Zxid,
    pub payload: Bytes,
    pub reconfig: Option<Arc<Membership>>,
}

impl Entry {
    /// An ordinary txn.
    pub fn new(zxid: Zxid, payload: Bytes) -> Entry {
        Entry {
            zxid,
            payload,
            reconfig: None,
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Entry({:?}, {}B", self.zxid, self.payload.len())?;
        if let Some(m) = &self.reconfig {
            write!(f, ", reconfig to version {:x}", m.version())?;
        }
        write!(f, ")")
    }
}

/// A server's election state, as notifications carry it (LOOKING 0 … OBSERVING 3).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

impl PeerState {
    pub fn code(self) -> i32 {
        match self {
            PeerState::Looking => 0,
            PeerState::Following => 1,
            PeerState::Leading => 2,
            PeerState::Observing => 3,
        }
    }

    pub fn from_code(c: i32) -> Option<PeerState> {
        Some(match c {
            0 => PeerState::Looking,
            1 => PeerState::Following,
            2 => PeerState::Leading,
            3 => PeerState::Observing,
            _ => return None,
        })
    }
}

/// A candidate in fast leader election, as ZooKeeper's `Vote`: signed longs, because
/// an observer votes `Long.MIN_VALUE` for everything.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Vote {
    pub leader: i64,
    pub zxid: i64,
    pub peer_epoch: i64,
}

impl Vote {
    /// What an observer proposes: nobody.
    pub const NONE: Vote = Vote {
        leader: i64::MIN,
        zxid: i64::MIN,
        peer_epoch: i64::MIN,
    };

    /// `totalOrderPredicate(new = self, cur = other)`: the greater epoch, then zxid,
    /// then id wins (every candidate has weight 1 in a majority quorum).
    pub fn beats(&self, other: &Vote) -> bool {
        (self.peer_epoch, self.zxid, self.leader) > (other.peer_epoch, other.zxid, other.leader)
    }
}

/// An election notification (version 2 layout, PEER-PROTOCOL §4.1).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Notification {
    pub state: PeerState,
    pub vote: Vote,
    pub election_epoch: i64,
    /// The sender's committed QuorumVerifier text (opaque here).
    pub config: Bytes,
}

/// `LearnerInfo` of FOLLOWERINFO / OBSERVERINFO plus the packet's accepted epoch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LearnerInfo {
    pub sid: ServerId,
    pub accepted_epoch: u32,
    pub protocol_version: i32,
    pub config_version: i64,
}

/// The protocol version learners and leaders announce (`0x10000`).
pub const PROTOCOL_VERSION: i32 = 0x10000;

/// The highest epoch a peer may name (a learner's accepted epoch, a leader's new
/// epoch). The reference takes an epoch as `zxid >> 32` of a signed long, so one
/// above this is negative to it, below every real epoch; here it is refused, which
/// also keeps `epoch + 1` from overflowing.
pub const EPOCH_MAX: u32 = i32::MAX as u32;

/// ZooKeeper's op code for sync (a forwarded REQUEST of this type is a sync).
pub const OP_SYNC: i32 = 9;

/// A client request a learner forwards to the leader (REQUEST): `sessionId, cxid,
/// type` and the request body as the client sent it, plus the connection's auth ids
/// (`None` for createSession), shared with the session and the packet codec.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Forwarded {
    pub session_id: i64,
    pub cxid: i32,
    pub op: i32,
    pub body: Bytes,
    pub auth: Option<Arc<Vec<crate::proto::Id>>>,
}

/// The packets of the quorum port, typed (PEER-PROTOCOL §5.1). The transport maps
/// each to ZooKeeper's `QuorumPacket` and back, including its zxid markers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Packet {
    /// Learner → leader, first packet. `observer` selects OBSERVERINFO.
    LearnerInfo {
        info: LearnerInfo,
        observer: bool,
    },
    /// Leader → learner: the proposed epoch.
    LeaderInfo {
        new_epoch: u32,
        protocol_version: i32,
    },
    /// Learner → leader: its last logged zxid and its current epoch, or `None` (-1)
    /// when it had already accepted this epoch.
    AckEpoch {
        last_zxid: Zxid,
        current_epoch: Option<u32>,
    },
    Diff {
        zxid: Zxid,
    },
    Trunc {
        zxid: Zxid,
    },
    /// The snapshot at `zxid` follows (the transport sends/receives the stream; the
    /// learner's core sees this packet only once the whole stream arrived).
    Snap {
        zxid: Zxid,
    },
    Proposal(Entry),
    Commit {
        zxid: Zxid,
    },
    Inform(Entry),
    CommitAndActivate {
        zxid: Zxid,
        designated_leader: u64,
    },
    InformAndActivate {
        entry: Entry,
        designated_leader: u64,
    },
    /// Leader → learner: end of the sync data; `zxid` = new epoch << 32, `config` the
    /// leader's last-seen QuorumVerifier text.
    NewLeader {
        zxid: Zxid,
        config: Bytes,
    },
    UpToDate,
    Ack {
        zxid: Zxid,
    },
    /// Leader → learner: liveness, zxid = the leader's last proposed (null data).
    LeaderPing {
        zxid: Zxid,
    },
    /// Learner → leader: echo of the leader's ping with the sessions touched since
    /// the last one (an empty list is an empty buffer, never null).
    LearnerPing {
        zxid: Zxid,
        touches: Vec<(i64, i32)>,
    },
    Request(Forwarded),
    RevalidateRequest {
        session_id: i64,
        timeout_ms: i32,
    },
    RevalidateReply {
        session_id: i64,
        valid: bool,
    },
    Sync,
}

impl Packet {
    /// What a serving learner sends its leader besides ACKs (see [`Target::Aside`]).
    pub(crate) fn is_learner_aside(&self) -> bool {
        matches!(
            self,
            Packet::Request(_) | Packet::RevalidateRequest { .. } | Packet::LearnerPing { .. }
        )
    }

    /// A short name for logs (the reference's packet names).
    pub fn name(&self) -> &'static str {
        match self {
            Packet::LearnerInfo {
                observer: false, ..
            } => "FOLLOWERINFO",
            Packet::LearnerInfo { observer: true, .. } => "OBSERVERINFO",
            Packet::LeaderInfo { .. } => "LEADERINFO",
            Packet::AckEpoch { .. } => "ACKEPOCH",
            Packet::Diff { .. } => "DIFF",
            Packet::Trunc { .. } => "TRUNC",
            Packet::Snap { .. } => "SNAP",
            Packet::Proposal(_) => "PROPOSAL",
            Packet::Commit { .. } => "COMMIT",
            Packet::Inform(_) => "INFORM",
            Packet::CommitAndActivate { .. } => "COMMITANDACTIVATE",
            Packet::InformAndActivate { .. } => "INFORMANDACTIVATE",
            Packet::NewLeader { .. } => "NEWLEADER",
            Packet::UpToDate => "UPTODATE",
            Packet::Ack { .. } => "ACK",
            Packet::LeaderPing { .. } | Packet::LearnerPing { .. } => "PING",
            Packet::Request(_) => "REQUEST",
            Packet::RevalidateRequest { .. } | Packet::RevalidateReply { .. } => "REVALIDATE",
            Packet::Sync => "SYNC",
        }
    }
}

/// A change the driver must make durable, in order, before calling
/// [`Ready::persisted`](super::Ready::persisted).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Write {
    /// The file `acceptedEpoch`.
    AcceptedEpoch(u32),
    /// The file `currentEpoch`.
    CurrentEpoch(u32),
    /// Append one txn at the log's end.
    Append(Entry),
    /// Drop every logged txn after this zxid.
    TruncateAfter(Zxid),
    /// Write the state captured by the last [`Event::CaptureSnapshot`] (at this zxid)
    /// as a snapshot that replaces everything before: snapshots past it and the whole
    /// log go (SNAP sync); the log continues after it.
    Snapshot(Zxid),
    /// Reconfig enabled: this config is now the committed one (the reference writes
    /// `zoo.cfg.dynamic.<hex version>`, points zoo.cfg at it, and drops the
    /// last-seen file when it holds this version or an older one).
    CommittedConfig(Arc<Membership>),
    /// Reconfig enabled: this config was proposed (`zoo.cfg.dynamic.next`).
    LastSeenConfig(Arc<Membership>),
}

/// What a role change means for the driver's clients.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Looking,
    /// Leading `epoch` once decided; `established` once a quorum acked NEWLEADER.
    Leading {
        epoch: Option<u32>,
        established: bool,
    },
    Following {
        leader: ServerId,
        serving: bool,
    },
    Observing {
        leader: ServerId,
        serving: bool,
    },
}

impl Role {
    /// Clients may be served (reads and writes) in this role.
    pub fn serving(&self) -> bool {
        match self {
            Role::Looking => false,
            Role::Leading { established, .. } => *established,
            Role::Following { serving, .. } | Role::Observing { serving, .. } => *serving,
        }
    }
}

/// Something the driver's own state (tree, sessions, clients) must do, in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// Apply this committed txn.
    Apply(Entry),
    /// Replace the state by the snapshot the transport received on this
    /// connection (it is at `zxid`).
    InstallSnapshot { conn: ConnId, zxid: Zxid },
    /// Replace the state by the empty one (zxid 0): we asked for a whole snapshot
    /// (reported zxid 0) and the leader answered with a DIFF from the beginning.
    Reset,
    /// Remember the current state (it is at `zxid`) for the next
    /// [`Write::Snapshot`].
    CaptureSnapshot { zxid: Zxid },
    /// The state holds txns after `zxid` that are not (or not yet) on disk as the
    /// leader's history: rebuild it from disk up to `zxid` (a TRUNC after a restart,
    /// which loads the whole log; or a SNAP cut short before NEWLEADER). If the disk
    /// cannot (a snapshot past `zxid`), call
    /// [`Replica::rollback_failed`](super::Replica::rollback_failed).
    Rollback { zxid: Zxid },
    /// The role changed; when it stops serving, every client connection closes.
    RoleChanged(Role),
    /// Leader: a learner forwarded a client request. Prepare and propose them in
    /// arrival order; a sync (op `OP_SYNC`) is handed back at its place in that
    /// order with [`Replica::forwarded_sync`](super::Replica::forwarded_sync).
    Request {
        conn: ConnId,
        from: ServerId,
        req: Forwarded,
    },
    /// Leader: a learner asks whether a reconnecting session is valid; answer with
    /// [`Replica::revalidated`](super::Replica::revalidated).
    Revalidate {
        conn: ConnId,
        from: ServerId,
        session_id: i64,
        timeout_ms: i32,
    },
    /// Leader: sessions a learner saw activity on.
    Touches {
        from: ServerId,
        touches: Vec<(i64, i32)>,
    },
    /// Learner: the leader's answer to a revalidation.
    Revalidated { session_id: i64, valid: bool },
    /// Learner: the oldest forwarded sync completed (FIFO); every txn committed
    /// before it has been applied (it came as an earlier `Apply`).
    SyncDone,
    /// Leader: the sync of one of its own clients ([`Replica::leader_sync`]) passed
    /// the sync gate; answer it once `at` is applied.
    ///
    /// [`Replica::leader_sync`]: super::Replica::leader_sync
    LocalSyncReady { tag: u64, at: Zxid },
    /// Reconfig enabled: a new config was proposed (a reconfig txn seen, a leader's
    /// NEWLEADER): its members take part in elections from now on (the transport
    /// needs their addresses).
    ConfigProposed(Arc<Membership>),
    /// Reconfig enabled: this config is now the committed one (members, roles,
    /// `/zookeeper/config`).
    ConfigActivated(Arc<Membership>),
}

/// An input to [`Replica::step`](super::Replica::step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed (`now` is given with every step); timers are checked.
    Tick,
    /// An election notification from `from` (the transport dropped older unsent
    /// ones; duplicates and stale ones are expected).
    Notification { from: ServerId, n: Notification },
    /// Learner: the dial of [`Output::Connect`] succeeded.
    Connected { conn: ConnId },
    /// Leader: a learner connected to the quorum port (the driver picked `conn`,
    /// below `CORE_CONN_BIT`).
    Accepted { conn: ConnId },
    /// A packet arrived on a connection (for SNAP: after the whole snapshot).
    Packet { conn: ConnId, packet: Packet },
    /// The connection failed or ended (dial refused, peer gone, bad bytes).
    Closed { conn: ConnId },
}

/// What the driver does for the core: network, then its own state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Output {
    /// Election: send this notification to `to` (the transport keeps only the newest
    /// unsent one per peer, as the reference).
    Notify { to: ServerId, n: Notification },
    /// Learner: dial the leader's quorum port; report `Connected` or `Closed`.
    Connect { conn: ConnId, to: ServerId },
    /// Write this packet on the connection, after everything sent before on it.
    Send { conn: ConnId, packet: Packet },
    /// Leader: right after a `Snap` packet, stream the current state (it is at
    /// `zxid`) on this connection.
    SendSnapshot { conn: ConnId, zxid: Zxid },
    /// Close the connection (after flushing what was sent before on it).
    Close { conn: ConnId },
    /// Local work, in order.
    Event(Event),
}

impl Output {
    /// What an output is ordered with: a connection, the local state, or nothing.
    pub(crate) fn target(&self) -> Target {
        match self {
            Output::Send { conn, packet } if packet.is_learner_aside() => Target::Aside(*conn),
            Output::Send { conn, .. }
            | Output::SendSnapshot { conn, .. }
            | Output::Close { conn } => Target::Conn(*conn),
            Output::Event(_) => Target::Local,
            Output::Notify { .. } | Output::Connect { .. } => Target::Free,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    Conn(ConnId),
    /// A serving learner's REQUESTs, revalidations and ping replies to its leader:
    /// ordered among themselves, but not behind the ACKs on the same connection,
    /// which wait for the disk. They need nothing the disk holds, and a leader
    /// takes them in any order relative to ACKs (the reference's followers send
    /// them from other threads than their ACKs), so a learner whose disk stalls
    /// still forwards its clients' writes and keeps its leader's pings answered.
    Aside(ConnId),
    Local,
    Free,
}

/// What a replica starts from: exactly what its disk holds. The driver's state
/// (tree) holds every logged txn, as the reference loads its whole log at start-up.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct DurableState {
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// The zxid of the state the driver loaded (snapshot + every logged txn).
    pub last_zxid: Zxid,
    /// The logged txns after the newest snapshot, ending at `last_zxid` (the driver
    /// may cap it; a TRUNC can then cost a rewrite of what it did not pass). They
    /// count as uncommitted until a leader's sync says otherwise.
    pub tail: Vec<Entry>,
}

/// Replica configuration. Times are in milliseconds of the driver's monotonic clock.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: ServerId,
    /// The committed configuration at start-up (zoo.cfg's members, or the dynamic
    /// file reconfig last wrote). Its text goes in notifications; its version in
    /// FOLLOWERINFO / OBSERVERINFO.
    pub membership: Membership,
    /// A proposed, not yet committed configuration at start-up
    /// (`zoo.cfg.dynamic.next`); used only with `reconfig_enabled` and a version
    /// above `membership`'s.
    pub last_seen: Option<Membership>,
    /// zoo.cfg `reconfigEnabled`: configs get versions, reconfig txns change them,
    /// learners not in the config are accepted as non-voting. Off: the config is
    /// static (version 0 stays 0) and unknown learners are refused.
    pub reconfig_enabled: bool,
    pub tick_ms: u64,
    /// zoo.cfg `initLimit`, in ticks.
    pub init_limit_ticks: u64,
    /// zoo.cfg `syncLimit`, in ticks.
    pub sync_limit_ticks: u64,
    /// First election notification timeout (the reference's 200 ms), doubled on each
    /// silent round up to `election_timeout_max_ms` (60 000).
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How long a decided quorum waits for a better vote (the reference's 200 ms).
    pub finalize_wait_ms: u64,
    /// Learner: connection attempts to the leader before giving up (5), and the
    /// pause between them (100 ms).
    pub connect_attempts_max: u32,
    pub connect_retry_ms: u64,
    /// Committed txns a leader keeps for DIFF syncs (`zookeeper.commitLogCount`, 500).
    pub committed_log_count_max: usize,
    /// Proposals a leader lets be in flight before `propose` refuses (a bound the
    /// reference does not have).
    pub in_flight_proposals_max: usize,
    /// Bytes of uncommitted txns a learner holds before it drops the leader (they
    /// are also in its log; the bound keeps memory finite against any leader).
    pub pending_bytes_max: usize,
    /// The last counter a leader may use in an epoch; the next proposal forces a
    /// new election (the reference stops at 0xffffffff).
    pub zxid_counter_max: u32,
    /// Largest txn payload `propose` accepts.
    pub payload_bytes_max: usize,
    /// Syncs a leader holds waiting (at the sync gate or for a commit) before a
    /// learner that forwards another is dropped (a bound the reference does not
    /// have: a member's clients can have at most globalOutstandingLimit requests
    /// in flight, so an honest learner stays far below it).
    pub syncs_waiting_count_max: usize,
}

impl Config {
    /// A configuration with the reference's defaults for everything but membership
    /// (reconfig off).
    pub fn new(id: ServerId, membership: Membership) -> Config {
        Config {
            id,
            membership,
            last_seen: None,
            reconfig_enabled: false,
            tick_ms: 2000,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 60_000,
            finalize_wait_ms: 200,
            connect_attempts_max: 5,
            connect_retry_ms: 100,
            committed_log_count_max: 500,
            in_flight_proposals_max: 10_000,
            pending_bytes_max: 512 << 20,
            zxid_counter_max: u32::MAX - 1,
            payload_bytes_max: 2 << 20,
            syncs_waiting_count_max: 1 << 16,
        }
    }

    pub fn init_limit_ms(&self) -> u64 {
        self.tick_ms * self.init_limit_ticks
    }

    pub fn sync_limit_ms(&self) -> u64 {
        self.tick_ms * self.sync_limit_ticks
    }
}

/// Errors the outside world can cause at the replica's API.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZabError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("not the established leader")]
    NotLeader,
    #[error("not connected to an established leader")]
    NotServing,
    #[error("{max} proposals already in flight")]
    InFlightFull { max: usize },
    #[error("zxid counter exhausted in epoch {epoch}; a new election was started")]
    ZxidExhausted { epoch: u32 },
    #[error("payload of {len} bytes exceeds payload_bytes_max {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("proposal zxid {got} is not the next zxid {want}")]
    WrongZxid { got: Zxid, want: Zxid },
    #[error("reconfiguration is disabled (reconfigEnabled=false)")]
    ReconfigDisabled,
    #[error("a reconfiguration (to version {version:x}) is in progress")]
    ReconfigInProgress { version: i64 },
    #[error("reconfig txn {zxid} proposes config version {version:x}, not its zxid")]
    ReconfigVersion { zxid: Zxid, version: i64 },
}
