//! Quotas as ZooKeeper 3.7+ keeps them: clients (zkCli `setquota`) create
//! `/zookeeper/quota/<path>/zookeeper_limits` holding a [`StatsTrack`] text
//! (`count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1`) and
//! `/zookeeper/quota/<path>/zookeeper_stats`; the tree keeps the stats node's text
//! equal to the count and bytes of `<path>`'s subtree as txns apply, and with
//! `enforceQuota` a create or setData that would pass a hard limit fails in prepare
//! with QuotaExceeded (soft limits only log).
//!
//! **Who runs what.** The sequencer core (and every ensemble member) runs the apply
//! hooks ([`Tree::quota_after_create`], [`Tree::quota_after_delete`],
//! [`Tree::quota_after_set_data`]) from `apply`, and the enforcement check
//! ([`check_quota`]) from `prepare`; snapshot loading runs [`Tree::setup_quotas`] on the
//! loading thread. Pure: no IO, no clock (soft-limit warnings are logged).
//!
//! **Data flow**, as the reference's DataTree: the quota roots (its `PathTrie`) live in
//! [`Tree`] (`quota_roots`, not persisted). Creating a `zookeeper_limits` node adds its
//! parent's path (less `/zookeeper/quota`) as a root; deleting one removes it;
//! creating a `zookeeper_stats` node recounts that path's subtree into it. Every
//! create, delete and setData under a root then adds its count and bytes delta to the
//! root's stats text. These rewrites are in-memory side effects of applying txns (no
//! txn of their own), a deterministic function of the tree and the txn, so every
//! member computes the same text. Loading a snapshot rebuilds the roots from the
//! `zookeeper_limits` leaves and recounts their stats (the reference's `setupQuota`).
//! As in the reference, these rewrites leave the approximate data size as it was
//! (its `nodeDataSize` drifts by the change in the stats text's length), stamp no
//! zxid or version, and nodes under `/zookeeper/` are outside the digest.
//!
//! Where the reference throws while applying (stats text that does not parse, a
//! `zookeeper_limits` directly under `/zookeeper/quota`, one under a parent shorter
//! than `/zookeeper/quota`), corral skips the rest of that quota bookkeeping and
//! applies the txn; the reference's request pipeline dies there.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use crate::proto::ErrorCode;

use super::key::Key;
use super::{Tree, QUOTA};

/// The node that holds a quota's limits (`Quotas.limitNode`).
pub const LIMIT_NODE: &str = "zookeeper_limits";
/// The node that holds a quota's usage (`Quotas.statNode`).
pub const STAT_NODE: &str = "zookeeper_stats";
/// What the reference's delete hook tests the parent against (`Quotas.procZookeeper`);
/// the create hook tests `/zookeeper/quota`.
const PROC: &str = "/zookeeper";

const COUNT: &str = "count";
const BYTES: &str = "bytes";
const COUNT_HARD_LIMIT: &str = "countHardLimit";
const BYTE_HARD_LIMIT: &str = "byteHardLimit";

/// Soft-limit warnings logged so far; after the first, one in every
/// [`SOFT_WARNINGS_LOG_EVERY_COUNT`] is logged (the reference rate-limits by time,
/// which this module cannot read).
static SOFT_WARNINGS: AtomicU64 = AtomicU64::new(0);
const SOFT_WARNINGS_LOG_EVERY_COUNT: u64 = 1024;

// ---------------------------------------------------------------------------------
// StatsTrack

/// The reference's `StatsTrack`: `key=long` pairs separated by runs of `,` or `;`.
/// A key read but absent is −1. Written back as `count=C,bytes=B`, then, when other
/// keys are present, `=` and `;key=value` for each in Java's string order (the stray
/// `=` keeps 3.4 parsers working).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack {
    values: BTreeMap<String, i64>,
}

