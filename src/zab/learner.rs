//! The learner: ZooKeeper 3.8's `Follower` / `Observer` with `Learner.syncWithLeader`
//! (PEER-PROTOCOL §5.2, §5.6, §6.6, §7, §10), as events.
//!
//! Part of the replica (sequencer core).
//!
//! ```text
//!  dial the leader (5 tries, 100 ms apart) → FOLLOWERINFO / OBSERVERINFO
//!  LEADERINFO(e): e > accepted → write acceptedEpoch, ACKEPOCH(currentEpoch) once
//!                 durable; e == accepted → ACKEPOCH(-1); e < accepted → re-elect
//!  DIFF:  our log is the leader's history: apply it
//!  TRUNC: our log after z is not the leader's unless it proposes it again now:
//!         decided at NEWLEADER (roll the state back at once if it held more)
//!  SNAP:  install the leader's snapshot and write it at once; txns (and commits)
//!         at or before its zxid that the reference forwards after it are passed
//!         over (its forwarding starts before it reads the snapshot's zxid)
//!  then   PROPOSAL/COMMIT pairs and outstanding proposals are held
//!  NEWLEADER: finish a TRUNC, write currentEpoch, log the proposals so far,
//!         ACK once durable (NEWLEADER's ACK first, then each proposal's)
//!  UPTODATE: ACK, serve; log what came since NEWLEADER, commit what was committed
//!  broadcast: PROPOSAL → log, ACK once durable; COMMIT → apply (must match the
//!         oldest pending proposal); INFORM (observer) → log and apply;
//!         PING → reply with the touched sessions; SYNC → the oldest sync is done
//!  silence for initLimit (before NEWLEADER) / syncLimit (after) → re-elect
//!  a txn out of order (syncing: not after the one before; serving: not new or
//!         not of the leader's epoch), a sync point past the new epoch, an epoch
//!         above EPOCH_MAX → re-elect
//!  reconfig: a PROPOSAL of a reconfig txn and NEWLEADER's config become the
//!         last-seen config; COMMITANDACTIVATE / INFORMANDACTIVATE activate the
//!         txn's config at once (also while syncing), NEWLEADER's config is
//!         activated at UPTODATE; if that changed our role or our leader
//!         (another designated leader, or ours left / moved) → re-elect
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::membership::Membership;
use super::reconfig::Activation;
use super::replica::{Replica, RoleState};
use super::types::{
    Config, ConnId, Entry, Event, Forwarded, LearnerInfo, Output, Packet, Role, ServerId, Write,
    ZabError, Zxid, EPOCH_MAX, PROTOCOL_VERSION,
};

/// A dial closed before LEADERINFO (the member has not decided to lead yet) is retried
/// this many times more often than a refused one, as many times more: the same total.
const UNDECIDED_RETRY_FACTOR: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    AwaitLeaderInfo,
    /// ACKEPOCH sent; the next packet opens the sync (DIFF / TRUNC / SNAP).
    AwaitSync,
    /// Sync data until NEWLEADER.
    Syncing,
    /// NEWLEADER handled; waiting for UPTODATE.
    AwaitUpToDate,
    Serving,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncMode {
    Diff,
    Trunc,
    Snap,
}

#[derive(Debug)]
pub(super) struct Learner {
    pub leader: ServerId,
    pub observer: bool,
    pub conn: Option<ConnId>,
    stage: Stage,
    attempts: u32,
    retry_at: Option<u64>,
    /// The last packet heard (or the dial).
    last_heard: u64,
    new_epoch: u32,
    /// SNAP: the snapshot installed in memory (written at NEWLEADER), and our log
    /// end before it (what the state goes back to if the sync is cut short).
    snap_at: Option<Zxid>,
    pre_sync_last: Zxid,
    /// SNAP: the leader's snapshot holds every txn up to its zxid. The reference
    /// starts forwarding to a learner before it reads that zxid, so some of the
    /// txns it sends next may be among them: those are passed over (counted here).
    snap_holds_upto: Zxid,
    snap_passed_over: u64,
    /// The last reconfig proposal passed over that way, for its COMMITANDACTIVATE.
    passed_reconfig: Option<(Zxid, Arc<Membership>)>,
    /// TRUNC: our log after this zxid is not the leader's, unless the leader
    /// re-proposes it during the sync (decided at NEWLEADER).
    trunc_after: Option<Zxid>,
    /// Zxids of the proposals (and informs) received during the sync, in order.
    received: Vec<Zxid>,
    /// What the next txn of the sync must come after: the point the sync started
    /// from, then the last txn received.
    sync_floor: Zxid,
    /// Sync-phase proposals not yet logged, and commits remembered for UPTODATE.
    not_committed: VecDeque<Entry>,
    not_committed_bytes: usize,
    committed_later: VecDeque<Zxid>,
    /// Sessions touched since the last ping reply.
    touches: BTreeMap<i64, i32>,
    /// The config NEWLEADER carried, activated at UPTODATE.
    newleader_config: Option<Arc<Membership>>,
}

