//! The files dynamic reconfiguration keeps, as ZooKeeper 3.8 writes them with
//! `reconfigEnabled=true` (PEER-PROTOCOL §2 "What happens when reconfig is
//! enabled"; QuorumPeerConfig `writeDynamicConfig`, `editStaticConfig`,
//! `backupOldConfig`; QuorumPeer `setQuorumVerifier`, `setLastSeenQuorumVerifier`):
//!
//! ```text
//!  start-up, members inline in zoo.cfg   zoo.cfg → zoo.cfg.bak (a copy)
//!  a config committed (version v)        zoo.cfg.dynamic.<hex v>: sorted server.N lines,
//!                                        no version line, no trailing newline; zoo.cfg
//!                                        rewritten: its keys minus the membership ones,
//!                                        plus dynamicConfigFile=<canonical path>;
//!                                        zoo.cfg.dynamic.next dropped if it is not newer
//!  a config proposed                     zoo.cfg.dynamic.next: sorted lines, version kept
//! ```
//!
//! The texts are built by pure functions; [`DynamicFiles`] writes them, each file
//! atomically (a `.tmp` sibling, fsync, rename, fsync of the directory). Called by
//! the sequencer core when the replication core says a config is durable-worthy
//! (`zab::Write::CommittedConfig` / `LastSeenConfig`); corral reads them back at
//! the next start-up through `Config::load`.

use super::lex;
use super::quorum::QuorumVerifier;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The lines of a dynamic file: every `key=value` of the verifier's text (the
/// `version` line only when `keep_version`), sorted as strings, joined by `\n`
/// without a trailing one.
pub fn dynamic_file_text(qv: &QuorumVerifier, keep_version: bool) -> String {
    let text = qv.to_text();
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| keep_version || !l.starts_with("version"))
        .collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// zoo.cfg rewritten to point at `dynamic_file`: each key once (its last value, in
