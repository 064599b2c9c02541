//! The edge between domain and gRPC that every service shares: error mapping, pagination,
//! timestamps.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                format!("invalid {field}: {reason}"),
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            Error::NotFound { kind, id } => Status::not_found(format!("{kind} {id} not found")),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Internal(e) => {
                // The caller gets no internals; the log gets all of them.
                tracing::error!(error = %format!("{e:#}"), "internal error");
                Status::internal("internal error; see the server log")
            }
        }
    }
}

/// Default and largest page sizes of every List call.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// A validated page request: how many rows, and the sort key after which to continue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub size: i64,
    /// The last sort key of the previous page; `None` for the first page.
    pub after: Option<String>,
}

impl Page {
    /// Reads `page_size` (0 means the default; above the maximum is clamped) and `page_token`.
    pub fn from_request(page_size: i32, page_token: &str) -> Result<Page, Error> {
        if page_size < 0 {
            return Err(Error::invalid("page_size", "must not be negative"));
        }
        let size = match i64::from(page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(page_token)?)
        };
        Ok(Page { size, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts `rows` (fetched with [`Page::fetch_limit`]) to the page and returns the token of the
    /// next page, empty when this is the last.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> String) -> String {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if rows.len() > size {
            rows.truncate(size);
            rows.last()
                .map(|r| encode_token(&key(r)))
                .unwrap_or_default()
        } else {
            String::new()
        }
    }
}

/// Page tokens are opaque to clients: a versioned, base64-encoded sort key. Keyset pagination
/// (by a unique, time-ordered id) keeps pages stable while rows are inserted.
pub fn encode_token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
}

fn decode_token(token: &str) -> Result<String, Error> {
    let bad = || Error::invalid("page_token", "not a token this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("v1:").map(str::to_string).ok_or_else(bad)
}

/// Milliseconds since the epoch to a protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A protobuf timestamp to milliseconds since the epoch.
/// Saturates rather than overflows: a time far outside any range checked is still out of it.
pub fn millis(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// Reads a required `request_id` (the client's idempotency key for a create or a transition).
pub fn request_id(value: &str) -> Result<&str, Error> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::invalid(
            "request_id",
            "required: a client-chosen key that makes retries safe",
        ));
    }
    if v.len() > 128 {
        return Err(Error::invalid("request_id", "at most 128 characters"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = encode_token("0199-abc");
        let page = Page::from_request(10, &token).expect("valid");
        assert_eq!(page.after.as_deref(), Some("0199-abc"));
        assert_eq!(page.size, 10);
        assert!(matches!(
            Page::from_request(10, "garbage!"),
            Err(Error::InvalidArgument { field, .. }) if field == "page_token"
        ));
        assert!(Page::from_request(-1, "").is_err());
        assert_eq!(
            Page::from_request(0, "").expect("default").size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            Page::from_request(100_000, "").expect("clamped").size,
            MAX_PAGE_SIZE
        );
    }

    #[test]
    fn finish_cuts_the_extra_row_and_names_the_next_page() {
        let page = Page::from_request(2, "").expect("page");
        let mut rows = vec!["a", "b", "c"];
        let next = page.finish(&mut rows, |r| r.to_string());
        assert_eq!(rows, vec!["a", "b"]);
        assert_eq!(
            Page::from_request(2, &next).expect("next").after.as_deref(),
            Some("b")
        );
        let mut last = vec!["c"];
        assert_eq!(page.finish(&mut last, |r| r.to_string()), "");
    }

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for ms in [0, 1_606_780_800_123, -1_500] {
            assert_eq!(millis(&timestamp(ms)), ms);
        }
    }

    #[test]
    fn invalid_argument_carries_the_field() {
        let status = Status::from(Error::invalid("offering.title", "required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = details
            .bad_request()
            .expect("bad request")
            .field_violations
            .clone();
        assert_eq!(violations[0].field, "offering.title");
    }
}
