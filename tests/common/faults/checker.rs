//! Verdicts on a fault run's history (see `history`): the register is
//! linearizable, no acknowledged create is lost and none appears from nowhere,
//! an ephemeral is gone once its session's expiry was observed, and every
//! client's operations take effect in the order it issued them.
//!
//! Pure functions of the recorded ops and the final trees (read after the
//! faults healed, through every member); they run on the test thread after the
//! workload threads have joined. Each returns its [`Violation`]s (empty: the
//! property holds). The register search is Wing & Gong's with Lowe's memo
//! (as in Knossos and Porcupine): it tries every order of the ops that respects
//! real time, replaying each on a model of the znode, and memoises (ops done,
//! model state) pairs so each is explored once. An indeterminate op may be
//! placed anywhere after its invocation, or nowhere.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::history::{CreateOp, EphCall, EphOp, Nanos, Op, Outcome, RegCall, RegOp, RegRes};
use super::workload::GARBLED_REPLY;
use crate::common::ensemble::Tree;

/// States (ops done × register value) the linearizability search may visit
/// before it gives up with [`Verdict::Unknown`].
pub const SEARCH_STATES_COUNT_MAX: usize = 4_000_000;
/// For long histories the bound grows with them: this many states per op.
pub const SEARCH_STATES_PER_OP: usize = 16;
/// Ops listed around the point where a search got stuck.
const STUCK_OPS_SHOWN_MAX: usize = 12;

/// One broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// "register", "lost", "phantom", "duplicate", "order", "ephemeral".
    pub kind: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.kind, self.detail)
    }
}

fn violation(kind: &'static str, detail: String) -> Violation {
    Violation { kind, detail }
}

// ----- the compare-and-set register -----

/// What the linearizability search concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order fits; the text shows where the search got stuck.
    Violation(String),
    /// The search hit [`SEARCH_STATES_COUNT_MAX`].
    Unknown(String),
}

/// A register op as the search sees it: times and what it demands of the model.
#[derive(Debug, Clone, Copy)]
struct Entry {
    invoke: Nanos,
    /// `Nanos::MAX` for an indeterminate op.
    complete: Nanos,
    effect: Effect,
    /// Index into the caller's ops, for reports.
    op: usize,
}

/// Values are interned: the model holds (value id, version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Saw exactly this state.
    Read { value: u32, version: i32 },
    /// Applied at `expect` (acknowledged: the new version is `expect + 1`).
    WriteOk { expect: i32, value: u32 },
    /// Refused with BadVersion: the version was not `expect`.
    WriteRefused { expect: i32 },
    /// Unknown: applied at `expect`, or never.
    WriteMaybe { expect: i32, value: u32 },
}

/// A search state: ops `< prefix` (by invocation) and those in `extra` are done.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    prefix: u32,
    extra: Vec<u32>,
    value: u32,
    version: i32,
}

/// Is this history of one znode linearizable? `initial` is the znode's
/// (data, version) before the first op.
pub fn check_register(ops: &[RegOp], initial: (&str, i32)) -> Verdict {
    let mut values = HashMap::new();
    let mut intern = |v: &str| {
        let n = values.len() as u32;
        *values.entry(v.to_string()).or_insert(n)
    };
    let init = (intern(initial.0), initial.1);
    let mut entries = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match entry(i, op, &mut intern) {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => {}
            Err(why) => return Verdict::Violation(why),
        }
    }
    entries.sort_by_key(|e| (e.invoke, e.complete));
    Search::new(entries).run(init, ops)
}

