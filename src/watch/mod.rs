//! The watch registry of one shard core: which of its connections watch which paths,
//! in which mode. Each shard owns one; nothing else touches it. The shard feeds it the
//! events of every committed txn (in zxid order) and writes the resulting
//! notifications to the connections before any later reply, so a client sees the
//! event before it can see the new state.
//!
//! Rules follow the reference's WatchManager: one-shot data watches (getData/exists)
//! and child watches (getChildren) fire once and are removed; persistent watches fire
//! for every event on their path; persistent-recursive watches fire for events on
//! their path and below, but never NodeChildrenChanged. A connection receives at
//! most one notification per event. No IO.

use crate::proto::{EventType, WatcherType};
use std::collections::{HashMap, HashSet};

/// A connection, as the shard numbers them.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Data,
    Child,
    Persistent,
    Recursive,
}

const KINDS: [Kind; 4] = [Kind::Data, Kind::Child, Kind::Persistent, Kind::Recursive];

/// Refused because the connection holds `max` watches already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection holds {max} watches, the configured maximum")]
pub struct TooManyWatches {
    pub max: usize,
}

#[derive(Debug, Default)]
pub struct WatchRegistry {
    tables: [HashMap<String, HashSet<ConnId>>; 4],
    by_conn: HashMap<ConnId, HashSet<(Kind, String)>>,
    max_per_conn: usize,
}

fn idx(k: Kind) -> usize {
    k as usize
}

impl WatchRegistry {
    pub fn new(max_per_conn: usize) -> Self {
        WatchRegistry {
            max_per_conn,
            ..Default::default()
        }
    }

    fn add(&mut self, conn: ConnId, path: &str, kind: Kind) -> Result<(), TooManyWatches> {
        let mine = self.by_conn.entry(conn).or_default();
        let key = (kind, path.to_string());
        if mine.contains(&key) {
            return Ok(());
        }
        if mine.len() >= self.max_per_conn {
            return Err(TooManyWatches {
                max: self.max_per_conn,
            });
        }
        mine.insert(key);
        self.tables[idx(kind)]
            .entry(path.to_string())
            .or_default()
            .insert(conn);
        Ok(())
    }

    /// getData / exists with watch=true (exists on a missing node too).
    pub fn add_data(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.add(conn, path, Kind::Data)
    }

    /// getChildren / getChildren2 with watch=true.
    pub fn add_child(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.add(conn, path, Kind::Child)
    }

    /// addWatch mode 0.
    pub fn add_persistent(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.add(conn, path, Kind::Persistent)
    }

    /// addWatch mode 1.
    pub fn add_recursive(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.add(conn, path, Kind::Recursive)
    }

    fn remove_one(&mut self, conn: ConnId, path: &str, kind: Kind) -> bool {
        let Some(mine) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        if !mine.remove(&(kind, path.to_string())) {
            return false;
        }
        if mine.is_empty() {
            self.by_conn.remove(&conn);
        }
        let t = &mut self.tables[idx(kind)];
        if let Some(set) = t.get_mut(path) {
            set.remove(&conn);
            if set.is_empty() {
                t.remove(path);
            }
        }
        true
    }

