//! Typed replies and their jute encoding: `ReplyHeader` + body, the multi result
//! shapes, and watch notifications. Pure; built on the sequencer (write results)
//! or a shard core (reads), encoded on the shard core that owns the connection.

use super::jute::{begin_frame, end_frame, DecodeError, JuteWrite, Reader};
use super::types::{op, xid, Acl, ErrorCode, Stat, WatcherEvent};

/// `ReplyHeader{int xid, long zxid, int err}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

impl ReplyHeader {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.xid);
        out.put_i64(self.zxid);
        out.put_i32(self.err);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ReplyHeader {
            xid: r.i32()?,
            zxid: r.i64()?,
            err: r.i32()?,
        })
    }
}

/// The body of a successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// delete, check, checkWatches, removeWatches, addWatch, auth, setWatches, ping, closeSession.
    Empty,
    /// create (opcode 1).
    Create { path: String },
    /// create2, createContainer, createTTL.
    Create2 { path: String, stat: Stat },
    /// exists, setData, setACL.
    Stat(Stat),
    /// getData. `None` for a node whose data is null: the body's buffer is then −1.
    Data { data: Option<Vec<u8>>, stat: Stat },
    /// getACL.
    Acl { acl: Vec<Acl>, stat: Stat },
    /// getChildren.
    Children(Vec<String>),
    /// getChildren2.
    Children2 { children: Vec<String>, stat: Stat },
    /// sync.
    Sync { path: String },
    /// getEphemerals.
    Ephemerals(Vec<String>),
    /// getAllChildrenNumber.
    AllChildrenNumber(i32),
    /// addWatch: the reference answers with an `ErrorResponse{0}` body (4 bytes).
    AddWatch,
    /// whoAmI: (scheme, user) pairs.
    WhoAmI(Vec<(String, String)>),
    /// multi / multiRead: one result per op, in order.
    Multi(Vec<OpResult>),
}

/// One op's outcome inside multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The op's opcode (as it appears in the multi header) and its result.
    Ok(i32, Response),
    Err(ErrorCode),
}

impl Response {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Empty => {}
            Response::Create { path } | Response::Sync { path } => out.put_str(path),
            Response::Create2 { path, stat } => {
                out.put_str(path);
                stat.encode(out);
            }
            Response::Stat(stat) => stat.encode(out),
            Response::Data { data, stat } => {
                out.put_opt_buffer(data.as_deref());
                stat.encode(out);
            }
            Response::Acl { acl, stat } => {
                Acl::encode_list(acl, out);
                stat.encode(out);
            }
            Response::Children(c) | Response::Ephemerals(c) => out.put_strings(c),
            Response::Children2 { children, stat } => {
                out.put_strings(children);
                stat.encode(out);
            }
            Response::AllChildrenNumber(n) => out.put_i32(*n),
            Response::AddWatch => out.put_i32(0),
            Response::WhoAmI(ids) => {
                out.put_i32(ids.len() as i32);
                for (scheme, user) in ids {
                    out.put_str(scheme);
                    out.put_str(user);
                }
            }
            Response::Multi(results) => {
                for r in results {
                    match r {
                        OpResult::Ok(opcode, resp) => {
                            out.put_i32(*opcode);
                            out.put_bool(false);
                            out.put_i32(0);
                            resp.encode(out);
                        }
                        OpResult::Err(e) => {
                            out.put_i32(op::ERROR);
                            out.put_bool(false);
                            out.put_i32(e.code());
                            out.put_i32(e.code());
                        }
                    }
                }
                out.put_i32(-1);
                out.put_bool(true);
                out.put_i32(-1);
            }
        }
    }
}

/// Appends one complete reply frame (length, header, body) to `out`.
/// An error reply carries no body, as the reference sends it.
pub fn write_reply(out: &mut Vec<u8>, xid: i32, zxid: i64, result: Result<&Response, ErrorCode>) {
    let at = begin_frame(out);
    match result {
        Ok(resp) => {
            ReplyHeader { xid, zxid, err: 0 }.encode(out);
            resp.encode(out);
        }
        Err(e) => ReplyHeader {
            xid,
            zxid,
            err: e.code(),
        }
        .encode(out),
    }
    end_frame(out, at);
}

/// Appends one watch notification frame (xid −1) to `out`.
pub fn write_event(out: &mut Vec<u8>, zxid: i64, event: &WatcherEvent) {
    let at = begin_frame(out);
    ReplyHeader {
        xid: xid::NOTIFICATION,
        zxid,
        err: 0,
    }
    .encode(out);
    event.encode(out);
    end_frame(out, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_failure_shape() {
        let r = Response::Multi(vec![
            OpResult::Err(ErrorCode::Ok),
            OpResult::Err(ErrorCode::NoNode),
            OpResult::Err(ErrorCode::RuntimeInconsistency),
        ]);
        let mut v = Vec::new();
        r.encode(&mut v);
        let mut rd = Reader::new(&v);
        for code in [0, -101, -2] {
            assert_eq!(rd.i32().unwrap(), -1);
            assert!(!rd.bool().unwrap());
            assert_eq!(rd.i32().unwrap(), code);
            assert_eq!(rd.i32().unwrap(), code);
        }
        assert_eq!(rd.i32().unwrap(), -1);
        assert!(rd.bool().unwrap());
        assert_eq!(rd.i32().unwrap(), -1);
        assert!(rd.is_empty());
    }

    #[test]
    fn null_data_reply_is_a_minus_one_buffer() {
        let stat = Stat::default();
        let mut null = Vec::new();
        Response::Data { data: None, stat }.encode(&mut null);
        let mut empty = Vec::new();
        Response::Data {
            data: Some(Vec::new()),
            stat,
        }
        .encode(&mut empty);
        assert_eq!(null[..4], [0xff; 4]);
        assert_eq!(empty[..4], [0; 4]);
        assert_eq!(null[4..], empty[4..]);
        assert_eq!(null.len(), 4 + 68);
    }

    #[test]
    fn reply_frame_has_length_prefix() {
        let mut v = Vec::new();
        write_reply(&mut v, 7, 42, Err(ErrorCode::NoNode));
        assert_eq!(&v[..4], &16i32.to_be_bytes());
        let mut r = Reader::new(&v[4..]);
        assert_eq!(
            ReplyHeader::decode(&mut r).unwrap(),
            ReplyHeader {
                xid: 7,
                zxid: 42,
                err: -101
            }
        );
    }
}
