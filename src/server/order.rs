//! Per-session order between a session's queued reads and its next write: may
//! the write leave for the sequencer before the reads ahead of it are answered?
//! Pure logic, used by the shard cores (`shard::Shard::on_owned_request`).
//!
//! A read queued behind one of its session's writes is answered from the tree
//! version that carries that write's commit. The session's next write may commit
//! in the same batch, so it is in that version too; the read must not see it
//! (a session's requests take effect in the order it sent them). Holding every
//! such write back until the reads ahead of it are answered keeps one write per
//! session in flight under a mixed load (50 % reads at 64 × 8 fell below pure
//! writes: PERF.md, "Mixed reads and writes on one session"). So a write leaves
//! early when no read ahead of it can tell: `write_may_pass` looks at the nodes
//! the write may change and the node each read looks at. Anything it does not
//! know (a subtree read, a session's ephemerals, the system subtree, a read of
//! an invalid path, a close or a reconfig) keeps the write waiting, as before.
//!
//! What such a read can still show is the reply header's zxid: the shard's last
//! applied zxid, which may then be the early write's, as it may be any other
//! session's later write. Clients keep it only as the newest zxid they saw (for
//! a reconnect), and that write is committed by then.

use crate::proto::path::{parent, validate_path};
use crate::proto::{CreateMode, Request};

/// The subtree the server keeps for itself (config, quota stats a write in
/// another subtree updates): reads and writes there never pass.
const SYSTEM_SUBTREE: &str = "/zookeeper";

/// A node a write may change, as a read sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Touch<'a> {
    /// The node written (for a sequential create, the name's prefix).
    path: &'a str,
    /// A sequential create: the node's real name is `path` plus a counter.
    sequential: bool,
}

/// True when `write` may be sent before `read`, which its session sent earlier
/// and which is still waiting, is answered: `read` gives the same data, Stat,
/// children or ACL whether or not `write` has been applied. Allocates nothing
/// (the shard asks once per read queued ahead of a write).
pub fn write_may_pass(write: &Request, read: &Request) -> bool {
    each_touch(write, &mut |t| each_read(read, &mut |q| !may_see(q, &t)))
}

/// Calls `f` on each node `write` may change while `f` says yes; false when `f`
/// said no, or when what the write may change is not known.
fn each_touch<'a>(write: &'a Request, f: &mut impl FnMut(Touch<'a>) -> bool) -> bool {
    let touch = match write {
        Request::Create(c) => match CreateMode::from_flags(c.flags) {
            Some(mode) => Touch {
                path: &c.path,
                sequential: mode.is_sequential(),
            },
            None => return false,
        },
        Request::Delete { path, .. }
        | Request::DeleteContainer { path }
        | Request::SetData { path, .. }
        | Request::SetAcl { path, .. } => Touch {
            path,
            sequential: false,
        },
        Request::Check { .. } => return true,
        Request::Multi(ops) => return ops.iter().all(|op| each_touch(op, f)),
        _ => return false,
    };
    !in_system_subtree(touch.path) && f(touch)
}

/// Calls `f` on the node each part of `read` looks at (its data and Stat, its
/// ACL, or its children and Stat) while `f` says yes; false when `f` said no, or
/// when the read looks at more than that, or names its node in a way that is not
/// the one valid path (reads do not validate paths; `""` also reads the root).
fn each_read(read: &Request, f: &mut impl FnMut(&str) -> bool) -> bool {
    let path = match read {
        Request::GetData { path, .. }
        | Request::Exists { path, .. }
        | Request::GetAcl { path }
        | Request::GetChildren { path, .. }
        | Request::GetChildren2 { path, .. } => path,
        Request::MultiRead(ops) => return ops.iter().all(|op| each_read(op, f)),
        _ => return false,
    };
    validate_path(path, false).is_ok() && !in_system_subtree(path) && f(path)
}

/// Whether a read of node `q` can tell that `t` was applied: `t`'s node itself,
/// or its parent (whose Stat and children a create or delete changes; kept for a
/// setData too, as the simpler rule), or for a sequential create any node that
/// could be the one it makes: a child of the prefix's parent (`/` for the prefix
/// `/` itself, which makes `/0000000001`).
fn may_see(q: &str, t: &Touch<'_>) -> bool {
    let dir = parent(t.path);
    q == t.path || q == dir || (t.sequential && parent(q) == dir)
}

