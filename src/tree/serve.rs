//! The read path's tree side: answers a borrowed [`ReadRequest`] from one tree
//! version by encoding the reply straight from the node into the caller's output
//! buffer (the data bytes are copied once, from the tree into the frame; no
//! `Response` in between, no allocation). Errors are those of [`super::read`] for
//! the same request, and so are the bytes (the tests below hold the two side by
//! side).
//!
//! Pure: no IO, no clock. A shard core calls [`serve_read`] on the version it holds,
//! for each read it answers on arrival or after the write it waited for; watch
//! registration and connection stats stay with the shard. [`serve_read_frame`] is
//! the same path from a frame's body (header, borrowed decode, answer), the unit the
//! read-path benches measure.

use crate::proto::read::{
    write_children_reply, write_data_reply, write_ping_reply, write_stat_reply, ReadKind,
    ReadRequest,
};
use crate::proto::{perms, write_reply, DecodeError, ErrorCode, Reader, RequestHeader};

use super::acl::{check_acl, Caller};
use super::{NodeView, Tree};

/// Appends the reply frame for `req` to `out`: the answer from `tree`, or the error
/// reply (header only). Returns what was answered, for the shard's watch
/// registration. `zxid`: the zxid every reply of this version carries.
pub fn serve_read(
    tree: &Tree,
    caller: &Caller,
    zxid: i64,
    xid: i32,
    req: &ReadRequest<'_>,
    out: &mut Vec<u8>,
) -> Result<(), ErrorCode> {
    let result = encode_answer(tree, caller, zxid, xid, req, out);
    if let Err(e) = result {
        write_reply(out, xid, zxid, Err(e));
    }
    result
}

/// The success reply of `req`, or the error that decides it (nothing written then).
fn encode_answer(
    tree: &Tree,
    caller: &Caller,
    zxid: i64,
    xid: i32,
    req: &ReadRequest<'_>,
    out: &mut Vec<u8>,
) -> Result<(), ErrorCode> {
    let (kind, path) = match *req {
        ReadRequest::Ping => {
            write_ping_reply(out, zxid);
            return Ok(());
        }
        ReadRequest::Node { kind, path, .. } => (kind, path),
    };
    match kind {
        ReadKind::Exists => {
            let n = read_target(tree, caller, ReadCheck::Exists, path)?;
            write_stat_reply(out, xid, zxid, &n.stat());
        }
        ReadKind::GetData => {
            let n = read_target(tree, caller, ReadCheck::Read, path)?;
            write_data_reply(out, xid, zxid, n.data(), &n.stat());
        }
        ReadKind::GetChildren | ReadKind::GetChildren2 => {
            let n = read_target(tree, caller, ReadCheck::Read, path)?;
            let stat = (kind == ReadKind::GetChildren2).then(|| n.stat());
            write_children_reply(out, xid, zxid, n.children(), stat.as_ref());
        }
    }
    Ok(())
}

/// Which checks a read of one znode makes, as the reference: `exists` needs no
/// permission but refuses a NUL in the path (BadArguments); getData and
/// getChildren(2) need READ (a malformed path is simply NoNode).
#[derive(Clone, Copy)]
pub(super) enum ReadCheck {
    Exists,
    Read,
}

/// The znode a read of `path` answers from, or the error that decides it: the
/// one place these checks live, for the borrowed path ([`serve_read`]) and the
/// owned one ([`super::read`], multiRead's ops included).
pub(super) fn read_target<'t>(
    tree: &'t Tree,
    caller: &Caller,
    check: ReadCheck,
    path: &str,
) -> Result<NodeView<'t>, ErrorCode> {
    if matches!(check, ReadCheck::Exists) && path.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    let n = tree.get(path).ok_or(ErrorCode::NoNode)?;
    if matches!(check, ReadCheck::Read) {
        check_acl(n.acl(), perms::READ, caller)?;
    }
    Ok(n)
}

/// What [`serve_read_frame`] did with one frame.
#[derive(Debug)]
pub enum FrameRead<'a> {
    /// A read, answered into the output: its xid, the request and the outcome.
    Served {
        xid: i32,
        req: ReadRequest<'a>,
        result: Result<(), ErrorCode>,
    },
    /// Not one of the reads [`ReadRequest`] covers; nothing written. The body is
    /// left after the header, for the owned decoder.
    Other {
        hdr: RequestHeader,
        body: Reader<'a>,
    },
}