impl Learner {
    pub fn role(&self) -> Role {
        let serving = self.stage == Stage::Serving;
        if self.observer {
            Role::Observing {
                leader: self.leader,
                serving,
            }
        } else {
            Role::Following {
                leader: self.leader,
                serving,
            }
        }
    }

    pub fn next_deadline(&self, cfg: &Config) -> u64 {
        if let Some(at) = self.retry_at {
            return at;
        }
        self.last_heard + self.read_timeout(cfg)
    }

    /// The reference's socket read timeout: initLimit until NEWLEADER, then syncLimit.
    fn read_timeout(&self, cfg: &Config) -> u64 {
        match self.stage {
            Stage::AwaitUpToDate | Stage::Serving => cfg.sync_limit_ms(),
            _ => cfg.init_limit_ms(),
        }
    }
}

impl Replica {
    fn learner(&mut self) -> &mut Learner {
        match &mut self.role {
            RoleState::Learning(l) => l,
            _ => unreachable!("not learning"),
        }
    }

    fn learner_ref(&self) -> &Learner {
        match &self.role {
            RoleState::Learning(l) => l,
            _ => unreachable!("not learning"),
        }
    }

    pub(super) fn start_learning(&mut self, leader: ServerId) {
        let observer = self.is_observer();
        let l = Learner {
            leader,
            observer,
            conn: None,
            stage: Stage::Connecting,
            attempts: 0,
            retry_at: None,
            last_heard: self.now,
            new_epoch: 0,
            snap_at: None,
            pre_sync_last: Zxid::ZERO,
            snap_holds_upto: Zxid::ZERO,
            snap_passed_over: 0,
            passed_reconfig: None,
            trunc_after: None,
            received: Vec::new(),
            sync_floor: Zxid::ZERO,
            not_committed: VecDeque::new(),
            not_committed_bytes: 0,
            committed_later: VecDeque::new(),
            touches: BTreeMap::new(),
            newleader_config: None,
        };
        self.role = RoleState::Learning(Box::new(l));
        tracing::info!(
            id = self.cfg.id,
            leader,
            "{}",
            if observer { "OBSERVING" } else { "FOLLOWING" }
        );
        self.event(Event::RoleChanged(self.role()));
        self.dial_leader();
    }

    fn dial_leader(&mut self) {
        let conn = self.new_conn();
        let now = self.now;
        let l = self.learner();
        l.attempts += 1;
        l.conn = Some(conn);
        l.retry_at = None;
        l.last_heard = now;
        let to = l.leader;
        self.emit(Output::Connect { conn, to });
    }

    /// Drops the leader and looks for another.
    fn abandon_leader(&mut self, why: &str) {
        self.election.lost = Some(self.learner_ref().leader);
        tracing::warn!(
            id = self.cfg.id,
            leader = self.learner_ref().leader,
            "leaving the leader: {why}"
        );
        self.undo_unpersisted_snap();
        self.start_looking();
    }

    /// A SNAP installed in memory but cut short before NEWLEADER wrote it: the
    /// state goes back to what the disk holds.
    fn undo_unpersisted_snap(&mut self) {
        let l = self.learner();
        let Some(_) = l.snap_at.take() else {
            return;
        };
        let back = l.pre_sync_last;
        self.last_logged = back;
        self.committed = back;
        self.applied = back;
        self.durable_end = back;
        self.event(Event::Rollback { zxid: back });
    }

    /// The driver could not roll its state back (the disk holds a snapshot past
    /// the point): its state stays at `at`; ask the leader for a whole snapshot.
    pub fn rollback_failed(&mut self, at: Zxid) {
        tracing::warn!(
            id = self.cfg.id,
            "cannot roll back below our snapshot: asking for a full snapshot"
        );
        self.applied = at;
        self.want_snap = true;
        if let RoleState::Learning(l) = &mut self.role {
            l.snap_at = None;
        }
        if !matches!(self.role, RoleState::Looking) {
            self.start_looking();
        }
    }

    pub(super) fn learner_connected(&mut self, conn: ConnId) {
        if self.learner_ref().conn != Some(conn) {
            self.emit(Output::Close { conn });
            return;
        }
        let now = self.now;
        let l = self.learner();
        l.stage = Stage::AwaitLeaderInfo;
        l.last_heard = now;
        let observer = l.observer;
        let info = LearnerInfo {
            sid: self.cfg.id,
            accepted_epoch: self.accepted_epoch,
            protocol_version: PROTOCOL_VERSION,
            config_version: self.conf.version(),
        };
        self.send(conn, Packet::LearnerInfo { info, observer });
    }

