//! Clean stop on SIGTERM / SIGINT. Owns the signal thread (`corral-signals`) and the
//! main thread's side of a stop: the order in which the cores are told, and the
//! bounded wait for their ends. Nothing here is on the request path: the cores
//! learn of a stop by a message in the inboxes they already read.
//!
//! ```text
//!  corral-signals thread: 1st SIGTERM/SIGINT ── CoreNews::Stop ──► main thread
//!                         2nd one: exit at once (128 + signal)
//!  main thread: admin stop ─► ToShard::StopAccepting (every shard: listeners closed)
//!               ─► ToSequencer::Shutdown: the sequencer ends the batch in hand, syncs
//!                  the log, publishes what the sync covers, then sends
//!                  ToShard::Shutdown (FIFO: after that last batch) and ends
//!               ─► each shard flushes and closes its connections (bounded) and ends
//!               ─► main joins every core's end within STOP_WAIT: exit 0, or say
//!                  which cores did not end and exit non-zero
//! ```
//!
//! Peer links (quorum mode) end with the sequencer's executor and the process:
//! the sockets close, so the other members notice and elect.

use super::msg::{ToSequencer, ToShard};
use super::{CoreNews, Mesh, ReadyTx};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long the cores have, from the first SIGTERM, to end cleanly. The systemd
/// unit's TimeoutStopSec (conf/corral.service) is above it.
pub const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long a shard waits, once told to stop, for its connections to flush what is
/// queued for them (a client that reads nothing holds its connection at most this).
pub const CONNS_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The name the signal thread reports under.
pub const SIGNALS: &str = "corral-signals";

/// Starts the signal thread: the first SIGTERM or SIGINT becomes `CoreNews::Stop`
/// on `news`; a second one ends the process at once.
pub fn watch_signals(news: ReadyTx) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name(SIGNALS.into())
        .spawn(move || {
            let mut asked = false;
            for sig in signals.forever() {
                let name = signal_name(sig);
                if asked {
                    eprintln!("corral: second {name} during the stop: exiting at once");
                    std::process::exit(128 + sig);
                }
                asked = true;
                let _ = news.send((SIGNALS.into(), CoreNews::Stop(name)));
            }
        })?;
    Ok(())
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// Tells the cores to stop, in order: shards stop accepting, then the sequencer
/// flushes and passes the stop on to the shards behind its last batch.
pub fn tell_cores(mesh: &Mesh) {
    for tx in &mesh.to_shards {
        let _ = tx.send(ToShard::StopAccepting);
    }
    let _ = mesh.to_sequencer.send(ToSequencer::Shutdown);
}

/// Waits until every core in `running` has ended or `STOP_WAIT` from `since` has
/// passed. `Err` names each core that failed or did not end in time.
pub fn await_ends(
    news: &Receiver<(String, CoreNews)>,
    running: Vec<String>,
    since: Instant,
) -> Result<(), String> {
    let deadline = since + STOP_WAIT;
    let mut left: BTreeMap<String, ()> = running.into_iter().map(|n| (n, ())).collect();
    let mut failed = Vec::new();
    while !left.is_empty() {
        let wait = deadline.saturating_duration_since(Instant::now());
        match news.recv_timeout(wait) {
            Ok((name, CoreNews::Ended(end))) => {
                left.remove(&name);
                if let Err(why) = end {
                    failed.push(format!("{name} failed: {why}"));
                }
            }
            // A second signal is the signal thread's to handle; starts are over.
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for name in left.keys() {
        failed.push(format!("{name} did not end within {STOP_WAIT:?}"));
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join("; ")),
    }
}
