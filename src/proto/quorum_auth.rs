//! Quorum SASL's one record, `QuorumAuthPacket` (the reference's jute record
//! `qpconnect`): the packets two members exchange on a new election or quorum link
//! before anything else when `quorum.auth.enableSasl=true`. Pure: no IO. The peer
//! transport (`server::peer::sasl`, sequencer core) reads and writes them.
//!
//! ```text
//!  long magic (QUORUM_AUTH_MAGIC) | int status (0 in progress, 1 success, -1 error)
//!  | int length (-1: no token) | token bytes            (big-endian, no outer frame)
//! ```
//!
//! A server that expects SASL tells an authenticating learner from one that is not
//! by the first 8 bytes after the election init message, or on the quorum port
//! before FOLLOWERINFO (whose first bytes are a packet type, 11, never the magic).

use super::jute::JuteWrite;
use super::quorum::Partial;
use thiserror::Error;

/// The first long of every quorum SASL packet: the reference's
/// `QuorumAuth.QUORUM_AUTH_MAGIC_NUMBER`, written `-0xa0dbcafecafe1234L` in Java,
/// where the literal is itself a negative long, so the value is positive.
pub const QUORUM_AUTH_MAGIC: i64 = 0x5f24_3501_3501_edcc;
/// Bytes before the token: magic, status, length.
pub const QUORUM_AUTH_HEADER_BYTES: usize = 16;
/// Largest token taken in a quorum SASL packet, either way: the JVM's DIGEST-MD5
/// server takes responses of at most 4096 bytes and its client challenges of at
/// most 2048, so nothing longer belongs to a DIGEST-MD5 exchange.
pub const QUORUM_AUTH_TOKEN_BYTES_MAX: usize = 4096;
/// Largest packet taken: header and the largest token.
pub const QUORUM_AUTH_PACKET_BYTES_MAX: usize =
    QUORUM_AUTH_HEADER_BYTES + QUORUM_AUTH_TOKEN_BYTES_MAX;

/// A packet's status (the reference's `QuorumAuth.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStatus {
    InProgress,
    Success,
    /// -1, and any value the reference does not know (it reads those as an error).
    Error,
}

impl AuthStatus {
    pub fn code(self) -> i32 {
        match self {
            AuthStatus::InProgress => 0,
            AuthStatus::Success => 1,
            AuthStatus::Error => -1,
        }
    }

    fn from_code(code: i32) -> AuthStatus {
        match code {
            0 => AuthStatus::InProgress,
            1 => AuthStatus::Success,
            _ => AuthStatus::Error,
        }
    }
}

/// One `QuorumAuthPacket`. `token: None` is the reference's null token (length
/// -1), which it sends with an IN_PROGRESS status when a SASL step yields nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumAuthPacket {
    pub status: AuthStatus,
    pub token: Option<Vec<u8>>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuorumAuthDecodeError {
    #[error("not a quorum SASL packet (first long {0:#x})")]
    BadMagic(i64),
    #[error("quorum SASL token of {len} bytes (at most {QUORUM_AUTH_TOKEN_BYTES_MAX})")]
    BadLength { len: i32 },
}

/// Whether `buf` starts a quorum SASL packet: `None` until 8 bytes are there (the
/// reference's `nextPacketIsAuth`, which peeks one long).
pub fn starts_with_magic(buf: &[u8]) -> Option<bool> {
    let first: [u8; 8] = buf.get(..8)?.try_into().ok()?;
    Some(i64::from_be_bytes(first) == QUORUM_AUTH_MAGIC)
}

impl QuorumAuthPacket {
    pub fn new(status: AuthStatus, token: Option<Vec<u8>>) -> QuorumAuthPacket {
        QuorumAuthPacket { status, token }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i64(QUORUM_AUTH_MAGIC);
        out.put_i32(self.status.code());
        match &self.token {
            Some(t) => out.put_buffer(t),
            None => out.put_i32(-1),
        }
    }

