//! A slow or stalled disk for tests: an `LD_PRELOAD` shim around `fdatasync(2)`
//! and `fsync(2)` ([`SHIM_SOURCE`], built with `cc` once per test binary under
//! Cargo's temp dir). A server started with [`preload_env`] runs normally until
//! the test creates its stall file ([`Stall::begin`]); from then on every sync call
//! waits until the file is gone (or only the calls of threads whose name starts
//! with `STALL_SYNC_THREAD`, when that is set), and the first call that waits
//! creates `<file>.hit` ([`Stall::entered`]), so a test knows the server is inside
//! the stalled sync. Works for corral and for the reference's JVM alike (both
//! sync through libc). Runs on the test thread; plain files, no timing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The shim's C source (`stall_sync_shim.c` beside this file).
pub const SHIM_SOURCE: &str = include_str!("stall_sync_shim.c");

/// The shim library, built once per test binary under Cargo's temp dir. Built
/// under a name of this process's own and renamed into place: servers of another
/// test binary may have the previous copy mapped, and overwriting a mapped
/// library in place would crash them.
pub fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let pid = std::process::id();
        let src = dir.join(format!("stall_sync_shim.{pid}.c"));
        let built = dir.join(format!("stall_sync_shim.{pid}.so"));
        let lib = dir.join("stall_sync_shim.so");
        std::fs::write(&src, SHIM_SOURCE).unwrap();
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&built)
            .arg(&src)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| panic!("cannot run cc to build the fsync shim: {e}"));
        assert!(
            out.status.success(),
            "cc failed to build the fsync shim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&src);
        std::fs::rename(&built, &lib).unwrap();
        lib
    })
}

/// A stall: every sync call (of the threads the shim is told to stall) waits
/// while it lives; dropping it lets them go.
pub struct Stall {
    file: PathBuf,
}

impl Stall {
    /// Every sync call the shim watches waits from now until the drop.
    pub fn begin(file: &Path) -> Stall {
        let _ = std::fs::remove_file(hit_marker(file));
        std::fs::write(file, b"").unwrap();
        Stall {
            file: file.to_path_buf(),
        }
    }

    /// True once a sync call has been held by this stall.
    pub fn entered(&self) -> bool {
        hit_marker(&self.file).exists()
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The file the first held sync call creates.
fn hit_marker(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".hit");
    PathBuf::from(s)
}

/// The environment that preloads the shim, stalling on `stall_file` (which the
/// test creates and removes) and, with `only_thread`, only in threads whose name
/// starts with it.
pub fn preload_env(stall_file: &Path, only_thread: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("LD_PRELOAD".to_string(), shim().display().to_string()),
        (
            "STALL_SYNC_FILE".to_string(),
            stall_file.display().to_string(),
        ),
    ];
    if let Some(t) = only_thread {
        env.push(("STALL_SYNC_THREAD".to_string(), t.to_string()));
    }
    env
}
