//! Shared pieces of corral's fuzz targets: the allocation bound every target runs
//! under, a deterministic splitter that feeds a stream in pieces, and the fix-ups that
//! let mutated files past their checksums.
//!
//! Each target is its own libFuzzer process, single-threaded: libFuzzer calls the
//! target with one input at a time and the target drives corral's pure decoders
//! directly (no IO, no clock). Data flow: input bytes → optional fix-up (checksum,
//! seals) → decoder(s) → asserted properties. A broken property panics, which
//! libFuzzer records as a crash; an allocation over the bound aborts, likewise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Allocation every target may make whatever its input: small tables, the tree's
/// root, formatting an error message.
pub const ALLOC_SLACK_BYTES: usize = 256 << 10;
/// Largest single allocation per input byte. A decoder that sizes a buffer from a
/// length or count it has not yet seen the bytes for (a claimed 1<<22 nodes in a
/// 60-byte file) goes far past it; one that grows with what it decodes stays under.
pub const ALLOC_BYTES_PER_INPUT_BYTE: usize = 16;
/// Most bytes live at once per input byte (a decoded tree costs a few times its
/// serialized size).
pub const LIVE_BYTES_PER_INPUT_BYTE: usize = 128;

/// No bound until a target arms one.
static ONE_BYTES_MAX: AtomicUsize = AtomicUsize::new(usize::MAX);
static LIVE_BYTES_MAX: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bytes allocated through Rust and not yet freed, over the whole process.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// `LIVE_BYTES` when the bound was armed: the input's allocations are those above it.
static LIVE_BYTES_BASE: AtomicUsize = AtomicUsize::new(0);

/// The global allocator of every target: `System`, plus the bounds of [`arm`]. An
/// allocation over them writes what it was and aborts, which libFuzzer reports as a
/// crash with the input saved. (libFuzzer's own `-malloc_limit_mb` needs a sanitizer's
/// malloc hooks, which a build without ASan does not have.)
pub struct BoundedAlloc;

impl BoundedAlloc {
    fn check(&self, size: usize) {
        let one_max = ONE_BYTES_MAX.load(Relaxed);
        if size > one_max {
            refuse(b"one allocation of ", size, one_max);
        }
        let live = LIVE_BYTES.fetch_add(size, Relaxed) + size;
        let live_max = LIVE_BYTES_MAX.load(Relaxed);
        let used = live.saturating_sub(LIVE_BYTES_BASE.load(Relaxed));
        if used > live_max {
            refuse(b"live allocations of ", used, live_max);
        }
    }
}

/// Disarms (so that reporting may allocate), reports and aborts.
#[cold]
fn refuse(what: &[u8], size: usize, max: usize) -> ! {
    disarm();
    let mut e = std::io::stderr();
    let _ = e.write_all(b"\n==corral-fuzz== ");
    let _ = e.write_all(what);
    let _ = writeln!(
        e,
        "{size} bytes is over the bound of {max} bytes for this input"
    );
    let _ = writeln!(e, "{}", std::backtrace::Backtrace::force_capture());
    std::process::abort();
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping only reads
// sizes.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.check(new_size);
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
}

/// The allocation bound for one input of `input_bytes` bytes, lifted when dropped.
pub struct Armed(());

/// Arms the allocation bound for the input being run.
pub fn arm(input_bytes: usize) -> Armed {
    DISARM_ON_PANIC.call_once(disarm_on_panic);
    LIVE_BYTES_BASE.store(LIVE_BYTES.load(Relaxed), Relaxed);
    ONE_BYTES_MAX.store(
        ALLOC_SLACK_BYTES + ALLOC_BYTES_PER_INPUT_BYTE * input_bytes,
        Relaxed,
    );
    LIVE_BYTES_MAX.store(
        ALLOC_SLACK_BYTES + LIVE_BYTES_PER_INPUT_BYTE * input_bytes,
        Relaxed,
    );
    Armed(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        disarm();
    }
}

fn disarm() {
    ONE_BYTES_MAX.store(usize::MAX, Relaxed);
    LIVE_BYTES_MAX.store(usize::MAX, Relaxed);
}

static DISARM_ON_PANIC: std::sync::Once = std::sync::Once::new();

/// A panic is the finding: lift the bound before the panic message is formatted,
/// so that the report is the panic's and not an allocation refused while writing it.
/// Chains to the hook already set (libFuzzer's, which aborts).
fn disarm_on_panic() {
    let next = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        disarm();
        next(info);
    }));
}

/// Declares [`BoundedAlloc`] as the target's global allocator.
#[macro_export]
macro_rules! bounded_allocator {
    () => {
        #[global_allocator]
        static ALLOC: $crate::BoundedAlloc = $crate::BoundedAlloc;
    };
}

/// Piece lengths for feeding a stream as a network or a file would deliver it,
/// drawn from `seed` (xorshift), each in 1..=`piece_bytes_max`.
pub struct Pieces {
    state: u64,
    piece_bytes_max: usize,
}

impl Pieces {
    pub fn new(seed: u64, piece_bytes_max: usize) -> Pieces {
        assert!(piece_bytes_max > 0);
        Pieces {
            state: seed | 1,
            piece_bytes_max,
        }
    }

    pub fn next_len(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        1 + (self.state % self.piece_bytes_max as u64) as usize
    }
}

/// Splits a fuzz input into a control byte and the stream: the byte picks modes
/// (feeding pieces, side of a link, limits), the rest is what a peer or disk sent.
pub fn split_control(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&c, rest)) => (c, rest),
        None => (0, data),
    }
}

/// Overwrites `at..at + 8` with `v` big-endian if the bytes are there.
pub fn put_i64_at(b: &mut [u8], at: usize, v: i64) {
    if let Some(slot) = b.get_mut(at..at + 8) {
        slot.copy_from_slice(&v.to_be_bytes());
    }
}