    fn kinds_for(wt: WatcherType) -> &'static [Kind] {
        match wt {
            WatcherType::Children => &[Kind::Child],
            WatcherType::Data => &[Kind::Data],
            WatcherType::Any => &[Kind::Data, Kind::Child, Kind::Persistent, Kind::Recursive],
            WatcherType::Persistent => &[Kind::Persistent],
            WatcherType::PersistentRecursive => &[Kind::Recursive],
        }
    }

    /// checkWatches: does the connection hold a watch of this type on `path`?
    pub fn contains(&self, conn: ConnId, path: &str, wt: WatcherType) -> bool {
        let Some(mine) = self.by_conn.get(&conn) else {
            return false;
        };
        Self::kinds_for(wt)
            .iter()
            .any(|&k| mine.contains(&(k, path.to_string())))
    }

    /// removeWatches: removes the connection's watches of this type on `path`;
    /// false when there was none (the caller answers NoWatcher).
    pub fn remove(&mut self, conn: ConnId, path: &str, wt: WatcherType) -> bool {
        let mut any = false;
        for &k in Self::kinds_for(wt) {
            any |= self.remove_one(conn, path, k);
        }
        any
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let Some(mine) = self.by_conn.remove(&conn) else {
            return;
        };
        for (kind, path) in mine {
            let t = &mut self.tables[idx(kind)];
            if let Some(set) = t.get_mut(&path) {
                set.remove(&conn);
                if set.is_empty() {
                    t.remove(&path);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    /// Fires the watches for one event of a committed txn; appends
    /// `(connection, event type, path)` for each notification to send.
    pub fn trigger(&mut self, event: EventType, path: &str, out: &mut Vec<(ConnId, EventType)>) {
        if self.by_conn.is_empty() {
            return;
        }
        let mut notified: HashSet<ConnId> = HashSet::new();
        // Exact-path one-shot watches.
        let one_shot: &[Kind] = match event {
            EventType::NodeCreated | EventType::NodeDataChanged => &[Kind::Data],
            EventType::NodeDeleted => &[Kind::Data, Kind::Child],
            EventType::NodeChildrenChanged => &[Kind::Child],
            _ => &[],
        };
        for &k in one_shot {
            if let Some(conns) = self.tables[idx(k)].remove(path) {
                for c in conns {
                    if let Some(mine) = self.by_conn.get_mut(&c) {
                        mine.remove(&(k, path.to_string()));
                        if mine.is_empty() {
                            self.by_conn.remove(&c);
                        }
                    }
                    notified.insert(c);
                }
            }
        }
        // Persistent watches on the exact path: every event.
        if let Some(conns) = self.tables[idx(Kind::Persistent)].get(path) {
            notified.extend(conns.iter().copied());
        }
        // Recursive watches on the path and its ancestors: all but NodeChildrenChanged.
        if event != EventType::NodeChildrenChanged && !self.tables[idx(Kind::Recursive)].is_empty()
        {
            let rec = &self.tables[idx(Kind::Recursive)];
            let mut p = path;
            loop {
                if let Some(conns) = rec.get(p) {
                    notified.extend(conns.iter().copied());
                }
                if p == "/" {
                    break;
                }
                p = crate::proto::path::parent(p);
            }
        }
        let mut v: Vec<ConnId> = notified.into_iter().collect();
        v.sort_unstable();
        out.extend(v.into_iter().map(|c| (c, event)));
    }

    /// Total watches (wchs).
    pub fn watch_count(&self) -> usize {
        self.by_conn.values().map(|s| s.len()).sum()
    }

    /// Distinct watched paths (wchs).
    pub fn path_count(&self) -> usize {
        let mut paths: HashSet<&str> = HashSet::new();
        for t in &self.tables {
            paths.extend(t.keys().map(|s| s.as_str()));
        }
        paths.len()
    }

    pub fn connections_with_watches(&self) -> usize {
        self.by_conn.len()
    }

    /// Paths watched by each connection (wchc).
    pub fn by_connection(&self) -> Vec<(ConnId, Vec<String>)> {
        let mut v: Vec<(ConnId, Vec<String>)> = self
            .by_conn
            .iter()
            .map(|(c, s)| {
                let mut p: Vec<String> = s.iter().map(|(_, p)| p.clone()).collect();
                p.sort();
                p.dedup();
                (*c, p)
            })
            .collect();
        v.sort();
        v
    }

    /// Connections watching each path (wchp).
    pub fn by_path(&self) -> Vec<(String, Vec<ConnId>)> {
        let mut m: HashMap<&str, HashSet<ConnId>> = HashMap::new();
        for k in KINDS {
            for (p, cs) in &self.tables[idx(k)] {
                m.entry(p).or_default().extend(cs.iter().copied());
            }
        }
        let mut v: Vec<(String, Vec<ConnId>)> = m
            .into_iter()
            .map(|(p, cs)| {
                let mut cs: Vec<ConnId> = cs.into_iter().collect();
                cs.sort_unstable();
                (p.to_string(), cs)
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    fn fire(w: &mut WatchRegistry, e: EventType, p: &str) -> Vec<(ConnId, EventType)> {
        let mut out = Vec::new();
        w.trigger(e, p, &mut out);
        out
    }

    #[test]
    fn one_shot_data_and_child_watches_fire_once() {
        let mut w = WatchRegistry::new(100);
        w.add_data(1, "/a").unwrap();
        w.add_child(2, "/").unwrap();
        assert_eq!(fire(&mut w, NodeCreated, "/a"), vec![(1, NodeCreated)]);
        assert_eq!(
            fire(&mut w, NodeChildrenChanged, "/"),
            vec![(2, NodeChildrenChanged)]
        );
        assert!(fire(&mut w, NodeDataChanged, "/a").is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn delete_notifies_data_and_child_watchers_once() {
        let mut w = WatchRegistry::new(100);
        w.add_data(1, "/a").unwrap();
        w.add_child(1, "/a").unwrap();
        w.add_child(2, "/a").unwrap();
        assert_eq!(
            fire(&mut w, NodeDeleted, "/a"),
            vec![(1, NodeDeleted), (2, NodeDeleted)]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = WatchRegistry::new(100);
        w.add_persistent(1, "/a").unwrap();
        w.add_recursive(2, "/a").unwrap();
        assert_eq!(
            fire(&mut w, NodeDataChanged, "/a"),
            vec![(1, NodeDataChanged), (2, NodeDataChanged)]
        );
        assert_eq!(fire(&mut w, NodeCreated, "/a/b/c"), vec![(2, NodeCreated)]);
        // Recursive watches never see NodeChildrenChanged; persistent ones do.
        assert_eq!(
            fire(&mut w, NodeChildrenChanged, "/a"),
            vec![(1, NodeChildrenChanged)]
        );
        assert_eq!(w.watch_count(), 2, "persistent watches stay");
        assert!(w.contains(2, "/a", WatcherType::PersistentRecursive));
        assert!(!w.contains(2, "/a", WatcherType::Persistent));
        assert!(w.remove(2, "/a", WatcherType::Any));
        assert!(!w.remove(2, "/a", WatcherType::Any));
    }

    #[test]
    fn limits_and_connection_cleanup() {
        let mut w = WatchRegistry::new(2);
        w.add_data(1, "/a").unwrap();
        w.add_data(1, "/a").unwrap(); // same watch again: no new entry
        w.add_child(1, "/a").unwrap();
        assert_eq!(w.add_data(1, "/b"), Err(TooManyWatches { max: 2 }));
        assert_eq!(w.path_count(), 1);
        w.remove_conn(1);
        assert!(w.is_empty());
        assert!(fire(&mut w, NodeDeleted, "/a").is_empty());
    }
}