/// Why stats or limits text does not parse (the reference throws a runtime exception).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsTrackError {
    /// Null data (a NullPointerException there).
    #[error("null data")]
    Null,
    /// A pair without a value (an ArrayIndexOutOfBoundsException there).
    #[error("`{0}` is not key=value")]
    NotKeyValue(String),
    /// A value `Long.parseLong` refuses. Only ASCII digits are read; Java also takes
    /// other Unicode decimal digits.
    #[error("`{0}` is not a 64-bit integer")]
    BadNumber(String),
}

impl StatsTrack {
    /// Parses a node's data as the reference's `new StatsTrack(byte[])`: bytes that
    /// are not UTF-8 read as U+FFFD, empty text has no pairs.
    pub fn parse(data: Option<&[u8]>) -> Result<StatsTrack, StatsTrackError> {
        let data = data.ok_or(StatsTrackError::Null)?;
        let text = match std::str::from_utf8(data) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => std::borrow::Cow::Owned(super::txn::java_lossy_utf8(data)),
        };
        let mut st = StatsTrack::default();
        if text.is_empty() {
            return Ok(st);
        }
        for pair in java_split(&text, |c| c == ',' || c == ';', true) {
            let kv = java_split(pair, |c| c == '=', false);
            let (Some(key), Some(value)) = (kv.first(), kv.get(1)) else {
                return Err(StatsTrackError::NotKeyValue(pair.to_string()));
            };
            let v = if value.is_empty() {
                -1
            } else {
                value
                    .parse::<i64>()
                    .map_err(|_| StatsTrackError::BadNumber(value.to_string()))?
            };
            st.values.insert(key.to_string(), v);
        }
        Ok(st)
    }

    /// A key's value, −1 when absent.
    pub fn get(&self, key: &str) -> i64 {
        self.values.get(key).copied().unwrap_or(-1)
    }

    pub fn set(&mut self, key: &str, value: i64) {
        self.values.insert(key.to_string(), value);
    }

    /// Node count (of the subtree, or the soft limit).
    pub fn count(&self) -> i64 {
        self.get(COUNT)
    }

    /// Data bytes (of the subtree, or the soft limit).
    pub fn bytes(&self) -> i64 {
        self.get(BYTES)
    }

    pub fn count_hard_limit(&self) -> i64 {
        self.get(COUNT_HARD_LIMIT)
    }

    pub fn byte_hard_limit(&self) -> i64 {
        self.get(BYTE_HARD_LIMIT)
    }

    /// Stats of a subtree: exactly `count=C,bytes=B`.
    pub fn usage(count: i64, bytes: i64) -> StatsTrack {
        let mut st = StatsTrack::default();
        st.set(COUNT, count);
        st.set(BYTES, bytes);
        st
    }

    /// The text as the reference writes it (UTF-8).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for StatsTrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{COUNT}={},{BYTES}={}", self.count(), self.bytes())?;
        let mut rest: Vec<(&String, &i64)> = self
            .values
            .iter()
            .filter(|(k, _)| *k != COUNT && *k != BYTES)
            .collect();
        if rest.is_empty() {
            return Ok(());
        }
        rest.sort_by(|a, b| java_string_order(a.0, b.0));
        f.write_str("=")?;
        for (k, v) in rest {
            write!(f, ";{k}={v}")?;
        }
        Ok(())
    }
}

/// `String.compareTo`: UTF-16 code unit order.
fn java_string_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `split` on a separator class: `runs` makes a run of separators one
/// separator (as `[,;]+`), otherwise each one separates (as `=`). A leading empty
/// piece is kept, trailing empty pieces are dropped.
fn java_split(s: &str, is_sep: impl Fn(char) -> bool, runs: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if !is_sep(c) {
            continue;
        }
        let mut end = i + c.len_utf8();
        while runs && chars.peek().is_some_and(|&(_, n)| is_sep(n)) {
            let (j, n) = chars.next().expect("peeked");
            end = j + n.len_utf8();
        }
        parts.push(&s[start..i]);
        start = end;
    }
    parts.push(&s[start..]);
    while parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

// ---------------------------------------------------------------------------------
// Quota roots (the reference's PathTrie)