    /// How long a learner goes on dialling a member that refuses it: the
    /// reference's 5 tries 100 ms apart. A link held longer before LEADERINFO
    /// was held by a member that did not come to lead: our learner goes back to
    /// its election then, as the reference's does when refused that long.
    fn refused_dialling_ms(&self) -> u64 {
        self.cfg.connect_attempts_max as u64 * self.cfg.connect_retry_ms
    }

    pub(super) fn learner_on_closed(&mut self, conn: ConnId) {
        let (max, retry_at) = (
            self.cfg.connect_attempts_max,
            self.now + self.cfg.connect_retry_ms,
        );
        let quick_at =
            self.now + (self.cfg.connect_retry_ms / UNDECIDED_RETRY_FACTOR as u64).max(1);
        let held_for = self.refused_dialling_ms();
        let now = self.now;
        let l = self.learner();
        if l.conn != Some(conn) {
            return;
        }
        l.conn = None;
        if l.stage == Stage::AwaitLeaderInfo && now >= l.last_heard + held_for {
            // Open for as long as a refused learner dials, then closed without
            // LEADERINFO: a member held it but did not come to lead (see
            // `Replica::early`), or a leader gave up waiting for a quorum's epoch.
            self.abandon_leader(
                "the link closed before LEADERINFO, after the time a refused dial is retried",
            );
            return;
        }
        // A link closed sooner before LEADERINFO: the member dialled did not lead
        // (one about to lead holds the link, and closes it on a better vote or
        // when it follows another). Retry it, and sooner, as a leader-to-be may
        // still be a few ms behind; the budget stays the reference's attempts x
        // retry.
        let undecided = l.stage == Stage::AwaitLeaderInfo;
        let limit = if undecided {
            max * UNDECIDED_RETRY_FACTOR
        } else {
            max
        };
        if matches!(l.stage, Stage::Connecting | Stage::AwaitLeaderInfo) && l.attempts < limit {
            l.stage = Stage::Connecting;
            l.retry_at = Some(if undecided { quick_at } else { retry_at });
            return;
        }
        self.abandon_leader("the connection to the leader ended");
    }

    pub(super) fn learner_tick(&mut self) {
        let now = self.now;
        let l = self.learner_ref();
        if let Some(at) = l.retry_at {
            if now >= at {
                self.dial_leader();
            }
            return;
        }
        if now > l.last_heard + l.read_timeout(&self.cfg) {
            let stage = l.stage;
            self.abandon_leader(&format!(
                "no packet from the leader in time (stage {stage:?})"
            ));
        }
    }

    pub(super) fn learner_on_packet(&mut self, conn: ConnId, packet: Packet) {
        let now = self.now;
        let l = self.learner();
        if l.conn != Some(conn) {
            self.emit(Output::Close { conn });
            return;
        }
        l.last_heard = now;
        match l.stage {
            Stage::Connecting => {}
            Stage::AwaitLeaderInfo => self.on_leader_info(conn, packet),
            Stage::AwaitSync => self.on_sync_start(conn, packet),
            Stage::Syncing | Stage::AwaitUpToDate => self.on_sync_packet(conn, packet),
            Stage::Serving => self.on_broadcast(conn, packet),
        }
    }

    // ----- discovery -------------------------------------------------------------------

    fn on_leader_info(&mut self, conn: ConnId, packet: Packet) {
        let Packet::LeaderInfo { new_epoch, .. } = packet else {
            self.abandon_leader(&format!("expected LEADERINFO, got {}", packet.name()));
            return;
        };
        if new_epoch > EPOCH_MAX {
            self.abandon_leader(&format!(
                "the leader's epoch {new_epoch:#x} is beyond the last epoch {EPOCH_MAX:#x}"
            ));
            return;
        }
        // Reporting zxid 0 makes the leader send a whole snapshot.
        let last_zxid = if self.want_snap {
            Zxid::ZERO
        } else {
            self.last_logged
        };
        let logged = self.last_logged;
        let l = self.learner();
        l.pre_sync_last = logged;
        l.sync_floor = last_zxid;
        if new_epoch > self.accepted_epoch {
            let current = self.current_epoch;
            self.accepted_epoch = new_epoch;
            self.write(Write::AcceptedEpoch(new_epoch));
            self.emit_after_persist(Output::Send {
                conn,
                packet: Packet::AckEpoch {
                    last_zxid,
                    current_epoch: Some(current),
                },
            });
        } else if new_epoch == self.accepted_epoch {
            self.send(
                conn,
                Packet::AckEpoch {
                    last_zxid,
                    current_epoch: None,
                },
            );
        } else {
            let accepted = self.accepted_epoch;
            self.abandon_leader(&format!(
                "the leader's epoch {new_epoch} is below our accepted epoch {accepted}"
            ));
            return;
        }
        let l = self.learner();
        l.new_epoch = new_epoch;
        l.stage = Stage::AwaitSync;
    }

    // ----- synchronisation ---------------------------------------------------------------

