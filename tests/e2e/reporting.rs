//! End-to-end tests of the reporting service in depth (see its issue).
