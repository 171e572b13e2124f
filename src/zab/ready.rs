//! The output batch of a replica and the ordering rule it enforces: what must be
//! durable before what may be sent or applied.
//!
//! Flow: `Replica::ready()` hands out one [`Ready`] at a time. The driver sends
//! `take_send_now()` at once, makes `writes()` durable in order, then turns the batch
//! into a [`Persisted`] with `persisted()` and gives it back to
//! `Replica::advance()`, which returns the [`Released`] messages (ACKs, epoch acks,
//! ...) and committed txns to apply. The gated part is private to `Ready`: the only
//! way to obtain it is through `persisted()` + `advance()`, so an ACK cannot leave
//! before the proposal it acknowledges is durable, and `ready()` returns nothing
//! while a batch is outstanding, so batches are persisted strictly in order.
//!
//! Storage contract: writes become durable in order. After a crash, storage must
//! present a prefix of what was written (everything synced, then possibly some of
//! the unsynced writes in order, a torn tail cut off) — one append-only log with
//! the epochs as records in it gives exactly that.

use super::types::{Apply, Outgoing, ServerId, Write, Zxid};

/// One batch of output. Dropping it without `persisted()` + `advance()` leaves the
/// replica waiting forever (in the simulator: a crash).
#[must_use = "send take_send_now(), persist writes(), then Replica::advance(ready.persisted())"]
#[derive(Debug)]
pub struct Ready {
    pub(crate) replica: ServerId,
    pub(crate) batch: u64,
    pub(crate) send_now: Vec<Outgoing>,
    pub(crate) writes: Vec<Write>,
    pub(crate) gated_send: Vec<Outgoing>,
    pub(crate) gated_apply: Vec<Apply>,
    /// The replica's durable view once `writes` are synced.
    pub(crate) log_end: Zxid,
    pub(crate) accepted_epoch: u32,
    pub(crate) current_epoch: u32,
}

impl Ready {
    /// Messages that depend on no write of this batch (nor any later one).
    pub fn take_send_now(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.send_now)
    }

    /// The writes to make durable, in this order, before calling `persisted`.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// True when nothing needs syncing (the driver may skip the fsync).
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Declares `writes()` durable. The result goes to `Replica::advance`.
    pub fn persisted(self) -> Persisted {
        Persisted { ready: self }
    }
}

/// Proof that a batch's writes are durable; only `Ready::persisted` makes one.
#[derive(Debug)]
pub struct Persisted {
    pub(crate) ready: Ready,
}

/// What a durable batch released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Messages to send now, in order.
    pub send: Vec<Outgoing>,
    /// Committed txns (or snapshot resets) to apply, in order.
    pub apply: Vec<Apply>,
}
