//! A client's DIGEST-MD5 response token (`auth::sasl`, RFC 2831), in two modes picked
//! by the control byte:
//! - raw: the bytes are the client's second token, after the server's challenge;
//! - built: the bytes choose a user name, cnonce, authzid and the token's spelling
//!   (key case, quoting, escapes, whitespace, optional directives), and the target
//!   computes the right digest itself from RFC 2831's formulas. The server must then
//!   authenticate exactly the user (or refuse a malformed principal), and its rspauth
//!   must be the RFC's.
//!
//! Both: no panic, a token over the bound fails as TooLong, and a finished exchange
//! refuses any further token.

#![no_main]

use corral::auth::sasl::{SASL_DIGEST_URI, SASL_REALM, SASL_RESPONSE_BYTES_MAX};
use corral::auth::{DigestServer, Outcome, SaslError};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use md5::{Digest as _, Md5};

corral_fuzz::bounded_allocator!();

const PASSWORD: &str = "pässwörd";

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let (control, rest) = corral_fuzz::split_control(data);
    let (mut server, nonce) = challenged();
    if control & 1 == 0 {
        raw(&mut server, rest);
    } else {
        let _ = built(&mut server, &nonce, &mut Unstructured::new(rest));
    }
    let again = server.evaluate(b"", &mut |b| b.fill(0), &|_| None);
    assert_eq!(again, Err(SaslError::Finished));
});

fn password(_user: &str) -> Option<String> {
    Some(PASSWORD.to_string())
}

/// A server that has sent its challenge, and the nonce in it.
fn challenged() -> (DigestServer, String) {
    let mut s = DigestServer::new();
    let Ok(Outcome::Challenge(c)) = s.evaluate(b"", &mut |b| b.fill(0xa5), &password) else {
        panic!("the first token must be answered with a challenge");
    };
    let c = String::from_utf8(c).expect("challenge is text");
    let nonce = c
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("challenge carries a nonce")
        .to_string();
    (s, nonce)
}

fn raw(server: &mut DigestServer, token: &[u8]) {
    let got = server.evaluate(token, &mut |b| b.fill(0), &password);
    if token.len() > SASL_RESPONSE_BYTES_MAX {
        assert_eq!(got, Err(SaslError::TooLong { bytes: token.len() }));
    }
}

/// How one directive's value is written.
fn put_value(tok: &mut Vec<u8>, v: &[u8], u: &mut Unstructured<'_>) -> ArbResult<()> {
    let bare_ok = !v.is_empty() && !v.iter().any(|&b| b"\", \t\r\n\\".contains(&b));
    if bare_ok && u.arbitrary::<bool>()? {
        tok.extend_from_slice(v);
        return Ok(());
    }
    tok.push(b'"');
    for &b in v {
        if b == b'"' || b == b'\\' || u.ratio(1, 8)? {
            tok.push(b'\\');
        }
        tok.push(b);
    }
    tok.push(b'"');
    Ok(())
}

fn put_key(tok: &mut Vec<u8>, key: &str, u: &mut Unstructured<'_>) -> ArbResult<()> {
    for c in key.bytes() {
        let upper = u.ratio(1, 4)?;
        tok.push(if upper { c.to_ascii_uppercase() } else { c });
    }
    Ok(())
}

