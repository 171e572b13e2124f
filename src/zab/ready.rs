//! The output batch of a replica and the ordering rule it enforces: what must be
//! durable before what may be sent or done.
//!
//! Flow: `Replica::ready()` hands out one [`Ready`] at a time. The driver performs
//! `take_now()` at once, makes `writes()` durable in order, then turns the batch into
//! a [`Persisted`] with `persisted()` and gives it back to `Replica::advance()`, which
//! returns the outputs that waited for the disk. The gated part is private to
//! `Ready`: the only way to obtain it is through `persisted()` + `advance()`, so an
//! ACK cannot leave before the proposal it acknowledges is durable, and `ready()`
//! returns nothing while a batch is outstanding, so batches are persisted strictly in
//! order.
//!
//! Ordering is per target (one connection, or the local state): once an output to a
//! target waits for the disk, every later output to the same target in the batch
//! waits too, so nothing on one connection overtakes anything sent before it on that
//! connection, while other connections and local applies go on. One exception: a
//! serving learner's REQUESTs, revalidations and ping replies are a target of their
//! own beside its ACKs on the leader's connection (`Target::Aside`), so a learner
//! whose disk stalls still forwards writes and answers pings. Outputs of the next
//! batch come only after this one's released outputs, except those whose target
//! holds nothing gated in this batch (`Replica::take_released`, for drivers that
//! sync off their thread).
//!
//! Storage contract: writes become durable in order. After a crash, storage presents
//! a prefix of what was written (everything synced, then possibly some unsynced
//! writes in order, a torn tail cut off).

use super::types::{Output, ServerId, Write, Zxid};

/// One batch of output. Dropping it without `persisted()` + `advance()` leaves the
/// replica waiting forever (in the simulator: a crash).
#[must_use = "do take_now(), persist writes(), then Replica::advance(ready.persisted())"]
#[derive(Debug)]
pub struct Ready {
    pub(crate) replica: ServerId,
    pub(crate) batch: u64,
    pub(crate) now: Vec<Output>,
    pub(crate) writes: Vec<Write>,
    pub(crate) gated: Vec<Output>,
    /// The log end and current epoch once `writes` are synced.
    pub(crate) log_end: Zxid,
    pub(crate) current_epoch: u32,
}

impl Ready {
    /// Outputs that depend on no write of this batch (nor of any later one).
    pub fn take_now(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.now)
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