/// The trie's components of a path: `/`-separated pieces, those that Java's `trim()`
/// leaves empty (every char ≤ U+0020) dropped.
fn trie_components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.chars().all(|ch| ch <= ' '))
}

/// A trie path in the form `findMaxPrefix` returns: `/` + components joined by `/`;
/// `None` for no components (the trie's root, never a quota).
fn trie_key(path: &str) -> Option<String> {
    let mut key = String::with_capacity(path.len());
    for c in trie_components(path) {
        key.push('/');
        key.push_str(c);
    }
    (!key.is_empty()).then_some(key)
}

/// What `Quotas.trimQuotaPath` (the path after its first 16 UTF-16 units, the
/// length of `/zookeeper/quota`) gives for a parent path.
#[derive(Debug, PartialEq, Eq)]
enum Trimmed<'a> {
    Rest(&'a str),
    /// The cut splits a surrogate pair: Java goes on with a string no root matches.
    NoRoot,
    /// Shorter than 16 units: Java's `substring` throws.
    Throws,
}

fn trim_quota_path(parent: &str) -> Trimmed<'_> {
    let mut units = 0;
    for (i, c) in parent.char_indices() {
        if units == QUOTA.len() {
            return Trimmed::Rest(&parent[i..]);
        }
        units += c.len_utf16();
        if units > QUOTA.len() {
            return Trimmed::NoRoot;
        }
    }
    if units == QUOTA.len() {
        Trimmed::Rest("")
    } else {
        Trimmed::Throws
    }
}

fn limit_path(root: &str) -> String {
    format!("{QUOTA}{root}/{LIMIT_NODE}")
}

fn stat_path(root: &str) -> String {
    format!("{QUOTA}{root}/{STAT_NODE}")
}

/// (parent, child name) as the reference splits a path at its last `/`.
fn split_last(path: &str) -> Option<(&str, &str)> {
    path.rfind('/').map(|i| (&path[..i], &path[i + 1..]))
}

