//! loadgen: a load generator that speaks the ZooKeeper wire protocol to any server
//! (Apache ZooKeeper, corral, anything compatible), pipelining requests on every
//! connection and reporting throughput and HdrHistogram latencies per operation kind.
//!
//! Data flow: `main` parses options into a [`driver::RunConfig`]; [`setup`] creates the
//! key space with a small blocking client; [`driver`] runs one mio event loop per worker
//! thread, each owning a share of the connections; every connection is a
//! [`conn::Conn`], a pure protocol state machine (bytes in, bytes out, no IO) that
//! picks operations from the [`mix::Mix`], encodes them with `corral::proto`, and
//! records completions into its worker's [`stats::Stats`]. At the end the workers'
//! stats are merged into a [`report::Report`] (text or JSON), with loadgen's own CPU
//! time per request from [`cpu`].

pub mod conn;
pub mod cpu;
pub mod driver;
pub mod mix;
pub mod report;
pub mod setup;
pub mod stats;
