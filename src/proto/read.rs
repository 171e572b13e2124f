//! The read path's view of a request and its reply encoders, without copies.
//!
//! The reads a client sends most (getData, exists, getChildren, getChildren2) and
//! ping are decoded as a [`ReadRequest`] that borrows its path from the received
//! frame, and their replies are encoded from borrowed parts (the tree's own data
//! bytes, a child-name iterator) straight into the connection's output buffer: no
//! allocation per read. Every other request keeps the owned [`Request`].
//!
//! Pure: runs on the shard core that owns the connection, called by its request
//! handling (`server::shard`) and by `tree::serve_read`, which looks the node up.
//! The bytes are exactly those of [`Request::decode`] + [`write_reply`] for the same
//! request and reply (tests below hold the two side by side).
//!
//! [`write_reply`]: super::reply::write_reply

use super::jute::{begin_frame, end_frame, DecodeError, JuteWrite, Reader};
use super::reply::ReplyHeader;
use super::request::Request;
use super::types::{op, xid, Stat};

/// A read request whose path borrows from the frame it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRequest<'a> {
    /// A read of one znode.
    Node {
        kind: ReadKind,
        path: &'a str,
        watch: bool,
    },
    Ping,
}

/// Which read of one znode: all four carry a path and a watch flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Exists,
    GetData,
    GetChildren,
    GetChildren2,
}

impl ReadKind {
    /// The kind an opcode asks for, if it is one of these reads.
    fn of_opcode(opcode: i32) -> Option<ReadKind> {
        Some(match opcode {
            op::EXISTS => ReadKind::Exists,
            op::GET_DATA => ReadKind::GetData,
            op::GET_CHILDREN => ReadKind::GetChildren,
            op::GET_CHILDREN2 => ReadKind::GetChildren2,
            _ => return None,
        })
    }

    fn opcode(self) -> i32 {
        match self {
            ReadKind::Exists => op::EXISTS,
            ReadKind::GetData => op::GET_DATA,
            ReadKind::GetChildren => op::GET_CHILDREN,
            ReadKind::GetChildren2 => op::GET_CHILDREN2,
        }
    }

    /// The owned request of this kind.
    fn request(self, path: String, watch: bool) -> Request {
        match self {
            ReadKind::Exists => Request::Exists { path, watch },
            ReadKind::GetData => Request::GetData { path, watch },
            ReadKind::GetChildren => Request::GetChildren { path, watch },
            ReadKind::GetChildren2 => Request::GetChildren2 { path, watch },
        }
    }
}