    fn on_sync_start(&mut self, conn: ConnId, packet: Packet) {
        self.learner().snap_holds_upto = Zxid::ZERO;
        let epoch = self.learner_ref().new_epoch;
        if let Packet::Diff { zxid } | Packet::Trunc { zxid } | Packet::Snap { zxid } = packet {
            if zxid.epoch() > epoch {
                let name = packet.name();
                self.abandon_leader(&format!(
                    "{name} {zxid} is beyond the leader's epoch {epoch}"
                ));
                return;
            }
        }
        let mode = match packet {
            Packet::Diff { .. }
                if self.learner_ref().sync_floor == Zxid::ZERO && self.want_snap =>
            {
                // We asked for everything (reported zxid 0) and the leader's history
                // starts from the empty state: ours is dropped as by a SNAP of it.
                self.install_state(conn, Zxid::ZERO);
                SyncMode::Diff
            }
            Packet::Diff { .. } => {
                // Our whole log is in the leader's history.
                let last = self.last_logged;
                self.apply_logged_upto(last);
                SyncMode::Diff
            }
            Packet::Trunc { zxid } => {
                if !self.truncate_to(zxid) {
                    return;
                }
                self.learner().sync_floor = zxid;
                SyncMode::Trunc
            }
            Packet::Snap { zxid } => {
                self.install_state(conn, zxid);
                SyncMode::Snap
            }
            p => {
                self.abandon_leader(&format!("expected DIFF, TRUNC or SNAP, got {}", p.name()));
                return;
            }
        };
        tracing::info!(id = self.cfg.id, "syncing with the leader by {mode:?}");
        self.learner().stage = Stage::Syncing;
    }

    /// SNAP (or a DIFF from the empty state after we asked for everything): the
    /// leader's state at `zxid` replaces ours. Into the state now, onto the disk at
    /// NEWLEADER (as the reference); cut short before that, the state goes back to
    /// the disk's.
    fn install_state(&mut self, conn: ConnId, zxid: Zxid) {
        self.log.clear();
        self.pending_bytes = 0;
        self.last_logged = zxid;
        self.committed = zxid;
        self.applied = zxid;
        self.want_snap = false;
        let l = self.learner();
        l.snap_at = Some(zxid);
        l.snap_holds_upto = zxid;
        l.sync_floor = zxid;
        if zxid == Zxid::ZERO {
            self.event(Event::Reset);
        } else {
            self.event(Event::InstallSnapshot { conn, zxid });
        }
    }

    /// TRUNC: the txns we logged up to `zxid` are the leader's (committed); later
    /// ones are not, unless the leader proposes them again during this sync. The
    /// reference truncates at once and logs them again; we decide at NEWLEADER and
    /// keep what comes back, so a txn we acknowledged never leaves our disk only to
    /// be written again (a crash in between would lose an ACKed txn).
    fn truncate_to(&mut self, zxid: Zxid) -> bool {
        if self.applied > zxid {
            // Only a restart puts uncommitted txns into the state (the whole log is
            // loaded); rebuild it from disk up to `zxid`.
            self.event(Event::Rollback { zxid });
            self.applied = zxid;
        }
        let last = self.last_logged;
        self.apply_logged_upto(zxid.min(last));
        if self.applied < zxid.min(last) {
            self.abandon_leader(&format!(
                "cannot truncate to {zxid}: our log does not reach it ({})",
                self.applied
            ));
            return false;
        }
        if zxid < last {
            self.learner().trunc_after = Some(zxid);
        }
        true
    }

    /// At NEWLEADER after a TRUNC: keep the part of our log after the truncation
    /// point that the leader proposed again, drop the rest.
    fn finish_truncation(&mut self) {
        let Some(after) = self.learner().trunc_after.take() else {
            return;
        };
        let received = std::mem::take(&mut self.learner().received);
        let mut keep = after;
        let mut again = received.iter().filter(|z| **z > after);
        for e in self.log.iter().filter(|e| e.zxid > after) {
            if again.next() == Some(&e.zxid) {
                keep = e.zxid;
            } else {
                break;
            }
        }
        if keep < self.last_logged {
            self.forget_after(keep);
            self.write(Write::TruncateAfter(keep));
        }
    }

    fn hold_not_committed(&mut self, e: Entry) -> bool {
        let max = self.cfg.pending_bytes_max;
        let l = self.learner();
        l.not_committed_bytes += e.payload.len();
        l.not_committed.push_back(e);
        if l.not_committed_bytes > max {
            self.abandon_leader(&format!(
                "over {max} bytes of uncommitted txns from the leader (pending_bytes_max)"
            ));
            return false;
        }
        true
    }

