//! corral: a ZooKeeper-compatible coordination service, thread-per-core on glommio.
//!
//! Layout (see README.md and DESIGN.md): `proto` is the wire protocol without IO;
//! `tree`, `session` and `watch` are the state machines of the data model; `zab` the
//! replication core; `storage` the log and snapshots; `server` the only place with IO;
//! `admin` the four-letter words; `config` zoo.cfg parsing.

pub mod proto;
pub mod zab;
