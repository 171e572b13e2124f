//! The replication core: ZooKeeper 3.8's election and Zab protocol as a pure state
//! machine, plus (in tests or with the `sim` feature) a deterministic simulator of a
//! whole ensemble.
//!
//! Owned by the sequencer core of each server. No IO, no clock, no ambient
//! randomness: the server's peer transport feeds [`Replica::step`] with ticks,
//! election notifications and typed quorum packets (`crate::proto::quorum` turns
//! them into the reference's bytes), and drains [`Replica::ready`] → persist →
//! [`Replica::advance`] for packets to send, writes to make durable and events
//! (committed txns to apply, role changes, forwarded requests) for its own state.
//!
//! The core follows the reference's behaviour message for message, so a corral
//! server and Apache ZooKeeper 3.8 servers form one ensemble:
//!
//! ```text
//!  LOOKING ── fast leader election (election.rs): notifications to every voter,
//!     │       votes ordered by (peer epoch, zxid, sid); observers learn the leader
//!     ├──────────────► LEADING (leader.rs)             FOLLOWING / OBSERVING (learner.rs)
//!     │  discovery       ◄── FOLLOWERINFO(accepted epoch) ──
//!     │                  quorum → e = max+1, write acceptedEpoch
//!     │                  ── LEADERINFO(e) ──►           write acceptedEpoch=e
//!     │                  ◄── ACKEPOCH(currentEpoch | -1, last zxid) ──
//!     │                  quorum → write currentEpoch
//!     │  sync            ── DIFF | TRUNC | SNAP, PROPOSAL/COMMIT pairs ──►
//!     │                  ── NEWLEADER ──►                write currentEpoch, log, ACK
//!     │                  quorum of ACKs → established ── UPTODATE ──► serving
//!     │  broadcast       ── PROPOSAL ──► log, ◄── ACK once durable
//!     │                  quorum in zxid order → ── COMMIT ──► apply; observers get INFORM
//!     │                  REQUEST / REVALIDATE / SYNC / PING(touches) from learners
//!     └◄──── leader silent / quorum lost / zxid counter exhausted / bad packet
//! ```
//!
//! Membership is dynamic with `reconfig_enabled` (reconfig.rs): a committed config
//! and a last-seen (proposed) one. A new leader whose configs are both version 0
//! versions them with its NEWLEADER zxid; a reconfig txn (the driver marks it, with
//! its config) becomes the last-seen config where it is logged, and it and every
//! later proposal need a quorum of both configs until it commits; its commit
//! activates it everywhere (COMMITANDACTIVATE / INFORMANDACTIVATE name the
//! designated leader; a learner whose role or leader changed, and a leader that is
//! not the designated one, re-elect). Elections count both configs' voters, and a
//! LOOKING server adopts a higher config version gossiped in notifications. The
//! driver hears `Event::ConfigProposed` / `ConfigActivated` and persists
//! `Write::LastSeenConfig` / `CommittedConfig`.
//!
//! Where corral is stricter than the reference (same wire, safer local order):
//! a learner's NEWLEADER ACK leaves only once the proposals logged with it are
//! durable; a leader's LEADERINFO and NEWLEADER leave only once its epoch files are
//! durable; a learner holds at most `pending_bytes_max` of uncommitted txns; a
//! leader at most `in_flight_proposals_max` proposals. With reconfig: a config
//! becomes last-seen only once its txn is logged; a learner activates NEWLEADER's
//! config at UPTODATE only if it is committed (a late joiner's NEWLEADER may carry
//! a reconfig still pending); an observer connection's NEWLEADER ACK does not count
//! (it logs nothing until UPTODATE); a leader that is not the designated one steps
//! down at once rather than idling; and joining an established leader needs a
//! quorum of the committed config only (a proposal that never committed would
//! otherwise keep a server out for ever).
//!
//! Output ordering is enforced by [`Ready`]: writes first, then what depends on
//! them, per connection. A driver (the server's sequencer, or the simulator) loops:
//!
//! ```text
//! replica.step(now_ms, Input::Packet { conn, packet });    // or Tick, Notification, …
//! let z = replica.next_zxid()?; replica.propose(Entry { zxid: z, payload })?;  // leader
//! while let Some(mut ready) = replica.ready() {
//!     perform(ready.take_now());                             // sends, applies, events
//!     storage.write_all(ready.writes()); storage.sync();     // in order, then fsync
//!     perform(replica.advance(ready.persisted()));           // ACKs etc., now safe
//! }
//! ```
//!
//! A driver that syncs off its thread holds the `Ready` until the sync returns and
//! meanwhile performs `replica.take_released()` after each step: the outputs that
//! need nothing of the held batch (per target, nothing overtakes a gated output).
//!
//! Files: `types.rs` (zxids, votes, packets, writes, outputs, config),
//! `membership.rs` (one configuration), `replica.rs` (shared state, dispatcher, log
//! window), `election.rs`, `leader.rs`, `learner.rs`, `reconfig.rs` (committed and
//! last-seen configs), `sync_gate.rs` (a sync waits for a quorum's ping round),
//! `ready.rs` (the output batch), `sim.rs` (the simulator; replay a seed with
//! `ZAB_SEED=n ZAB_TRACE=1 cargo test --lib zab::sim::tests::replay -- --nocapture`), `tests.rs` (exact-output tests).

mod election;
mod leader;
mod learner;
mod membership;
mod ready;
mod reconfig;
mod replica;
mod sync_gate;
mod types;

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use leader::LeaderStats;
pub use membership::{Membership, MembershipError};
pub use ready::{Persisted, Ready};
#[cfg(any(test, feature = "sim"))]
pub use replica::PlantedBug;
pub use replica::{Replica, CORE_CONN_BIT};
pub use types::{
    Config, ConnId, DurableState, Entry, Event, Forwarded, Input, LearnerInfo, Notification,
    Output, Packet, PeerState, Role, ServerId, Vote, Write, ZabError, Zxid, EPOCH_MAX, OP_SYNC,
    PROTOCOL_VERSION,
};
