//! The cwsm gRPC API contract: the code generated from `proto/cwsm/**/*.proto`.
//!
//! One module per protobuf package (`cwsm.matching.v1` is [`matching::v1`]); each holds the
//! messages, enums, and a `*_service_client` and `*_service_server` module. Only this crate
//! and the services' gRPC adapters know these types; the domain is plain Rust.
//!
//! Shared enums and messages are in `r#type::v1` (package `cwsm.type.v1`; `type` is a Rust
//! keyword), also reachable as [`types`].

/// Package `cwsm.type.v1`: enums and messages shared by the services and events.
pub mod r#type {
    /// Version 1.
    pub mod v1 {
        // prost names the file after the Rust module path, hence the raw identifier.
        tonic::include_proto!("cwsm.r#type.v1");
    }
}

/// Package `cwsm.events.v1`: payloads carried on the event bus between services.
pub mod events {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("cwsm.events.v1");
    }
}

/// Package `cwsm.matching.v1`: companies, offerings, water users, requests, proposals.
pub mod matching {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("cwsm.matching.v1");
    }
}

/// Package `cwsm.projects.v1`: lifecycle, meters, M&V, settlement, milestone log.
pub mod projects {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("cwsm.projects.v1");
    }
}

/// Package `cwsm.reporting.v1`: plans, indicators, reports, achievements, counts.
pub mod reporting {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("cwsm.reporting.v1");
    }
}

/// `cwsm.type.v1` under a name that needs no raw identifier.
pub use r#type::v1 as types;

/// The encoded `google.protobuf.FileDescriptorSet` of every cwsm `.proto` file and its
/// imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cwsm_descriptor.bin"));

/// Package `cwsm.accounts.v1`: organizations, people, memberships, sign-in, tokens.
pub mod accounts {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("cwsm.accounts.v1");
    }
}