fn separator(u: &mut Unstructured<'_>) -> ArbResult<&'static [u8]> {
    Ok(*u.choose(&[&b","[..], b", ", b",\r\n ", b" ,", b",,"])?)
}

/// Text for a name or cnonce: any non-control characters, from the input.
fn text(u: &mut Unstructured<'_>, chars_max: usize) -> ArbResult<String> {
    let n = u.int_in_range(1..=chars_max)?;
    let mut s = String::new();
    for _ in 0..n {
        let c: char = u.arbitrary()?;
        if !c.is_control() {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('x');
    }
    Ok(s)
}

struct Response {
    user: String,
    cnonce: String,
    authzid: Option<String>,
}

/// Builds a correct response, sends it, and checks the outcome.
fn built(server: &mut DigestServer, nonce: &str, u: &mut Unstructured<'_>) -> ArbResult<()> {
    let r = Response {
        user: text(u, 24)?,
        cnonce: text(u, 24)?,
        authzid: if u.arbitrary()? {
            Some(text(u, 16)?)
        } else {
            None
        },
    };
    let token = spell(&r, nonce, u)?;
    let got = server.evaluate(&token, &mut |b| b.fill(0), &password);
    if token.len() > SASL_RESPONSE_BYTES_MAX {
        assert_eq!(got, Err(SaslError::TooLong { bytes: token.len() }));
        return Ok(());
    }
    if r.user.contains('@') && !corral::auth::sasl::is_principal(&r.user) {
        assert_eq!(got, Err(SaslError::BadUserName(r.user.clone())));
        return Ok(());
    }
    let expected = Outcome::Authenticated {
        rspauth: format!("rspauth={}", digest("", &r, nonce)).into_bytes(),
        user: r.user.clone(),
    };
    assert_eq!(
        got,
        Ok(expected),
        "token {:?}",
        String::from_utf8_lossy(&token)
    );
    Ok(())
}

/// The directives in an order and spelling the input picks.
fn spell(r: &Response, nonce: &str, u: &mut Unstructured<'_>) -> ArbResult<Vec<u8>> {
    let response = digest("AUTHENTICATE", r, nonce);
    let mut directives: Vec<(&str, Vec<u8>)> = vec![
        ("username", r.user.clone().into_bytes()),
        ("realm", SASL_REALM.into()),
        ("nonce", nonce.into()),
        ("cnonce", r.cnonce.clone().into_bytes()),
        ("digest-uri", SASL_DIGEST_URI.into()),
        ("response", response.into_bytes()),
    ];
    if let Some(z) = &r.authzid {
        directives.push(("authzid", z.clone().into_bytes()));
    }
    let optional: [(&str, &[u8]); 6] = [
        ("qop", b"auth"),
        ("charset", b"utf-8"),
        ("nc", b"00000001"),
        ("nonce-count", b"00000001"),
        ("maxbuf", b"65536"),
        ("cipher", b"rc4"),
    ];
    for (k, v) in optional {
        if u.arbitrary()? {
            directives.push((k, v.to_vec()));
        }
    }
    // A permutation drawn from the input.
    for i in (1..directives.len()).rev() {
        let j = u.int_in_range(0..=i)?;
        directives.swap(i, j);
    }
    let mut tok = Vec::new();
    for (i, (k, v)) in directives.iter().enumerate() {
        if i > 0 {
            tok.extend_from_slice(separator(u)?);
        }
        put_key(&mut tok, k, u)?;
        tok.extend_from_slice(if u.arbitrary()? { b"=" } else { b" = " });
        put_value(&mut tok, v, u)?;
    }
    Ok(tok)
}

/// ISO-8859-1 when every character fits, UTF-8 otherwise (RFC 2831 §2.1.2.1).
fn latin1_or_utf8(s: &str) -> Vec<u8> {
    match s.chars().map(|c| u8::try_from(c as u32).ok()).collect() {
        Some(latin1) => latin1,
        None => s.as_bytes().to_vec(),
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 2831 §2.1.2.1 response-value, qop=auth, nc=00000001.
fn digest(method: &str, r: &Response, nonce: &str) -> String {
    let mut urp = latin1_or_utf8(&r.user);
    urp.push(b':');
    urp.extend(latin1_or_utf8(SASL_REALM));
    urp.push(b':');
    urp.extend(latin1_or_utf8(PASSWORD));
    let mut a1 = Md5::digest(&urp).to_vec();
    a1.extend_from_slice(format!(":{nonce}:{}", r.cnonce).as_bytes());
    if let Some(z) = &r.authzid {
        a1.extend_from_slice(format!(":{z}").as_bytes());
    }
    let a2 = format!("{method}:{SASL_DIGEST_URI}");
    let kd = format!(
        "{}:{nonce}:00000001:{}:auth:{}",
        hex(&Md5::digest(&a1)),
        r.cnonce,
        hex(&Md5::digest(a2.as_bytes()))
    );
    hex(&Md5::digest(kd.as_bytes()))
}
