//! Value types of the replication core: zxids, votes, log entries, the peer
//! messages, the durable writes and the configuration. Plain data, no IO; owned by
//! whichever core runs the [`Replica`](super::Replica) (the sequencer core in the
//! server, one thread in the simulator). Messages flow between replicas through the
//! driver; writes flow from a replica to its storage and back as a `Persisted`.

use bytes::Bytes;
use std::fmt;

/// A server's id in the ensemble (`server.N` in zoo.cfg).
pub type ServerId = u64;

/// A transaction id: `epoch << 32 | counter`. Ordered as an unsigned number, which
/// orders by epoch first. Counter 0 of an epoch is never a txn: it names the
/// epoch's start.
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

/// One txn of the replicated log. The payload is opaque to the core.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub zxid: Zxid,
    pub payload: Bytes,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Entry({:?}, {}B)", self.zxid, self.payload.len())
    }
}

/// The applied state at `zxid`, as opaque bytes made by the driver's state machine.
/// A snapshot at zxid 0 with empty `data` is the initial, empty state (a leader
/// that never compacted sends it when a learner needs a SNAP).
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub zxid: Zxid,
    pub data: Bytes,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Snapshot({:?}, {}B)", self.zxid, self.data.len())
    }
}

/// A candidate in fast leader election. Votes are ordered by the candidate's
/// current epoch, then its last zxid, then its id: the greatest wins.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Vote {
    pub leader: ServerId,
    pub zxid: Zxid,
    pub epoch: u32,
}

impl Vote {
    fn key(&self) -> (u32, Zxid, ServerId) {
        (self.epoch, self.zxid, self.leader)
    }
}

impl PartialOrd for Vote {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Vote {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// What a server says it is doing, in election notifications.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// How a learner's log is brought in line with the leader's.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SyncMode {
    /// The learner's last zxid is `prev`, in the leader's log: append `entries`.
    Diff,
    /// The learner has txns the leader does not: drop everything after `prev`
    /// (a zxid both logs hold), then append `entries`.
    Trunc,
    /// The learner is behind the leader's log start (or asked for it): replace
    /// everything with the snapshot (`prev` is its zxid), then append `entries`.
    Snap(Snapshot),
}

/// The messages replicas exchange. `attempt` numbers one learner's connection
/// attempt to a leader, so replies to an older attempt are recognised and dropped.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Msg {
    /// Fast leader election: the sender's current vote, round and state.
    Notification {
        election_epoch: u64,
        vote: Vote,
        state: PeerState,
    },
    /// Learner → leader: join request with the learner's accepted epoch (discovery).
    FollowerInfo {
        accepted_epoch: u32,
        attempt: u64,
        observer: bool,
        want_snap: bool,
    },
    /// Leader → learner: the new epoch agreed by a quorum.
    LeaderInfo { new_epoch: u32, attempt: u64 },
    /// Learner → leader: the learner's state. `current_epoch` is `None` when the
    /// learner had already accepted this epoch before (then it does not count as
    /// an ack of the new epoch, as in the reference).
    AckEpoch {
        attempt: u64,
        current_epoch: Option<u32>,
        last_zxid: Zxid,
    },
    /// Leader → learner: DIFF, TRUNC or SNAP, with the txns that follow `prev`.
    Sync {
        epoch: u32,
        attempt: u64,
        mode: SyncMode,
        prev: Zxid,
        entries: Vec<Entry>,
    },
    /// Leader → learner: the learner's log now equals the leader's up to `last_zxid`;
    /// adopt `epoch` as current epoch and acknowledge.
    NewLeader {
        epoch: u32,
        attempt: u64,
        last_zxid: Zxid,
    },
    /// Leader → learner: a quorum has the new epoch; everything up to `commit` is
    /// committed; start serving.
    UpToDate {
        epoch: u32,
        attempt: u64,
        commit: Zxid,
    },
    /// Leader → follower: a new txn, following `prev` in the leader's log.
    Proposal {
        epoch: u32,
        prev: Zxid,
        entry: Entry,
    },
    /// Follower → leader: everything up to `zxid` is durable here (cumulative).
    Ack { epoch: u32, zxid: Zxid },
    /// Leader → follower: everything up to `zxid` is committed (cumulative).
    Commit { epoch: u32, zxid: Zxid },
    /// Leader → observer: a committed txn, following `prev`.
    Inform {
        epoch: u32,
        prev: Zxid,
        entry: Entry,
    },
    /// Liveness both ways. Leader → learner: `zxid` is the commit point and `last`
    /// the last txn sent to this learner (a learner that lacks it missed some and
    /// resynchronises). Learner → leader: `zxid` is the learner's durable log end
    /// (counts as an ack), `last` its log end.
    Ping { epoch: u32, zxid: Zxid, last: Zxid },
}

/// A message for the driver to deliver.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Outgoing {
    pub to: ServerId,
    pub msg: Msg,
}

