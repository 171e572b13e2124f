//! Operation kinds and the weighted mix a run draws them from.
//!
//! Pure data, shared read-only by every worker thread. A mix is written
//! `get:90,set:10` (weights, not necessarily summing to 100); `--read-ratio` and
//! `--ping` are shorthands for the two most common mixes.

use serde::Serialize;
use thiserror::Error;

/// What a request (or an observed event) is counted as. `WatchEvent` is not a
/// request: it is the latency from the setData that fires a watch to the watch
/// notification arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Get,
    Set,
    Exists,
    Create,
    CreateEph,
    CreateSeq,
    CreateEphSeq,
    Delete,
    Multi,
    /// getData with watch=true on a watch node (first half of the `watch` mix entry).
    WatchSet,
    /// setData on a watched node, which fires the watch (second half).
    WatchFire,
    /// A watch notification, timed from the WatchFire request that caused it.
    WatchEvent,
    Ping,
}

impl OpKind {
    /// Number of kinds; stats arrays are indexed by `kind as usize`.
    pub const COUNT: usize = 13;
    pub const ALL: [OpKind; OpKind::COUNT] = [
        OpKind::Get,
        OpKind::Set,
        OpKind::Exists,
        OpKind::Create,
        OpKind::CreateEph,
        OpKind::CreateSeq,
        OpKind::CreateEphSeq,
        OpKind::Delete,
        OpKind::Multi,
        OpKind::WatchSet,
        OpKind::WatchFire,
        OpKind::WatchEvent,
        OpKind::Ping,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Set => "set",
            OpKind::Exists => "exists",
            OpKind::Create => "create",
            OpKind::CreateEph => "create-eph",
            OpKind::CreateSeq => "create-seq",
            OpKind::CreateEphSeq => "create-eph-seq",
            OpKind::Delete => "delete",
            OpKind::Multi => "multi",
            OpKind::WatchSet => "watch-set",
            OpKind::WatchFire => "watch-fire",
            OpKind::WatchEvent => "watch-event",
            OpKind::Ping => "ping",
        }
    }

    /// True for the kinds that create a node (and so feed later deletes).
    pub fn is_create(self) -> bool {
        matches!(
            self,
            OpKind::Create | OpKind::CreateEph | OpKind::CreateSeq | OpKind::CreateEphSeq
        )
    }

    /// The ZooKeeper create flags for a create kind.
    pub fn create_flags(self) -> i32 {
        match self {
            OpKind::CreateEph => 1,
            OpKind::CreateSeq => 2,
            OpKind::CreateEphSeq => 3,
            _ => 0,
        }
    }
}

/// One entry a mix can name: the request kinds plus `watch` (a WatchSet/WatchFire pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixEntry {
    Op(OpKind),
    /// getData(watch) then setData on the same node; the notification is timed.
    Watch,
}

