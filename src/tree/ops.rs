//! The operations on the tree: [`read`] (shard cores, on a published version),
//! [`prepare`] (sequencer: request → [`Txn`], checks in the reference's order with
//! its error codes) and [`apply`] (sequencer and replicas: `Txn` → next version +
//! reply + watch triggers). Facts follow the reference 3.8's PrepRequestProcessor,
//! DataTree and FinalRequestProcessor. Pure functions; no IO, no clock.

use crate::proto::path::validate_path;
use crate::proto::{
    op, perms, Acl, CreateKind, CreateMode, CreateRequest, ErrorCode, EventType, OpResult, Request,
    Response,
};

use super::acl::{check_acl, fixup_acl, redact, Caller};
use super::quota::check_quota;
use super::serve::{read_target, ReadCheck};
use super::txn::{multi_failed, CreateTxn, Txn, TxnOp};
use super::{
    ttl_owner, Meta, Node, NodeKind, Tree, CONFIG, CONTAINER_EPHEMERAL_OWNER, QUOTA, TTL_MS_MAX,
    ZOOKEEPER,
};

/// What the sequencer decides for a write before prepare: its zxid and time, the
/// client's xid, and the server settings that change answers.
#[derive(Debug, Clone, Copy)]
pub struct TxnContext {
    pub zxid: i64,
    pub time_ms: i64,
    /// The request's xid: the txn header's cxid.
    pub cxid: i32,
    /// `zookeeper.extendedTypesEnabled`: TTL nodes allowed.
    pub extended_types_enabled: bool,
    /// `jute.maxbuffer`: data larger than this is refused.
    pub max_data_bytes: usize,
    /// `enforceQuota`: a create or setData past a quota's hard limit fails with
    /// QuotaExceeded.
    pub enforce_quota: bool,
    /// `DigestAuthenticationProvider.enabled`: false, an ACL naming the digest
    /// scheme is invalid (the reference then has no provider for it).
    pub digest_enabled: bool,
    /// False for a write of another member's local session (a leader with
    /// localSessionsEnabled takes those): an ephemeral create fails with
    /// SessionExpired, as the reference's checkGlobalSession says (nobody would
    /// ever close a node owned by a session this ensemble does not track).
    pub ephemerals_allowed: bool,
}

/// The outcome of applying one txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The client's reply body, or its error code.
    pub result: Result<Response, ErrorCode>,
    /// Watch triggers in the reference's order: create → (NodeCreated, path),
    /// (NodeChildrenChanged, parent); delete → (NodeDeleted, path),
    /// (NodeChildrenChanged, parent); setData → (NodeDataChanged, path); multi →
    /// concatenated.
    pub events: Vec<(EventType, String)>,
}

/// Parent path for display and watches (`/a` → `/`).
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

