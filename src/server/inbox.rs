//! Receiving from another core without depending on its wake-up alone. A shard
//! awaits its inbox (commit batches, report requests; a [`super::chan`] queue) with
//! [`recv_mesh`], and the answers to its four-letter-word reports (flume) with
//! [`recv`]: the await ends on the channel's wake-up as before, and also looks at
//! the channel itself every [`RECHECK_EVERY`]. Runs on the awaiting core; holds no
//! state.
//!
//! ```text
//!  other core: tx.send(m) ──► channel ──wake-up (cross-thread)──► recv / recv_mesh
//!                                └──────── try_recv every RECHECK_EVERY ┘
//! ```
//!
//! Why: under load a shard sometimes never got the wake-up for a message already
//! in its channel (glommio 0.9 executors, flume channels, kernel 6.18). The
//! reproduced case: a member's shards waited 60-84 s for the sequencer's first
//! batch, their client port not yet bound, so the member answered no `srvr`; once
//! with the `nudge` watchdog running and the shard's beat fresh, i.e. its
//! executor was awake and only that wake-up was lost. A look at the channel on
//! the shard's own timer gets the message: a lost wake-up costs at most
//! `RECHECK_EVERY`. (When the whole executor sleeps past its timers, `nudge`
//! wakes it.)

use super::chan;
use flume::{Receiver, RecvError, TryRecvError};
use futures::future::{select, Either};
use std::future::Future;
use std::time::Duration;

/// How often an await on another core's channel looks at the channel itself.
pub const RECHECK_EVERY: Duration = Duration::from_millis(50);

/// The next message of `rx` (an error once every sender is gone), even when the
/// wake-up for it is lost.
pub async fn recv<T>(rx: &Receiver<T>) -> Result<T, RecvError> {
    recv_with(|| rx.recv_async(), || look(rx), RECHECK_EVERY).await
}

/// [`recv`], given up at `deadline`: `None` when no message came by then (or
/// every sender went).
pub async fn recv_until<T>(rx: &Receiver<T>, deadline: std::time::Instant) -> Option<T> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let got = std::pin::pin!(recv(rx));
    let timer = std::pin::pin!(glommio::timer::sleep(left));
    match select(got, timer).await {
        Either::Left((m, _)) => m.ok(),
        Either::Right(_) => rx.try_recv().ok(),
    }
}

/// [`recv`] for a shard's inbox on the cross-core mesh.
pub async fn recv_mesh<T>(rx: &chan::Receiver<T>) -> Result<T, RecvError> {
    let wait = || async { rx.recv_async().await.map_err(|_| RecvError::Disconnected) };
    let look = || match rx.try_recv() {
        Ok(m) => Some(Ok(m)),
        Err(chan::TryRecvError::Disconnected) => Some(Err(RecvError::Disconnected)),
        Err(chan::TryRecvError::Empty) => None,
    };
    recv_with(wait, look, RECHECK_EVERY).await
}

fn look<T>(rx: &Receiver<T>) -> Option<Result<T, RecvError>> {
    match rx.try_recv() {
        Ok(m) => Some(Ok(m)),
        Err(TryRecvError::Disconnected) => Some(Err(RecvError::Disconnected)),
        Err(TryRecvError::Empty) => None,
    }
}

/// Looks once (a message already there needs no timer: the usual case under
/// load, on the shard's batch path), then awaits `wait()` and every `every` calls
/// `look()`, whichever has the message first. A fresh `wait()` follows each look
/// that found nothing.
async fn recv_with<T, F>(
    mut wait: impl FnMut() -> F,
    mut look: impl FnMut() -> Option<Result<T, RecvError>>,
    every: Duration,
) -> Result<T, RecvError>
where
    F: Future<Output = Result<T, RecvError>>,
{
    if let Some(m) = look() {
        return m;
    }
    loop {
        let waiting = std::pin::pin!(wait());
        let timer = std::pin::pin!(glommio::timer::sleep(every));
        match select(waiting, timer).await {
            Either::Left((m, _)) => return m,
            Either::Right(_) => {
                if let Some(m) = look() {
                    return m;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn run<T: Send + 'static, F: Future<Output = T> + 'static>(
        make: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("inbox-test")
            .io_memory(64 << 10)
            .spawn(move || async move { make().await })
            .unwrap()
            .join()
            .unwrap()
    }

    /// The stall: the message is in the channel but its wake-up never comes
    /// (here a wait that never ends). Awaiting the wake-up alone would hang; the
    /// looks at the channel deliver it.
    #[test]
    fn a_message_whose_wake_up_is_lost_is_still_received() {
        let got = run(|| async {
            let looks = Cell::new(0);
            recv_with(
                std::future::pending::<Result<u32, RecvError>>,
                || {
                    looks.set(looks.get() + 1);
                    (looks.get() == 3).then_some(Ok(7))
                },
                Duration::from_millis(1),
            )
            .await
            .map(|m| (m, looks.get()))
        });
        assert_eq!(got, Ok((7, 3)));
    }

    /// A report that never comes is given up at the deadline; one that came is
    /// taken even when the deadline has passed.
    #[test]
    fn a_bounded_receive_gives_up_at_its_deadline() {
        let got = run(|| async {
            let (_tx, rx) = flume::unbounded::<u32>();
            let none = recv_until(&rx, std::time::Instant::now() + Duration::from_millis(20)).await;
            let (tx2, rx2) = flume::unbounded::<u32>();
            tx2.send(9).unwrap();
            let late = recv_until(&rx2, std::time::Instant::now()).await;
            (none, late)
        });
        assert_eq!(got, (None, Some(9)));
    }

    /// A message already in the channel is taken at once, without a wait.
    #[test]
    fn a_message_already_there_needs_no_wait() {
        let got = run(|| async {
            recv_with(
                || async { panic!("waited for a message that was there") },
                || Some(Ok(5u32)),
                Duration::from_secs(3600),
            )
            .await
        });
        assert_eq!(got, Ok(5));
    }

    /// With working wake-ups nothing changes: messages sent from another thread
    /// arrive in order, and the end of the senders ends the receive.
    #[test]
    fn messages_from_another_thread_arrive_in_order_then_the_end() {
        let (tx, rx) = flume::unbounded();
        let sender = std::thread::spawn(move || {
            for i in 0..100u32 {
                tx.send(i).unwrap();
            }
        });
        let got = run(move || async move {
            let mut got = Vec::new();
            while let Ok(m) = recv(&rx).await {
                got.push(m);
            }
            got
        });
        sender.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
