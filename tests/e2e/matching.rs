//! End-to-end tests of the matching service in depth (see its issue).
