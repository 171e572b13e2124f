//! One configuration of the ensemble as the replication core sees it: the
//! reference's `QuorumVerifier` for majority quorums (who votes, who observes, each
//! member's quorum address, the version) together with the exact text peers
//! exchange in notifications, NEWLEADER and reconfig txns (PEER-PROTOCOL §2).
//!
//! A plain immutable value: the core shares it through `Arc` between its committed
//! config, its last-seen (proposed) config, outstanding proposals and the outputs
//! that carry it to the driver. Built from the config layer's `QuorumVerifier`
//! (pure parsing, no IO), so text received from a peer and text written by us agree
//! byte for byte with what the reference prints.

use bytes::Bytes;

use super::types::ServerId;
use crate::config::{HostPort, PeerRole, QuorumTextError, QuorumVerifier};

/// Why a peer's config text cannot be a membership.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Text(#[from] QuorumTextError),
    #[error("the config names no participant")]
    NoVoters,
}

/// A configuration: members, version and the text that says so.
#[derive(Clone, PartialEq, Eq)]
pub struct Membership {
    qv: QuorumVerifier,
    text: Bytes,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Membership(version {:x}, voters {:?}, observers {:?})",
            self.version(),
            self.voters().collect::<Vec<_>>(),
            self.observers().collect::<Vec<_>>()
        )
    }
}

impl Membership {
    /// The membership of a verifier; its text is the reference's `toString`.
    pub fn new(qv: QuorumVerifier) -> Membership {
        let text = Bytes::from(qv.to_text());
        Membership { qv, text }
    }

    /// A config text as a peer sends it (Java properties, UTF-8 with replacement).
    /// A config without participants is refused: no quorum could ever form in it.
    pub fn parse(text: &[u8]) -> Result<Membership, MembershipError> {
        let qv = QuorumVerifier::parse_text(&String::from_utf8_lossy(text))?;
        if qv.voters().next().is_none() {
            return Err(MembershipError::NoVoters);
        }
        Ok(Membership::new(qv))
    }

    pub fn verifier(&self) -> &QuorumVerifier {
        &self.qv
    }

    /// The QuorumVerifier text (`server.N=…` lines, then `version=<hex>`).
    pub fn text(&self) -> &Bytes {
        &self.text
    }

    pub fn version(&self) -> i64 {
        self.qv.version
    }

    /// The same members under another version.
    pub fn with_version(&self, version: i64) -> Membership {
        let mut qv = self.qv.clone();
        qv.version = version;
        Membership::new(qv)
    }

    pub fn is_voter(&self, sid: ServerId) -> bool {
        self.qv
            .servers
            .get(&sid)
            .is_some_and(|s| s.role == PeerRole::Participant)
    }

    pub fn is_observer(&self, sid: ServerId) -> bool {
        self.qv
            .servers
            .get(&sid)
            .is_some_and(|s| s.role == PeerRole::Observer)
    }

    pub fn is_member(&self, sid: ServerId) -> bool {
        self.qv.servers.contains_key(&sid)
    }

    /// Participants, ascending.
    pub fn voters(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.qv.voters().map(|s| s.sid)
    }

    /// Observers, ascending.
    pub fn observers(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.qv.observers().map(|s| s.sid)
    }

    /// Every member, ascending.
    pub fn members(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.qv.servers.keys().copied()
    }

    /// Where `sid` takes learner connections when it leads.
    pub fn quorum_addr(&self, sid: ServerId) -> Option<&HostPort> {
        self.qv.servers.get(&sid).map(|s| &s.quorum)
    }

    /// `QuorumMaj.containsQuorum`: more than half of the voters are in `ids` (each
    /// id counted once).
    pub fn contains_quorum<'a>(&self, ids: impl IntoIterator<Item = &'a ServerId>) -> bool {
        let mut seen: Vec<ServerId> = ids
            .into_iter()
            .copied()
            .filter(|id| self.is_voter(*id))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() > self.voters().count() / 2
    }

    /// `QuorumMaj.equals`: the same version, or else the same members.
    pub fn same_config(&self, other: &Membership) -> bool {
        self.qv.same_config(&other.qv)
    }

    /// A membership on 127.0.0.1 (quorum port 2887 + sid, election port 3887 + sid),
    /// for tests and the simulator.
    #[cfg(any(test, feature = "sim"))]
    pub fn local(voters: &[ServerId], observers: &[ServerId], version: i64) -> Membership {
        let mut text = String::new();
        for (ids, role) in [(voters, "participant"), (observers, "observer")] {
            for sid in ids {
                text.push_str(&format!(
                    "server.{sid}=127.0.0.1:{}:{}:{role}\n",
                    2887 + sid,
                    3887 + sid
                ));
            }
        }
        text.push_str(&format!("version={version:x}"));
        Membership::parse(text.as_bytes()).expect("a well-formed local membership")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_counts_distinct_voters_only() {
        let m = Membership::local(&[1, 2, 3], &[4], 0);
        assert!(!m.contains_quorum(&[1, 1, 4]));
        assert!(m.contains_quorum(&[1, 3]));
        assert!(m.is_observer(4) && !m.is_voter(4) && !m.is_member(5));
        assert_eq!(m.voters().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn text_is_the_references_and_versions_change_only_the_version_line() {
        let m = Membership::local(&[1, 2], &[], 0);
        assert_eq!(
            m.text().as_ref(),
            b"server.1=127.0.0.1:2888:3888:participant\n\
              server.2=127.0.0.1:2889:3889:participant\nversion=0"
        );
        let v = m.with_version(0x1_0000_0000);
        assert!(v.text().ends_with(b"\nversion=100000000"));
        assert!(m.same_config(&v), "same members");
        assert_eq!(Membership::parse(v.text()).unwrap(), v);
    }

    #[test]
    fn a_config_without_participants_is_refused() {
        assert_eq!(
            Membership::parse(b"server.1=h:1:2:observer\nversion=1"),
            Err(MembershipError::NoVoters)
        );
        assert!(Membership::parse(b"server.1=h:1:1").is_err());
    }
}