    /// A txn of the sync must follow the one before it (or the sync's start) and be
    /// of an epoch up to the new one; anything else is not the leader's history.
    /// One that skips counters of an epoch is the leader's history with txns
    /// missing: a reference leader that took a SNAP mid-epoch itself serves a DIFF
    /// from its on-disk txn log, across the txns its log never held. Logged, the
    /// hole would leave our state diverged and our log unrecoverable; we ask for a
    /// whole snapshot instead.
    fn sync_txn_in_order(&mut self, what: &str, z: Zxid) -> bool {
        let l = self.learner_ref();
        let (floor, epoch) = (l.sync_floor, l.new_epoch);
        if z <= floor || z.epoch() > epoch {
            self.abandon_leader(&format!(
                "{what} {z} while syncing is not after {floor} within epoch {epoch}"
            ));
            return false;
        }
        if !floor.followed_by(z) {
            self.want_snap = true;
            self.abandon_leader(&format!(
                "{what} {z} while syncing skips the txns after {floor} (the leader's history \
                 has a hole; a reference leader that took a SNAP serves its txn log across \
                 it): asking for a whole snapshot"
            ));
            return false;
        }
        let l = self.learner();
        l.sync_floor = z;
        l.received.push(z);
        true
    }

    /// A txn (or its commit) at or before the zxid of the SNAP that began this sync:
    /// the snapshot holds it already (see `Learner::snap_holds_upto`).
    fn held_by_the_snapshot(&self, packet: &Packet) -> bool {
        let z = match packet {
            Packet::Proposal(e)
            | Packet::Inform(e)
            | Packet::InformAndActivate { entry: e, .. } => e.zxid,
            Packet::Commit { zxid } | Packet::CommitAndActivate { zxid, .. } => *zxid,
            _ => return false,
        };
        z <= self.learner_ref().snap_holds_upto
    }

    /// A packet the snapshot holds: nothing to log or apply, in any order (a commit
    /// may come after later proposals). A committed reconfig among them is still
    /// activated, as the reference's learner does while syncing: the snapshot's
    /// config node is not taken, and NEWLEADER may carry a later, uncommitted one.
    fn pass_over(&mut self, packet: Packet) {
        self.learner().snap_passed_over += 1;
        match packet {
            Packet::Proposal(e) => {
                if let Some(config) = e.reconfig {
                    self.learner().passed_reconfig = Some((e.zxid, config));
                }
            }
            Packet::CommitAndActivate {
                zxid,
                designated_leader,
            } => {
                let config = match &self.learner_ref().passed_reconfig {
                    Some((z, config)) if *z == zxid => Some(config.clone()),
                    _ => None,
                };
                self.activate_from_leader(config, Some(designated_leader));
            }
            Packet::InformAndActivate {
                entry,
                designated_leader,
            } => {
                self.activate_from_leader(entry.reconfig, Some(designated_leader));
            }
            _ => {}
        }
    }

    /// Once serving, a txn must be new (after our log's end) and of the leader's
    /// epoch; an older one would be acknowledged without being logged, and one that
    /// skips counters would leave a hole the log's recovery refuses (a new sync
    /// sends what we lack).
    fn broadcast_txn_in_order(&mut self, what: &str, z: Zxid) -> bool {
        let epoch = self.learner_ref().new_epoch;
        let last = self.last_logged;
        if z <= last || z.epoch() != epoch {
            self.abandon_leader(&format!(
                "{what} {z} is not a new txn of the leader's epoch {epoch} (our log ends at {last})"
            ));
            return false;
        }
        if !last.followed_by(z) {
            self.abandon_leader(&format!(
                "{what} {z} skips the txns after {last}, where our log ends"
            ));
            return false;
        }
        true
    }

    fn on_sync_packet(&mut self, conn: ConnId, packet: Packet) {
        if self.held_by_the_snapshot(&packet) {
            self.pass_over(packet);
            return;
        }
        if let Packet::Proposal(e)
        | Packet::Inform(e)
        | Packet::InformAndActivate { entry: e, .. } = &packet
        {
            let z = e.zxid;
            if !self.sync_txn_in_order(packet.name(), z) {
                return;
            }
        }
        match packet {
            // A reconfig's config becomes the last-seen one once its txn is logged
            // (at NEWLEADER): a last-seen config is always in our history.
            Packet::Proposal(e) => {
                self.hold_not_committed(e);
            }
            // Unlike the reference after SNAP / TRUNC, committed txns are not applied
            // in memory here: every mode logs at NEWLEADER and commits after UPTODATE,
            // so a sync cut short leaves state and disk in agreement (same packets on
            // the wire). Once serving, a committed txn may be applied before our own
            // copy is durable, as on the reference: a quorum holds it.
            Packet::Commit { zxid } => {
                self.learner().committed_later.push_back(zxid);
            }
            Packet::CommitAndActivate {
                zxid,
                designated_leader,
            } => {
                let config = self.synced_reconfig(zxid);
                if self.activate_from_leader(config, Some(designated_leader)) {
                    self.learner().committed_later.push_back(zxid);
                }
            }
            Packet::Inform(e) => {
                let zxid = e.zxid;
                if self.hold_not_committed(e) {
                    self.learner().committed_later.push_back(zxid);
                }
            }
            Packet::InformAndActivate {
                entry: e,
                designated_leader,
            } => {
                let zxid = e.zxid;
                let config = e.reconfig.clone();
                if self.activate_from_leader(config, Some(designated_leader))
                    && self.hold_not_committed(e)
                {
                    self.learner().committed_later.push_back(zxid);
                }
            }
            Packet::NewLeader { zxid, config } if self.learner_ref().stage == Stage::Syncing => {
                self.on_new_leader(conn, zxid, &config)
            }
            Packet::UpToDate if self.learner_ref().stage == Stage::AwaitUpToDate => {
                self.on_uptodate(conn)
            }
            // The reference ignores pings while syncing.
            Packet::LeaderPing { .. } => {}
            p => {
                let stage = self.learner_ref().stage;
                self.abandon_leader(&format!(
                    "unexpected {} while syncing ({stage:?})",
                    p.name()
                ));
            }
        }
    }

