//! The election port (`proto::election`), read as the peer transport reads it: on an
//! accepted link the dialler's init message first (`InitMessage::decode`, then its
//! addresses), on either link int-length frames (`decode_frame`) whose bodies are
//! notifications (`Notification::decode`, `wire::decode_notification`); a body that
//! does not decode is skipped, a bad frame drops the link. The control byte says
//! whether an init message comes first. Properties: no panic; the init message and
//! every frame are undecided (`Ok(None)`) on each shorter prefix; what decodes
//! re-encodes to itself (the init message and the typed notification after one
//! round, as text is read as Java reads it); allocation bounded by the input.

#![no_main]

use corral::proto::election::{decode_frame, InitMessage, Notification};
use corral::server::peer::wire;
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let (control, mut stream) = corral_fuzz::split_control(data);
    if control & 1 == 0 {
        match InitMessage::decode(stream) {
            Ok(Some((msg, used))) => {
                check_prefixes(&stream[..used], |b| {
                    InitMessage::decode(b).map(|o| o.is_some())
                });
                check_init(&msg);
                stream = &stream[used..];
            }
            _ => return,
        }
    }
    while let Ok(Some((body, used))) = decode_frame(stream) {
        check_prefixes(&stream[..used], |b| decode_frame(b).map(|o| o.is_some()));
        on_body(body);
        stream = &stream[used..];
    }
});

/// Every shorter prefix of a decoded record must be `Ok(false)` (undecided).
fn check_prefixes<E: std::fmt::Debug>(bytes: &[u8], decide: impl Fn(&[u8]) -> Result<bool, E>) {
    for k in 0..bytes.len() {
        let got = decide(&bytes[..k]);
        assert!(
            matches!(got, Ok(false)),
            "prefix {k} of {}: {got:?}",
            bytes.len()
        );
    }
}

fn check_init(msg: &InitMessage) {
    let _ = msg.election_addrs();
    let once = init_round(msg);
    assert_eq!(
        init_round(&once),
        once,
        "init message {msg:?} is not a fixed point"
    );
    if msg.election_addr.is_none() {
        assert_eq!(&once, msg);
    }
}

fn init_round(msg: &InitMessage) -> InitMessage {
    let mut out = Vec::new();
    msg.encode(&mut out);
    let (back, used) = InitMessage::decode(&out)
        .unwrap_or_else(|e| panic!("our own init {msg:?} is refused: {e}"))
        .expect("our own init message is whole");
    assert_eq!(used, out.len());
    back
}

fn on_body(body: &[u8]) {
    if let Ok(n) = Notification::decode(body) {
        let mut frame = Vec::new();
        n.encode_frame(&mut frame);
        let (b, used) = decode_frame(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(
            Notification::decode(b),
            Ok(n.clone()),
            "notification round trip"
        );
    }
    match wire::decode_notification(body) {
        Ok(n) => {
            let once = notification_round(&n);
            assert_eq!(
                notification_round(&once),
                once,
                "typed notification round trip"
            );
        }
        Err(e) => {
            assert!(
                Notification::decode(body).is_err(),
                "typed decode refused: {e}"
            );
        }
    }
}

fn notification_round(n: &corral::zab::Notification) -> corral::zab::Notification {
    let mut frame = Vec::new();
    wire::encode_notification(n, &mut frame);
    let (body, _) = decode_frame(&frame).unwrap().unwrap();
    wire::decode_notification(body).expect("our own notification decodes")
}
