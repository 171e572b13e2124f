//! Gets a core's executor out of a sleep it should have left: each core beats
//! (a task that records the time every [`BEAT_EVERY`]); one plain thread,
//! "corral-nudge", checks the beats every [`CHECK_EVERY`] and sends a core whose
//! beat is older than [`STUCK_AFTER`] a no-op signal ([`nudge_signal`]).
//!
//! ```text
//!  core N (glommio executor thread): beat task ── time of its last beat ──┐
//!  corral-nudge thread: every CHECK_EVERY, stale beat? ── tgkill(core N) ◄┘
//!     → io_uring_enter returns EINTR → the executor runs its loop again
//! ```
//!
//! Why: under load, a glommio 0.9 executor on this kernel (6.18) sometimes stays
//! asleep in `io_uring_enter` (`Reactor::link_rings_and_sleep`) after its timers
//! are due; a 60-line program with three executors, a flume channel and timers
//! hangs that way in about 1 run of 150 (none in 300 with this watchdog). What
//! always ended such a sleep is a signal (gdb attaching). After an interrupted
//! sleep the executor runs its loop: due timers fire, queued wake-ups run.
//!
//! A new executor can also park before it has run any task, with no timer armed
//! at all (glommio 0.9: its first `run_task_queues` returns at once when the
//! preempt timer armed just before has already fired, and `park` then sleeps with
//! no timeout); nothing can end that sleep, as no task registered a waker yet.
//! So a core's thread registers ([`CoreBeat::register`]) before its executor's
//! loop first runs, and is watched from then on; the core's first poll takes it
//! off the watch ([`CoreBeat::unregister`]: that poll may be a long recovery)
//! until its beat task runs.
//!
//! The handler does nothing and is installed without SA_RESTART, so the sleep
//! returns EINTR, which glommio takes as a normal wake-up. A core that is merely
//! busy (a long fsync, no CPU) may get a signal too: it costs one extra loop.
//! The signal goes to the core's own thread id in our own thread group; a core
//! whose beat task is gone (its executor stopped) is no longer watched.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant};

/// How often each core records that it runs.
pub const BEAT_EVERY: Duration = Duration::from_millis(50);
/// A beat this old means the core sleeps past its due work: it is nudged.
pub const STUCK_AFTER: Duration = Duration::from_millis(250);
/// How often the nudge thread looks at the beats.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// The signal sent to a stuck core: a real-time one nothing else in corral uses.
pub fn nudge_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

struct Beat {
    name: String,
    /// Milliseconds since the watchdog's epoch at the core's last beat.
    at_ms: AtomicU64,
    /// The core's kernel thread id; 0 until its beat task first runs.
    tid: AtomicI32,
}

/// A core's side of the watchdog: run [`CoreBeat::serve`] on the core.
pub struct CoreBeat {
    beat: Arc<Beat>,
    epoch: Instant,
}

/// The main thread's look at the beats: how a core that has not reported its
/// start is doing (start-up warnings). Holds no beat alive.
pub struct BeatView {
    beats: Vec<(String, Weak<Beat>)>,
    epoch: Instant,
}

impl BeatView {
    /// One phrase on the executor of core `name`, or `None` for a core that has
    /// no executor of its own (the sequencer beside shard 0).
    pub fn describe(&self, name: &str) -> Option<String> {
        let (_, beat) = self.beats.iter().find(|(n, _)| n == name)?;
        let Some(beat) = beat.upgrade() else {
            return Some("its executor has ended".to_string());
        };
        let (tid, at) = (
            beat.tid.load(Ordering::Acquire),
            beat.at_ms.load(Ordering::Acquire),
        );
        let now = ms_since(self.epoch);
        let ago = now.saturating_sub(at);
        Some(if tid == 0 {
            "its executor has not beaten yet (it is being created, or runs its first task)"
                .to_string()
        } else if stuck(tid, at, now) {
            format!("its executor (thread {tid}) has not run for {ago} ms; it is being nudged")
        } else {
            format!("its executor (thread {tid}) runs (last beat {ago} ms ago)")
        })
    }
}