/// The search's view of one op; `None` for ops that constrain nothing
/// (reads without an answer, failures other than BadVersion).
fn entry(
    i: usize,
    op: &RegOp,
    intern: &mut impl FnMut(&str) -> u32,
) -> Result<Option<Entry>, String> {
    let definite = |effect| {
        Some(Entry {
            invoke: op.invoke,
            complete: op.complete,
            effect,
            op: i,
        })
    };
    Ok(match (&op.call, &op.outcome) {
        (RegCall::Read, Outcome::Ok(RegRes::Read { value, version })) => definite(Effect::Read {
            value: intern(value),
            version: *version,
        }),
        (RegCall::Write { expect, value }, Outcome::Ok(RegRes::Written { version })) => {
            if *version != expect + 1 {
                return Err(format!(
                    "client {}: setData at version {expect} answered version {version} ({op:?})",
                    op.client
                ));
            }
            definite(Effect::WriteOk {
                expect: *expect,
                value: intern(value),
            })
        }
        (RegCall::Write { expect, .. }, Outcome::Fail(why)) if why == "BadVersion" => {
            definite(Effect::WriteRefused { expect: *expect })
        }
        (RegCall::Write { expect, value }, Outcome::Info(_)) => Some(Entry {
            invoke: op.invoke,
            complete: Nanos::MAX,
            effect: Effect::WriteMaybe {
                expect: *expect,
                value: intern(value),
            },
            op: i,
        }),
        _ => None,
    })
}

struct Search {
    entries: Vec<Entry>,
    definite: usize,
    /// Definite ops among the first i entries.
    definite_before: Vec<usize>,
    seen: HashSet<Node>,
    /// The furthest prefix reached, for the report.
    best: Node,
}

impl Search {
    fn new(entries: Vec<Entry>) -> Search {
        let definite = entries
            .iter()
            .filter(|e| !matches!(e.effect, Effect::WriteMaybe { .. }))
            .count();
        let mut definite_before = vec![0];
        for e in &entries {
            let d = !matches!(e.effect, Effect::WriteMaybe { .. });
            definite_before.push(definite_before.last().unwrap() + d as usize);
        }
        Search {
            entries,
            definite,
            definite_before,
            seen: HashSet::new(),
            best: Node {
                prefix: 0,
                extra: Vec::new(),
                value: 0,
                version: 0,
            },
        }
    }

