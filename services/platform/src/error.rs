//! The error vocabulary shared by every service's domain. Plain Rust: the gRPC adapter maps it to
//! status codes (see [`crate::grpc`]), so domain code never builds a `tonic::Status` itself.

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the request is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The named resource does not exist (or the caller may not know that it does).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A resource with the same natural key exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well formed but the resource is not in a state that allows it (a wrong
    /// lifecycle step).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's role or organization may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A concurrent update won: the caller's version is stale.
    #[error("{0}")]
    Aborted(String),
    /// The caller holds as much as it may (streams open at once): the message says the limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller's credentials are missing, wrong or no longer valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// Something outside this service that the call needs did not answer (an external identity
    /// provider): the caller may retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Something the caller cannot fix: the database or the bus failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        Error::FailedPrecondition(message.into())
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Error::PermissionDenied(message.into())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(e).context("database"))
    }
}
