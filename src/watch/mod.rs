//! The watch registry of one shard core: which of its connections watch which paths,
//! in which mode. Each shard owns one; nothing else touches it. The shard feeds it the
//! events of every committed txn (in zxid order) and writes the resulting
//! notifications to the connections before any later reply, so a client sees the
//! event before it can see the new state.
//!
//! The model is the reference 3.8's WatchManager pair: a *data* table (getData and
//! exists watches) and a *child* table (getChildren watches); addWatch puts a
//! persistent or persistent-recursive watch in both. A connection has one mode per
//! table and path, and the last watch set there decides it (a one-shot getData
//! watch replaces a persistent one on the same path, recursive replaces persistent).
//! NodeCreated / NodeDataChanged fire the data table, NodeChildrenChanged the child
//! table, NodeDeleted both (a connection notified once). One-shot watches are removed
//! when they fire; recursive watches fire for their path and everything below it,
//! never for NodeChildrenChanged. No IO.

use crate::proto::{EventType, WatcherType};
use std::collections::{HashMap, HashSet};

/// A connection, as the shard numbers them.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Standard,
    Persistent,
    Recursive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Data = 0,
    Child = 1,
}

/// Refused because the connection holds `max` watches already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection holds {max} watches, the configured maximum")]
pub struct TooManyWatches {
    pub max: usize,
}

#[derive(Debug, Default)]
pub struct WatchRegistry {
    tables: [HashMap<String, HashMap<ConnId, Mode>>; 2],
    by_conn: HashMap<ConnId, HashSet<(Table, String)>>,
    /// Recursive entries in each table: when zero, triggers skip the ancestors.
    recursive: [usize; 2],
    max_per_conn: usize,
}

impl WatchRegistry {
    pub fn new(max_per_conn: usize) -> Self {
        WatchRegistry {
            max_per_conn,
            ..Default::default()
        }
    }

    fn set(
        &mut self,
        conn: ConnId,
        path: &str,
        t: Table,
        mode: Mode,
    ) -> Result<(), TooManyWatches> {
        let mine = self.by_conn.entry(conn).or_default();
        let key = (t, path.to_string());
        if !mine.contains(&key) {
            if mine.len() >= self.max_per_conn {
                return Err(TooManyWatches {
                    max: self.max_per_conn,
                });
            }
            mine.insert(key);
        }
        let old = self.tables[t as usize]
            .entry(path.to_string())
            .or_default()
            .insert(conn, mode);
        if old == Some(Mode::Recursive) {
            self.recursive[t as usize] -= 1;
        }
        if mode == Mode::Recursive {
            self.recursive[t as usize] += 1;
        }
        Ok(())
    }

    /// getData / exists with watch=true (exists on a missing node too).
    pub fn add_data(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.set(conn, path, Table::Data, Mode::Standard)
    }

    /// getChildren / getChildren2 with watch=true.
    pub fn add_child(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.set(conn, path, Table::Child, Mode::Standard)
    }

    /// addWatch mode 0.
    pub fn add_persistent(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.set(conn, path, Table::Data, Mode::Persistent)?;
        self.set(conn, path, Table::Child, Mode::Persistent)
    }

    /// addWatch mode 1.
    pub fn add_recursive(&mut self, conn: ConnId, path: &str) -> Result<(), TooManyWatches> {
        self.set(conn, path, Table::Data, Mode::Recursive)?;
        self.set(conn, path, Table::Child, Mode::Recursive)
    }

    fn mode(&self, conn: ConnId, path: &str, t: Table) -> Option<Mode> {
        self.tables[t as usize].get(path)?.get(&conn).copied()
    }