/// The reference's internal parent name (`/a` → `""`), or None without a `/`.
fn internal_parent(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

fn is_special_path(path: &str) -> bool {
    matches!(path, "/" | ZOOKEEPER | QUOTA | CONFIG)
}

// ---------------------------------------------------------------------------------
// reads

/// Reads on a shard core: exists, getData, getACL, getChildren, getChildren2,
/// getAllChildrenNumber, getEphemerals (the caller's session) and multiRead.
/// Errors as the reference answers them: reads do not validate paths (a malformed path
/// is simply NoNode), except exists, which answers BadArguments for a NUL in the path.
/// Watches are not registered here. Requests that are not reads answer Unimplemented.
pub fn read(tree: &Tree, caller: &Caller, req: &Request) -> Result<Response, ErrorCode> {
    match req {
        Request::Exists { path, .. } => {
            let n = read_target(tree, caller, ReadCheck::Exists, path)?;
            Ok(Response::Stat(n.stat()))
        }
        Request::GetData { path, .. } => {
            let n = read_target(tree, caller, ReadCheck::Read, path)?;
            Ok(Response::Data {
                data: n.data().map(<[u8]>::to_vec),
                stat: n.stat(),
            })
        }
        Request::GetAcl { path } => {
            let n = tree.node(path).ok_or(ErrorCode::NoNode)?;
            check_acl(&n.acl, perms::READ | perms::ADMIN, caller)?;
            let acl = if check_acl(&n.acl, perms::ADMIN, caller).is_ok() {
                n.acl.to_vec()
            } else {
                redact(&n.acl)
            };
            Ok(Response::Acl {
                acl,
                stat: n.stat(),
            })
        }
        Request::GetChildren { path, .. } | Request::GetChildren2 { path, .. } => {
            let v = read_target(tree, caller, ReadCheck::Read, path)?;
            let children: Vec<String> = v.children().map(str::to_string).collect();
            if matches!(req, Request::GetChildren { .. }) {
                Ok(Response::Children(children))
            } else {
                Ok(Response::Children2 {
                    children,
                    stat: v.stat(),
                })
            }
        }
        Request::GetAllChildrenNumber { path } => {
            let n = tree.node(path).ok_or(ErrorCode::NoNode)?;
            check_acl(&n.acl, perms::READ, caller)?;
            Ok(Response::AllChildrenNumber(
                tree.descendant_count(path).min(i32::MAX as usize) as i32,
            ))
        }
        Request::GetEphemerals { prefix } => {
            let all = tree.ephemerals_of(caller.session_id);
            let p = prefix.trim();
            let v = if p.is_empty() || p == "/" {
                all
            } else {
                all.into_iter()
                    .filter(|e| e.starts_with(prefix.as_str()))
                    .collect()
            };
            Ok(Response::Ephemerals(v))
        }
        Request::MultiRead(ops) => {
            let mut results = Vec::with_capacity(ops.len());
            for o in ops {
                let r = match o {
                    Request::GetChildren { .. } => {
                        read(tree, caller, o).map(|r| OpResult::Ok(op::GET_CHILDREN, r))
                    }
                    Request::GetData { .. } => {
                        read(tree, caller, o).map(|r| OpResult::Ok(op::GET_DATA, r))
                    }
                    // The reference fails the whole request (IOException → marshalling).
                    _ => return Err(ErrorCode::MarshallingError),
                };
                results.push(r.unwrap_or_else(OpResult::Err));
            }
            Ok(Response::Multi(results))
        }
        _ => Err(ErrorCode::Unimplemented),
    }
}

// ---------------------------------------------------------------------------------
// prepare

/// `fixup_acl` under the server's settings: with the digest provider off, an ACL
/// naming the digest scheme is invalid.
fn fixup_acl_in(ctx: &TxnContext, caller: &Caller, acl: &[Acl]) -> Result<Vec<Acl>, ErrorCode> {
    if !ctx.digest_enabled && acl.iter().any(|a| a.id.scheme == "digest") {
        return Err(ErrorCode::InvalidAcl);
    }
    fixup_acl(caller, acl)
}

/// Decides a write on the sequencer core. Every choice goes into the returned Txn;
/// a failing request yields an error Txn that still consumes `ctx.zxid`, and a failing
/// multi a [`TxnOp::Multi`] holding the error (as the reference writes it). Checks run
/// in the reference's order, so the first failing check decides the code.
///
/// `closeSession` here is the same as [`close_session_txn`] for the caller's session;
/// any non-write (sync included: the reference never logs it) answers an
/// `Unimplemented` error txn.
pub fn prepare(tree: &Tree, ctx: &TxnContext, caller: &Caller, req: &Request) -> Txn {
    let op = match req {
        Request::Multi(ops) => prepare_multi(tree, ctx, caller, ops),
        Request::CloseSession => {
            return close_session_txn(tree, ctx.zxid, ctx.time_ms, caller.session_id, ctx.cxid)
        }
        // A check outside multi makes the reference fail while replying (it closes the
        // connection); answer Unimplemented, which the shard treats the same way.
        Request::Check { .. } => TxnOp::Error(ErrorCode::Unimplemented),
        // Standalone, reconfig is off by default in the reference (reconfigEnabled=false).
        Request::Reconfig(_) => TxnOp::Error(ErrorCode::ReconfigDisabled),
        _ => prepare_op(tree, tree, ctx, caller, req).unwrap_or_else(TxnOp::Error),
    };
    Txn {
        zxid: ctx.zxid,
        time_ms: ctx.time_ms,
        session_id: caller.session_id,
        cxid: ctx.cxid,
        op,
    }
}

fn prepare_multi(tree: &Tree, ctx: &TxnContext, caller: &Caller, ops: &[Request]) -> TxnOp {
    // Only these may appear in a multi; anything else fails the whole request as the
    // reference's MultiOperationRecord decoding does.
    for o in ops {
        if !matches!(
            o,
            Request::Create(_)
                | Request::Delete { .. }
                | Request::SetData { .. }
                | Request::Check { .. }
        ) {
            return TxnOp::Error(ErrorCode::MarshallingError);
        }
    }
    // Later ops see the effects of earlier ones: prepare each against a scratch
    // version (O(1) clone, copy-on-write) with the earlier ops applied.
    let mut scratch = tree.clone();
    let mut done = Vec::with_capacity(ops.len());
    for o in ops {
        let normalized;
        let o = match o {
            Request::Create(c) => match multi_create(c) {
                Some(n) => {
                    normalized = Request::Create(n);
                    &normalized
                }
                None => return TxnOp::Error(ErrorCode::MarshallingError),
            },
            other => other,
        };
        // Quotas are checked against the tree before the multi, as the reference
        // checks them against its committed tree.
        match prepare_op(&scratch, tree, ctx, caller, o) {
            Ok(t) => {
                apply_op(&mut scratch, ctx.zxid, ctx.time_ms, caller.session_id, &t);
                done.push(t);
            }
            Err(e) => {
                // The reference keeps the txns of the ops before the failing one.
                done.push(TxnOp::Error(e));
                done.resize(ops.len(), TxnOp::Error(ErrorCode::RuntimeInconsistency));
                return TxnOp::Multi(done);
            }
        }
    }
    TxnOp::Multi(done)
}

/// Inside a multi the reference rebuilds each create from its flags, not from the
/// header's opcode (`Op.create`): a container flag makes a createContainer, a TTL flag
/// a createTTL, anything else a plain create (whose result has no Stat, even when the
/// header said create2). A TTL flag without a createTTL header has no ttl to read and
/// fails the whole request (a ClassCastException → MarshallingError there). None for
/// that case.
fn multi_create(c: &CreateRequest) -> Option<CreateRequest> {
    let mode = CreateMode::from_flags(c.flags).unwrap_or(CreateMode::Persistent);
    let kind = if mode.is_ttl() {
        CreateKind::Ttl
    } else if mode.is_container() {
        CreateKind::Container
    } else {
        CreateKind::Create
    };
    if kind == CreateKind::Ttl && c.kind != CreateKind::Ttl {
        return None;
    }
    Some(CreateRequest {
        kind,
        ttl: if kind == CreateKind::Ttl { c.ttl } else { -1 },
        ..c.clone()
    })
}

/// Bytes of a request's data; the null buffer has none.
fn data_len(data: &Option<Vec<u8>>) -> usize {
    data.as_ref().map_or(0, Vec::len)
}

fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

fn valid(path: &str) -> Result<(), ErrorCode> {
    validate_path(path, false).map_err(|_| ErrorCode::BadArguments)
}

/// The reference's `getParentPathAndValidate` (delete, deleteContainer).
fn parent_for_delete(path: &str) -> Result<&str, ErrorCode> {
    if path.contains('\0') || is_special_path(path) {
        return Err(ErrorCode::BadArguments);
    }
    internal_parent(path).ok_or(ErrorCode::BadArguments)
}

/// Prepares one op against `tree`; `base` is the tree quotas are checked against
/// (the same tree, or for an op in a multi the tree before the multi).
fn prepare_op(
    tree: &Tree,
    base: &Tree,
    ctx: &TxnContext,
    caller: &Caller,
    req: &Request,
) -> Result<TxnOp, ErrorCode> {
    match req {
        Request::Create(c) => {
            // Deserialization limit first (the reference reads the record before any check).
            if data_len(&c.data) > ctx.max_data_bytes {
                return Err(ErrorCode::MarshallingError);
            }
            let mode = CreateMode::from_flags(c.flags).ok_or(ErrorCode::BadArguments)?;
            if mode.is_ttl() && !ctx.extended_types_enabled {
                return Err(ErrorCode::Unimplemented);
            }
            if mode.is_ttl() {
                if c.ttl <= 0 || c.ttl > TTL_MS_MAX {
                    return Err(ErrorCode::BadArguments);
                }
            } else if c.ttl >= 0 || c.kind == CreateKind::Ttl {
                // createTTL with a non-TTL mode: the reference accepts ttl −1 here and
                // then fails while applying; we refuse it up front.
                return Err(ErrorCode::BadArguments);
            }
            if mode.is_ephemeral() && !ctx.ephemerals_allowed {
                return Err(ErrorCode::SessionExpired);
            }
            if c.path.contains('\0') {
                return Err(ErrorCode::BadArguments);
            }
            let parent_path = internal_parent(&c.path).ok_or(ErrorCode::BadArguments)?;
            let acl = fixup_acl_in(ctx, caller, &c.acl)?;
            let parent = tree.node(parent_path).ok_or(ErrorCode::NoNode)?;
            check_acl(&parent.acl, perms::CREATE, caller)?;
            let mut path = c.path.clone();
            if mode.is_sequential() {
                path.push_str(&format!("{:010}", parent.cversion));
            }
            valid(&path)?;
            if tree.node(&path).is_some() {
                return Err(ErrorCode::NodeExists);
            }
            if NodeKind::of_owner(parent.ephemeral_owner, ctx.extended_types_enabled)
                == NodeKind::Ephemeral
            {
                return Err(ErrorCode::NoChildrenForEphemerals);
            }
            if ctx.enforce_quota {
                check_quota(base, &path, 1, data_len(&c.data) as i64)?;
            }
            // The owner follows the opcode, as the reference's txn types do: a container
            // or TTL mode sent with plain create/create2 makes a persistent node.
            let ephemeral_owner = match c.kind {
                CreateKind::Container => CONTAINER_EPHEMERAL_OWNER,
                CreateKind::Ttl => ttl_owner(c.ttl),
                CreateKind::Create | CreateKind::Create2 => {
                    if mode.is_ephemeral() {
                        caller.session_id
                    } else {
                        0
                    }
                }
            };
            Ok(TxnOp::Create(CreateTxn {
                path,
                data: c.data.clone(),
                acl,
                ephemeral_owner,
                parent_cversion: parent.cversion.wrapping_add(1),
                kind: c.kind,
            }))
        }
        Request::Delete { path, version } => {
            let parent_path = parent_for_delete(path)?;
            let parent = tree.node(parent_path).ok_or(ErrorCode::NoNode)?;
            check_acl(&parent.acl, perms::DELETE, caller)?;
            let node = tree.node(path).ok_or(ErrorCode::NoNode)?;
            check_version(node.version, *version)?;
            if node.num_children > 0 {
                return Err(ErrorCode::NotEmpty);
            }
            Ok(TxnOp::Delete { path: path.clone() })
        }
        // The reference reads a client's deleteContainer body as raw path bytes (it is
        // meant for its own ContainerManager), so the jute length prefix puts NULs in
        // the path and every client-sent deleteContainer answers BadArguments (observed
        // on 3.8.0). The server's own cleanup goes through [`cleanup_txn`].
        Request::DeleteContainer { .. } => Err(ErrorCode::BadArguments),
        Request::SetData {
            path,
            data,
            version,
        } => {
            if data_len(data) > ctx.max_data_bytes {
                return Err(ErrorCode::MarshallingError);
            }
            valid(path)?;
            let node = tree.node(path).ok_or(ErrorCode::NoNode)?;
            check_acl(&node.acl, perms::WRITE, caller)?;
            if ctx.enforce_quota {
                let diff = data_len(data) as i64 - node.data_bytes().len() as i64;
                check_quota(base, path, 0, diff)?;
            }
            let version = check_version(node.version, *version)?;
            Ok(TxnOp::SetData {
                path: path.clone(),
                data: data.clone(),
                version,
            })
        }
        Request::SetAcl { path, acl, version } => {
            valid(path)?;
            let acl = fixup_acl_in(ctx, caller, acl)?;
            let node = tree.node(path).ok_or(ErrorCode::NoNode)?;
            check_acl(&node.acl, perms::ADMIN, caller)?;
            let version = check_version(node.aversion, *version)?;
            Ok(TxnOp::SetAcl {
                path: path.clone(),
                acl,
                version,
            })
        }
        Request::Check { path, version } => {
            valid(path)?;
            let node = tree.node(path).ok_or(ErrorCode::NoNode)?;
            check_acl(&node.acl, perms::READ, caller)?;
            let next = check_version(node.version, *version)?;
            Ok(TxnOp::Check {
                path: path.clone(),
                version: next,
            })
        }
        _ => Err(ErrorCode::Unimplemented),
    }
}

fn prepare_delete_container(tree: &Tree, ctx: &TxnContext, path: &str) -> Result<TxnOp, ErrorCode> {
    let parent_path = parent_for_delete(path)?;
    let node = tree.node(path).ok_or(ErrorCode::NoNode)?;
    if node.num_children > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    if NodeKind::of_owner(node.ephemeral_owner, ctx.extended_types_enabled) == NodeKind::Ephemeral {
        return Err(ErrorCode::BadVersion);
    }
    tree.node(parent_path).ok_or(ErrorCode::NoNode)?;
    Ok(TxnOp::DeleteContainer {
        path: path.to_string(),
    })
}

/// A new session (the session table itself lives in `session`). Its cxid is 0, as
/// the reference's.
pub fn create_session_txn(zxid: i64, time_ms: i64, session_id: i64, timeout_ms: i32) -> Txn {
    Txn {
        zxid,
        time_ms,
        session_id,
        cxid: 0,
        op: TxnOp::CreateSession { timeout_ms },
    }
}

/// Closes a session: deletes its ephemerals (sorted by path). `cxid` is the client's
/// xid for a client's closeSession, 0 when the server closes it (expiry).
pub fn close_session_txn(tree: &Tree, zxid: i64, time_ms: i64, session_id: i64, cxid: i32) -> Txn {
    Txn {
        zxid,
        time_ms,
        session_id,
        cxid,
        op: TxnOp::CloseSession {
            paths: tree.ephemerals_of(session_id),
        },
    }
}

/// The server's own deleteContainer for a container or expired TTL node found by
/// [`Tree::cleanup_candidates`]; an error txn if it no longer qualifies for deletion
/// (NoNode, NotEmpty). Session 0, cxid 0, no ACL check, as the reference's
/// ContainerManager.
pub fn cleanup_txn(tree: &Tree, zxid: i64, time_ms: i64, path: &str) -> Txn {
    let ctx = TxnContext {
        zxid,
        time_ms,
        cxid: 0,
        extended_types_enabled: true,
        max_data_bytes: usize::MAX,
        enforce_quota: false,
        digest_enabled: true,
        ephemerals_allowed: true,
    };
    Txn {
        zxid,
        time_ms,
        session_id: 0,
        cxid: 0,
        op: prepare_delete_container(tree, &ctx, path).unwrap_or_else(TxnOp::Error),
    }
}

// ---------------------------------------------------------------------------------
// apply

/// A tree made by writing `reqs` in order as `caller`, at zxids 1, 2, …, with
/// the defaults of a fresh server (no TTL nodes, jute.maxbuffer's data limit, quotas not
/// enforced): the set-up of tests and benches. The first request that fails
/// ends it, with its index and code.
pub fn build_tree(caller: &Caller, reqs: &[Request]) -> Result<Tree, (usize, ErrorCode)> {
    let mut tree = Tree::new();
    for (n, req) in reqs.iter().enumerate() {
        let ctx = TxnContext {
            zxid: n as i64 + 1,
            time_ms: n as i64 + 1,
            cxid: 1,
            extended_types_enabled: false,
            max_data_bytes: 0xfffff,
            enforce_quota: false,
            digest_enabled: true,
            ephemerals_allowed: true,
        };
        let txn = prepare(&tree, &ctx, caller, req);
        apply(&mut tree, &txn).result.map_err(|e| (n, e))?;
    }
    Ok(tree)
}

/// Applies a committed txn: the next tree version, the reply, the watch triggers.
/// Never fails: a txn that no longer fits the tree (which prepare against the same
/// version rules out) answers the reference's error and changes nothing but the
/// reference's fix-ups for a fuzzy snapshot (see [`apply_op_events`]).
///
/// Panics if `txn.zxid <= tree.last_zxid()` (txns must be applied once, in order).
pub fn apply(tree: &mut Tree, txn: &Txn) -> Applied {
    assert!(
        txn.zxid > tree.last_zxid(),
        "txn zxid {:#x} not after last applied {:#x}",
        txn.zxid,
        tree.last_zxid()
    );
    let mut events = Vec::new();
    let result = match &txn.op {
        TxnOp::Multi(ops) if multi_failed(ops) => Ok(Response::Multi(failed_multi_results(ops))),
        TxnOp::Multi(ops) => {
            // Prepared against this version, every op applies; if one does not (a bug or
            // a foreign log), the whole multi is undone and answered like a failed multi.
            let before = tree.clone();
            let mut results = Vec::with_capacity(ops.len());
            let mut failed = None;
            for (i, o) in ops.iter().enumerate() {
                let r =
                    apply_op_events(tree, txn.zxid, txn.time_ms, txn.session_id, o, &mut events);
                match r {
                    Ok(resp) => results.push(OpResult::Ok(multi_opcode(o), resp)),
                    Err(e) => {
                        failed = Some((i, e));
                        break;
                    }
                }
            }
            match failed {
                None => Ok(Response::Multi(results)),
                Some((i, e)) => {
                    *tree = before;
                    events.clear();
                    Ok(Response::Multi(multi_error_results(i, e, ops.len())))
                }
            }
        }
        other => apply_op_events(
            tree,
            txn.zxid,
            txn.time_ms,
            txn.session_id,
            other,
            &mut events,
        ),
    };
    tree.set_last_zxid(txn.zxid);
    Applied { result, events }
}

/// Applies a txn as the reference's `DataTree.processTxn` does, which is how its
/// learners apply every txn and how it restores a data dir. Its snapshots are fuzzy
/// (written while later txns were applied, also the ones a leader streams after
/// SNAP), so a txn may find its effect already there: each op of a passed multi
/// applies on its own, none undoes another (an op that no longer fits answers its
/// error with the fix-ups of [`apply_op_events`]). Anything else is [`apply`], and
/// where every op fits, so is the outcome.
pub fn apply_restored(tree: &mut Tree, txn: &Txn) -> Applied {
    let TxnOp::Multi(ops) = &txn.op else {
        return apply(tree, txn);
    };
    if multi_failed(ops) {
        return apply(tree, txn);
    }
    assert!(
        txn.zxid > tree.last_zxid(),
        "txn zxid {:#x} not after last applied {:#x}",
        txn.zxid,
        tree.last_zxid()
    );
    let mut events = Vec::new();
    let results = ops
        .iter()
        .map(|o| {
            let r = apply_op_events(tree, txn.zxid, txn.time_ms, txn.session_id, o, &mut events);
            match r {
                Ok(resp) => OpResult::Ok(multi_opcode(o), resp),
                Err(e) => OpResult::Err(e),
            }
        })
        .collect();
    tree.set_last_zxid(txn.zxid);
    Applied {
        result: Ok(Response::Multi(results)),
        events,
    }
}

/// A child the fuzzy snapshot already lacks: its parent's pzxid still rises to the
/// delete's zxid (only ever raised), as the reference's `deleteNode` does before it
/// fails.
fn raise_parent_pzxid(tree: &mut Tree, path: &str, zxid: i64) {
    let Some(parent) = internal_parent(path) else {
        return;
    };
    tree.update_node(parent, |p| {
        if zxid > p.pzxid {
            p.pzxid = zxid;
        }
    });
}

/// `setCversionPzxid`: −1 means one past the parent's cversion; only ever raised.
fn raise_parent_cversion(tree: &mut Tree, path: &str, cversion: i32, zxid: i64) {
    let Some(parent) = internal_parent(path) else {
        return;
    };
    tree.update_node(parent, |p| {
        let want = if cversion == -1 {
            p.cversion + 1
        } else {
            cversion
        };
        if want > p.cversion {
            p.cversion = want;
            p.pzxid = zxid;
        }
    });
}

/// The reply to a multi that failed in prepare, as the reference's processTxn builds
/// it: the error ops' own codes, Ok for any other op before the first error,
/// RuntimeInconsistency for any other op after it.
fn failed_multi_results(ops: &[TxnOp]) -> Vec<OpResult> {
    let mut failed = false;
    ops.iter()
        .map(|o| match o {
            TxnOp::Error(e) => {
                failed = true;
                OpResult::Err(*e)
            }
            _ if failed => OpResult::Err(ErrorCode::RuntimeInconsistency),
            _ => OpResult::Err(ErrorCode::Ok),
        })
        .collect()
}

/// The reply to a multi one of whose ops failed while applying (never after a prepare
/// against the same version).
fn multi_error_results(i: usize, e: ErrorCode, n: usize) -> Vec<OpResult> {
    let mut v = vec![OpResult::Err(ErrorCode::Ok); i];
    v.push(OpResult::Err(e));
    v.resize(n, OpResult::Err(ErrorCode::RuntimeInconsistency));
    v
}

/// The opcode a multi result carries (the reference's OpResult types).
fn multi_opcode(o: &TxnOp) -> i32 {
    match o {
        TxnOp::Create(c) => match c.kind {
            CreateKind::Create => op::CREATE,
            _ => op::CREATE2,
        },
        TxnOp::Delete { .. } | TxnOp::DeleteContainer { .. } => op::DELETE,
        TxnOp::SetData { .. } => op::SET_DATA,
        TxnOp::Check { .. } => op::CHECK,
        _ => op::ERROR,
    }
}

/// Applies one op to a scratch version during multi preparation.
fn apply_op(tree: &mut Tree, zxid: i64, time_ms: i64, session_id: i64, o: &TxnOp) {
    let mut sink = Vec::new();
    let _ = apply_op_events(tree, zxid, time_ms, session_id, o, &mut sink);
}

/// One op: the change, its watch triggers, its answer. An op that no longer fits
/// changes nothing, but for the reference's processTxn fix-ups, which a txn replayed
/// on a fuzzy snapshot needs and which otherwise never apply: a create that finds
/// its node gives it the ACL list a snapshot's stand-in holds the place of (if that
/// create made it), and a plain create raises the parent's cversion; a delete (or a
/// session's close) that finds its node gone raises the parent's pzxid.
fn apply_op_events(
    tree: &mut Tree,
    zxid: i64,
    time_ms: i64,
    session_id: i64,
    o: &TxnOp,
    events: &mut Vec<(EventType, String)>,
) -> Result<Response, ErrorCode> {
    match o {
        TxnOp::Create(c) => {
            let parent_path = internal_parent(&c.path).ok_or(ErrorCode::BadArguments)?;
            if tree.node(parent_path).is_none() {
                return Err(ErrorCode::NoNode);
            }
            if tree.node(&c.path).is_some() {
                // Replayed on a fuzzy snapshot, as the reference's processTxn: the
                // create that made this copy of the node gives it the ACL list the
                // snapshot's map lacked, and a plain create raises the parent's
                // cversion to the logged one (`setCversionPzxid`).
                tree.resolve_stand_in_acl(&c.path, &c.acl, zxid);
                if c.kind == CreateKind::Create {
                    raise_parent_cversion(tree, &c.path, c.parent_cversion, zxid);
                }
                return Err(ErrorCode::NodeExists);
            }
            tree.update_node(parent_path, |p| {
                if c.parent_cversion > p.cversion {
                    p.cversion = c.parent_cversion;
                    p.pzxid = zxid;
                }
                p.num_children += 1;
            });
            let acl = tree.intern_acl(c.acl.clone());
            let meta = Meta {
                acl,
                czxid: zxid,
                mzxid: zxid,
                pzxid: zxid,
                ctime: time_ms,
                mtime: time_ms,
                version: 0,
                cversion: 0,
                aversion: 0,
                num_children: 0,
                ephemeral_owner: c.ephemeral_owner,
            };
            let node = Node::new(meta, c.data.as_deref());
            let stat = node.stat();
            tree.insert_new(&c.path, node);
            tree.quota_after_create(&c.path, data_len(&c.data));
            events.push((EventType::NodeCreated, c.path.clone()));
            events.push((
                EventType::NodeChildrenChanged,
                parent_of(&c.path).to_string(),
            ));
            Ok(match c.kind {
                CreateKind::Create => Response::Create {
                    path: c.path.clone(),
                },
                _ => Response::Create2 {
                    path: c.path.clone(),
                    stat,
                },
            })
        }
        TxnOp::Delete { path } | TxnOp::DeleteContainer { path } => {
            delete_node(tree, zxid, path, events)?;
            Ok(Response::Empty)
        }
        TxnOp::SetData {
            path,
            data,
            version,
        } => {
            // One lookup: the node's old data length comes back with its new Stat.
            let r = tree
                .replace_data(path, data.as_deref(), zxid, time_ms, *version)
                .ok_or(ErrorCode::NoNode)?;
            tree.quota_after_set_data(path, r.old_data_bytes, data_len(data));
            events.push((EventType::NodeDataChanged, path.clone()));
            Ok(Response::Stat(r.stat))
        }
        // The reference answers a reconfig with the new config and the node's Stat.
        TxnOp::Reconfig { data, version } => {
            let r = tree
                .replace_data(CONFIG, Some(data), zxid, time_ms, *version)
                .ok_or(ErrorCode::NoNode)?;
            let stat = r.stat;
            tree.quota_after_set_data(CONFIG, r.old_data_bytes, data.len());
            events.push((EventType::NodeDataChanged, CONFIG.to_string()));
            Ok(Response::Data {
                data: Some(data.clone()),
                stat,
            })
        }
        TxnOp::SetAcl { path, acl, version } => {
            let old = tree.node(path).ok_or(ErrorCode::NoNode)?.acl.clone();
            let new_acl = tree.intern_acl(acl.clone());
            let found = tree.update_node(path, |n| {
                n.acl = new_acl;
                n.aversion = *version;
            });
            tree.release_acl(&old);
            if !found {
                return Err(ErrorCode::NoNode);
            }
            let stat = tree.node(path).map(Node::stat).ok_or(ErrorCode::NoNode)?;
            Ok(Response::Stat(stat))
        }
        TxnOp::Check { .. } => Ok(Response::Empty),
        TxnOp::Error(e) => Err(*e),
        TxnOp::CreateSession { .. } => Ok(Response::Empty),
        TxnOp::CloseSession { paths } => {
            for p in paths {
                // Only the session's own ephemerals (a later create may have reused a
                // path); one already gone still raises its parent's pzxid.
                let owned_or_gone = tree
                    .node(p)
                    .is_none_or(|n| n.ephemeral_owner == session_id && session_id != 0);
                if owned_or_gone {
                    let _ = delete_node(tree, zxid, p, events);
                }
            }
            Ok(Response::Empty)
        }
        TxnOp::Multi(_) => Err(ErrorCode::MarshallingError),
    }
}

fn delete_node(
    tree: &mut Tree,
    zxid: i64,
    path: &str,
    events: &mut Vec<(EventType, String)>,
) -> Result<(), ErrorCode> {
    let parent_path = internal_parent(path).ok_or(ErrorCode::BadArguments)?;
    let Some(node) = tree.node(path) else {
        raise_parent_pzxid(tree, path, zxid);
        return Err(ErrorCode::NoNode);
    };
    if node.num_children > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    if tree.node(parent_path).is_none() {
        return Err(ErrorCode::NoNode);
    }
    let removed = tree.remove_node(path).expect("looked up above");
    tree.update_node(parent_path, |p| {
        p.num_children -= 1;
        if zxid > p.pzxid {
            p.pzxid = zxid;
        }
    });
    tree.quota_after_delete(path, removed.data_bytes().len());
    events.push((EventType::NodeDeleted, path.to_string()));
    events.push((EventType::NodeChildrenChanged, parent_of(path).to_string()));
    Ok(())
}
