//! Typed client requests and their jute decoding (`zookeeper.jute`), plus the
//! connect handshake. Decoding is pure: bytes in, a typed request or a
//! [`DecodeError`] out. Runs on the shard core that owns the connection.

use super::jute::{DecodeError, JuteWrite, Reader};
use super::types::{op, Acl};

/// `RequestHeader{int xid, int type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    pub opcode: i32,
}

impl RequestHeader {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RequestHeader {
            xid: r.i32()?,
            opcode: r.i32()?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.xid);
        out.put_i32(self.opcode);
    }
}

/// Which create opcode carried a create: it decides the reply's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateKind {
    /// opcode 1: reply is the path only.
    Create,
    /// opcode 15: reply is path + Stat.
    Create2,
    /// opcode 19: path + Stat, flags must be container.
    Container,
    /// opcode 21: path + Stat, carries a ttl.
    Ttl,
}

impl CreateKind {
    pub fn opcode(self) -> i32 {
        match self {
            CreateKind::Create => op::CREATE,
            CreateKind::Create2 => op::CREATE2,
            CreateKind::Container => op::CREATE_CONTAINER,
            CreateKind::Ttl => op::CREATE_TTL,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub kind: CreateKind,
    pub path: String,
    /// `None` for the null buffer (length −1): the node then reads back null.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    /// Only for [`CreateKind::Ttl`]; −1 otherwise.
    pub ttl: i64,
}

/// setWatches (101) / setWatches2 (105).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// Every request a client can send after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateRequest),
    Delete {
        path: String,
        version: i32,
    },
    DeleteContainer {
        path: String,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        /// `None` for the null buffer (length −1).
        data: Option<Vec<u8>>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        path: String,
        watch: bool,
    },
    GetChildren2 {
        path: String,
        watch: bool,
    },
    Sync {
        path: String,
    },
    Ping,
    /// Only valid inside multi.
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    Reconfig(ReconfigRequest),
    CheckWatches {
        path: String,
        watcher_type: i32,
    },
    RemoveWatches {
        path: String,
        watcher_type: i32,
    },
    Auth {
        auth_type: i32,
        scheme: String,
        auth: Vec<u8>,
    },
    SetWatches(SetWatches),
    Sasl,
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    AddWatch {
        path: String,
        mode: i32,
    },
    WhoAmI,
    CloseSession,
}

/// A request whose opcode corral does not know: answered UNIMPLEMENTED, then closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOpcode(pub i32);

impl Request {
    /// A plain persistent create of `path` holding `data`, open to anyone
    /// (`world:anyone`, every permission): the set-up request of tests, benches
    /// and tools.
    pub fn create_open(path: &str, data: &[u8]) -> Request {
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: path.to_string(),
            data: Some(data.to_vec()),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        })
    }

    /// getData of `path` without a watch (tests, benches and tools).
    pub fn get_data_of(path: &str) -> Request {
        Request::GetData {
            path: path.to_string(),
            watch: false,
        }
    }

    /// getChildren2 of `path` without a watch (tests, benches and tools).
    pub fn get_children2_of(path: &str) -> Request {
        Request::GetChildren2 {
            path: path.to_string(),
            watch: false,
        }
    }

    /// Decodes the body of a request with the given opcode.
    /// `Ok(Err(UnknownOpcode))` for an opcode outside the protocol.
    pub fn decode(
        opcode: i32,
        r: &mut Reader<'_>,
    ) -> Result<Result<Request, UnknownOpcode>, DecodeError> {
        let req = match opcode {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                let kind = match opcode {
                    op::CREATE => CreateKind::Create,
                    op::CREATE2 => CreateKind::Create2,
                    op::CREATE_CONTAINER => CreateKind::Container,
                    _ => CreateKind::Ttl,
                };
                let path = r.string()?;
                let data = r.opt_bytes()?;
                let acl = Acl::decode_list(r)?;
                let flags = r.i32()?;
                let ttl = if kind == CreateKind::Ttl {
                    r.i64()?
                } else {
                    -1
                };
                Request::Create(CreateRequest {
                    kind,
                    path,
                    data,
                    acl,
                    flags,
                    ttl,
                })
            }
            op::DELETE => Request::Delete {
                path: r.string()?,
                version: r.i32()?,
            },
            op::DELETE_CONTAINER => Request::DeleteContainer { path: r.string()? },
            op::EXISTS => Request::Exists {
                path: r.string()?,
                watch: r.bool()?,
            },
            op::GET_DATA => Request::GetData {
                path: r.string()?,
                watch: r.bool()?,
            },
            op::SET_DATA => Request::SetData {
                path: r.string()?,
                data: r.opt_bytes()?,
                version: r.i32()?,
            },
            op::GET_ACL => Request::GetAcl { path: r.string()? },
            op::SET_ACL => Request::SetAcl {
                path: r.string()?,
                acl: Acl::decode_list(r)?,
                version: r.i32()?,
            },
            op::GET_CHILDREN => Request::GetChildren {
                path: r.string()?,
                watch: r.bool()?,
            },
            op::GET_CHILDREN2 => Request::GetChildren2 {
                path: r.string()?,
                watch: r.bool()?,
            },
            op::SYNC => Request::Sync { path: r.string()? },
            op::PING => Request::Ping,
            op::CHECK => Request::Check {
                path: r.string()?,
                version: r.i32()?,
            },
            op::MULTI | op::MULTI_READ => {
                let mut ops = Vec::new();
                loop {
                    let t = r.i32()?;
                    let done = r.bool()?;
                    let _err = r.i32()?;
                    if done {
                        break;
                    }
                    match Request::decode(t, r)? {
                        Ok(req) => ops.push(req),
                        // An op type the protocol does not have inside a multi: the
                        // reference fails the whole request with a marshalling error.
                        Err(UnknownOpcode(o)) => {
                            return Err(DecodeError::BadEnum {
                                what: "multi op type",
                                value: o,
                            })
                        }
                    }
                }
                if opcode == op::MULTI {
                    Request::Multi(ops)
                } else {
                    Request::MultiRead(ops)
                }
            }
            op::RECONFIG => Request::Reconfig(ReconfigRequest::decode(r)?),
            op::CHECK_WATCHES => Request::CheckWatches {
                path: r.string()?,
                watcher_type: r.i32()?,
            },
            op::REMOVE_WATCHES => Request::RemoveWatches {
                path: r.string()?,
                watcher_type: r.i32()?,
            },
            op::AUTH => Request::Auth {
                auth_type: r.i32()?,
                scheme: r.string()?,
                auth: r.bytes()?,
            },
            op::SET_WATCHES | op::SET_WATCHES2 => {
                let mut sw = SetWatches {
                    relative_zxid: r.i64()?,
                    data: r.strings()?,
                    exist: r.strings()?,
                    child: r.strings()?,
                    ..Default::default()
                };
                if opcode == op::SET_WATCHES2 {
                    sw.persistent = r.strings()?;
                    sw.persistent_recursive = r.strings()?;
                }
                Request::SetWatches(sw)
            }
            op::SASL => {
                while !r.is_empty() {
                    r.bool()?;
                }
                Request::Sasl
            }
            op::GET_EPHEMERALS => Request::GetEphemerals {
                prefix: r.string()?,
            },
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber { path: r.string()? },
            op::ADD_WATCH => Request::AddWatch {
                path: r.string()?,
                mode: r.i32()?,
            },
            op::WHO_AM_I => Request::WhoAmI,
            op::CLOSE_SESSION => Request::CloseSession,
            other => return Ok(Err(UnknownOpcode(other))),
        };
        Ok(Ok(req))
    }

    /// The opcode this request travels under.
    pub fn opcode(&self) -> i32 {
        match self {
            Request::Create(c) => c.kind.opcode(),
            Request::Delete { .. } => op::DELETE,
            Request::DeleteContainer { .. } => op::DELETE_CONTAINER,
            Request::Exists { .. } => op::EXISTS,
            Request::GetData { .. } => op::GET_DATA,
            Request::SetData { .. } => op::SET_DATA,
            Request::GetAcl { .. } => op::GET_ACL,
            Request::SetAcl { .. } => op::SET_ACL,
            Request::GetChildren { .. } => op::GET_CHILDREN,
            Request::GetChildren2 { .. } => op::GET_CHILDREN2,
            Request::Sync { .. } => op::SYNC,
            Request::Ping => op::PING,
            Request::Check { .. } => op::CHECK,
            Request::Multi(_) => op::MULTI,
            Request::MultiRead(_) => op::MULTI_READ,
            Request::Reconfig(_) => op::RECONFIG,
            Request::CheckWatches { .. } => op::CHECK_WATCHES,
            Request::RemoveWatches { .. } => op::REMOVE_WATCHES,
            Request::Auth { .. } => op::AUTH,
            Request::SetWatches(sw) => {
                if sw.persistent.is_empty() && sw.persistent_recursive.is_empty() {
                    op::SET_WATCHES
                } else {
                    op::SET_WATCHES2
                }
            }
            Request::Sasl => op::SASL,
            Request::GetEphemerals { .. } => op::GET_EPHEMERALS,
            Request::GetAllChildrenNumber { .. } => op::GET_ALL_CHILDREN_NUMBER,
            Request::AddWatch { .. } => op::ADD_WATCH,
            Request::WhoAmI => op::WHO_AM_I,
            Request::CloseSession => op::CLOSE_SESSION,
        }
    }

    /// True for requests that change state and so go to the sequencer core.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create(_)
                | Request::Delete { .. }
                | Request::DeleteContainer { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Multi(_)
                | Request::CloseSession
                | Request::Sync { .. }
                | Request::Reconfig(_)
        )
    }

    /// One whole request frame as a client sends it (length prefix, header, body);
    /// used by tests, benches and tools that act as clients.
    pub fn frame(&self, xid: i32) -> Vec<u8> {
        let mut v = Vec::new();
        let at = super::jute::begin_frame(&mut v);
        RequestHeader {
            xid,
            opcode: self.opcode(),
        }
        .encode(&mut v);
        self.encode_body(&mut v);
        super::jute::end_frame(&mut v, at);
        v
    }

    /// Encodes the request body (no header); used by tests and tools that act as clients.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Request::Create(c) => {
                out.put_str(&c.path);
                out.put_opt_buffer(c.data.as_deref());
                Acl::encode_list(&c.acl, out);
                out.put_i32(c.flags);
                if c.kind == CreateKind::Ttl {
                    out.put_i64(c.ttl);
                }
            }
            Request::Delete { path, version } | Request::Check { path, version } => {
                out.put_str(path);
                out.put_i32(*version);
            }
            Request::DeleteContainer { path }
            | Request::GetAcl { path }
            | Request::Sync { path }
            | Request::GetAllChildrenNumber { path }
            | Request::GetEphemerals { prefix: path } => out.put_str(path),
            Request::Exists { path, watch }
            | Request::GetData { path, watch }
            | Request::GetChildren { path, watch }
            | Request::GetChildren2 { path, watch } => {
                out.put_str(path);
                out.put_bool(*watch);
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                out.put_str(path);
                out.put_opt_buffer(data.as_deref());
                out.put_i32(*version);
            }
            Request::SetAcl { path, acl, version } => {
                out.put_str(path);
                Acl::encode_list(acl, out);
                out.put_i32(*version);
            }
            Request::Multi(ops) | Request::MultiRead(ops) => {
                for o in ops {
                    out.put_i32(o.opcode());
                    out.put_bool(false);
                    out.put_i32(-1);
                    o.encode_body(out);
                }
                out.put_i32(-1);
                out.put_bool(true);
                out.put_i32(-1);
            }
            Request::CheckWatches { path, watcher_type }
            | Request::RemoveWatches { path, watcher_type } => {
                out.put_str(path);
                out.put_i32(*watcher_type);
            }
            Request::AddWatch { path, mode } => {
                out.put_str(path);
                out.put_i32(*mode);
            }
            Request::Auth {
                auth_type,
                scheme,
                auth,
            } => {
                out.put_i32(*auth_type);
                out.put_str(scheme);
                out.put_buffer(auth);
            }
            Request::SetWatches(sw) => {
                out.put_i64(sw.relative_zxid);
                out.put_strings(&sw.data);
                out.put_strings(&sw.exist);
                out.put_strings(&sw.child);
                if self.opcode() == op::SET_WATCHES2 {
                    out.put_strings(&sw.persistent);
                    out.put_strings(&sw.persistent_recursive);
                }
            }
            Request::Reconfig(rr) => rr.encode(out),
            Request::Ping | Request::Sasl | Request::WhoAmI | Request::CloseSession => {}
        }
    }
}

