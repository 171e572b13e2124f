//! The cross-core queues of the request path: shards → sequencer (writes,
//! connects, session touches) and sequencer → each shard (commit batches). A
//! many-producer, one-consumer channel with no lock: a crossbeam
//! `SegQueue` holds the messages, a `futures` `AtomicWaker` the consumer's waker,
//! and an atomic count of senders tells the consumer when no message can come.
//! Any core may send; the one core that owns the [`Receiver`] takes.
//!
//! ```text
//!  core A: tx.send(m) ─┐                                ┌─ rx.try_recv()  (never waits)
//!  core B: tx.send(m) ─┼─► SegQueue ──► consumer core ──┤
//!     (then wake)      └─► AtomicWaker ──wake-up──────► └─ rx.recv_async() (one waiter)
//! ```
//!
//! Why not flume, which the server used before: every flume send and receive
//! takes a `Mutex` inside the channel, so each request crossed two locks on its
//! way (shard → sequencer, sequencer → shard). Here a send is a lock-free push
//! and, only when the consumer is parked, one wake-up. The wake-up goes through
//! the executor's own waker exactly as flume's did, so [`super::inbox`]'s look at
//! the queue on a timer still covers a wake-up lost by the executor.
//!
//! One waiter: `recv_async` registers a single waker, so only one task of the
//! consumer core may await the receiver at a time (a second would take the
//! first's place). Other code on that core may `try_recv` at any time. Channels
//! off the request path (four-letter and AdminServer report replies, stop
//! signals with several waiters) stay on flume.
//!
//! The bound: each channel holds at most the count of messages it was made with
//! ([`bounded`]); a send beyond it fails with [`SendError::Full`] and the message
//! comes back. The server sizes its channels above what the senders' own limits
//! allow (`MESH_QUEUE_COUNT_MAX` in `server/mod.rs`), so a full queue means a
//! stuck consumer or a bug, and the sender decides what gives way.

use crossbeam::queue::SegQueue;
use futures::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::Arc;
use std::task::{Context, Poll};

struct Shared<T> {
    queue: SegQueue<T>,
    waker: AtomicWaker,
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
    /// Messages the queue may hold; a send beyond fails.
    count_max: usize,
}

/// The sending end; clone it for each core that sends.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving end, owned by one core.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why a send failed; the message comes back either way.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError<T> {
    /// The receiver is gone.
    Disconnected(T),
    /// The queue holds its bound of messages already.
    Full(T),
}

/// Every sender is gone and the queue is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and every sender is gone.
    Disconnected,
}

/// A new channel that holds at most `count_max` messages (see the module
/// header; the server's channels are sized where they are made).
pub fn bounded<T>(count_max: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: SegQueue::new(),
        waker: AtomicWaker::new(),
        senders: AtomicUsize::new(1),
        receiver_alive: AtomicBool::new(true),
        count_max,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `m` and wakes the receiver if it waits; fails once the receiver
    /// is gone, or while the queue holds its bound. With several senders the
    /// bound may be passed by at most one message per sender racing at it.
    pub fn send(&self, m: T) -> Result<(), SendError<T>> {
        if !self.shared.receiver_alive.load(Acquire) {
            return Err(SendError::Disconnected(m));
        }
        if self.shared.queue.len() >= self.shared.count_max {
            return Err(SendError::Full(m));
        }
        self.shared.queue.push(m);
        self.shared.waker.wake();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, AcqRel);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, AcqRel) == 1 {
            // The last sender: a waiting receiver must see the end.
            self.shared.waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message if one is queued, without waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        if let Some(m) = self.shared.queue.pop() {
            return Ok(m);
        }
        if self.shared.senders.load(Acquire) == 0 {
            // A last sender may have pushed just before it went: look once more.
            return self.shared.queue.pop().ok_or(TryRecvError::Disconnected);
        }
        Err(TryRecvError::Empty)
    }

    /// The next message, waiting for it; an error once every sender is gone and
    /// the queue is empty. One waiter at a time (see the module header).
    pub fn recv_async(&self) -> Recv<'_, T> {
        Recv { rx: self }
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_alive.store(false, Release);
    }
}

