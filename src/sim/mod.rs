//! Generated event streams: a small deterministic fleet with background
//! noise and injected faults, used by tests, benches and the sample input.
//! (The full simulator with executor feedback builds on this.)

pub mod gen;
