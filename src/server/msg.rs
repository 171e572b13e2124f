//! Messages between cores. Shards send requests to the sequencer; the sequencer
//! sends one `Batch` per commit to every shard, in zxid order. Plain data, no IO.

use crate::proto::{ConnectRequest, ConnectResponse, ErrorCode, EventType, Id, Request, Response};
use crate::tree::Tree;
use crate::watch::ConnId;
use std::sync::Arc;

/// A write (or sync / closeSession) from a client, routed back by (shard, conn, xid).
pub struct WriteReq {
    pub shard: usize,
    pub conn: ConnId,
    pub session_id: i64,
    pub xid: i32,
    pub req: Request,
    pub ids: Arc<Vec<Id>>,
    pub is_super: bool,
}

pub enum ToSequencer {
    /// A handshake: create a session, or revalidate one on a new connection.
    Connect {
        shard: usize,
        conn: ConnId,
        req: ConnectRequest,
    },
    Write(Box<WriteReq>),
    /// Sessions that showed activity on a shard since its last report.
    Touch(Vec<i64>),
    /// Time passes: expire sessions, clean up containers and TTL nodes.
    Tick,
    /// Four-letter-word data from the sequencer.
    Report(flume::Sender<SequencerReport>),
    ResetStats,
    /// Stop (SIGTERM): take nothing more, make the log durable, publish what it
    /// covers, send every shard `ToShard::Shutdown`, end (`server::shutdown`).
    Shutdown,
}

pub enum ToShard {
    Batch(Arc<Batch>),
    Report(flume::Sender<ShardReport>),
    /// `srst`: the shard's counters.
    ResetStats,
    /// `crst`: every connection's own counters and stats.
    ResetConnectionStats,
    /// The member stopped serving (quorum mode): close every client connection.
    CloseAll(String),
    /// A stop began: close the listeners; connections are served on.
    StopAccepting,
    /// The sequencer's last batch is ahead of this: close every connection once
    /// what is queued for it is flushed, and end.
    Shutdown,
}

/// Why a handshake is refused when the client has seen a zxid past this server's
/// (it then tries another server).
pub const CLIENT_AHEAD: &str = "the client has seen a zxid past ours";
/// Why a handshake is refused (closed unanswered) while an ensemble member does
/// not serve.
pub const NOT_SERVING: &str =
    "this ensemble member is not serving (no quorum / leader election in progress)";
/// Why a handshake is refused when its session could not be made durable.
pub const SESSION_NOT_DURABLE: &str = "its session could not be made durable";

/// One commit batch: the tree version after it and what happened, in zxid order.
pub struct Batch {
    pub tree: Arc<Tree>,
    pub last_zxid: i64,
    pub items: Vec<Item>,
}

pub struct Item {
    /// The txn's zxid (for a sync or a revalidation: the last zxid at that point).
    pub zxid: i64,
    pub events: Vec<(EventType, String)>,
    pub reply: Option<Reply>,
    /// Set when this txn closed a session (client close or expiry): its connection ends.
    pub closed_session: Option<i64>,
}

pub struct Reply {
    pub shard: usize,
    pub conn: ConnId,
    pub kind: ReplyKind,
}

pub enum ReplyKind {
    Op {
        xid: i32,
        result: Result<Response, ErrorCode>,
    },
    /// `Err(why)`: refuse the connection by closing it, unanswered (the client
    /// is ahead of the server, the member does not serve, read-only mode…).
    Connect {
        response: Result<ConnectResponse, &'static str>,
        session_id: i64,
    },
    /// The member gave up on this write (not serving, no leader link, no zxid):
    /// the connection closes with it unanswered, as the reference's does. No
    /// server sends ConnectionLoss; clients take it from the closed connection.
    Unanswered { xid: i32 },
}