/// The read path for one request frame's body (length prefix taken off): decode
/// the header and, for a read, its borrowed view, then [`serve_read`]. The shard
/// runs these same steps with its bookkeeping between them.
pub fn serve_read_frame<'a>(
    tree: &Tree,
    caller: &Caller,
    zxid: i64,
    body: &'a [u8],
    out: &mut Vec<u8>,
) -> Result<FrameRead<'a>, DecodeError> {
    let mut r = Reader::new(body);
    let hdr = RequestHeader::decode(&mut r)?;
    let Some(req) = ReadRequest::decode(hdr.opcode, &mut r) else {
        return Ok(FrameRead::Other { hdr, body: r });
    };
    let req = req?;
    let result = serve_read(tree, caller, zxid, hdr.xid, &req, out);
    Ok(FrameRead::Served {
        xid: hdr.xid,
        req,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, CreateKind, CreateRequest, Id, Request};
    use crate::tree::{build_tree, read};

    fn create(path: &str, data: Option<&[u8]>, acl: Vec<Acl>) -> Request {
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            acl,
            flags: 0,
            ttl: -1,
        })
    }

    fn tree() -> Tree {
        let secret = vec![Acl::new(perms::ALL, "digest", "u:x")];
        let owner = [Id::new("digest", "u:x")];
        let reqs = [
            create("/a", Some(b"hello"), Acl::open()),
            create("/a/c1", Some(b""), Acl::open()),
            create("/a/c2", None, Acl::open()),
            create("/null", None, Acl::open()),
            create("/secret", Some(b"s"), secret),
            create("/secret/kid", Some(b"k"), Acl::open()),
        ];
        build_tree(&caller(&owner), &reqs).expect("the test tree")
    }

    fn caller(ids: &[Id]) -> Caller<'_> {
        Caller {
            session_id: 5,
            ids,
            is_super: false,
        }
    }

    #[test]
    fn answers_with_the_bytes_and_errors_of_tree_read() {
        let t = tree();
        let digest = [Id::new("digest", "u:x")];
        let paths = [
            "/", "", "/a", "/a/c2", "/null", "/secret", "/missing", "a", "/a/", "/a\0x",
        ];
        for ids in [&[][..], &digest[..]] {
            let c = caller(ids);
            for path in paths {
                let path = path.to_string();
                for watch in [false, true] {
                    let reqs = [
                        Request::Exists {
                            path: path.clone(),
                            watch,
                        },
                        Request::GetData {
                            path: path.clone(),
                            watch,
                        },
                        Request::GetChildren {
                            path: path.clone(),
                            watch,
                        },
                        Request::GetChildren2 {
                            path: path.clone(),
                            watch,
                        },
                    ];
                    for req in &reqs {
                        let view = ReadRequest::of(req).unwrap();
                        let mut ours = b"before".to_vec();
                        let got = serve_read(&t, &c, 77, 9, &view, &mut ours);
                        let want = read(&t, &c, req);
                        let mut theirs = b"before".to_vec();
                        write_reply(&mut theirs, 9, 77, want.as_ref().map_err(|e| *e));
                        assert_eq!(got, want.map(|_| ()), "{req:?}");
                        assert_eq!(ours, theirs, "{req:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_frame_is_served_or_handed_back() {
        let t = tree();
        let req = Request::GetData {
            path: "/a".into(),
            watch: true,
        };
        let mut body = Vec::new();
        RequestHeader {
            xid: 3,
            opcode: req.opcode(),
        }
        .encode(&mut body);
        req.encode_body(&mut body);
        let mut out = Vec::new();
        match serve_read_frame(&t, &caller(&[]), 8, &body, &mut out).unwrap() {
            FrameRead::Served {
                xid,
                req: r,
                result,
            } => {
                assert_eq!((xid, r.to_request(), result), (3, req.clone(), Ok(())));
            }
            other => panic!("{other:?}"),
        }
        let mut want = Vec::new();
        write_reply(
            &mut want,
            3,
            8,
            read(&t, &caller(&[]), &req).as_ref().map_err(|e| *e),
        );
        assert_eq!(out, want);

        let mut sync = Vec::new();
        RequestHeader {
            xid: 4,
            opcode: crate::proto::op::SYNC,
        }
        .encode(&mut sync);
        sync.extend_from_slice(b"rest");
        out.clear();
        match serve_read_frame(&t, &caller(&[]), 8, &sync, &mut out).unwrap() {
            FrameRead::Other { hdr, body } => {
                assert_eq!((hdr.xid, body.remaining()), (4, 4));
            }
            other => panic!("{other:?}"),
        }
        assert!(out.is_empty());
        assert!(serve_read_frame(&t, &caller(&[]), 8, &body[..10], &mut out).is_err());
        assert!(serve_read_frame(&t, &caller(&[]), 8, &body[..5], &mut out).is_err());
    }
}