/// the order keys first appear), without the membership keys (`server.*`,
/// `group*`, `weight*`, `dynamicConfigFile`, `peerType`) and, when
/// `erase_client_address`, without `clientPort*` (our server line carries the
/// client address then); then `dynamicConfigFile=<dynamic_file>`.
pub fn static_file_text(
    old: &str,
    dynamic_file: &Path,
    erase_client_address: bool,
) -> Result<String, String> {
    let entries = lex::zoo_cfg(old).map_err(|e| e.to_string())?;
    let dropped = |k: &str| {
        [
            "server.",
            "group",
            "weight",
            "dynamicConfigFile",
            "peerType",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || (erase_client_address && k.starts_with("clientPort"))
    };
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for e in entries.iter().filter(|e| !dropped(&e.key)) {
        match keys.iter_mut().find(|(k, _)| *k == e.key) {
            Some(kv) => kv.1 = &e.value,
            None => keys.push((&e.key, &e.value)),
        }
    }
    let mut out = String::new();
    for (k, v) in keys {
        out.push_str(&format!("{k}={v}\n"));
    }
    out.push_str(&format!("dynamicConfigFile={}\n", dynamic_file.display()));
    Ok(out)
}

/// The reconfig files next to one zoo.cfg.
#[derive(Debug, Clone)]
pub struct DynamicFiles {
    config_file: PathBuf,
}

impl DynamicFiles {
    pub fn new(config_file: &Path) -> DynamicFiles {
        DynamicFiles {
            config_file: config_file.to_path_buf(),
        }
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.config_file.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// `zoo.cfg.dynamic.<hex version>`.
    pub fn dynamic_path(&self, version: i64) -> PathBuf {
        self.sibling(&format!(".dynamic.{version:x}"))
    }

    /// `zoo.cfg.dynamic.next`.
    pub fn next_path(&self) -> PathBuf {
        self.sibling(".dynamic.next")
    }

    /// Start-up with the members inline in zoo.cfg: `zoo.cfg.bak`.
    pub fn backup_static(&self) -> std::io::Result<()> {
        let text = std::fs::read(&self.config_file)?;
        write_atomically(&self.sibling(".bak"), &text)
    }

    /// A config committed: its dynamic file, zoo.cfg pointing at it, and the
    /// last-seen file gone when it is no newer (`drop_next`).
    pub fn write_committed(
        &self,
        qv: &QuorumVerifier,
        erase_client_address: bool,
        drop_next: bool,
    ) -> std::io::Result<()> {
        let dynamic = self.dynamic_path(qv.version);
        write_atomically(&dynamic, dynamic_file_text(qv, false).as_bytes())?;
        let canonical = std::fs::canonicalize(&dynamic)?;
        let old = std::fs::read_to_string(&self.config_file)?;
        let text = static_file_text(&old, &canonical, erase_client_address)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        write_atomically(&self.config_file, text.as_bytes())?;
        if drop_next {
            match std::fs::remove_file(self.next_path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// A config proposed: `zoo.cfg.dynamic.next`, version line kept.
    pub fn write_last_seen(&self, qv: &QuorumVerifier) -> std::io::Result<()> {
        write_atomically(&self.next_path(), dynamic_file_text(qv, true).as_bytes())
    }
}

/// `path.tmp`, synced, renamed over `path`, the directory synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qv(text: &str) -> QuorumVerifier {
        QuorumVerifier::parse_text(text).unwrap()
    }

    #[test]
    fn dynamic_files_hold_sorted_lines_without_a_trailing_newline() {
        let v = qv("server.10=h:1:2\nserver.2=h:3:4:observer;127.0.0.1:2181\nversion=1f");
        assert_eq!(
            dynamic_file_text(&v, false),
            "server.10=h:1:2:participant\nserver.2=h:3:4:observer;127.0.0.1:2181"
        );
        assert_eq!(
            dynamic_file_text(&v, true),
            "server.10=h:1:2:participant\nserver.2=h:3:4:observer;127.0.0.1:2181\nversion=1f"
        );
    }

    #[test]
    fn the_static_file_loses_its_members_and_points_at_the_dynamic_one() {
        let old = "# zoo.cfg\ntickTime=200\nreconfigEnabled=false\nclientPort=2181\n\
                   server.1=h:1:2\npeerType=observer\nreconfigEnabled=true\n\
                   group.1=1\ndataDir=/d\n";
        let path = Path::new("/c/zoo.cfg.dynamic.100000000");
        assert_eq!(
            static_file_text(old, path, false).unwrap(),
            "tickTime=200\nreconfigEnabled=true\nclientPort=2181\ndataDir=/d\n\
             dynamicConfigFile=/c/zoo.cfg.dynamic.100000000\n"
        );
        let again = static_file_text(old, path, true).unwrap();
        assert!(!again.contains("clientPort"));
        // Rewriting a rewritten file replaces the pointer.
        let twice = static_file_text(&again, Path::new("/c/zoo.cfg.dynamic.2"), true).unwrap();
        assert_eq!(twice.matches("dynamicConfigFile").count(), 1);
        assert!(twice.ends_with("dynamicConfigFile=/c/zoo.cfg.dynamic.2\n"));
    }

    #[test]
    fn files_are_written_next_to_zoo_cfg_and_read_back_by_config_load() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("zoo.cfg");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("myid"), "1\n").unwrap();
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nreconfigEnabled=true\n\
                 server.1=127.0.0.1:2888:3888;127.0.0.1:2181\n\
                 server.2=127.0.0.1:2889:3889;127.0.0.1:2182\n",
                data.display()
            ),
        )
        .unwrap();
        let files = DynamicFiles::new(&cfg);
        files.backup_static().unwrap();
        assert!(std::fs::read_to_string(dir.path().join("zoo.cfg.bak"))
            .unwrap()
            .contains("server.1="));
        let mut v = crate::config::Config::load(&cfg)
            .unwrap()
            .quorum
            .unwrap()
            .verifier();
        v.version = 0x1_0000_0000;
        let mut next = v.clone();
        next.version = 0x1_0000_0003;
        next.servers.remove(&2);
        files.write_last_seen(&next).unwrap();
        files.write_committed(&v, true, false).unwrap();
        let back = crate::config::Config::load(&cfg).unwrap();
        let q = back.quorum.unwrap();
        assert_eq!(q.version, 0x1_0000_0000);
        assert_eq!(q.servers, v.servers);
        assert_eq!(q.last_seen.as_ref().map(|n| n.version), Some(next.version));
        assert_eq!(back.client_port, 2181, "from our own server line");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(!text.contains("server.") && !text.contains("clientPort"));
        assert_eq!(
            std::fs::read_to_string(files.dynamic_path(0x1_0000_0000)).unwrap(),
            dynamic_file_text(&v, false)
        );
        // Committing the proposed one drops zoo.cfg.dynamic.next.
        files.write_committed(&next, true, true).unwrap();
        assert!(!files.next_path().exists());
        let q = crate::config::Config::load(&cfg).unwrap().quorum.unwrap();
        assert_eq!((q.version, q.servers.len()), (next.version, 1));
    }
}
