//! A certificate's subject as the reference names an `x509` client: Java's
//! `X500Principal.getName()` (RFC 2253 form). Pure: DER bytes in, text out; runs on
//! the shard core whose connection just finished its TLS handshake.
//!
//! ```text
//!  certificate DER ─ subject_rdns ─► RDNs (encoding order) ─ reversed, each
//!  attribute ─ attribute_text ─► "CN=x,OU=y+UID=z,O=\,corp"
//! ```
//!
//! Java's rules, followed here: the RDNs are printed last first, joined by `,`; the
//! attributes of a multi-valued RDN keep their encoding order, joined by `+`. Only
//! the RFC 2253 keywords (CN C L ST O OU STREET DC UID) are used; any other type is
//! printed as its dotted OID with the value as `#` and the lowercase hex of its whole
//! DER encoding, as is a value that is not a directory string. A string value is
//! decoded as UTF-8 whatever its type (as Java 17 does), then has `,=+<>#;"\`
//! escaped with a backslash, NUL as `\00`, and leading and trailing spaces (and
//! CRs) escaped with a backslash.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};
use thiserror::Error;

/// A certificate whose subject could not be read (webpki accepted it, so this is a
/// DER shape corral does not walk).
#[derive(Debug, Error)]
#[error("cannot read the certificate's subject: {0}")]
pub struct SubjectError(String);

impl From<der::Error> for SubjectError {
    fn from(e: der::Error) -> Self {
        SubjectError(e.to_string())
    }
}

/// The subject of the DER certificate `cert`, as Java's `X500Principal.getName()`.
pub fn rfc2253_subject(cert: &[u8]) -> Result<String, SubjectError> {
    let rdns = subject_rdns(cert)?;
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (oid, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute_text(&mut out, oid, value)?;
        }
    }
    Ok(out)
}

type Rdn<'a> = Vec<(ObjectIdentifier, AnyRef<'a>)>;

/// Certificate → tbsCertificate → subject: its RDNs in encoding order.
fn subject_rdns(cert: &[u8]) -> Result<Vec<Rdn<'_>>, SubjectError> {
    let cert = sequence(AnyRef::from_der(cert)?)?;
    let tbs = sequence(SliceReader::new(cert.value())?.decode::<AnyRef>()?)?;
    let mut fields = SliceReader::new(tbs.value())?;
    // [0] EXPLICIT version when present, then serialNumber, signature, issuer and
    // validity come before the subject.
    let first = fields.decode::<AnyRef>()?;
    let has_version =
        matches!(first.tag(), Tag::ContextSpecific { number, .. } if number.value() == 0);
    for _ in 0..if has_version { 4 } else { 3 } {
        fields.decode::<AnyRef>()?;
    }
    let subject = sequence(fields.decode::<AnyRef>()?)?;
    let mut rdns = Vec::new();
    let mut names = SliceReader::new(subject.value())?;
    while !names.is_finished() {
        let set = names.decode::<AnyRef>()?;
        if set.tag() != Tag::Set {
            return Err(SubjectError(format!(
                "an RDN is a {}, not a SET",
                set.tag()
            )));
        }
        rdns.push(attributes(set.value())?);
    }
    Ok(rdns)
}

fn sequence(any: AnyRef<'_>) -> Result<AnyRef<'_>, SubjectError> {
    match any.tag() {
        Tag::Sequence => Ok(any),
        t => Err(SubjectError(format!("expected a SEQUENCE, found {t}"))),
    }
}

/// One RDN's AttributeTypeAndValues, in encoding order.
fn attributes(set: &[u8]) -> Result<Rdn<'_>, SubjectError> {
    let mut out = Vec::new();
    let mut r = SliceReader::new(set)?;
    while !r.is_finished() {
        let atv = sequence(r.decode::<AnyRef>()?)?;
        let mut fields = SliceReader::new(atv.value())?;
        let oid: ObjectIdentifier = fields.decode()?;
        let value: AnyRef = fields.decode()?;
        out.push((oid, value));
    }
    if out.is_empty() {
        return Err(SubjectError("an empty RDN".into()));
    }
    Ok(out)
}

/// The RFC 2253 keywords Java prints by name (`AVAKeyword`, rfc2253Compliant).
const KEYWORDS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// The directory string types Java prints as text (`AVA.isDerString`, not
/// canonical): PrintableString, T61String, IA5String, GeneralString, BMPString,
/// UTF8String.
fn is_directory_string(tag: Tag) -> bool {
    matches!(
        tag,
        Tag::PrintableString
            | Tag::TeletexString
            | Tag::Ia5String
            | Tag::BmpString
            | Tag::Utf8String
    ) || tag.octet() == 0x1b
}

fn attribute_text(
    out: &mut String,
    oid: &ObjectIdentifier,
    value: &AnyRef,
) -> Result<(), SubjectError> {
    let dotted = oid.to_string();
    let keyword = KEYWORDS.iter().find(|(o, _)| *o == dotted).map(|(_, k)| *k);
    out.push_str(keyword.unwrap_or(&dotted));
    out.push('=');
    if keyword.is_some() && is_directory_string(value.tag()) {
        // Java 17 (the reference's runtime here) decodes every string type as UTF-8
        // (a BMPString's UTF-16 too); later JDKs use each type's own charset.
        escape_value(out, &String::from_utf8_lossy(value.value()));
        return Ok(());
    }
    out.push('#');
    for b in value.to_der()? {
        out.push_str(&format!("{b:02x}"));
    }
    Ok(())
}

/// RFC 2253 escaping as Java's `AVA.toRFC2253String` does it.
fn escape_value(out: &mut String, value: &str) {
    const ESCAPEES: &str = ",=+<>#;\"\\";
    let mut escaped: Vec<char> = Vec::with_capacity(value.len());
    for c in value.chars() {
        if ESCAPEES.contains(c) {
            escaped.push('\\');
            escaped.push(c);
        } else if c == '\0' {
            escaped.extend(['\\', '0', '0']);
        } else {
            escaped.push(c);
        }
    }
    let blank = |c: &char| *c == ' ' || *c == '\r';
    let lead = escaped.iter().take_while(|c| blank(c)).count();
    let trail = escaped.iter().rev().take_while(|c| blank(c)).count();
    let n = escaped.len();
    for (i, c) in escaped.into_iter().enumerate() {
        if i < lead || i >= n - trail {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_as_java() {
        let esc = |s: &str| {
            let mut o = String::new();
            escape_value(&mut o, s);
            o
        };
        assert_eq!(esc("plain name"), "plain name");
        assert_eq!(
            esc("a,b=c+d<e>f#g;h\"i\\j"),
            "a\\,b\\=c\\+d\\<e\\>f\\#g\\;h\\\"i\\\\j"
        );
        assert_eq!(esc(" x "), "\\ x\\ ");
        assert_eq!(esc("  "), "\\ \\ ");
        assert_eq!(esc("n\0ul"), "n\\00ul");
        assert_eq!(esc("é"), "é");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x03\x02\x01\x01",
            b"\x30\x80\x00\x00",
            b"\xff\xff",
        ] {
            assert!(rfc2253_subject(bad).is_err());
        }
    }
}