impl<'a> ReadRequest<'a> {
    /// Decodes the body of a request with `opcode` if it is one of the reads above;
    /// `None` for any other opcode (decode it as an owned [`Request`]). The reads,
    /// and so the errors, are those of [`Request::decode`]; a null path reads as
    /// empty, as there.
    pub fn decode(opcode: i32, r: &mut Reader<'a>) -> Option<Result<ReadRequest<'a>, DecodeError>> {
        if opcode == op::PING {
            return Some(Ok(ReadRequest::Ping));
        }
        let kind = ReadKind::of_opcode(opcode)?;
        let node = |r: &mut Reader<'a>| -> Result<ReadRequest<'a>, DecodeError> {
            let path = r.ustring()?.unwrap_or("");
            let watch = r.bool()?;
            Ok(ReadRequest::Node { kind, path, watch })
        };
        Some(node(r))
    }

    /// The borrowed view of an owned request, if it is one of these reads (a read
    /// that waited behind a write was kept owned).
    pub fn of(req: &'a Request) -> Option<ReadRequest<'a>> {
        let (kind, path, watch) = match req {
            Request::Ping => return Some(ReadRequest::Ping),
            Request::Exists { path, watch } => (ReadKind::Exists, path, watch),
            Request::GetData { path, watch } => (ReadKind::GetData, path, watch),
            Request::GetChildren { path, watch } => (ReadKind::GetChildren, path, watch),
            Request::GetChildren2 { path, watch } => (ReadKind::GetChildren2, path, watch),
            _ => return None,
        };
        Some(ReadRequest::Node {
            kind,
            path,
            watch: *watch,
        })
    }

    /// The owned request, for a read that must wait (it outlives the frame).
    pub fn to_request(&self) -> Request {
        match *self {
            ReadRequest::Node { kind, path, watch } => kind.request(path.to_string(), watch),
            ReadRequest::Ping => Request::Ping,
        }
    }

    pub fn opcode(&self) -> i32 {
        match self {
            ReadRequest::Node { kind, .. } => kind.opcode(),
            ReadRequest::Ping => op::PING,
        }
    }
}

/// `ReplyHeader{int xid, long zxid, int err}` on the wire.
const REPLY_HEADER_BYTES: usize = 16;

/// A ping's reply: xid −2 whatever the request's, the last zxid, no body.
pub fn write_ping_reply(out: &mut Vec<u8>, zxid: i64) {
    let at = begin_frame(out);
    ReplyHeader {
        xid: xid::PING,
        zxid,
        err: 0,
    }
    .encode(out);
    end_frame(out, at);
}

/// exists' reply: the node's Stat.
pub fn write_stat_reply(out: &mut Vec<u8>, xid: i32, zxid: i64, stat: &Stat) {
    let at = begin_ok(out, xid, zxid);
    stat.encode(out);
    end_frame(out, at);
}

/// getData's reply: the data (−1 for null data) and the Stat.
pub fn write_data_reply(out: &mut Vec<u8>, xid: i32, zxid: i64, data: Option<&[u8]>, stat: &Stat) {
    let body_bytes = 4 + data.map_or(0, <[u8]>::len) + Stat::WIRE_LEN;
    out.reserve(4 + REPLY_HEADER_BYTES + body_bytes);
    let at = begin_ok(out, xid, zxid);
    out.put_opt_buffer(data);
    stat.encode(out);
    end_frame(out, at);
}

/// getChildren's reply (`stat` `None`) or getChildren2's: the child names, counted
/// as they are written, then the Stat.
pub fn write_children_reply<'c>(
    out: &mut Vec<u8>,
    xid: i32,
    zxid: i64,
    children: impl Iterator<Item = &'c str>,
    stat: Option<&Stat>,
) {
    let at = begin_ok(out, xid, zxid);
    let count_at = out.len();
    out.put_i32(0);
    let mut count: i32 = 0;
    for name in children {
        out.put_str(name);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
    if let Some(stat) = stat {
        stat.encode(out);
    }
    end_frame(out, at);
}

/// Begins a frame with a success header; returns the offset for `end_frame`.
fn begin_ok(out: &mut Vec<u8>, xid: i32, zxid: i64) -> usize {
    let at = begin_frame(out);
    ReplyHeader { xid, zxid, err: 0 }.encode(out);
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{write_reply, Response};

    fn body(req: &Request) -> Vec<u8> {
        let mut v = Vec::new();
        req.encode_body(&mut v);
        v
    }

    fn stat() -> Stat {
        Stat {
            czxid: 3,
            mzxid: 0x1_0000_0004,
            ctime: 5,
            mtime: 6,
            version: 7,
            cversion: -1,
            aversion: 2,
            ephemeral_owner: 0x77,
            data_length: 3,
            num_children: 2,
            pzxid: 9,
        }
    }

    #[test]
    fn decodes_what_the_owned_decoder_decodes() {
        let reqs = [
            Request::Exists {
                path: "/a/b".into(),
                watch: true,
            },
            Request::GetData {
                path: "/a".into(),
                watch: false,
            },
            Request::GetChildren {
                path: "/".into(),
                watch: true,
            },
            Request::GetChildren2 {
                path: "/x/y/z".into(),
                watch: false,
            },
            Request::Ping,
        ];
        for req in &reqs {
            let b = body(req);
            let view = ReadRequest::decode(req.opcode(), &mut Reader::new(&b))
                .expect("a read opcode")
                .unwrap();
            assert_eq!(view.to_request(), *req);
            assert_eq!(ReadRequest::of(req), Some(view));
            assert_eq!(view.opcode(), req.opcode());
        }
        let set = Request::Sync { path: "/a".into() };
        assert_eq!(
            ReadRequest::decode(set.opcode(), &mut Reader::new(&[])),
            None
        );
        assert_eq!(ReadRequest::of(&set), None);
    }

    #[test]
    fn null_path_reads_as_empty_and_truncation_is_an_error() {
        let mut b = Vec::new();
        b.put_null();
        b.put_bool(false);
        let view = ReadRequest::decode(op::GET_DATA, &mut Reader::new(&b)).unwrap();
        assert_eq!(
            view,
            Ok(ReadRequest::Node {
                kind: ReadKind::GetData,
                path: "",
                watch: false
            })
        );
        let owned = Request::decode(op::GET_DATA, &mut Reader::new(&b));
        assert_eq!(owned.unwrap().unwrap(), view.unwrap().to_request());
        for cut in 0..b.len() {
            let view = ReadRequest::decode(op::EXISTS, &mut Reader::new(&b[..cut])).unwrap();
            let owned = Request::decode(op::EXISTS, &mut Reader::new(&b[..cut]));
            assert_eq!(view.unwrap_err(), owned.unwrap_err());
        }
    }

    #[test]
    fn replies_are_the_bytes_of_write_reply() {
        let s = stat();
        type Encoder<'s> = Box<dyn Fn(&mut Vec<u8>) + 's>;
        let cases: Vec<(Encoder, Response)> = vec![
            (
                Box::new(|o| write_stat_reply(o, 5, 99, &s)),
                Response::Stat(s),
            ),
            (
                Box::new(|o| write_data_reply(o, 5, 99, Some(b"abc"), &s)),
                Response::Data {
                    data: Some(b"abc".to_vec()),
                    stat: s,
                },
            ),
            (
                Box::new(|o| write_data_reply(o, 5, 99, None, &s)),
                Response::Data {
                    data: None,
                    stat: s,
                },
            ),
            (
                Box::new(|o| write_children_reply(o, 5, 99, ["x", "yz"].into_iter(), None)),
                Response::Children(vec!["x".into(), "yz".into()]),
            ),
            (
                Box::new(|o| write_children_reply(o, 5, 99, ["x", "yz"].into_iter(), Some(&s))),
                Response::Children2 {
                    children: vec!["x".into(), "yz".into()],
                    stat: s,
                },
            ),
            (
                Box::new(|o| write_children_reply(o, 5, 99, std::iter::empty(), Some(&s))),
                Response::Children2 {
                    children: vec![],
                    stat: s,
                },
            ),
        ];
        for (write, resp) in cases {
            let mut ours = b"prefix".to_vec();
            write(&mut ours);
            let mut theirs = b"prefix".to_vec();
            write_reply(&mut theirs, 5, 99, Ok(&resp));
            assert_eq!(ours, theirs, "{resp:?}");
        }
    }

    #[test]
    fn ping_reply_is_xid_minus_two() {
        let mut v = Vec::new();
        write_ping_reply(&mut v, 42);
        assert_eq!(v[..4], 16i32.to_be_bytes());
        let h = ReplyHeader::decode(&mut Reader::new(&v[4..])).unwrap();
        assert_eq!((h.xid, h.zxid, h.err), (xid::PING, 42, 0));
    }
}