    fn on_new_leader(&mut self, conn: ConnId, zxid: Zxid, config: &[u8]) {
        let l = self.learner_ref();
        let epoch = l.new_epoch;
        if zxid != Zxid::new(epoch, 0) {
            self.abandon_leader(&format!("NEWLEADER {zxid} does not match epoch {epoch}"));
            return;
        }
        self.finish_truncation();
        if let Some(at) = self.learner().snap_at.take() {
            let passed = self.learner_ref().snap_passed_over;
            if passed > 0 {
                tracing::info!(
                    id = self.cfg.id,
                    "passed over {passed} txn packet(s) the leader sent again at or before \
                     its snapshot's zxid {at} (the snapshot holds them)"
                );
            }
            // The snapshot replaces everything on disk (newer snapshots and the log
            // of another history included).
            self.event(Event::CaptureSnapshot { zxid: at });
            self.write(Write::Snapshot(at));
        }
        let observer = self.learner_ref().observer;
        let pending: Vec<Entry> = if observer {
            Vec::new()
        } else {
            self.learner().not_committed_bytes = 0;
            self.learner().not_committed.drain(..).collect()
        };
        // The leader's history goes to the log before the new epoch is recorded: a
        // member whose currentEpoch is the new one wins elections over members of the
        // old epoch, so it must hold that history (Zab's invariant). The host makes
        // each write durable no earlier than the ones before it. (The reference
        // records the epoch first and can lose the history to a crash in between.)
        for e in &pending {
            if e.zxid > self.last_logged {
                self.log_append(e.clone());
            }
        }
        if self.current_epoch != epoch {
            self.current_epoch = epoch;
            self.write(Write::CurrentEpoch(epoch));
        }
        self.learner().stage = Stage::AwaitUpToDate;
        // NEWLEADER's ACK first, then (followers) each logged proposal's.
        self.emit_after_persist(Output::Send {
            conn,
            packet: Packet::Ack { zxid },
        });
        for e in pending {
            self.log_and_ack(conn, e);
        }
        // After the sync's writes, so a last-seen config is always in our history.
        self.adopt_newleader_config(config);
    }

    /// NEWLEADER's config (data longer than one byte) becomes the last-seen one,
    /// to activate at UPTODATE if it is committed by then; the reference ignores
    /// one it cannot read.
    fn adopt_newleader_config(&mut self, text: &[u8]) {
        if !self.cfg.reconfig_enabled || text.len() <= 1 {
            return;
        }
        match Membership::parse(text) {
            Ok(m) => {
                let m = Arc::new(m);
                self.set_last_seen(m.clone());
                self.learner().newleader_config = Some(m);
            }
            Err(e) => tracing::warn!(id = self.cfg.id, "NEWLEADER's config: {e}"),
        }
    }

    /// The config of the reconfig txn a COMMITANDACTIVATE commits during the sync:
    /// a proposal of this sync, or one logged at NEWLEADER.
    fn synced_reconfig(&self, zxid: Zxid) -> Option<Arc<Membership>> {
        let l = self.learner_ref();
        l.not_committed
            .iter()
            .chain(self.log.iter().filter(|e| e.zxid > self.committed))
            .find(|e| e.zxid == zxid)
            .and_then(|e| e.reconfig.clone())
    }

    /// `processReconfig` of a config the leader sent (a committed reconfig, or
    /// NEWLEADER's at UPTODATE). False when it changed our role or leader: we
    /// have then left the leader.
    fn activate_from_leader(
        &mut self,
        config: Option<Arc<Membership>>,
        designated: Option<ServerId>,
    ) -> bool {
        let Some(a) = config.and_then(|m| self.activate(m)) else {
            return true;
        };
        if !self.role_or_leader_changed(&a, designated) {
            return true;
        }
        self.abandon_leader("the new config changes our role or our leader");
        false
    }

