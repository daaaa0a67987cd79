//! Sources: where input events come from. The embedded runtime reads JSON
//! Lines from a file or stdin ([`file`]); the Kafka runtime consumes a topic.

pub mod file;
pub mod kafka;
