//! The replication core: Zab as a pure state machine, plus (in tests or with the
//! `sim` feature) a deterministic simulator of a whole ensemble.
//!
//! Owned by the sequencer core of each server. No IO, no clock, no ambient
//! randomness: the server's peer transport feeds [`Replica::step`] with ticks and
//! peer messages, calls [`Replica::propose`] for new txns, and drains
//! [`Replica::ready`] → persist → [`Replica::advance`] for messages to send, writes
//! to make durable and committed txns to apply.
//!
//! ```text
//!  LOOKING ── fast leader election: Notification{round, vote(epoch, zxid, id)} to all
//!     │       voters; the greatest vote backed by a quorum wins (observers never vote)
//!     ├──────────────► LEADING                         FOLLOWING / OBSERVING
//!     │  discovery       ◄── FollowerInfo(acceptedEpoch) ──
//!     │                  quorum → e = max+1, persist acceptedEpoch
//!     │                  ── LeaderInfo(e) ──►            persist acceptedEpoch=e
//!     │                  ◄── AckEpoch(currentEpoch, lastZxid) ──
//!     │                  quorum → leader must not be behind; persist currentEpoch=e
//!     │  sync            ── Sync(DIFF | TRUNC | SNAP) ──► fix log
//!     │                  ── NewLeader ──►                persist currentEpoch=e
//!     │                  ◄── Ack ──                      (only once durable)
//!     │                  quorum → established, initial history committed
//!     │                  ── UpToDate(commit) ──►         serving
//!     │  broadcast       propose: ── Proposal ──►        persist, then ◄── Ack
//!     │                  quorum of Acks → ── Commit ──►  apply
//!     │                  observers: ── Inform(txn) ──►   persist, apply
//!     │  liveness        ── Ping(commit) ──► ◄── Ping(durable end) ──  every tick;
//!     │                  initLimit / syncLimit in ticks; silence → LOOKING
//!     └◄──── leader lost / quorum lost / zxid counter exhausted / stale epoch
//! ```
//!
//! Where this differs from the reference (same guarantees, simpler to check):
//! - ACK and COMMIT are cumulative ("everything up to zxid"), and a follower's ping
//!   reply carries its durable log end, so a lost ACK is repaired by the next ping.
//! - Each learner connection attempt has a random `attempt` number echoed by the
//!   leader; messages of an older attempt are dropped. Pings carry the last zxid
//!   sent, and proposals/informs carry `prev`: a learner that missed anything
//!   reconnects and resynchronises instead of running on with a gap.
//! - A learner buffers DIFF/TRUNC/SNAP until NEWLEADER and applies them in the
//!   batch that carries its ack; SNAP is one atomic write with the txns after it,
//!   so no crash point leaves a learner with less committed data than it acked.
//! - Observers are synced once the leader is established, with committed txns only.
//! - The zxid counter stops at `zxid_counter_max`; the next proposal makes the
//!   leader step down so the new election brings a new epoch.
//!
//! Output ordering is enforced by [`Ready`]: writes first, then what depends on them.
//! A driver (the server's sequencer, or the simulator) loops like this:
//!
//! ```text
//! replica.step(now_ticks, Input::Message { from, msg });   // or Tick, Disconnected
//! let zxid = replica.propose(txn_bytes)?;                  // leader only
//! while let Some(mut ready) = replica.ready() {
//!     transport.send_all(ready.take_send_now());           // needs no disk
//!     storage.append_all(ready.writes()); storage.sync();  // in order, then fsync
//!     let released = replica.advance(ready.persisted());
//!     transport.send_all(released.send);                   // ACKs etc., now safe
//!     state_machine.apply_all(released.apply);             // committed txns, in order
//! }
//! ```
//!
//! Files: `types.rs` (zxids, votes, messages, writes, config), `replica.rs` (the
//! state machine), `ready.rs` (the output batch), `sim.rs` (the simulator; replay a
//! seed with `ZAB_SEED=n ZAB_TRACE=1 cargo test --lib zab::sim::tests::replay --
//! --nocapture`), `tests.rs` (exact-output tests).

mod ready;
mod replica;
mod types;

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use ready::{Persisted, Ready, Released};
#[cfg(any(test, feature = "sim"))]
pub use replica::PlantedBug;
pub use replica::{Input, Replica, Role};
pub use types::{
    Apply, Config, DurableState, Entry, Msg, Outgoing, PeerState, ServerId, Snapshot, SyncMode,
    Vote, Write, ZabError, Zxid,
};