    fn run(mut self, (value, version): (u32, i32), ops: &[RegOp]) -> Verdict {
        let start = self.normalize(Node {
            prefix: 0,
            extra: Vec::new(),
            value,
            version,
        });
        self.best = start.clone();
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            if self.all_definite_done(&node) {
                return Verdict::Linearizable;
            }
            let states_max = SEARCH_STATES_COUNT_MAX.max(SEARCH_STATES_PER_OP * self.entries.len());
            if self.seen.len() >= states_max {
                return Verdict::Unknown(format!(
                    "gave up after {states_max} states; {}",
                    self.stuck_report(ops)
                ));
            }
            for i in self.candidates(&node) {
                if let Some(next) = self.step(&node, i) {
                    let next = self.normalize(next);
                    if next.prefix > self.best.prefix {
                        self.best = next.clone();
                    }
                    if self.seen.insert(next.clone()) {
                        stack.push(next);
                    }
                }
            }
        }
        Verdict::Violation(self.stuck_report(ops))
    }

    fn is_done(&self, node: &Node, i: usize) -> bool {
        (i as u32) < node.prefix || node.extra.binary_search(&(i as u32)).is_ok()
    }

    /// An indeterminate write whose version has passed can never apply.
    fn is_dead(&self, node: &Node, i: usize) -> bool {
        matches!(self.entries[i].effect, Effect::WriteMaybe { expect, .. } if expect < node.version)
    }

    fn is_definite(&self, i: usize) -> bool {
        !matches!(self.entries[i].effect, Effect::WriteMaybe { .. })
    }

    fn all_definite_done(&self, node: &Node) -> bool {
        let in_extra = node
            .extra
            .iter()
            .filter(|&&i| self.is_definite(i as usize))
            .count();
        self.definite_before[node.prefix as usize] + in_extra == self.definite
    }

    /// The ops that may go next: not done, and invoked before every pending
    /// op's completion (none of them must precede it).
    fn candidates(&self, node: &Node) -> Vec<usize> {
        let mut min_complete = Nanos::MAX;
        let mut out = Vec::new();
        for i in node.prefix as usize..self.entries.len() {
            let e = &self.entries[i];
            if e.invoke >= min_complete {
                break;
            }
            if self.is_done(node, i) {
                continue;
            }
            out.push(i);
            min_complete = min_complete.min(e.complete);
        }
        out.retain(|&i| self.entries[i].invoke < min_complete);
        out
    }

    /// Applies op `i` to the model; `None` when the model forbids it.
    fn step(&self, node: &Node, i: usize) -> Option<Node> {
        let (value, version) = match self.entries[i].effect {
            Effect::Read { value, version } => {
                (value == node.value && version == node.version).then_some((value, version))?
            }
            Effect::WriteOk { expect, value } | Effect::WriteMaybe { expect, value } => {
                (expect == node.version).then_some((value, expect + 1))?
            }
            Effect::WriteRefused { expect } => {
                (expect != node.version).then_some((node.value, node.version))?
            }
        };
        let mut extra = node.extra.clone();
        let at = extra.binary_search(&(i as u32)).unwrap_err();
        extra.insert(at, i as u32);
        Some(Node {
            prefix: node.prefix,
            extra,
            value,
            version,
        })
    }

    /// Marks dead indeterminate writes done and folds the done run at the
    /// front of `extra` into `prefix`, so equal states compare equal.
    fn normalize(&self, mut node: Node) -> Node {
        let mut min_complete = Nanos::MAX;
        for i in node.prefix as usize..self.entries.len() {
            let e = &self.entries[i];
            if e.invoke >= min_complete {
                break;
            }
            if self.is_dead(&node, i) {
                if let Err(at) = node.extra.binary_search(&(i as u32)) {
                    node.extra.insert(at, i as u32);
                }
            } else if !self.is_done(&node, i) {
                min_complete = min_complete.min(e.complete);
            }
        }
        while node.extra.first() == Some(&node.prefix) {
            node.extra.remove(0);
            node.prefix += 1;
        }
        node
    }

    /// The ops around the furthest point the search reached.
    fn stuck_report(&self, ops: &[RegOp]) -> String {
        let node = &self.best;
        let mut out = format!(
            "no linearization; furthest: {} of {} ops placed, register at version {}; the next ops:",
            node.prefix,
            self.entries.len(),
            node.version
        );
        let next = (node.prefix as usize..self.entries.len())
            .filter(|&i| !self.is_done(node, i))
            .take(STUCK_OPS_SHOWN_MAX);
        for i in next {
            out.push_str(&format!("\n    {:?}", ops[self.entries[i].op]));
        }
        let v = node.version;
        let near = |x: i32| (v - 1..=v + 1).contains(&x);
        let mut around: Vec<&RegOp> = ops
            .iter()
            .filter(|o| match (&o.call, &o.outcome) {
                (_, Outcome::Ok(RegRes::Read { version, .. })) => near(*version),
                (_, Outcome::Ok(RegRes::Written { version })) => near(*version),
                (RegCall::Write { expect, .. }, _) => near(*expect),
                _ => false,
            })
            .collect();
        around.sort_by_key(|o| o.invoke);
        out.push_str(&format!(
            "\n  every op at versions {}..={} (member = index of the member that answered):",
            v - 1,
            v + 1
        ));
        for o in around.iter().take(AROUND_OPS_SHOWN_MAX) {
            out.push_str(&format!("\n    {o:?}"));
        }
        out
    }
}

/// How long before its invocation a register read answered by a ZooKeeper
/// member may take effect (see [`relax_reference_reads`]).
pub const REFERENCE_READ_LAG: Nanos = 200_000_000;

