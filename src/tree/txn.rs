//! Txns: the decided form of a write. [`super::prepare`] fills in everything that
//! needs a choice (zxid, time, sequence suffix, owner, expanded ACL, or the error),
//! so [`super::apply`] is deterministic on every replica. Txns are encoded with jute
//! primitives for the log and for replication; decoding is bounds-checked because the
//! bytes come from disk or from a peer. Built on the sequencer core, decoded by
//! storage recovery and followers.

use crate::proto::{Acl, CreateKind, DecodeError, ErrorCode, JuteWrite, Reader};

/// One logged, replicated state change (or a failed request that still took a zxid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub zxid: i64,
    pub time_ms: i64,
    pub session_id: i64,
    pub op: TxnOp,
}

/// A decided create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTxn {
    /// Final path (sequence suffix included).
    pub path: String,
    pub data: Vec<u8>,
    /// Validated and expanded ACL.
    pub acl: Vec<Acl>,
    /// Internal owner: a session id for ephemerals, 0, the container marker or a TTL
    /// marker (see [`super::NodeKind`]).
    pub ephemeral_owner: i64,
    /// The parent's internal cversion after this create.
    pub parent_cversion: i32,
    /// Which create opcode asked: decides the reply shape.
    pub kind: CreateKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Create(CreateTxn),
    /// delete and deleteContainer (and container/TTL cleanup).
    Delete {
        path: String,
    },
    /// `version` is the node's new version.
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// `version` is the node's new aversion.
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// A passed version check (inside multi).
    Check {
        path: String,
        version: i32,
    },
    /// A multi whose every op passed; applied atomically.
    Multi(Vec<TxnOp>),
    /// A multi that failed: one code per op (Ok before the failing op, its code,
    /// RuntimeInconsistency after). Changes nothing.
    MultiError(Vec<ErrorCode>),
    /// A failed request (the reference's ErrorTxn). Changes nothing.
    Error(ErrorCode),
    CreateSession {
        timeout_ms: i32,
    },
    /// Deletes these ephemerals of the txn's session.
    CloseSession {
        paths: Vec<String>,
    },
    /// sync, if the sequencer chooses to log it; changes nothing.
    Sync {
        path: String,
    },
}

/// Upper bound on ops in one multi when decoding (a multi must fit one jute.maxbuffer
/// packet, and each op takes at least a dozen bytes).
const MULTI_OPS_MAX: usize = 1 << 20;

mod tag {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const SET_DATA: i32 = 3;
    pub const SET_ACL: i32 = 4;
    pub const CHECK: i32 = 5;
    pub const MULTI: i32 = 6;
    pub const MULTI_ERROR: i32 = 7;
    pub const ERROR: i32 = 8;
    pub const CREATE_SESSION: i32 = 9;
    pub const CLOSE_SESSION: i32 = 10;
    pub const SYNC: i32 = 11;
}

fn kind_code(k: CreateKind) -> i32 {
    k.opcode()
}

fn kind_from(c: i32) -> Result<CreateKind, DecodeError> {
    Ok(match c {
        1 => CreateKind::Create,
        15 => CreateKind::Create2,
        19 => CreateKind::Container,
        21 => CreateKind::Ttl,
        value => {
            return Err(DecodeError::BadEnum {
                what: "create kind",
                value,
            })
        }
    })
}

fn error_from(c: i32) -> Result<ErrorCode, DecodeError> {
    ErrorCode::from_code(c).ok_or(DecodeError::BadEnum {
        what: "error code",
        value: c,
    })
}

fn count(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let n = r.i32()?;
    if n < 0 {
        return Err(DecodeError::BadLength(n));
    }
    let n = n as usize;
    if n > MULTI_OPS_MAX.max(r.remaining()) {
        return Err(DecodeError::TooLong {
            len: n,
            max: MULTI_OPS_MAX,
        });
    }
    Ok(n)
}

