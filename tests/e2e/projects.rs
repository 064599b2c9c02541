//! End-to-end tests of the projects service in depth (see its issue).