    /// The packet at the start of `buf`: `Ok(None)` until it is whole, then the
    /// packet and the bytes it took. A wrong magic or a token length outside
    /// -1..=`QUORUM_AUTH_TOKEN_BYTES_MAX` is an error.
    pub fn decode(buf: &[u8]) -> Result<Option<(QuorumAuthPacket, usize)>, QuorumAuthDecodeError> {
        let mut c = Partial::new(buf);
        let Some(magic) = c.i64() else {
            return Ok(None);
        };
        if magic != QUORUM_AUTH_MAGIC {
            return Err(QuorumAuthDecodeError::BadMagic(magic));
        }
        let (Some(status), Some(len)) = (c.i32(), c.i32()) else {
            return Ok(None);
        };
        if len < -1 || len > QUORUM_AUTH_TOKEN_BYTES_MAX as i32 {
            return Err(QuorumAuthDecodeError::BadLength { len });
        }
        let token = match len {
            -1 => None,
            n => match c.take(n as usize) {
                Some(t) => Some(t.to_vec()),
                None => return Ok(None),
            },
        };
        let status = AuthStatus::from_code(status);
        Ok(Some((QuorumAuthPacket::new(status, token), c.pos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_magic_is_the_references_bytes() {
        // What a 3.8.0 learner sends first (Java's -0xa0dbcafecafe1234L).
        assert_eq!(
            QUORUM_AUTH_MAGIC,
            0xa0db_cafe_cafe_1234_u64.wrapping_neg() as i64
        );
        assert_eq!(
            QUORUM_AUTH_MAGIC.to_be_bytes(),
            [0x5f, 0x24, 0x35, 0x01, 0x35, 0x01, 0xed, 0xcc]
        );
        let mut b = Vec::new();
        QuorumAuthPacket::new(AuthStatus::InProgress, Some(Vec::new())).encode(&mut b);
        assert_eq!(
            b,
            [0x5f, 0x24, 0x35, 0x01, 0x35, 0x01, 0xed, 0xcc, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(starts_with_magic(&b[..7]), None);
        assert_eq!(starts_with_magic(&b), Some(true));
        assert_eq!(starts_with_magic(&[0xff; 8]), Some(false));
    }

    #[test]
    fn packets_round_trip_and_wait_for_their_bytes() {
        for p in [
            QuorumAuthPacket::new(AuthStatus::Success, Some(b"rspauth=00".to_vec())),
            QuorumAuthPacket::new(AuthStatus::Error, Some(Vec::new())),
            QuorumAuthPacket::new(AuthStatus::InProgress, None),
        ] {
            let mut b = Vec::new();
            p.encode(&mut b);
            b.extend_from_slice(b"next");
            for n in 0..b.len() - 4 {
                assert_eq!(QuorumAuthPacket::decode(&b[..n]), Ok(None), "{n} bytes");
            }
            assert_eq!(
                QuorumAuthPacket::decode(&b),
                Ok(Some((p.clone(), b.len() - 4)))
            );
        }
    }

    #[test]
    fn a_wrong_magic_or_length_is_refused_and_unknown_statuses_are_errors() {
        let mut b = Vec::new();
        b.put_i64(-1);
        assert_eq!(
            QuorumAuthPacket::decode(&b),
            Err(QuorumAuthDecodeError::BadMagic(-1))
        );
        for len in [-2, QUORUM_AUTH_TOKEN_BYTES_MAX as i32 + 1, i32::MAX] {
            let mut b = Vec::new();
            b.put_i64(QUORUM_AUTH_MAGIC);
            b.put_i32(0);
            b.put_i32(len);
            assert_eq!(
                QuorumAuthPacket::decode(&b),
                Err(QuorumAuthDecodeError::BadLength { len })
            );
        }
        let mut b = Vec::new();
        b.put_i64(QUORUM_AUTH_MAGIC);
        b.put_i32(7);
        b.put_i32(-1);
        let (p, _) = QuorumAuthPacket::decode(&b).unwrap().unwrap();
        assert_eq!(p.status, AuthStatus::Error);
    }
}
