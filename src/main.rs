//! The `corral` binary: argument parsing only; everything else lives in the library.
fn main() {}