/// Installs the no-op handler and starts the nudge thread watching one beat per
/// core name. Returns each core's beat, in the order of `names`, and the view
/// of them all.
pub fn start(names: &[String]) -> std::io::Result<(Vec<CoreBeat>, BeatView)> {
    install_handler()?;
    let epoch = Instant::now();
    let beats: Vec<Arc<Beat>> = names
        .iter()
        .map(|name| {
            Arc::new(Beat {
                name: name.clone(),
                at_ms: AtomicU64::new(0),
                tid: AtomicI32::new(0),
            })
        })
        .collect();
    let watched = beats.clone();
    std::thread::Builder::new()
        .name("corral-nudge".into())
        .spawn(move || watch(watched, epoch))?;
    let view = BeatView {
        beats: (names.iter().cloned())
            .zip(beats.iter().map(Arc::downgrade))
            .collect(),
        epoch,
    };
    let beats = beats
        .into_iter()
        .map(|beat| CoreBeat { beat, epoch })
        .collect();
    Ok((beats, view))
}

fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// Whether a core whose beat task runs on thread `tid` (0: not yet) and last beat
/// at `beat_ms` should be nudged at `now_ms`.
fn stuck(tid: i32, beat_ms: u64, now_ms: u64) -> bool {
    tid != 0 && now_ms.saturating_sub(beat_ms) > STUCK_AFTER.as_millis() as u64
}

fn watch(mut beats: Vec<Arc<Beat>>, epoch: Instant) {
    loop {
        std::thread::sleep(CHECK_EVERY);
        // A core's end is dropped with its executor: nothing left to watch there.
        beats.retain(|b| Arc::strong_count(b) > 1);
        if beats.is_empty() {
            return;
        }
        let now = ms_since(epoch);
        for b in &beats {
            let (tid, at) = (
                b.tid.load(Ordering::Acquire),
                b.at_ms.load(Ordering::Acquire),
            );
            if stuck(tid, at, now) {
                tracing::debug!(
                    "core {} has not run for {} ms: nudging it",
                    b.name,
                    now.saturating_sub(at)
                );
                signal_thread(tid);
            }
        }
    }
}

/// Sends the nudge signal to one thread of this process.
fn signal_thread(tid: i32) {
    // SAFETY: tgkill on our own thread group; a thread that has exited makes it
    // fail with ESRCH, which is fine (the core is gone).
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            tid,
            nudge_signal() as libc::c_long,
        );
    }
}

extern "C" fn on_nudge(_: libc::c_int) {}

fn install_handler() -> std::io::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that touches nothing; no
        // SA_RESTART, so a sleeping io_uring_enter returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_nudge as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(nudge_signal(), &sa, std::ptr::null_mut()) != 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
    });
    result
}