/// The future of [`Receiver::recv_async`].
pub struct Recv<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let rx = self.rx;
        if let Some(m) = rx.shared.queue.pop() {
            return Poll::Ready(Ok(m));
        }
        rx.shared.waker.register(cx.waker());
        // Look again after registering: a push that came before the registration
        // woke no one, and would otherwise wait for the next message.
        match rx.try_recv() {
            Ok(m) => Poll::Ready(Ok(m)),
            Err(TryRecvError::Disconnected) => Poll::Ready(Err(RecvError)),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}

impl<T> Drop for Recv<'_, T> {
    /// A receive that ended (or was given up, e.g. by a `select`) leaves no waker
    /// behind: a later send would wake a task that no longer waits here, a
    /// cross-core wake-up for nothing on a busy core.
    fn drop(&mut self) {
        self.rx.shared.waker.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn messages_arrive_in_order_then_the_end_of_the_senders() {
        let (tx, rx) = bounded(usize::MAX);
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.try_recv(), Ok(1));
        drop(tx2);
        // Queued before the last sender went: still delivered, then the end.
        assert_eq!(block_on(rx.recv_async()), Ok(2));
        assert_eq!(block_on(rx.recv_async()), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_fails_and_returns_the_message() {
        let (tx, rx) = bounded(usize::MAX);
        drop(rx);
        assert_eq!(tx.send(7), Err(SendError::Disconnected(7)));
    }

    /// At its bound a send fails and gives the message back; once the receiver
    /// takes one, there is room again.
    #[test]
    fn a_full_queue_refuses_a_send_until_one_is_taken() {
        let (tx, rx) = bounded(2);
        tx.send(1).unwrap();
        tx.clone().send(2).unwrap();
        assert_eq!(tx.send(3), Err(SendError::Full(3)));
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.try_recv(), Ok(1));
        tx.send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn an_empty_channel_with_senders_is_empty_not_ended() {
        let (_tx, rx) = bounded::<u8>(usize::MAX);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.len(), 0);
    }

    /// A waiting receive is woken by a send; once it has ended, later sends wake
    /// no one (no cross-core wake-up of a core that is busy elsewhere).
    #[test]
    fn only_a_waiting_receive_is_woken() {
        struct Count(AtomicUsize);
        impl futures::task::ArcWake for Count {
            fn wake_by_ref(me: &Arc<Self>) {
                me.0.fetch_add(1, AcqRel);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = futures::task::waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, rx) = bounded(usize::MAX);
        let mut recv = Box::pin(rx.recv_async());
        assert_eq!(recv.as_mut().poll(&mut cx), Poll::Pending);
        tx.send(1).unwrap();
        assert_eq!(count.0.load(Acquire), 1);
        assert_eq!(recv.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
        drop(recv);
        tx.send(2).unwrap();
        assert_eq!(
            count.0.load(Acquire),
            1,
            "a send woke a receive that had ended"
        );
        // Given up while waiting (as a select does): no waker stays behind either.
        let mut recv = Box::pin(rx.recv_async());
        assert_eq!(recv.as_mut().poll(&mut cx), Poll::Ready(Ok(2)));
        let mut recv2 = Box::pin(rx.recv_async());
        assert_eq!(recv2.as_mut().poll(&mut cx), Poll::Pending);
        drop((recv, recv2));
        tx.send(3).unwrap();
        assert_eq!(count.0.load(Acquire), 1);
    }

    /// Many producers on their own threads, one consumer waiting: every message
    /// arrives once, each producer's in its order, and the wait ends when the
    /// producers do (a lost wake-up would hang this test).
    #[test]
    fn producers_on_other_threads_wake_the_waiting_consumer() {
        const PRODUCERS: u64 = 4;
        const EACH: u64 = 20_000;
        let (tx, rx) = bounded::<(u64, u64)>(usize::MAX);
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        tx.send((p, i)).unwrap();
                        if i % 1000 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u64; PRODUCERS as usize];
        block_on(async {
            while let Ok((p, i)) = rx.recv_async().await {
                assert_eq!(i, next[p as usize], "producer {p} out of order");
                next[p as usize] += 1;
            }
        });
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(next, [EACH; PRODUCERS as usize]);
    }
}