fn in_system_subtree(path: &str) -> bool {
    path == SYSTEM_SUBTREE
        || path
            .strip_prefix(SYSTEM_SUBTREE)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, CreateKind, CreateRequest};
    use CreateMode::*;

    fn set(path: &str) -> Request {
        Request::SetData {
            path: path.into(),
            data: Some(b"v".to_vec()),
            version: -1,
        }
    }
    fn create(path: &str, mode: CreateMode) -> Request {
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: path.into(),
            data: Some(Vec::new()),
            acl: Acl::open(),
            flags: mode.flags(),
            ttl: -1,
        })
    }
    fn delete(path: &str) -> Request {
        Request::Delete {
            path: path.into(),
            version: -1,
        }
    }
    fn get(path: &str) -> Request {
        Request::get_data_of(path)
    }
    fn kids(path: &str) -> Request {
        Request::get_children2_of(path)
    }

    /// Each case: the write, the read queued before it, whether it may pass.
    fn check(cases: &[(Request, Request, bool)]) {
        for (write, read, passes) in cases {
            assert_eq!(
                write_may_pass(write, read),
                *passes,
                "{write:?} past {read:?}"
            );
        }
    }

    #[test]
    fn a_write_passes_reads_of_other_nodes_only() {
        let acl = Request::SetAcl {
            path: "/a".into(),
            acl: Acl::open(),
            version: -1,
        };
        check(&[
            (set("/a/k1"), get("/a/k2"), true),
            (set("/a/k1"), kids("/b"), true),
            (create("/a/x", Persistent), get("/b/x"), true),
            (delete("/a/x"), get("/a/y"), true),
            (set("/a/b/c"), get("/a"), true),
            (set("/a/k1"), get("/a/k1"), false),
            (set("/a/k1"), kids("/a/k1"), false),
            (create("/a/x", Persistent), get("/a/x"), false),
            (create("/a/x", Ephemeral), kids("/a"), false),
            (create("/a/x", Persistent), get("/a"), false),
            (delete("/a/x"), get("/a"), false),
            (delete("/x"), kids("/"), false),
            (acl.clone(), get("/a"), false),
            (acl, Request::GetAcl { path: "/a".into() }, false),
        ]);
    }

    #[test]
    fn a_sequential_create_waits_for_reads_of_any_sibling() {
        let seq = create("/q/job-", PersistentSequential);
        let at_root = create("/", PersistentSequential);
        check(&[
            (seq.clone(), get("/q/job-0000000007"), false),
            (seq.clone(), get("/q/other"), false),
            (seq.clone(), kids("/q"), false),
            (seq, get("/r/job-0000000007"), true),
            (at_root.clone(), get("/0000000005"), false),
            (at_root.clone(), kids("/"), false),
            (at_root, get("/a/b"), true),
            (
                create("/job-", EphemeralSequential),
                get("/job-0000000001"),
                false,
            ),
        ]);
    }

    #[test]
    fn multis_pass_only_when_every_part_does() {
        let multi = Request::Multi(vec![set("/a/1"), create("/b/2", Persistent)]);
        let reads = Request::MultiRead(vec![get("/c"), kids("/a")]);
        check(&[
            (multi.clone(), get("/c"), true),
            (multi.clone(), get("/b"), false),
            (multi, reads.clone(), false),
            (set("/x/y"), reads, true),
        ]);
    }

    #[test]
    fn what_is_not_known_waits() {
        let watch = Request::AddWatch {
            path: "/b".into(),
            mode: 1,
        };
        let ephemerals = Request::GetEphemerals { prefix: "/".into() };
        check(&[
            (Request::CloseSession, get("/a"), false),
            (Request::Sync { path: "/a".into() }, get("/b"), false),
            (
                set("/a"),
                Request::GetAllChildrenNumber { path: "/b".into() },
                false,
            ),
            (create("/e", Ephemeral), ephemerals, false),
            (set("/a"), watch, false),
            // The system subtree: quota stats change with writes elsewhere.
            (set("/a"), get("/zookeeper/quota/a/zookeeper_stats"), false),
            (set("/zookeeper/config"), get("/a"), false),
            (set("/a"), get("/zookeeperx"), true),
        ]);
    }

    #[test]
    fn reads_of_invalid_paths_wait() {
        for odd in ["", "a", "/a/", "//a", "/a\0", "\0a", "/a/."] {
            assert!(!write_may_pass(&set("/a"), &get(odd)), "{odd:?}");
        }
        assert!(write_may_pass(&set("/a/b"), &get("/")));
    }
}