/// A copy of `ops` for [`check_register`] in which each read answered by one of
/// `reference` (indexes into the run's client addresses: the ZooKeeper members)
/// may take effect up to `lag` before it was invoked.
///
/// Why: ZooKeeper 3.8 does not make a client's sync + read on the *leader*
/// linearizable. The leader's CommitProcessor does not wait for a sync
/// (`LeaderZooKeeperServer` builds it with `matchSyncs = false`), so the read
/// sees what the leader has applied; and `Leader.tryToCommit` sends COMMIT to
/// the followers before it hands the txn to its own CommitProcessor. A follower
/// can therefore apply a write and acknowledge it to its client while a sync +
/// read on the leader, invoked after that acknowledgement, still returns the
/// old value (ZOOKEEPER-1675, "Make sync a quorum operation", is open
/// upstream). A corral follower applies a COMMIT within the same turn, so in
/// mixed ensembles this window shows: a CI run caught a ZooKeeper leader
/// answering version 671 0.15 ms after a corral follower acknowledged 672.
/// Reads answered by corral members are left as they are (corral's leader
/// answers a sync only once a quorum has answered a ping sent after it, and
/// its shards see a commit before any later request), and so are every write
/// and refusal.
pub fn relax_reference_reads(ops: &[RegOp], reference: &[usize], lag: Nanos) -> Vec<RegOp> {
    ops.iter()
        .map(|op| {
            let mut op = op.clone();
            let is_read = matches!(op.outcome, Outcome::Ok(RegRes::Read { .. }));
            if is_read && op.member.is_some_and(|m| reference.contains(&m)) {
                op.invoke = op.invoke.saturating_sub(lag);
            }
            op
        })
        .collect()
}

/// How many ops near the stuck version a register violation lists.
const AROUND_OPS_SHOWN_MAX: usize = 40;

/// Every client's register ops take effect in its own order: the versions it
/// reads or writes never go back.
pub fn check_register_client_order(ops: &[RegOp]) -> Vec<Violation> {
    let mut by_client: BTreeMap<usize, Vec<&RegOp>> = BTreeMap::new();
    for op in ops {
        by_client.entry(op.client).or_default().push(op);
    }
    let mut out = Vec::new();
    for (client, mut mine) in by_client {
        mine.sort_by_key(|o| o.invoke);
        let mut last: Option<(i32, &RegOp)> = None;
        for op in mine {
            let version = match &op.outcome {
                Outcome::Ok(RegRes::Read { version, .. }) => *version,
                Outcome::Ok(RegRes::Written { version }) => *version,
                _ => continue,
            };
            if let Some((before, prev)) = last {
                if version < before {
                    out.push(violation(
                        "order",
                        format!(
                            "client {client} saw version {version} after {before}: {prev:?} then {op:?}"
                        ),
                    ));
                }
            }
            if last.is_none_or(|(b, _)| version >= b) {
                last = Some((version, op));
            }
        }
    }
    out
}

/// Replies out of order on a session, or that did not decode: a session's
/// answers must come in the order of its requests.
pub fn check_replies<C: std::fmt::Debug, R: std::fmt::Debug>(ops: &[Op<C, R>]) -> Vec<Violation> {
    ops.iter()
        .filter(|op| matches!(&op.outcome, Outcome::Info(why) if why.starts_with(GARBLED_REPLY)))
        .map(|op| violation("order", format!("client {}: {op:?}", op.client)))
        .collect()
}

// ----- creates -----

/// What one member's final tree says about the creates: acknowledged ones
/// missing (lost), nodes nobody asked for or whose create was refused
/// (phantom), one invocation applied twice (duplicate), and a client's creates
/// committed out of its issue order (order, by czxid).
pub fn check_creates(ops: &[CreateOp], sid: u64, tree: &Tree, parents: &[&str]) -> Vec<Violation> {
    let by_token: HashMap<&str, &CreateOp> =
        ops.iter().map(|o| (o.call.token.as_str(), o)).collect();
    let mut out = Vec::new();
    let mut found: HashMap<&str, Vec<&str>> = HashMap::new();
    for (path, (data, _)) in tree.iter().filter(|(p, _)| is_child_of(p, parents)) {
        let token = data
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        match by_token.get_key_value(token.as_ref()) {
            None => out.push(violation(
                "phantom",
                format!("member {sid}: {path} holds {token:?}, which no create sent"),
            )),
            Some((&t, op)) => {
                if matches!(op.outcome, Outcome::Fail(_)) {
                    out.push(violation(
                        "phantom",
                        format!("member {sid}: {path} exists but its create was refused: {op:?}"),
                    ));
                }
                if !path_fits(&op.call, path) {
                    out.push(violation(
                        "phantom",
                        format!("member {sid}: {path} holds the token of {op:?}"),
                    ));
                }
                found.entry(t).or_default().push(path.as_str());
            }
        }
    }
    for (token, paths) in &found {
        if paths.len() > 1 {
            out.push(violation(
                "duplicate",
                format!(
                    "member {sid}: create {token:?} applied {} times: {paths:?}",
                    paths.len()
                ),
            ));
        }
    }
    for op in ops {
        if let Outcome::Ok(path) = &op.outcome {
            let held = tree.get(path).and_then(|(d, _)| d.as_deref());
            if held != Some(op.call.token.as_bytes()) {
                out.push(violation(
                    "lost",
                    format!("member {sid}: acknowledged {path} is missing or changed: {op:?}"),
                ));
            }
        }
    }
    out.extend(check_create_order(ops, sid, tree, &found));
    out
}

