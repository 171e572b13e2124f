//! The history of a fault run: every client operation as one record with its
//! invocation time, its completion time and its outcome (ok with a result,
//! fail = certainly not applied, info = indeterminate: may or may not have
//! taken effect, e.g. a timeout or a connection loss).
//!
//! Written by the workload threads (one [`Recorder`] shared through an `Arc`,
//! a mutex around a vector), read by the checkers after the run. Times are
//! nanoseconds on one monotonic clock ([`Clock`]) started with the run, so
//! records of different threads compare.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Nanoseconds since the run began, on the monotonic clock.
pub type Nanos = u64;

/// The run's monotonic clock.
#[derive(Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    pub fn now(&self) -> Nanos {
        self.base.elapsed().as_nanos() as Nanos
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R> {
    /// Acknowledged, with its result.
    Ok(R),
    /// Refused: certainly not applied (the reason, e.g. "BadVersion").
    Fail(String),
    /// Indeterminate: may have been applied, at any time after the invocation.
    Info(String),
}

impl<R> Outcome<R> {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    pub fn is_info(&self) -> bool {
        matches!(self, Outcome::Info(_))
    }
}

/// One operation: which client issued it, what it asked, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op<C, R> {
    pub client: usize,
    pub call: C,
    pub invoke: Nanos,
    /// For an info op: when the client gave up (the op may still apply later).
    pub complete: Nanos,
    pub outcome: Outcome<R>,
    /// The member (index into the run's addresses) the client was on when the
    /// op ended, when the workload knows it: which server answered, for
    /// reading a failed history.
    pub member: Option<usize>,
}

/// Collects the ops of one workload from many threads.
pub struct Recorder<C, R> {
    clock: Clock,
    ops: Mutex<Vec<Op<C, R>>>,
}

impl<C: Clone, R: Clone> Recorder<C, R> {
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Recorder {
            clock,
            ops: Mutex::new(Vec::new()),
        })
    }

    pub fn now(&self) -> Nanos {
        self.clock.now()
    }

    /// Runs `f` as client `client`'s op `call` and records it with its times.
    pub fn run(&self, client: usize, call: C, f: impl FnOnce() -> Outcome<R>) -> Outcome<R> {
        self.run_on(client, call, || (f(), None))
    }

    /// As [`Recorder::run`], with `f` also naming the member that answered.
    pub fn run_on(
        &self,
        client: usize,
        call: C,
        f: impl FnOnce() -> (Outcome<R>, Option<usize>),
    ) -> Outcome<R> {
        let invoke = self.now();
        let (outcome, member) = f();
        let complete = self.now();
        self.push(Op {
            client,
            call,
            invoke,
            complete,
            outcome: outcome.clone(),
            member,
        });
        outcome
    }

    pub fn push(&self, op: Op<C, R>) {
        self.ops.lock().unwrap().push(op);
    }

    /// Every op recorded so far, in completion order.
    pub fn ops(&self) -> Vec<Op<C, R>> {
        self.ops.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.ops.lock().unwrap().len()
    }
}

/// The compare-and-set register's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegCall {
    /// sync + getData.
    Read,
    /// setData(value, expect): applies only while the znode's version is `expect`.
    Write { expect: i32, value: String },
}

/// The register's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegRes {
    Read {
        value: String,
        version: i32,
    },
    /// The version the write produced.
    Written {
        version: i32,
    },
}

pub type RegOp = Op<RegCall, RegRes>;

/// A create: named (`path` as asked) or sequential (`path` is the prefix); the
/// data is a token unique to this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    pub path: String,
    pub token: String,
    pub sequential: bool,
}

/// The path the server created.
pub type CreateOp = Op<CreateCall, String>;

/// The ephemeral workload's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EphCall {
    /// An ephemeral at `path` owned by `session`.
    Create { path: String, session: i64 },
    /// A reconnect of `session` answered "expired" (ok) at completion time.
    Expired { session: i64 },
    /// sync + exists of `path` through another session; ok(owner) when present.
    Check { path: String },
}

/// `Some(owner session)` for a Check that found the node, `None` otherwise.
pub type EphOp = Op<EphCall, Option<i64>>;
