//! corral: a ZooKeeper-compatible coordination service, thread-per-core on glommio.
//!
//! Layout (see README.md and DESIGN.md): `proto` is the wire protocol without IO;
//! `tree`, `session` and `watch` are the state machines of the data model; `storage`
//! the log, snapshots and recovery; `zab` the replication core (a pure state machine
//! with its simulator, not yet wired to the network); `server` is the only place with
//! IO (glommio executors: shard cores and the sequencer core); `admin` renders the
//! four-letter words; `config` parses zoo.cfg; `auth` is SASL DIGEST-MD5 and the JAAS
//! file it reads its users from.

pub mod admin;
pub mod auth;
pub mod config;
pub mod proto;
pub mod server;
pub mod session;
pub mod storage;
pub mod tree;
pub mod watch;
pub mod zab;