/// True when `path` is a direct child of one of `parents`.
fn is_child_of(path: &str, parents: &[&str]) -> bool {
    parents.iter().any(|p| {
        path.strip_prefix(p)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    })
}

/// Named creates land at their path; sequential ones at the prefix plus 10 digits.
fn path_fits(call: &super::history::CreateCall, path: &str) -> bool {
    if call.sequential {
        path.strip_prefix(call.path.as_str())
            .is_some_and(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()))
    } else {
        path == call.path
    }
}

/// A client's creates that are in the tree have increasing czxids in its issue order.
fn check_create_order(
    ops: &[CreateOp],
    sid: u64,
    tree: &Tree,
    found: &HashMap<&str, Vec<&str>>,
) -> Vec<Violation> {
    let mut by_client: BTreeMap<usize, Vec<&CreateOp>> = BTreeMap::new();
    for op in ops {
        by_client.entry(op.client).or_default().push(op);
    }
    let mut out = Vec::new();
    for (client, mut mine) in by_client {
        mine.sort_by_key(|o| o.invoke);
        let mut last: Option<(i64, &str)> = None;
        for op in mine {
            let Some(paths) = found.get(op.call.token.as_str()) else {
                continue;
            };
            let czxid = tree[paths[0]].1.czxid;
            if let Some((before, prev)) = last {
                if czxid <= before {
                    out.push(violation(
                        "order",
                        format!(
                            "member {sid}: client {client} created {prev} (czxid {before:#x}) before {} \
                             (czxid {czxid:#x}) but issued them the other way round",
                            paths[0]
                        ),
                    ));
                }
            }
            last = Some((czxid, paths[0]));
        }
    }
    out
}

// ----- ephemerals -----

/// An ephemeral is gone once its session's expiry was observed: no check
/// invoked after that saw it, and no final tree holds a node of that session.
pub fn check_ephemerals(ops: &[EphOp], trees: &[(u64, Tree)]) -> Vec<Violation> {
    let mut expired: BTreeMap<i64, Nanos> = BTreeMap::new();
    for op in ops {
        if let (EphCall::Expired { session }, Outcome::Ok(_)) = (&op.call, &op.outcome) {
            let at = expired.entry(*session).or_insert(op.complete);
            *at = (*at).min(op.complete);
        }
    }
    let mut out = Vec::new();
    for op in ops {
        if let (EphCall::Check { path }, Outcome::Ok(Some(owner))) = (&op.call, &op.outcome) {
            if expired.get(owner).is_some_and(|&t| op.invoke > t) {
                out.push(violation(
                    "ephemeral",
                    format!(
                        "{path} of session {owner:#x} seen after its expiry was observed: {op:?}"
                    ),
                ));
            }
        }
    }
    for (sid, tree) in trees {
        for (path, (_, stat)) in tree {
            if expired.contains_key(&stat.ephemeral_owner) {
                out.push(violation(
                    "ephemeral",
                    format!(
                        "member {sid}: {path} of expired session {:#x} is still there",
                        stat.ephemeral_owner
                    ),
                ));
            }
        }
    }
    out
}