    fn unset(&mut self, conn: ConnId, path: &str, t: Table, only: Option<Mode>) -> bool {
        let table = &mut self.tables[t as usize];
        let Some(conns) = table.get_mut(path) else {
            return false;
        };
        match conns.get(&conn) {
            Some(m) if only.is_none_or(|o| o == *m) => {}
            _ => return false,
        }
        if conns.remove(&conn) == Some(Mode::Recursive) {
            self.recursive[t as usize] -= 1;
        }
        if conns.is_empty() {
            table.remove(path);
        }
        if let Some(mine) = self.by_conn.get_mut(&conn) {
            mine.remove(&(t, path.to_string()));
            if mine.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        true
    }

    /// checkWatches: does the connection hold a watch of this type on `path`?
    pub fn contains(&self, conn: ConnId, path: &str, wt: WatcherType) -> bool {
        let (d, c) = (
            self.mode(conn, path, Table::Data),
            self.mode(conn, path, Table::Child),
        );
        match wt {
            WatcherType::Children => c.is_some(),
            WatcherType::Data => d.is_some(),
            WatcherType::Any => c.is_some() || d.is_some(),
            WatcherType::Persistent => d == Some(Mode::Persistent) || c == Some(Mode::Persistent),
            WatcherType::PersistentRecursive => d == Some(Mode::Recursive),
        }
    }

    /// removeWatches: removes the connection's watches of this type on `path`;
    /// false when there was none (the caller answers NoWatcher).
    pub fn remove(&mut self, conn: ConnId, path: &str, wt: WatcherType) -> bool {
        let (tables, only): (&[Table], Option<Mode>) = match wt {
            WatcherType::Children => (&[Table::Child], None),
            WatcherType::Data => (&[Table::Data], None),
            WatcherType::Any => (&[Table::Child, Table::Data], None),
            WatcherType::Persistent => (&[Table::Child, Table::Data], Some(Mode::Persistent)),
            WatcherType::PersistentRecursive => {
                (&[Table::Child, Table::Data], Some(Mode::Recursive))
            }
        };
        let mut any = false;
        for &t in tables {
            any |= self.unset(conn, path, t, only);
        }
        any
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let Some(mine) = self.by_conn.remove(&conn) else {
            return;
        };
        for (t, path) in mine {
            let table = &mut self.tables[t as usize];
            if let Some(conns) = table.get_mut(&path) {
                if conns.remove(&conn) == Some(Mode::Recursive) {
                    self.recursive[t as usize] -= 1;
                }
                if conns.is_empty() {
                    table.remove(&path);
                }
            }
        }
    }

    /// Whether the connection holds any watch.
    pub fn has_watches(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    fn fire(&mut self, t: Table, path: &str, event: EventType, out: &mut Vec<ConnId>) {
        let ti = t as usize;
        let mut local = path;
        loop {
            let at_path = local == path;
            if let Some(conns) = self.tables[ti].get_mut(local) {
                let mut fired_once = Vec::new();
                for (&c, &m) in conns.iter() {
                    match m {
                        Mode::Recursive if event != EventType::NodeChildrenChanged => out.push(c),
                        Mode::Recursive => {}
                        _ if at_path => {
                            out.push(c);
                            if m == Mode::Standard {
                                fired_once.push(c);
                            }
                        }
                        _ => {}
                    }
                }
                for c in fired_once {
                    self.unset(c, path, t, Some(Mode::Standard));
                }
            }
            if local == "/" || self.recursive[ti] == 0 {
                break;
            }
            local = crate::proto::path::parent(local);
        }
    }

    /// Fires the watches for one event of a committed txn; appends each connection
    /// to notify, once, in connection order.
    pub fn trigger(&mut self, event: EventType, path: &str, out: &mut Vec<ConnId>) {
        if self.by_conn.is_empty() {
            return;
        }
        let start = out.len();
        match event {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.fire(Table::Data, path, event, out)
            }
            EventType::NodeChildrenChanged => self.fire(Table::Child, path, event, out),
            EventType::NodeDeleted => {
                self.fire(Table::Data, path, event, out);
                self.fire(Table::Child, path, event, out);
            }
            _ => {}
        }
        out[start..].sort_unstable();
        let mut v = out.split_off(start);
        v.dedup();
        out.extend(v);
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
        for t in &self.tables {
            for (p, cs) in t {
                m.entry(p).or_default().extend(cs.keys().copied());
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

    fn fire(w: &mut WatchRegistry, e: EventType, p: &str) -> Vec<ConnId> {
        let mut out = Vec::new();
        w.trigger(e, p, &mut out);
        out
    }

    #[test]
    fn one_shot_data_and_child_watches_fire_once() {
        let mut w = WatchRegistry::new(100);
        w.add_data(1, "/a").unwrap();
        w.add_child(2, "/").unwrap();
        assert_eq!(fire(&mut w, NodeCreated, "/a"), vec![1]);
        assert_eq!(fire(&mut w, NodeChildrenChanged, "/"), vec![2]);
        assert!(fire(&mut w, NodeDataChanged, "/a").is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn delete_notifies_data_and_child_watchers_once() {
        let mut w = WatchRegistry::new(100);
        w.add_data(1, "/a").unwrap();
        w.add_child(1, "/a").unwrap();
        w.add_child(2, "/a").unwrap();
        assert_eq!(fire(&mut w, NodeDeleted, "/a"), vec![1, 2]);
        assert!(w.is_empty());
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = WatchRegistry::new(100);
        w.add_persistent(1, "/a").unwrap();
        w.add_recursive(2, "/a").unwrap();
        assert_eq!(fire(&mut w, NodeDataChanged, "/a"), vec![1, 2]);
        assert_eq!(fire(&mut w, NodeCreated, "/a/b/c"), vec![2]);
        // Recursive watches never see NodeChildrenChanged; persistent ones do.
        assert_eq!(fire(&mut w, NodeChildrenChanged, "/a"), vec![1]);
        assert_eq!(
            w.watch_count(),
            4,
            "persistent watches stay, in both tables"
        );
        assert!(w.contains(2, "/a", WatcherType::PersistentRecursive));
        assert!(!w.contains(2, "/a", WatcherType::Persistent));
        assert!(w.remove(2, "/a", WatcherType::Any));
        assert!(!w.remove(2, "/a", WatcherType::Any));
    }

    #[test]
    fn the_last_mode_set_on_a_path_wins() {
        let mut w = WatchRegistry::new(100);
        // Persistent then recursive on the same path: recursive, so no
        // NodeChildrenChanged for the path itself.
        w.add_persistent(1, "/p").unwrap();
        w.add_recursive(1, "/p").unwrap();
        assert!(fire(&mut w, NodeChildrenChanged, "/p").is_empty());
        assert_eq!(fire(&mut w, NodeCreated, "/p/k"), vec![1]);
        // A one-shot getData watch replaces a persistent one in the data table.
        w.add_persistent(2, "/q").unwrap();
        w.add_data(2, "/q").unwrap();
        assert_eq!(fire(&mut w, NodeDataChanged, "/q"), vec![2]);
        assert!(fire(&mut w, NodeDataChanged, "/q").is_empty());
        assert_eq!(
            fire(&mut w, NodeChildrenChanged, "/q"),
            vec![2],
            "child table stays persistent"
        );
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