/// `ReconfigRequest{ustring joiningServers; ustring leavingServers; ustring
/// newMembers; long curConfigId}`: an incremental change (comma-separated
/// `server.N=…` joiners, comma-separated leaving ids) or a whole new member list;
/// `cur_config_id` -1 means any version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconfigRequest {
    pub joining: Option<String>,
    pub leaving: Option<String>,
    pub new_members: Option<String>,
    pub cur_config_id: i64,
}

impl ReconfigRequest {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ReconfigRequest {
            joining: r.ustring()?.map(str::to_string),
            leaving: r.ustring()?.map(str::to_string),
            new_members: r.ustring()?.map(str::to_string),
            cur_config_id: r.i64()?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for s in [&self.joining, &self.leaving, &self.new_members] {
            match s {
                Some(s) => out.put_str(s),
                None => out.put_null(),
            }
        }
        out.put_i64(self.cur_config_id);
    }
}

/// The handshake's first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// `None` when the client sent the older 44-byte form without the flag.
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    /// What a client sends to start a new session asking for `timeout_ms`: no
    /// session, no zxid seen, an empty password, not read-only.
    pub fn new_session(timeout_ms: i32) -> Self {
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: Some(false),
        }
    }

    /// The whole handshake frame as a client sends it (length prefix included).
    pub fn frame(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let at = super::jute::begin_frame(&mut v);
        self.encode(&mut v);
        super::jute::end_frame(&mut v, at);
        v
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.i32()?;
        let last_zxid_seen = r.i64()?;
        let timeout_ms = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.bytes()?;
        let read_only = if r.is_empty() { None } else { Some(r.bool()?) };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.protocol_version);
        out.put_i64(self.last_zxid_seen);
        out.put_i32(self.timeout_ms);
        out.put_i64(self.session_id);
        out.put_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            out.put_bool(ro);
        }
    }
}