/// The distinct sessions whose expiry was observed.
pub fn expired_sessions(ops: &[EphOp]) -> BTreeSet<i64> {
    ops.iter()
        .filter_map(|op| match (&op.call, &op.outcome) {
            (EphCall::Expired { session }, Outcome::Ok(_)) => Some(*session),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::history::CreateCall;
    use super::*;
    use corral::proto::Stat;

    fn op<C, R>(
        client: usize,
        invoke: u64,
        complete: u64,
        call: C,
        outcome: Outcome<R>,
    ) -> Op<C, R> {
        Op {
            client,
            call,
            invoke,
            complete,
            outcome,
            member: None,
        }
    }

    fn read(c: usize, t0: u64, t1: u64, value: &str, version: i32) -> RegOp {
        op(
            c,
            t0,
            t1,
            RegCall::Read,
            Outcome::Ok(RegRes::Read {
                value: value.into(),
                version,
            }),
        )
    }

    fn write(c: usize, t0: u64, t1: u64, expect: i32, value: &str, out: Outcome<RegRes>) -> RegOp {
        op(
            c,
            t0,
            t1,
            RegCall::Write {
                expect,
                value: value.into(),
            },
            out,
        )
    }

    fn ok_w(version: i32) -> Outcome<RegRes> {
        Outcome::Ok(RegRes::Written { version })
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            read(0, 0, 1, "init", 0),
            write(0, 2, 3, 0, "a", ok_w(1)),
            read(1, 4, 5, "a", 1),
            write(1, 6, 7, 0, "b", Outcome::Fail("BadVersion".into())),
            write(1, 8, 9, 1, "b", ok_w(2)),
            read(0, 10, 11, "b", 2),
        ];
        assert_eq!(check_register(&h, ("init", 0)), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_ops_may_take_either_order() {
        // The read overlaps the write and sees the old value: fine.
        let h = vec![
            write(0, 0, 10, 0, "a", ok_w(1)),
            read(1, 1, 9, "init", 0),
            read(2, 2, 8, "a", 1),
        ];
        assert_eq!(check_register(&h, ("init", 0)), Verdict::Linearizable);
    }

    /// The shape a mixed CI run produced (versions 671..=673, times in ns from
    /// the run's history): a corral member (0) acknowledges 672, then the
    /// ZooKeeper leader (1) answers a sync + read with 671.
    fn reference_leader_stale_read() -> Vec<RegOp> {
        let on = |m: usize, mut op: RegOp| {
            op.member = Some(m);
            op
        };
        vec![
            on(0, read(2, 4_800_307_087, 4_803_584_307, "c0-350", 671)),
            on(
                1,
                write(0, 4_800_943_508, 4_802_180_439, 670, "c0-350", ok_w(671)),
            ),
            on(
                0,
                write(2, 4_803_586_120, 4_805_725_005, 671, "c2-279", ok_w(672)),
            ),
            on(1, read(1, 4_805_869_920, 4_806_368_678, "c0-350", 671)),
            on(
                1,
                write(
                    1,
                    4_806_370_461,
                    4_807_079_049,
                    671,
                    "c1-354",
                    Outcome::Fail("BadVersion".into()),
                ),
            ),
            on(1, read(0, 4_807_287_688, 4_807_696_673, "c2-279", 672)),
            on(
                1,
                write(0, 4_807_698_556, 4_808_723_002, 672, "c0-351", ok_w(673)),
            ),
        ]
    }

    #[test]
    fn a_zookeeper_leaders_sync_and_read_may_lag_what_a_follower_acknowledged() {
        let h = reference_leader_stale_read();
        let initial = ("c0-349", 670);
        assert!(matches!(check_register(&h, initial), Verdict::Violation(_)));
        let relaxed = relax_reference_reads(&h, &[1], REFERENCE_READ_LAG);
        assert_eq!(check_register(&relaxed, initial), Verdict::Linearizable);
        // The same read answered by a corral member stays a violation.
        let strict = relax_reference_reads(&h, &[0], REFERENCE_READ_LAG);
        assert!(matches!(
            check_register(&strict, initial),
            Verdict::Violation(_)
        ));
        // So does a ZooKeeper read staler than the lag.
        let mut late = h.clone();
        late[3].invoke += REFERENCE_READ_LAG + 3_000_000;
        late[3].complete += REFERENCE_READ_LAG + 3_000_000;
        late.truncate(4);
        let relaxed = relax_reference_reads(&late, &[1], REFERENCE_READ_LAG);
        assert!(matches!(
            check_register(&relaxed, initial),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn a_stale_read_after_a_write_completed_is_caught() {
        let h = vec![write(0, 0, 1, 0, "a", ok_w(1)), read(1, 2, 3, "init", 0)];
        assert!(matches!(
            check_register(&h, ("init", 0)),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn two_writes_acknowledged_at_one_version_are_caught() {
        // What members that do not replicate produce.
        let h = vec![
            write(0, 0, 1, 0, "a", ok_w(1)),
            write(1, 2, 3, 0, "b", ok_w(1)),
        ];
        assert!(matches!(
            check_register(&h, ("init", 0)),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn a_refusal_that_the_state_does_not_explain_is_caught() {
        let h = vec![
            read(0, 0, 1, "init", 0),
            write(0, 2, 3, 0, "a", Outcome::Fail("BadVersion".into())),
            read(0, 4, 5, "init", 0),
        ];
        assert!(matches!(
            check_register(&h, ("init", 0)),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn an_indeterminate_write_may_apply_late_or_never() {
        let late = vec![
            write(0, 0, 1, 0, "a", Outcome::Info("timeout".into())),
            read(1, 2, 3, "init", 0),
            read(1, 10, 11, "a", 1),
        ];
        assert_eq!(check_register(&late, ("init", 0)), Verdict::Linearizable);
        let never = vec![
            write(0, 0, 1, 0, "a", Outcome::Info("lost".into())),
            write(1, 2, 3, 0, "b", ok_w(1)),
            read(1, 4, 5, "b", 1),
        ];
        assert_eq!(check_register(&never, ("init", 0)), Verdict::Linearizable);
        // But not before it was invoked.
        let early = vec![
            read(1, 0, 1, "a", 1),
            write(0, 2, 3, 0, "a", Outcome::Info("lost".into())),
        ];
        assert!(matches!(
            check_register(&early, ("init", 0)),
            Verdict::Violation(_)
        ));
    }

    #[test]
    fn a_long_history_with_many_indeterminate_writes_is_decided() {
        let mut h = Vec::new();
        let mut t = 0;
        let mut version = 0;
        for i in 0..3000 {
            let v = format!("v{i}");
            h.push(write(i % 4, t, t + 5, version, &v, ok_w(version + 1)));
            version += 1;
            h.push(write(
                4,
                t + 1,
                t + 2,
                version - 1,
                "x",
                Outcome::Info("t".into()),
            ));
            h.push(read((i + 1) % 4, t + 3, t + 7, &v, version));
            t += 10;
        }
        assert_eq!(check_register(&h, ("init", 0)), Verdict::Linearizable);
    }

    #[test]
    fn a_reply_out_of_order_is_caught() {
        let good = vec![
            read(0, 0, 1, "a", 1),
            write(0, 2, 3, 1, "b", Outcome::Info("lost".into())),
        ];
        assert!(check_replies(&good).is_empty());
        let bad = vec![write(
            0,
            0,
            1,
            0,
            "a",
            Outcome::Info(format!("{GARBLED_REPLY}: reply xid 3 where 2 was due")),
        )];
        assert_eq!(check_replies(&bad).len(), 1);
    }

    #[test]
    fn a_client_whose_versions_go_back_is_caught() {
        let good = vec![read(0, 0, 1, "a", 1), read(0, 2, 3, "b", 2)];
        assert!(check_register_client_order(&good).is_empty());
        let bad = vec![read(0, 0, 1, "b", 2), read(0, 2, 3, "a", 1)];
        assert_eq!(check_register_client_order(&bad).len(), 1);
    }

    fn create(
        c: usize,
        t: u64,
        path: &str,
        token: &str,
        seq: bool,
        out: Outcome<String>,
    ) -> CreateOp {
        op(
            c,
            t,
            t + 1,
            CreateCall {
                path: path.into(),
                token: token.into(),
                sequential: seq,
            },
            out,
        )
    }

    fn node(tree: &mut Tree, path: &str, token: &str, czxid: i64) {
        let stat = Stat {
            czxid,
            ..Stat::default()
        };
        tree.insert(path.into(), (Some(token.as_bytes().to_vec()), stat));
    }

    #[test]
    fn creates_all_present_in_order_pass() {
        let ops = vec![
            create(0, 0, "/c/a", "t1", false, Outcome::Ok("/c/a".into())),
            create(
                0,
                2,
                "/s/n-",
                "t2",
                true,
                Outcome::Ok("/s/n-0000000000".into()),
            ),
            create(1, 1, "/c/b", "t3", false, Outcome::Info("lost".into())),
            create(1, 3, "/c/d", "t4", false, Outcome::Info("lost".into())),
        ];
        let mut tree = Tree::new();
        node(&mut tree, "/c/a", "t1", 1);
        node(&mut tree, "/s/n-0000000000", "t2", 3);
        node(&mut tree, "/c/b", "t3", 2);
        assert_eq!(check_creates(&ops, 1, &tree, &["/c", "/s"]), vec![]);
    }

    #[test]
    fn lost_phantom_duplicate_and_reordered_creates_are_caught() {
        let ops = vec![
            create(0, 0, "/c/a", "t1", false, Outcome::Ok("/c/a".into())),
            create(
                0,
                2,
                "/s/n-",
                "t2",
                true,
                Outcome::Ok("/s/n-0000000001".into()),
            ),
            create(
                0,
                4,
                "/s/n-",
                "t3",
                true,
                Outcome::Ok("/s/n-0000000002".into()),
            ),
            create(
                1,
                0,
                "/c/r",
                "t4",
                false,
                Outcome::Fail("NodeExists".into()),
            ),
        ];
        let mut tree = Tree::new();
        // t1 lost; t2 applied twice; t3 committed before t2; t4 refused yet
        // there; t9 from nowhere.
        node(&mut tree, "/s/n-0000000001", "t2", 5);
        node(&mut tree, "/s/n-0000000003", "t2", 6);
        node(&mut tree, "/s/n-0000000002", "t3", 4);
        node(&mut tree, "/c/r", "t4", 7);
        node(&mut tree, "/c/z", "t9", 8);
        let kinds: BTreeSet<&str> = check_creates(&ops, 1, &tree, &["/c", "/s"])
            .iter()
            .map(|v| v.kind)
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["lost", "phantom", "duplicate", "order"])
        );
    }

    fn eph(t0: u64, t1: u64, call: EphCall, out: Outcome<Option<i64>>) -> EphOp {
        op(0, t0, t1, call, out)
    }

    #[test]
    fn an_ephemeral_seen_after_observed_expiry_is_caught() {
        let path = "/e/owner".to_string();
        let create = eph(
            0,
            1,
            EphCall::Create {
                path: path.clone(),
                session: 7,
            },
            Outcome::Ok(None),
        );
        let expired = eph(10, 20, EphCall::Expired { session: 7 }, Outcome::Ok(None));
        let before = eph(
            5,
            25,
            EphCall::Check { path: path.clone() },
            Outcome::Ok(Some(7)),
        );
        let after = eph(
            30,
            31,
            EphCall::Check { path: path.clone() },
            Outcome::Ok(Some(7)),
        );
        let gone = eph(
            30,
            31,
            EphCall::Check { path: path.clone() },
            Outcome::Ok(None),
        );
        let empty = vec![(1, Tree::new())];
        let ok = vec![create.clone(), expired.clone(), before, gone];
        assert_eq!(check_ephemerals(&ok, &empty), vec![]);
        assert_eq!(
            check_ephemerals(&[create.clone(), expired.clone(), after], &empty).len(),
            1
        );
        let mut tree = Tree::new();
        let stat = Stat {
            ephemeral_owner: 7,
            ..Stat::default()
        };
        tree.insert(path, (None, stat));
        assert_eq!(check_ephemerals(&[create, expired], &[(2, tree)]).len(), 1);
    }
}