/// A change the driver must make durable, in order, before calling
/// [`Ready::persisted`](super::Ready::persisted).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Write {
    /// The highest epoch this server has promised to follow (or lead).
    AcceptedEpoch(u32),
    /// The epoch of the last leader whose history this server adopted.
    CurrentEpoch(u32),
    /// Append one txn at the log's end.
    Append(Entry),
    /// Drop every txn after this zxid.
    TruncateAfter(Zxid),
    /// Replace the whole log by this snapshot and the txns that follow it (SNAP
    /// sync). Storage must make this one write atomic (new files, then switch):
    /// a crash must leave either the old log or the new one.
    InstallSnapshot {
        snapshot: Snapshot,
        entries: Vec<Entry>,
    },
    /// Keep this snapshot and drop the txns it covers (log compaction).
    Compact(Snapshot),
}

/// What the driver applies to its state machine, in order: only committed txns.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Apply {
    /// Reset the state machine to this snapshot.
    Snapshot(Snapshot),
    /// Apply this committed txn.
    Entry(Entry),
}

/// Everything a replica keeps across a crash. The driver rebuilds it from disk
/// (applying [`Write`]s in order with [`DurableState::apply`]) and passes it to
/// [`Replica::new`](super::Replica::new).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct DurableState {
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// The state the log starts from; `None` means the empty state at zxid 0.
    pub snapshot: Option<Snapshot>,
    /// Txns after the snapshot, in zxid order.
    pub log: Vec<Entry>,
}

impl DurableState {
    /// The zxid the log starts after.
    pub fn base_zxid(&self) -> Zxid {
        self.snapshot.as_ref().map_or(Zxid::ZERO, |s| s.zxid)
    }

    /// The last zxid held (log end, else the snapshot's).
    pub fn last_zxid(&self) -> Zxid {
        self.log.last().map_or(self.base_zxid(), |e| e.zxid)
    }

    /// Applies one write exactly as storage must.
    pub fn apply(&mut self, write: &Write) {
        match write {
            Write::AcceptedEpoch(e) => self.accepted_epoch = *e,
            Write::CurrentEpoch(e) => self.current_epoch = *e,
            Write::Append(entry) => self.log.push(entry.clone()),
            Write::TruncateAfter(z) => {
                let keep = self.log.partition_point(|e| e.zxid <= *z);
                self.log.truncate(keep);
            }
            Write::InstallSnapshot { snapshot, entries } => {
                self.log.clone_from(entries);
                self.snapshot = Some(snapshot.clone());
            }
            Write::Compact(s) => {
                let drop = self.log.partition_point(|e| e.zxid <= s.zxid);
                self.log.drain(..drop);
                self.snapshot = Some(s.clone());
            }
        }
    }
}

/// Replica configuration. Times are in ticks, as in zoo.cfg.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: ServerId,
    /// Voting members (participants), this server included if it votes.
    pub voters: Vec<ServerId>,
    /// Observers: learn commits, never vote.
    pub observers: Vec<ServerId>,
    /// Ticks a leader may take from election to an established epoch, and a
    /// learner from choosing a leader to serving (zoo.cfg `initLimit`).
    pub init_limit_ticks: u64,
    /// Ticks without hearing the other side before a follower abandons its
    /// leader or a leader drops a follower / steps down (zoo.cfg `syncLimit`).
    pub sync_limit_ticks: u64,
    /// Ticks between re-broadcasts of an unanswered election notification.
    pub election_resend_ticks: u64,
    /// Random extra ticks (0..=this) added to each resend interval.
    pub election_jitter_ticks: u64,
    /// Ticks to wait for a better vote once a quorum agrees (0: decide at once).
    pub finalize_wait_ticks: u64,
    /// Proposals in flight (proposed, not committed) a leader allows.
    pub in_flight_proposals_max: u32,
    /// The last counter a leader may use in an epoch; the next proposal forces a
    /// new election (and so a new epoch) instead of wrapping.
    pub zxid_counter_max: u32,
    /// Largest txn payload accepted by `propose`.
    pub payload_bytes_max: usize,
    /// Txns per Sync message; a longer sync is sent as a first Sync plus DIFF
    /// continuations.
    pub sync_entries_max: usize,
    /// Seed of the replica's randomness (election jitter, attempt numbers).
    pub seed: u64,
}

impl Config {
    /// A configuration with the defaults for everything but membership.
    pub fn new(id: ServerId, voters: Vec<ServerId>, observers: Vec<ServerId>) -> Config {
        Config {
            id,
            voters,
            observers,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            election_resend_ticks: 2,
            election_jitter_ticks: 1,
            finalize_wait_ticks: 0,
            in_flight_proposals_max: 1000,
            zxid_counter_max: u32::MAX - 1,
            payload_bytes_max: 1 << 20,
            sync_entries_max: 1000,
            seed: 0,
        }
    }
}

/// Errors the outside world can cause at the replica's API.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZabError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("not the established leader")]
    NotLeader,
    #[error("{max} proposals already in flight")]
    InFlightFull { max: u32 },
    #[error("zxid counter exhausted in epoch {epoch}; a new election was started")]
    ZxidExhausted { epoch: u32 },
    #[error("payload of {len} bytes exceeds payload_bytes_max {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("snapshot at {snapshot:?} is ahead of the applied zxid {applied:?}")]
    SnapshotAhead { snapshot: Zxid, applied: Zxid },
}