impl Tree {
    /// The quota roots, sorted (the reference's trie, in its `findMaxPrefix` form).
    pub fn quota_roots(&self) -> impl Iterator<Item = &str> + '_ {
        self.quota_roots.iter().map(String::as_str)
    }

    /// The deepest quota root that `path` falls under, `None` if none (the
    /// reference's `getMaxPrefixWithQuota`; `/` is never a root).
    pub fn quota_root_of(&self, path: &str) -> Option<String> {
        if self.quota_roots.is_empty() {
            return None;
        }
        let key = trie_key(path)?;
        let mut end = key.len();
        loop {
            if self.quota_roots.contains(&key[..end]) {
                return Some(key[..end].to_string());
            }
            end = key[..end].rfind('/').filter(|&i| i > 0)?;
        }
    }

    /// After a create of `path` with `data_bytes` of data (null counts 0): a new
    /// limits node makes a root, a new stats node is recounted, and the root above
    /// `path` counts one node and its bytes more.
    pub(crate) fn quota_after_create(&mut self, path: &str, data_bytes: usize) {
        let Some((parent, child)) = split_last(path) else {
            return;
        };
        // The prefix is ASCII: its 16 UTF-16 units are 16 bytes.
        if let Some(real) = parent.strip_prefix(QUOTA) {
            if child == LIMIT_NODE && !self.add_quota_root(real) {
                return;
            }
            if child == STAT_NODE {
                self.recount_quota(real);
            }
        }
        if let Some(root) = self.quota_root_of(path) {
            self.add_quota_usage(&root, 1, data_bytes as i64);
        }
    }

    /// After `path` (with `data_bytes` of data) was deleted: a deleted limits node
    /// drops its root, and the root above `path` counts one node and its bytes less.
    pub(crate) fn quota_after_delete(&mut self, path: &str, data_bytes: usize) {
        let Some((parent, child)) = split_last(path) else {
            return;
        };
        if parent.starts_with(PROC) && child == LIMIT_NODE && !self.remove_limit_root(parent) {
            return;
        }
        if let Some(root) = self.quota_root_of(path) {
            self.add_quota_usage(&root, -1, -(data_bytes as i64));
        }
    }

    /// After a setData of `path` from `old_bytes` to `new_bytes` of data.
    pub(crate) fn quota_after_set_data(&mut self, path: &str, old_bytes: usize, new_bytes: usize) {
        if let Some(root) = self.quota_root_of(path) {
            self.add_quota_usage(&root, 0, new_bytes as i64 - old_bytes as i64);
        }
    }

    /// After loading a snapshot: every `zookeeper_limits` leaf under
    /// `/zookeeper/quota` makes its path a root and has its stats recounted (the
    /// reference's `setupQuota`). Paths are visited in key order.
    pub(crate) fn setup_quotas(&mut self) {
        let limits: Vec<String> = self
            .subtree_keys(QUOTA)
            .into_iter()
            .filter(|(_, n)| n.num_children == 0)
            .map(|(k, _)| k.to_path())
            .filter(|p| p.ends_with(&format!("/{LIMIT_NODE}")))
            .collect();
        for path in limits {
            let at = path
                .find(&format!("/{LIMIT_NODE}"))
                .expect("ends with the limit node");
            let real = path[QUOTA.len()..at].to_string();
            self.recount_quota(&real);
            self.add_quota_root(&real);
        }
    }

    /// `pTrie.addPath`. False where the reference throws (an empty path).
    fn add_quota_root(&mut self, real: &str) -> bool {
        if real.is_empty() {
            tracing::warn!("a quota limit node directly under {QUOTA} is ignored");
            return false;
        }
        if let Some(key) = trie_key(real) {
            self.quota_roots.insert(key);
        }
        true
    }

    /// `pTrie.deletePath(trimQuotaPath(parent))` for a deleted limits node. False
    /// where the reference throws (a parent shorter than `/zookeeper/quota`, an empty
    /// path, a path of no components).
    fn remove_limit_root(&mut self, parent: &str) -> bool {
        let real = match trim_quota_path(parent) {
            Trimmed::Rest(real) => real,
            Trimmed::NoRoot => return true,
            Trimmed::Throws => return false,
        };
        match trie_key(real) {
            Some(key) => {
                self.quota_roots.remove(&key);
                true
            }
            None => false,
        }
    }

    /// `updateQuotaForPath`: the stats node of `real` gets `count=N,bytes=B` of the
    /// subtree at the literal path `real` (0 and 0 if there is no such node).
    fn recount_quota(&mut self, real: &str) {
        let (count, bytes) = self.subtree_usage(real);
        let text = StatsTrack::usage(count, bytes).to_bytes();
        if !self.set_quota_data(&stat_path(real), text) {
            tracing::debug!("quota stat node {} is missing", stat_path(real));
        }
    }

    /// `updateQuotaStat`: adds the deltas to the root's stats text; nothing if the
    /// stats node is missing or its text does not parse.
    fn add_quota_usage(&mut self, root: &str, count_diff: i64, bytes_diff: i64) {
        let path = stat_path(root);
        let Some(node) = self.node(&path) else {
            tracing::debug!("quota stat node {path} is missing");
            return;
        };
        let mut st = match StatsTrack::parse(node.data()) {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!("quota stat node {path} left as it is: {e}");
                return;
            }
        };
        st.set(COUNT, st.count().wrapping_add(count_diff));
        st.set(BYTES, st.bytes().wrapping_add(bytes_diff));
        self.set_quota_data(&path, st.to_bytes());
    }

    /// Count and data bytes of the subtree at the literal path `real` (`""` is the
    /// root); (0, 0) when no node has that path.
    fn subtree_usage(&self, real: &str) -> (i64, i64) {
        if !real.is_empty() && !real.starts_with('/') {
            return (0, 0);
        }
        let Some(top) = self.node(real) else {
            return (0, 0);
        };
        let mut count = 1i64;
        let mut bytes = top.data_bytes().len() as i64;
        for (_, n) in self.subtree_keys(real) {
            count += 1;
            bytes = bytes.wrapping_add(n.data_bytes().len() as i64);
        }
        (count, bytes)
    }

    /// Every node strictly below `path`, in key order.
    fn subtree_keys(&self, path: &str) -> Vec<(&Key, &super::Node)> {
        let k = Key::lookup(path);
        let mut out = Vec::new();
        for prefix in [k.child_prefix(), k.descendant_prefix()] {
            out.extend(
                self.nodes
                    .range::<_, [u8]>((
                        std::ops::Bound::Included(&prefix[..]),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(k, _)| k.as_bytes().starts_with(&prefix)),
            );
        }
        out
    }

    /// Replaces a stats node's data without stamping it and without changing the
    /// approximate data size (as the reference). False if there is no such node.
    fn set_quota_data(&mut self, path: &str, data: Vec<u8>) -> bool {
        let before = self.data_size;
        let found = self.update_data(path, Some(&data));
        self.data_size = before;
        found
    }
}

