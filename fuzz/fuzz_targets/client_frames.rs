//! A client's bytes on the client port, decoded as a shard does (`Shard::on_bytes`):
//! a four-letter word or length-prefixed frames of at most jute.maxbuffer; the first
//! frame a ConnectRequest, each later one a RequestHeader and its request
//! (`Request::decode`), an op-102 frame a SASL token for the connection's DIGEST-MD5
//! exchange. Properties: no panic; every decoded request and ConnectRequest encodes
//! and decodes back to itself; allocation bounded by the input.

#![no_main]

use corral::auth::DigestServer;
use corral::proto::{op, ConnectRequest, Reader, Request, RequestHeader};
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

/// The shard's frame bound at the default jute.maxbuffer.
const FRAME_BYTES_MAX: usize = 0xfffff;
/// `config::FOUR_LETTER_WORDS`, which a shard answers instead of a frame.
fn is_four_letter_word(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok_and(|w| corral::config::FOUR_LETTER_WORDS.contains(&w))
}

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let mut conn = Conn::default();
    let mut at = 0;
    while let Some(body) = next_frame(data, &mut at) {
        if !conn.on_frame(body) {
            break;
        }
    }
});

/// The next frame's body, as `on_bytes` splits them; `None` at a four-letter word,
/// a length outside the bound (the shard closes) or an incomplete frame (it waits).
fn next_frame<'a>(data: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = &data[*at..];
    let head = rest.get(..4)?;
    if *at == 0 && is_four_letter_word(head) {
        return None;
    }
    let len = i32::from_be_bytes(head.try_into().unwrap());
    if len < 0 || len as usize > FRAME_BYTES_MAX {
        return None;
    }
    let body = rest.get(4..4 + len as usize)?;
    *at += 4 + len as usize;
    Some(body)
}

#[derive(Default)]
struct Conn {
    connected: bool,
    sasl: DigestServer,
}

impl Conn {
    /// False where the shard closes the connection.
    fn on_frame(&mut self, body: &[u8]) -> bool {
        if !self.connected {
            self.connected = true;
            return on_connect(body);
        }
        let mut r = Reader::new(body);
        let Ok(hdr) = RequestHeader::decode(&mut r) else {
            return false;
        };
        if hdr.opcode == op::SASL {
            return self.on_sasl(&mut r);
        }
        match Request::decode(hdr.opcode, &mut r) {
            Ok(Ok(req)) => {
                round_trip(&req);
                let _ = req.is_write();
                true
            }
            // Unknown opcode: answered, then closed.
            Ok(Err(_)) => false,
            // Malformed: MarshallingError, the connection stays.
            Err(_) => true,
        }
    }

    fn on_sasl(&mut self, r: &mut Reader<'_>) -> bool {
        let Ok(Some(token)) = r.buffer() else {
            return false;
        };
        let mut random = |b: &mut [u8]| b.fill(0x5a);
        let password = |user: &str| (user == "bob").then(|| "bobsecret".to_string());
        self.sasl.evaluate(token, &mut random, &password).is_ok()
    }
}

fn on_connect(body: &[u8]) -> bool {
    let Ok(req) = ConnectRequest::decode(&mut Reader::new(body)) else {
        return false;
    };
    let mut out = Vec::new();
    req.encode(&mut out);
    let back = ConnectRequest::decode(&mut Reader::new(&out)).expect("re-decode connect");
    assert_eq!(back, req);
    true
}

fn round_trip(req: &Request) {
    let mut out = Vec::new();
    req.encode_body(&mut out);
    let mut r = Reader::new(&out);
    let back = Request::decode(req.opcode(), &mut r)
        .expect("re-decode request")
        .expect("known opcode");
    assert_eq!(&back, req);
    assert!(r.is_empty(), "re-decode left {} bytes", r.remaining());
}