/// What the sequencer knows, for four-letter words.
#[derive(Debug, Clone, Default)]
pub struct SequencerReport {
    pub last_zxid: i64,
    pub node_count: usize,
    pub approximate_data_size: u64,
    pub ephemeral_count: usize,
    pub digest: u64,
    /// The digest log (`stats::DigestLog`): (zxid, digest), oldest first.
    pub digest_log: Vec<(i64, u64)>,
    /// Quorum mode: committed txns whose digest differed from the leader's (the
    /// reference's digest_mismatches_count).
    pub digest_mismatches: u64,
    /// (session id, timeout ms, ephemeral paths): the ensemble's (global) sessions.
    pub sessions: Vec<(i64, i32, Vec<String>)>,
    /// Quorum mode: this member's local sessions (localSessionsEnabled).
    pub local_session_count: usize,
    /// (deadline on the session clock in ms, session id), in deadline order.
    pub expiries: Vec<(i64, i64)>,
    /// Quorum mode, on the leader: its learners.
    pub leader: Option<crate::zab::LeaderStats>,
    /// Quorum mode, on the leader: each observer's link (the admin `observers`
    /// command), with the observer's id once it said it.
    pub observers: Vec<(Option<u64>, crate::server::peer::LinkInfo)>,
    /// Quorum mode: who we are, our role, and the committed members.
    pub quorum: Option<QuorumReport>,
}

impl SequencerReport {
    /// What any sequencer reports of its tree and sessions (standalone: all of it;
    /// quorum mode adds `leader` and `quorum`).
    pub fn of(tree: &Tree, sessions: &crate::session::SessionTable) -> SequencerReport {
        let mut by_id: Vec<(i64, i32, Vec<String>)> = sessions
            .iter()
            .map(|s| (s.id, s.timeout_ms, tree.ephemerals_of(s.id)))
            .collect();
        by_id.sort();
        let mut expiries: Vec<(i64, i64)> =
            sessions.iter().map(|s| (s.expires_at_ms, s.id)).collect();
        expiries.sort();
        SequencerReport {
            last_zxid: tree.last_zxid(),
            node_count: tree.node_count(),
            approximate_data_size: tree.approximate_data_size(),
            ephemeral_count: tree.ephemeral_count(),
            digest: tree.digest(),
            digest_log: Vec::new(),
            digest_mismatches: 0,
            sessions: by_id,
            local_session_count: 0,
            expiries,
            leader: None,
            observers: Vec::new(),
            quorum: None,
        }
    }
}

/// An ensemble member's view of the ensemble, for the AdminServer and mntr.
#[derive(Debug, Clone)]
pub struct QuorumReport {
    pub my_id: u64,
    pub role: crate::zab::Role,
    /// Members of the committed configuration, by server id.
    pub servers: Vec<crate::config::QuorumServer>,
}

/// What a shard knows, for four-letter words.
#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    pub shard: usize,
    /// Messages waiting in this shard's inbox when it answered.
    pub inbox_depth: usize,
    pub connections: Vec<ConnSummary>,
    pub watch_count: usize,
    pub watch_paths: usize,
    pub watching_connections: usize,
    pub watches_by_session: Vec<(i64, Vec<String>)>,
    pub watches_by_path: Vec<(String, Vec<i64>)>,
}

#[derive(Debug, Clone, Default)]
pub struct ConnSummary {
    pub peer: String,
    pub session_id: i64,
    pub queued: usize,
    pub received: u64,
    pub sent: u64,
    pub last_zxid: i64,
    pub timeout_ms: i32,
    /// The reference's per-connection stats (ServerCnxn.getConnectionInfo):
    /// accepted at (ms since the Unix epoch), the last request answered (its
    /// four-letter name, xid, and when: ms since the server started), and reply
    /// latencies in ms.
    pub established_ms: u64,
    pub last_operation: &'static str,
    pub last_cxid: i64,
    pub last_response_ms: u64,
    pub last_latency_ms: u64,
    pub min_latency_ms: u64,
    pub avg_latency_ms: u64,
    pub max_latency_ms: u64,
}
