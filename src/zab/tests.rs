//! Exact-output tests of the replica (see below).