// ---------------------------------------------------------------------------------
// enforcement

/// `ZooKeeperServer.checkQuota` for a create (`count_diff` 1, `bytes_diff` the data)
/// or a setData (0, new − old bytes) of `path`, against the roots, limits and stats
/// of `tree`. Only hard limits fail (QuotaExceeded); passing a soft limit is logged.
/// Limits or stats text that does not parse fails as the reference's prepare fails
/// on a runtime exception (MarshallingError). Missing limits or stats nodes pass.
pub(crate) fn check_quota(
    tree: &Tree,
    path: &str,
    count_diff: i64,
    bytes_diff: i64,
) -> Result<(), ErrorCode> {
    let Some(root) = tree.quota_root_of(path) else {
        return Ok(());
    };
    let Some(limits) = quota_text(tree, &limit_path(&root))? else {
        return Ok(());
    };
    let check_count = count_diff != 0 && (limits.count() > -1 || limits.count_hard_limit() > -1);
    let check_bytes = bytes_diff != 0 && (limits.bytes() > -1 || limits.byte_hard_limit() > -1);
    if !check_count && !check_bytes {
        return Ok(());
    }
    let Some(usage) = quota_text(tree, &stat_path(&root))? else {
        return Ok(());
    };
    if check_count {
        let now = usage.count().wrapping_add(count_diff);
        check_limit(
            &root,
            "count",
            now,
            limits.count(),
            limits.count_hard_limit(),
        )?;
    }
    if check_bytes {
        let now = usage.bytes().wrapping_add(bytes_diff);
        check_limit(
            &root,
            "bytes",
            now,
            limits.bytes(),
            limits.byte_hard_limit(),
        )?;
    }
    Ok(())
}

/// A limits or stats node's parsed text; `None` if the node is missing.
fn quota_text(tree: &Tree, path: &str) -> Result<Option<StatsTrack>, ErrorCode> {
    let Some(node) = tree.node(path) else {
        tracing::debug!("quota node {path} is missing");
        return Ok(None);
    };
    StatsTrack::parse(node.data()).map(Some).map_err(|e| {
        tracing::warn!("quota node {path} does not parse: {e}");
        ErrorCode::MarshallingError
    })
}

/// A hard limit (when set, it wins) fails the write; a soft one is logged.
fn check_limit(root: &str, what: &str, now: i64, soft: i64, hard: i64) -> Result<(), ErrorCode> {
    let is_hard = hard > -1;
    let limit = if is_hard { hard } else { soft };
    if now <= limit {
        return Ok(());
    }
    if is_hard {
        tracing::debug!("quota exceeded: {root} [current {what}={now}, hard limit={limit}]");
        return Err(ErrorCode::QuotaExceeded);
    }
    let n = SOFT_WARNINGS.fetch_add(1, AtomicOrdering::Relaxed);
    if n.is_multiple_of(SOFT_WARNINGS_LOG_EVERY_COUNT) {
        tracing::warn!(
            "quota exceeded: {root} [current {what}={now}, soft limit={limit}] \
             ({} soft-limit warnings so far)",
            n + 1
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
