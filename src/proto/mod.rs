//! The ZooKeeper wire protocol without IO: jute encoding, typed requests and
//! replies, error codes, path rules. Shard cores decode requests and encode
//! replies with it; the sequencer uses its types in txns; tests and loadgen-style
//! tools use the encoders to act as clients.

pub mod election;
pub mod jute;
pub mod path;
pub mod quorum;
pub mod quorum_auth;
pub mod read;
pub mod reply;
pub mod request;
pub mod types;

pub use election::{InitMessage, Notification, ServerState};
pub use jute::{DecodeError, JuteWrite, Reader};
pub use quorum::{PacketType, QuorumDecodeError, QuorumPacket};
pub use read::{ReadKind, ReadRequest};
pub use reply::{write_event, write_reply, OpResult, ReplyHeader, Response};
pub use request::{
    ConnectRequest, ConnectResponse, CreateKind, CreateRequest, ReconfigRequest, Request,
    RequestHeader, SetWatches, UnknownOpcode,
};
pub use types::{
    op, perms, xid, Acl, AddWatchMode, CreateMode, ErrorCode, EventType, Id, KeeperState, Stat,
    WatcherEvent, WatcherType,
};