impl CoreBeat {
    /// Puts the calling thread (the core's executor thread) under watch, as if
    /// it had just beaten: call it on that thread before the executor's loop
    /// first runs, so a loop that sleeps before any task ran is nudged too.
    pub fn register(&self) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.beat
            .at_ms
            .store(ms_since(self.epoch), Ordering::Release);
        self.beat.tid.store(tid, Ordering::Release);
    }

    /// Takes the thread off the watch until [`serve`](Self::serve) first runs:
    /// for a core's first poll, which may work long without yielding (a
    /// recovery) and must not be interrupted for it.
    pub fn unregister(&self) {
        self.beat.tid.store(0, Ordering::Release);
    }

    /// Beats for as long as the core runs. Spawn it as a task on the core's
    /// executor, first thing (after [`register`](Self::register)).
    pub async fn serve(self) {
        self.register();
        loop {
            glommio::timer::sleep(BEAT_EVERY).await;
            self.beat
                .at_ms
                .store(ms_since(self.epoch), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Bounded wait for the test's own reports (not a timing assertion).
    const REPORT_WAIT: Duration = Duration::from_secs(30);

    #[test]
    fn only_a_started_core_with_an_old_beat_is_stuck() {
        let limit = STUCK_AFTER.as_millis() as u64;
        assert!(!stuck(0, 0, 10 * limit), "a core that never beat yet");
        assert!(!stuck(7, 1000, 1000 + limit), "at the limit");
        assert!(stuck(7, 1000, 1001 + limit));
        assert!(!stuck(7, 2000, 1000), "a beat after the check began");
    }

    /// The nudge gets a thread out of a sleep in the kernel that nothing else
    /// would end: here a read of a pipe nobody writes, which returns EINTR. (The
    /// executor sleeps the same way in io_uring_enter when its wake-up is lost;
    /// that race cannot be staged on demand.)
    #[test]
    fn a_stuck_core_is_interrupted_by_its_nudge() {
        let names = vec!["test-core".to_string()];
        let core = start(&names).unwrap().0.pop().unwrap();
        let (tx, rx) = mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe writes two fds into the array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // Registers as a core that beat once, long ago, then sleeps.
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            core.beat.tid.store(tid, Ordering::Release);
            let mut byte = 0u8;
            // SAFETY: reads into a one-byte buffer we own.
            let n = unsafe { libc::read(fds[0], &mut byte as *mut u8 as *mut _, 1) };
            let err = std::io::Error::last_os_error();
            // Stop being watched before reporting.
            core.beat.tid.store(0, Ordering::Release);
            tx.send((n, err.raw_os_error())).unwrap();
            drop(core);
        });
        let (n, errno) = rx
            .recv_timeout(REPORT_WAIT)
            .expect("the nudge ended the read");
        assert_eq!((n, errno), (-1, Some(libc::EINTR)));
        sleeper.join().unwrap();
    }

    /// The start-up warning's phrases: a core whose executor never ran, one that
    /// runs, one that ended, and a name with no executor of its own.
    #[test]
    fn the_view_says_how_each_core_does() {
        let names = vec!["never-ran".to_string(), "ran".to_string()];
        let (mut cores, view) = start(&names).unwrap();
        let ran = cores.pop().unwrap();
        ran.beat.at_ms.store(ms_since(ran.epoch), Ordering::Release);
        ran.beat.tid.store(42, Ordering::Release);
        let never = view.describe("never-ran").unwrap();
        assert!(never.contains("has not beaten yet"), "{never}");
        let runs = view.describe("ran").unwrap();
        assert!(
            runs.contains("thread 42") && runs.contains("runs"),
            "{runs}"
        );
        ran.beat.at_ms.store(0, Ordering::Release);
        std::thread::sleep(STUCK_AFTER * 2);
        let stuck = view.describe("ran").unwrap();
        assert!(stuck.contains("being nudged"), "{stuck}");
        ran.beat.tid.store(0, Ordering::Release);
        drop(ran);
        // The nudge thread lets go of an ended core's beat at its next look.
        let ended = (0..REPORT_WAIT.as_millis() / 10)
            .map(|_| std::thread::sleep(Duration::from_millis(10)))
            .map(|_| view.describe("ran").unwrap())
            .find(|d| d.contains("ended"));
        assert_eq!(ended.as_deref(), Some("its executor has ended"));
        assert_eq!(view.describe("corral-sequencer"), None);
        drop(cores);
    }

    /// A running core beats from its own executor's timer.
    #[test]
    fn a_running_core_beats() {
        let names = vec!["beating-core".to_string()];
        let core = start(&names).unwrap().0.pop().unwrap();
        let beat = core.beat.clone();
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("beat-test")
            .io_memory(64 << 10)
            .spawn(move || async move {
                glommio::spawn_local(core.serve()).detach();
                glommio::timer::sleep(BEAT_EVERY * 4).await;
            })
            .unwrap();
        ex.join().unwrap();
        assert_ne!(beat.tid.load(Ordering::Acquire), 0);
        assert!(beat.at_ms.load(Ordering::Acquire) > 0);
    }
}
