//! A small blocking ZooKeeper client for everything outside the measured run:
//! creating the key space before a run, and the four-letter-word probe scripts and
//! tests use for readiness. Runs on the main thread; every socket operation has a
//! timeout, so a dead server is an error, never a hang.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use corral::proto::jute::{begin_frame, end_frame};
use corral::proto::{
    op, ConnectRequest, ConnectResponse, DecodeError, JuteWrite, Reader, ReplyHeader,
};
use thiserror::Error;

/// Requests written before reading their replies, during setup.
pub const SETUP_PIPELINE_MAX: usize = 512;
const ERR_NODE_EXISTS: i32 = -110;
/// The session timeout the setup client asks for, in ms.
pub const SESSION_TIMEOUT_MS: i32 = 30_000;
/// How long the key-space setup waits for one reply: two thirds of the session
/// timeout, a ZooKeeper client's own read timeout, so a server that pauses (a
/// reference JVM's collection while a million znodes go in) is waited for.
pub const SETUP_READ_TIMEOUT: Duration = Duration::from_millis(SESSION_TIMEOUT_MS as u64 * 2 / 3);

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("talking to the server: {0}")]
    Io(#[from] io::Error),
    #[error("the server refused the session")]
    Refused,
    #[error("malformed reply: {0}")]
    Decode(#[from] DecodeError),
    #[error("reply out of order: xid {got}, expected {expected}")]
    Order { expected: i32, got: i32 },
    #[error("{what} {path} failed with ZooKeeper error {code}")]
    Server {
        what: &'static str,
        path: String,
        code: i32,
    },
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, SetupError> {
    let err = |source| SetupError::Connect {
        addr: addr.to_string(),
        source,
    };
    let sa = addr
        .to_socket_addrs()
        .map_err(err)?
        .next()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::InvalidInput, "no address")))?;
    let s = TcpStream::connect_timeout(&sa, timeout).map_err(err)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends a four-letter word (`ruok`, `srvr`, ...) and returns the whole answer.
pub fn four_letter(addr: &str, word: &str, timeout: Duration) -> Result<String, SetupError> {
    let mut s = connect(addr, timeout)?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// One session, used synchronously (with pipelined batches).
pub struct SyncClient {
    stream: TcpStream,
    next_xid: i32,
    pub session_id: i64,
}

impl SyncClient {
    pub fn connect(addr: &str, timeout: Duration) -> Result<SyncClient, SetupError> {
        let mut stream = connect(addr, timeout)?;
        stream.write_all(&ConnectRequest::new_session(SESSION_TIMEOUT_MS).frame())?;
        let frame = read_frame(&mut stream)?;
        let resp = ConnectResponse::decode(&mut Reader::new(&frame))?;
        if resp.session_id == 0 {
            return Err(SetupError::Refused);
        }
        Ok(SyncClient {
            stream,
            next_xid: 1,
            session_id: resp.session_id,
        })
    }

    /// Waits up to `timeout` for each reply from here on (the connect timeout until
    /// then).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> Result<(), SetupError> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// Sends every request (opcode, body) pipelined, then reads the replies in
    /// order; returns (error code, reply body) per request.
    pub fn batch(&mut self, reqs: &[(i32, Vec<u8>)]) -> Result<Vec<(i32, Vec<u8>)>, SetupError> {
        let mut replies = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(SETUP_PIPELINE_MAX) {
            let mut out = Vec::new();
            let first = self.next_xid;
            for (opcode, body) in chunk {
                let at = begin_frame(&mut out);
                out.put_i32(self.next_xid);
                out.put_i32(*opcode);
                out.extend_from_slice(body);
                end_frame(&mut out, at);
                self.next_xid += 1;
            }
            self.stream.write_all(&out)?;
            let mut expected = first;
            while expected < self.next_xid {
                let frame = read_frame(&mut self.stream)?;
                let mut r = Reader::new(&frame);
                let h = ReplyHeader::decode(&mut r)?;
                if h.xid == -1 {
                    continue; // a watch event: setup sets no watches, ignore
                }
                if h.xid != expected {
                    return Err(SetupError::Order {
                        expected,
                        got: h.xid,
                    });
                }
                replies.push((h.err, frame[r.position()..].to_vec()));
                expected += 1;
            }
        }
        Ok(replies)
    }

    /// Creates each persistent node with `value`; an existing node gets `value` set
    /// instead, so every key ends up with the same value size.
    pub fn ensure_nodes(&mut self, paths: &[String], value: &[u8]) -> Result<(), SetupError> {
        let creates: Vec<(i32, Vec<u8>)> = paths
            .iter()
            .map(|p| (op::CREATE, create_body(p, value, 0)))
            .collect();
        let res = self.batch(&creates)?;
        let mut sets = Vec::new();
        let mut set_paths = Vec::new();
        for (p, (err, _)) in paths.iter().zip(res) {
            match err {
                0 => {}
                ERR_NODE_EXISTS => {
                    let mut b = Vec::new();
                    b.put_str(p);
                    b.put_buffer(value);
                    b.put_i32(-1);
                    sets.push((op::SET_DATA, b));
                    set_paths.push(p);
                }
                code => {
                    return Err(SetupError::Server {
                        what: "create",
                        path: p.clone(),
                        code,
                    })
                }
            }
        }
        for (p, (err, _)) in set_paths.iter().zip(self.batch(&sets)?) {
            if err != 0 {
                return Err(SetupError::Server {
                    what: "setData",
                    path: p.to_string(),
                    code: err,
                });
            }
        }
        Ok(())
    }

    /// Sends closeSession and waits for its answer.
    pub fn close(mut self) -> Result<(), SetupError> {
        self.batch(&[(op::CLOSE_SESSION, Vec::new())])?;
        Ok(())
    }
}

/// The body of a create request with an open ACL.
pub fn create_body(path: &str, value: &[u8], flags: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(path.len() + value.len() + 40);
    b.put_str(path);
    b.put_buffer(value);
    b.put_i32(1);
    b.put_i32(corral::proto::perms::ALL);
    b.put_str("world");
    b.put_str("anyone");
    b.put_i32(flags);
    b
}

fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>, SetupError> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > crate::conn::FRAME_BYTES_MAX {
        return Err(SetupError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len}"),
        )));
    }
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}
