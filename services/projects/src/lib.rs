//! Projects: the contract water-saving project from signing to hand-over.
//!
//! - [`domain`]: the project, its contract and the lifecycle state machine, plain Rust.
//! - [`store`]: the tables, on SQLite or PostgreSQL; every stage change writes its transition,
//!   its milestone log entry and its outbox event in one transaction.
//! - [`events`]: the wire form of events: `ProposalAccepted` in (creates the project),
//!   `ProjectMilestone` out.
//! - [`grpc`]: the adapter between `cwsm.projects.v1` and the domain.

pub mod domain;
pub mod store;
