//! The fleet simulator behind `reflex demo`, and the labelled corpus.
//!
//! - [`fleet`]: services in namespaces, dependency graph, pods on nodes,
//!   external dependencies, daily traffic shape.
//! - [`noise`]: the harmless background (several languages' styles).
//! - [`faults`]: the fault library (every SPEC §3 category, several
//!   phrasings each, cascades) and the schedule.
//! - [`world`]: the fleet over simulated time; emits events, applies actions.
//! - [`executor`]: the simulated executor (actions in, results out).
//! - [`demo`]: the closed loop, narrative and report; [`report`] scores a
//!   run against its ground truth ([`truth`]).
//! - [`production`]: the `production` profile — a bigger fleet with the
//!   chronic background of a real one, overlapping and intermittent faults.
//! - [`gen`]: the seeded RNG and the small stream generator used by tests.
//! - `emit`: building events from templates, shared by [`world`] and
//!   [`production`] (so neither depends on the other both ways).
//!
//! Guarantees: everything is a function of the seed and the options (a
//! SplitMix RNG, ordered maps wherever order reaches output, simulated time
//! only); the wall clock is read only for the events/s figure.

pub mod demo;
mod emit;
pub mod executor;
pub mod faults;
pub mod fleet;
pub mod gen;
pub mod noise;
pub mod production;
pub mod report;
pub mod text;
pub mod truth;
pub mod world;