/// The handshake's answer. Sent in the same shape (with or without `read_only`)
/// as the request that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    /// The answer for an unknown or expired session, or a wrong password.
    pub fn expired(read_only: Option<bool>) -> Self {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: 0,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: read_only.map(|_| false),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.protocol_version);
        out.put_i32(self.timeout_ms);
        out.put_i64(self.session_id);
        out.put_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            out.put_bool(ro);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ConnectResponse {
            protocol_version: r.i32()?,
            timeout_ms: r.i32()?,
            session_id: r.i64()?,
            passwd: r.bytes()?,
            read_only: if r.is_empty() { None } else { Some(r.bool()?) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::types::CreateMode;

    fn round_trip(req: Request) {
        let mut body = Vec::new();
        req.encode_body(&mut body);
        let got = Request::decode(req.opcode(), &mut Reader::new(&body))
            .unwrap()
            .unwrap();
        assert_eq!(got, req);
    }

    #[test]
    fn requests_round_trip() {
        round_trip(Request::Create(CreateRequest {
            kind: CreateKind::Ttl,
            path: "/a".into(),
            data: Some(b"x".to_vec()),
            acl: Acl::open(),
            flags: CreateMode::PersistentWithTtl.flags(),
            ttl: 500,
        }));
        round_trip(Request::Multi(vec![
            Request::Check {
                path: "/a".into(),
                version: 1,
            },
            Request::Delete {
                path: "/a".into(),
                version: -1,
            },
        ]));
        round_trip(Request::SetWatches(SetWatches {
            relative_zxid: 9,
            data: vec!["/d".into()],
            persistent_recursive: vec!["/r".into()],
            ..Default::default()
        }));
        round_trip(Request::GetData {
            path: "/x".into(),
            watch: true,
        });
    }

    #[test]
    fn null_data_survives_decoding_in_create_set_data_and_multi() {
        let create = |data: Option<Vec<u8>>| {
            Request::Create(CreateRequest {
                kind: CreateKind::Create2,
                path: "/n".into(),
                data,
                acl: Acl::open(),
                flags: 0,
                ttl: -1,
            })
        };
        let set = |data: Option<Vec<u8>>| Request::SetData {
            path: "/n".into(),
            data,
            version: -1,
        };
        for data in [None, Some(Vec::new())] {
            round_trip(create(data.clone()));
            round_trip(set(data.clone()));
            round_trip(Request::Multi(vec![create(data.clone()), set(data)]));
        }
        // The null buffer is the 4 bytes ffffffff right after the path.
        let mut body = Vec::new();
        create(None).encode_body(&mut body);
        assert_eq!(&body[6..10], &[0xff; 4]);
    }

    #[test]
    fn connect_request_with_and_without_read_only() {
        let mut c = ConnectRequest::new_session(30000);
        let mut v = Vec::new();
        c.encode(&mut v);
        assert_eq!(v.len(), 45);
        assert_eq!(ConnectRequest::decode(&mut Reader::new(&v)).unwrap(), c);
        c.read_only = None;
        let mut v = Vec::new();
        c.encode(&mut v);
        assert_eq!(v.len(), 44);
        assert_eq!(ConnectRequest::decode(&mut Reader::new(&v)).unwrap(), c);
    }

    #[test]
    fn unknown_opcode_is_reported() {
        assert_eq!(
            Request::decode(999, &mut Reader::new(&[])).unwrap(),
            Err(UnknownOpcode(999))
        );
    }
}