impl MixEntry {
    fn parse(s: &str) -> Option<MixEntry> {
        Some(match s {
            "get" => MixEntry::Op(OpKind::Get),
            "set" => MixEntry::Op(OpKind::Set),
            "exists" => MixEntry::Op(OpKind::Exists),
            "create" => MixEntry::Op(OpKind::Create),
            "create-eph" => MixEntry::Op(OpKind::CreateEph),
            "create-seq" => MixEntry::Op(OpKind::CreateSeq),
            "create-eph-seq" => MixEntry::Op(OpKind::CreateEphSeq),
            "delete" => MixEntry::Op(OpKind::Delete),
            "multi" => MixEntry::Op(OpKind::Multi),
            "ping" => MixEntry::Op(OpKind::Ping),
            "watch" => MixEntry::Watch,
            _ => return None,
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MixError {
    #[error("mix entry {0:?} is not NAME:WEIGHT")]
    Syntax(String),
    #[error("unknown operation {0:?} in mix (known: get set exists create create-eph create-seq create-eph-seq delete multi watch ping)")]
    UnknownOp(String),
    #[error("the mix has no operation with a weight above zero")]
    Empty,
    #[error("read ratio {0} is outside 0..=100")]
    BadRatio(u32),
}

/// A weighted choice of operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// Entries with their cumulative weight bound, in the order given.
    entries: Vec<(MixEntry, u32)>,
    total: u32,
}

impl Mix {
    /// Parses `name:weight[,name:weight...]`; a bare name has weight 1.
    pub fn parse(spec: &str) -> Result<Mix, MixError> {
        let mut entries = Vec::new();
        let mut total = 0u32;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once(':') {
                Some((n, w)) => (
                    n.trim(),
                    w.trim()
                        .parse::<u32>()
                        .map_err(|_| MixError::Syntax(part.to_string()))?,
                ),
                None => (part, 1),
            };
            let e = MixEntry::parse(name).ok_or_else(|| MixError::UnknownOp(name.to_string()))?;
            if weight > 0 {
                total = total
                    .checked_add(weight)
                    .ok_or_else(|| MixError::Syntax(part.to_string()))?;
                entries.push((e, total));
            }
        }
        if total == 0 {
            return Err(MixError::Empty);
        }
        Ok(Mix { entries, total })
    }

    /// getData with probability `read_pct`%, setData otherwise.
    pub fn read_ratio(read_pct: u32) -> Result<Mix, MixError> {
        if read_pct > 100 {
            return Err(MixError::BadRatio(read_pct));
        }
        Mix::parse(&format!("get:{},set:{}", read_pct, 100 - read_pct))
    }

    pub fn ping() -> Mix {
        Mix::parse("ping").expect("static mix")
    }

    /// Picks an entry for a uniformly random `r` (any u32).
    pub fn pick(&self, r: u32) -> MixEntry {
        let x = r % self.total;
        for &(e, bound) in &self.entries {
            if x < bound {
                return e;
            }
        }
        unreachable!("cumulative bounds end at total")
    }

    pub fn contains(&self, e: MixEntry) -> bool {
        self.entries.iter().any(|&(x, _)| x == e)
    }

    /// The first create kind in the mix, used when a delete finds nothing to delete.
    pub fn fallback_create(&self) -> OpKind {
        self.entries
            .iter()
            .find_map(|&(e, _)| match e {
                MixEntry::Op(k) if k.is_create() => Some(k),
                _ => None,
            })
            .unwrap_or(OpKind::Create)
    }

    /// The mix as it would be written on the command line (for reports).
    pub fn describe(&self) -> String {
        let mut prev = 0;
        let mut parts = Vec::new();
        for &(e, bound) in &self.entries {
            let name = match e {
                MixEntry::Op(k) => k.name(),
                MixEntry::Watch => "watch",
            };
            parts.push(format!("{}:{}", name, bound - prev));
            prev = bound;
        }
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_pick_follow_weights() {
        let m = Mix::parse("get:3, set:1").unwrap();
        let mut counts = [0; 2];
        for r in 0..4000u32 {
            match m.pick(r) {
                MixEntry::Op(OpKind::Get) => counts[0] += 1,
                MixEntry::Op(OpKind::Set) => counts[1] += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(counts, [3000, 1000]);
        assert_eq!(m.describe(), "get:3,set:1");
    }

    #[test]
    fn read_ratio_edges() {
        assert_eq!(
            Mix::read_ratio(100).unwrap().pick(7),
            MixEntry::Op(OpKind::Get)
        );
        assert_eq!(
            Mix::read_ratio(0).unwrap().pick(7),
            MixEntry::Op(OpKind::Set)
        );
        assert_eq!(Mix::read_ratio(101), Err(MixError::BadRatio(101)));
    }

    #[test]
    fn bad_specs_are_errors() {
        assert_eq!(Mix::parse("get:0"), Err(MixError::Empty));
        assert!(matches!(Mix::parse("frob:1"), Err(MixError::UnknownOp(_))));
        assert!(matches!(Mix::parse("get:x"), Err(MixError::Syntax(_))));
        let m = Mix::parse("delete,create-eph-seq:2,watch").unwrap();
        assert_eq!(m.fallback_create(), OpKind::CreateEphSeq);
        assert!(m.contains(MixEntry::Watch));
    }
}