    /// `processReconfig`'s verdict: with the members changed, our learner type
    /// changed, or the leader is not the one we follow (the designated one when
    /// the leader named it; else ours must still vote at the same address).
    fn role_or_leader_changed(&self, a: &Activation, designated: Option<ServerId>) -> bool {
        if !a.changed {
            return false;
        }
        let leader = self.learner_ref().leader;
        let leader_changed = match designated {
            Some(d) => d != leader,
            None => Self::leader_moved(&a.prev, &self.conf, leader),
        };
        a.role_changed || leader_changed
    }

    /// NEWLEADER's config at UPTODATE, if it is committed: a new epoch's version
    /// (agreed on by the NEWLEADER quorum), or a reconfig txn the sync committed.
    /// The reference activates it regardless; an established leader's NEWLEADER to
    /// a late joiner carries a reconfig still pending, which we leave to its
    /// COMMITANDACTIVATE / INFORMANDACTIVATE (same wire, never an uncommitted
    /// config).
    fn committed_newleader_config(&mut self) -> Option<Arc<Membership>> {
        let m = self.learner().newleader_config.take()?;
        let v = Zxid(m.version() as u64);
        let l = self.learner_ref();
        let sync_committed = l.committed_later.back().copied().unwrap_or(Zxid::ZERO);
        let committed = v.is_epoch_start() || v <= self.committed.max(sync_committed);
        if !committed {
            tracing::info!(
                id = self.cfg.id,
                "NEWLEADER's config {:x} is not committed yet: not activated",
                m.version()
            );
        }
        committed.then_some(m)
    }

    fn on_uptodate(&mut self, conn: ConnId) {
        let config = self.committed_newleader_config();
        if !self.activate_from_leader(config, None) {
            return;
        }
        let epoch = self.learner_ref().new_epoch;
        self.send(
            conn,
            Packet::Ack {
                zxid: Zxid::new(epoch, 0),
            },
        );
        let l = self.learner();
        l.stage = Stage::Serving;
        let observer = l.observer;
        let pending: Vec<Entry> = l.not_committed.drain(..).collect();
        l.not_committed_bytes = 0;
        let commits: Vec<Zxid> = l.committed_later.drain(..).collect();
        self.update_election_vote(epoch);
        tracing::info!(id = self.cfg.id, epoch, "UPTODATE: serving");
        self.event(Event::RoleChanged(self.role()));
        if observer {
            // Matched proposal/commit pairs are logged and applied; others skipped.
            let mut commits: VecDeque<Zxid> = commits.into();
            for e in pending {
                if commits.front() == Some(&e.zxid) {
                    commits.pop_front();
                    self.observe(e);
                } else {
                    tracing::warn!(id = self.cfg.id, "no commit for {}: skipped", e.zxid);
                }
            }
        } else {
            for e in pending {
                let reconfig = e.reconfig.clone();
                self.log_and_ack(conn, e);
                if let Some(m) = reconfig {
                    self.set_last_seen(m);
                }
            }
            for zxid in commits {
                if !self.commit_pending(zxid) {
                    return;
                }
            }
        }
    }

    // ----- broadcast -------------------------------------------------------------------------

    /// Logs a proposal and ACKs it once durable (a proposal our log already holds
    /// is only acknowledged).
    fn log_and_ack(&mut self, conn: ConnId, e: Entry) {
        let zxid = e.zxid;
        if zxid > self.last_logged {
            self.log_append(e);
        }
        #[cfg(any(test, feature = "sim"))]
        if self.bug == Some(super::PlantedBug::AckBeforeDurable) {
            self.send(conn, Packet::Ack { zxid });
            return;
        }
        self.emit_after_persist(Output::Send {
            conn,
            packet: Packet::Ack { zxid },
        });
    }

    /// COMMIT: the oldest logged, uncommitted txn must be this one.
    fn commit_pending(&mut self, zxid: Zxid) -> bool {
        if zxid <= self.committed {
            return true;
        }
        let committed = self.committed;
        let at = self.log.partition_point(|e| e.zxid <= committed);
        let next = self.log.get(at).map(|e| e.zxid);
        if next.is_none() {
            // The reference only warns (a commit for a proposal it never logged).
            tracing::warn!(id = self.cfg.id, "COMMIT {zxid} with no pending proposal");
            return true;
        }
        if next != Some(zxid) {
            self.abandon_leader(&format!(
                "COMMIT {zxid} does not match the next pending proposal {next:?}"
            ));
            return false;
        }
        self.mark_committed(zxid);
        self.apply_logged_upto(zxid);
        true
    }

    /// An observer's INFORM: log it and apply it.
    fn observe(&mut self, e: Entry) {
        let zxid = e.zxid;
        if zxid <= self.last_logged {
            return;
        }
        self.log_append(e);
        self.mark_committed(zxid);
        self.apply_logged_upto(zxid);
    }