impl TxnOp {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TxnOp::Create(c) => {
                out.put_i32(tag::CREATE);
                out.put_str(&c.path);
                out.put_buffer(&c.data);
                Acl::encode_list(&c.acl, out);
                out.put_i64(c.ephemeral_owner);
                out.put_i32(c.parent_cversion);
                out.put_i32(kind_code(c.kind));
            }
            TxnOp::Delete { path } => {
                out.put_i32(tag::DELETE);
                out.put_str(path);
            }
            TxnOp::SetData {
                path,
                data,
                version,
            } => {
                out.put_i32(tag::SET_DATA);
                out.put_str(path);
                out.put_buffer(data);
                out.put_i32(*version);
            }
            TxnOp::SetAcl { path, acl, version } => {
                out.put_i32(tag::SET_ACL);
                out.put_str(path);
                Acl::encode_list(acl, out);
                out.put_i32(*version);
            }
            TxnOp::Check { path, version } => {
                out.put_i32(tag::CHECK);
                out.put_str(path);
                out.put_i32(*version);
            }
            TxnOp::Multi(ops) => {
                out.put_i32(tag::MULTI);
                out.put_i32(ops.len() as i32);
                for o in ops {
                    o.encode(out);
                }
            }
            TxnOp::MultiError(codes) => {
                out.put_i32(tag::MULTI_ERROR);
                out.put_i32(codes.len() as i32);
                for c in codes {
                    out.put_i32(c.code());
                }
            }
            TxnOp::Error(e) => {
                out.put_i32(tag::ERROR);
                out.put_i32(e.code());
            }
            TxnOp::CreateSession { timeout_ms } => {
                out.put_i32(tag::CREATE_SESSION);
                out.put_i32(*timeout_ms);
            }
            TxnOp::CloseSession { paths } => {
                out.put_i32(tag::CLOSE_SESSION);
                out.put_strings(paths);
            }
            TxnOp::Sync { path } => {
                out.put_i32(tag::SYNC);
                out.put_str(path);
            }
        }
    }

    fn decode(r: &mut Reader<'_>, nested: bool) -> Result<TxnOp, DecodeError> {
        let t = r.i32()?;
        Ok(match t {
            tag::CREATE => TxnOp::Create(CreateTxn {
                path: r.string()?,
                data: r.bytes()?,
                acl: Acl::decode_list(r)?,
                ephemeral_owner: r.i64()?,
                parent_cversion: r.i32()?,
                kind: kind_from(r.i32()?)?,
            }),
            tag::DELETE => TxnOp::Delete { path: r.string()? },
            tag::SET_DATA => TxnOp::SetData {
                path: r.string()?,
                data: r.bytes()?,
                version: r.i32()?,
            },
            tag::SET_ACL => TxnOp::SetAcl {
                path: r.string()?,
                acl: Acl::decode_list(r)?,
                version: r.i32()?,
            },
            tag::CHECK => TxnOp::Check {
                path: r.string()?,
                version: r.i32()?,
            },
            tag::MULTI if !nested => {
                let n = count(r)?;
                let mut ops = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    ops.push(TxnOp::decode(r, true)?);
                }
                TxnOp::Multi(ops)
            }
            tag::MULTI_ERROR if !nested => {
                let n = count(r)?;
                let mut codes = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    codes.push(error_from(r.i32()?)?);
                }
                TxnOp::MultiError(codes)
            }
            tag::ERROR if !nested => TxnOp::Error(error_from(r.i32()?)?),
            tag::CREATE_SESSION if !nested => TxnOp::CreateSession {
                timeout_ms: r.i32()?,
            },
            tag::CLOSE_SESSION if !nested => TxnOp::CloseSession {
                paths: r.strings()?,
            },
            tag::SYNC if !nested => TxnOp::Sync { path: r.string()? },
            value => {
                return Err(DecodeError::BadEnum {
                    what: "txn op",
                    value,
                })
            }
        })
    }
}

impl Txn {
    /// Appends the encoded txn to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i64(self.zxid);
        out.put_i64(self.time_ms);
        out.put_i64(self.session_id);
        self.op.encode(out);
    }

    /// Decodes exactly one txn occupying all of `b`.
    pub fn decode(b: &[u8]) -> Result<Txn, DecodeError> {
        let mut r = Reader::new(b);
        let t = Txn {
            zxid: r.i64()?,
            time_ms: r.i64()?,
            session_id: r.i64()?,
            op: TxnOp::decode(&mut r, false)?,
        };
        if !r.is_empty() {
            return Err(DecodeError::TooLong {
                len: b.len(),
                max: r.position(),
            });
        }
        Ok(t)
    }

    /// True if applying this txn changes the tree (reads nothing else).
    pub fn is_change(&self) -> bool {
        matches!(
            self.op,
            TxnOp::Create(_)
                | TxnOp::Delete { .. }
                | TxnOp::SetData { .. }
                | TxnOp::SetAcl { .. }
                | TxnOp::Multi(_)
                | TxnOp::CloseSession { .. }
        )
    }
}
