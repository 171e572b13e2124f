//! Lexers for the two text shapes configuration arrives in; they turn text into
//! `Entry { line, key, value }` and decide nothing about what a key means. Pure: no
//! IO, no clock. Run on the main thread at start-up (zoo.cfg, the dynamic config
//! file) and on whichever core receives a peer's config text (NEWLEADER,
//! notifications, reconfig) through `QuorumVerifier::parse_text`.
//!
//! - `zoo_cfg`: corral's strict zoo.cfg syntax, `key=value` per line, `#` comments,
//!   blank lines; anything else is an error naming the line.
//! - `properties`: text read as `java.util.Properties.load` reads it (what the
//!   reference uses for the dynamic config file and for config text from peers):
//!   `#`/`!` comments, `=`, `:` or whitespace between key and value, backslash
//!   continuations and escapes.

use super::ConfigError;

/// One `key=value` setting and the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Splits zoo.cfg text into entries in file order; both sides of `=` are trimmed.
pub(crate) fn zoo_cfg(text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(ConfigError::Syntax {
                line,
                text: t.to_string(),
            });
        };
        out.push(Entry {
            line,
            key: k.trim().to_string(),
            value: v.trim().to_string(),
        });
    }
    Ok(out)
}

/// Why a properties text could not be read (only a bad `\uXXXX` escape can fail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: malformed \\uxxxx escape")]
pub(crate) struct PropertiesError {
    pub line: usize,
}

/// Reads text as Java properties: entries in text order (a later duplicate key wins
/// when the caller folds them into a map, as in `Properties`).
pub(crate) fn properties(text: &str) -> Result<Vec<Entry>, PropertiesError> {
    let mut out = Vec::new();
    for (line, logical) in logical_lines(text) {
        let (key, value) = split_key_value(&logical);
        out.push(Entry {
            line,
            key: unescape(key).ok_or(PropertiesError { line })?,
            value: unescape(value).ok_or(PropertiesError { line })?,
        });
    }
    Ok(out)
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Joins continued lines (an odd number of trailing backslashes) and drops blank and
/// comment lines; yields each logical line with the number of its first natural line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let lines = split_natural(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = i + 1;
        let start = lines[i].trim_start_matches(is_blank);
        i += 1;
        if start.is_empty() || start.starts_with('#') || start.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut part = start;
        loop {
            if !ends_continued(part) {
                logical.push_str(part);
                break;
            }
            logical.push_str(&part[..part.len() - 1]);
            match lines.get(i) {
                Some(next) => {
                    part = next.trim_start_matches(is_blank);
                    i += 1;
                }
                None => break,
            }
        }
        out.push((first, logical));
    }
    out
}

/// Natural lines end at `\n`, `\r` or `\r\n` (one terminator), so line numbers
/// match what an editor shows.
fn split_natural(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(at) => {
                out.push(&rest[..at]);
                let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[at + skip..];
            }
            None => {
                out.push(rest);
                rest = "";
            }
        }
    }
    out
}

fn ends_continued(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// The key ends at the first unescaped `=`, `:` or blank; blanks and then one `=` or
/// `:` (and blanks after it) separate it from the value. Both still hold escapes.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_blank(c) {
            key_end = at;
            break;
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start_matches(is_blank);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches(is_blank);
    }
    (key, rest)
}

/// Resolves `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\x` (= `x`); `None` on a bad `\u`.
fn unescape(s: &str) -> Option<String> {
    if !s.contains('\\') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let unit = u16::from_str_radix(&hex, 16).ok()?;
                // A lone surrogate cannot be a Rust char; Java would keep it, we
                // substitute U+FFFD as a UTF-8 decoder of Java's output would.
                out.push(char::from_u32(unit as u32).unwrap_or('\u{fffd}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(usize, String, String)> {
        properties(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.line, e.key, e.value))
            .collect()
    }

    #[test]
    fn zoo_cfg_lines_are_trimmed_and_numbered() {
        let e = zoo_cfg("# c\n\n  a = 1 \nb=\n").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].line, e[0].key.as_str(), e[0].value.as_str()),
            (3, "a", "1")
        );
        assert_eq!(
            (e[1].line, e[1].key.as_str(), e[1].value.as_str()),
            (4, "b", "")
        );
        let err = zoo_cfg("a=1\nnope\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config line 2: expected `key=value`, got `nope`"
        );
    }

    #[test]
    fn properties_separators_and_comments_as_java_reads_them() {
        let got = kv("# c\n! c\n  a = 1\nb:2\nc 3\nd\\=x=4\ne=\n\nserver.1 = h:1:2;3\r\nversion=0");
        let want = [
            (3, "a", "1"),
            (4, "b", "2"),
            (5, "c", "3"),
            (6, "d=x", "4"),
            (7, "e", ""),
            (9, "server.1", "h:1:2;3"),
            (10, "version", "0"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(l, k, v)| (*l, k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn properties_continuations_and_escapes() {
        assert_eq!(
            kv("a=one\\\n   two\nb=x\\\\\nc=\\u0041\\t"),
            vec![
                (1, "a".into(), "onetwo".into()),
                (3, "b".into(), "x\\".into()),
                (4, "c".into(), "A\t".into())
            ]
        );
        assert_eq!(
            properties("a=\\u12").unwrap_err(),
            PropertiesError { line: 1 }
        );
        assert_eq!(
            properties("a=\\u+123").unwrap_err(),
            PropertiesError { line: 1 }
        );
        // A continuation at the end of the text just ends the line.
        assert_eq!(kv("a=1\\"), vec![(1, "a".into(), "1".into())]);
    }
}