    fn on_broadcast(&mut self, conn: ConnId, packet: Packet) {
        let observer = self.learner_ref().observer;
        match packet {
            Packet::Proposal(e) if !observer => {
                if !self.broadcast_txn_in_order("PROPOSAL", e.zxid) {
                    return;
                }
                if e.zxid.0 != self.last_logged.0 + 1 {
                    tracing::debug!(
                        id = self.cfg.id,
                        "got {} after {}",
                        e.zxid,
                        self.last_logged
                    );
                }
                let pending = self.pending_bytes + e.payload.len();
                if pending > self.cfg.pending_bytes_max {
                    self.abandon_leader("over pending_bytes_max of uncommitted proposals");
                    return;
                }
                let reconfig = e.reconfig.clone();
                self.log_and_ack(conn, e);
                if let Some(m) = reconfig {
                    self.set_last_seen(m);
                }
            }
            Packet::Commit { zxid } if !observer => {
                self.commit_pending(zxid);
            }
            Packet::CommitAndActivate {
                zxid,
                designated_leader,
            } if !observer => self.commit_and_activate(zxid, designated_leader),
            Packet::Inform(e) if observer => {
                if self.broadcast_txn_in_order("INFORM", e.zxid) {
                    self.observe(e)
                }
            }
            Packet::InformAndActivate {
                entry,
                designated_leader,
            } if observer => self.inform_and_activate(entry, designated_leader),
            Packet::LeaderPing { zxid } => {
                let touches: Vec<(i64, i32)> = std::mem::take(&mut self.learner().touches)
                    .into_iter()
                    .collect();
                self.send(conn, Packet::LearnerPing { zxid, touches });
            }
            Packet::Sync => self.event(Event::SyncDone),
            Packet::RevalidateReply { session_id, valid } => {
                self.event(Event::Revalidated { session_id, valid })
            }
            p => tracing::warn!(id = self.cfg.id, "ignoring {} from the leader", p.name()),
        }
    }

    /// COMMITANDACTIVATE once serving: activate the config of the txn it commits
    /// (the oldest pending one), commit it, then leave the leader if the config
    /// changed our role or named another leader.
    fn commit_and_activate(&mut self, zxid: Zxid, designated: ServerId) {
        let committed = self.committed;
        let config = self
            .log
            .iter()
            .find(|e| e.zxid > committed)
            .filter(|e| e.zxid == zxid)
            .and_then(|e| e.reconfig.clone());
        let activation = config.and_then(|m| self.activate(m));
        if !self.commit_pending(zxid) {
            return;
        }
        if activation.is_some_and(|a| self.role_or_leader_changed(&a, Some(designated))) {
            self.abandon_leader("the new config changes our role or our leader");
        }
    }

    /// INFORMANDACTIVATE once serving (observers): activate, log and apply, then
    /// leave the leader if the config changed our role or named another leader.
    fn inform_and_activate(&mut self, entry: Entry, designated: ServerId) {
        if !self.broadcast_txn_in_order("INFORMANDACTIVATE", entry.zxid) {
            return;
        }
        let activation = entry.reconfig.clone().and_then(|m| self.activate(m));
        self.observe(entry);
        if activation.is_some_and(|a| self.role_or_leader_changed(&a, Some(designated))) {
            self.abandon_leader("the new config changes our role or our leader");
        }
    }

    // ----- driver calls ---------------------------------------------------------------------

    fn serving_conn(&self) -> Result<ConnId, ZabError> {
        match &self.role {
            RoleState::Learning(l) if l.stage == Stage::Serving => {
                l.conn.ok_or(ZabError::NotServing)
            }
            _ => Err(ZabError::NotServing),
        }
    }

    /// Learner: forwards a client request (a write, a session op or a sync) to the
    /// leader. Its effect comes back as an `Apply` (or `SyncDone`).
    pub fn forward(&mut self, req: Forwarded) -> Result<(), ZabError> {
        let conn = self.serving_conn()?;
        self.send(conn, Packet::Request(req));
        Ok(())
    }

    /// Learner: asks the leader whether a reconnecting session is valid; the answer
    /// comes as `Event::Revalidated`.
    pub fn revalidate(&mut self, session_id: i64, timeout_ms: i32) -> Result<(), ZabError> {
        let conn = self.serving_conn()?;
        self.send(
            conn,
            Packet::RevalidateRequest {
                session_id,
                timeout_ms,
            },
        );
        Ok(())
    }

    /// Learner: a session showed activity here; the leader hears it with the next
    /// ping reply.
    pub fn touch(&mut self, session_id: i64, timeout_ms: i32) {
        if let RoleState::Learning(l) = &mut self.role {
            l.touches.insert(session_id, timeout_ms);
        }
    }
}
