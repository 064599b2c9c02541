//! Matching: the two-sided marketplace. Service companies publish profiles and offerings; water
//! users publish project requests; requests are ranked against offerings with an explained
//! score; companies propose; the water user accepts one, which starts a project (through the
//! `ProposalAccepted` event, written to the outbox in the acceptance's own transaction).
//!
//! - [`domain`]: the marketplace's types and their checks, plain Rust.
//! - [`ranking`]: hard filters and the explained score.
//! - [`store`]: the tables, on SQLite or PostgreSQL.
//! - [`service`]: who may do what, idempotency, events: the operations the API offers.
//! - [`grpc`]: the adapter between `cwsm.matching.v1` and [`service`].

pub mod domain;
pub mod ranking;
pub mod store;
