//! Znode path validation, as the reference's `PathUtils.validatePath` does it.
//! Pure; used by the tree's prepare step and by read handlers on shard cores.

/// Why a path is invalid; the server answers BADARGUMENTS for any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {reason}")]
pub struct InvalidPath {
    pub path: String,
    pub reason: &'static str,
}

/// Validates `path`. `sequential` validates it as the reference does for a
/// sequential create (the path with a digit appended, so a trailing `/` is allowed).
pub fn validate_path(path: &str, sequential: bool) -> Result<(), InvalidPath> {
    let bad = |reason| {
        Err(InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("path length must be > 0");
    }
    if !path.starts_with('/') {
        return bad("path must start with / character");
    }
    if path.len() == 1 {
        // "/" alone; "/" + sequence suffix is fine too.
        return Ok(());
    }
    if path.ends_with('/') && !sequential {
        return bad("path must not end with / character");
    }
    let check = if sequential {
        std::borrow::Cow::Owned(format!("{path}1"))
    } else {
        std::borrow::Cow::Borrowed(path)
    };
    for comp in check[1..].split('/') {
        match comp {
            "" => return bad("empty node name specified"),
            "." | ".." => return bad("relative paths not allowed"),
            _ => {}
        }
    }
    for c in check.chars() {
        let u = c as u32;
        if u == 0 {
            return bad("null character not allowed");
        }
        if (0x1..=0x1f).contains(&u)
            || (0x7f..=0x9f).contains(&u)
            || (0xd800..=0xf8ff).contains(&u)
            || (0xfff0..=0xffff).contains(&u)
        {
            return bad("invalid character");
        }
    }
    Ok(())
}

/// The parent of a valid, non-root path (`/a/b` → `/a`, `/a` → `/`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of a valid path (`/a/b` → `b`, `/` → ``).
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_paths() {
        for p in ["/", "/a", "/a/b", "/zookeeper/quota", "/a.b", "/..a"] {
            assert!(validate_path(p, false).is_ok(), "{p}");
        }
        for p in [
            "", "a", "/a/", "//", "/a//b", "/a/./b", "/a/..", "/a\u{0}b", "/a\u{1}",
        ] {
            assert!(validate_path(p, false).is_err(), "{p:?}");
        }
        assert!(validate_path("/a/", true).is_ok());
        assert!(validate_path("/a//", true).is_err());
    }

    #[test]
    fn parent_and_basename() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
