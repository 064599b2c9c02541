//! The one idempotency rule every write RPC follows.
//!
//! A client names each change it asks for with a `request_id` of its own choosing, so that a
//! retry after a lost reply cannot make the change twice. The key a service keeps is bound to
//! **who** asks (subject and organization), **which method**, **on what** (the target: the
//! project, the period, the parent of what is created; empty for a top-level create) and the
//! client's request id, together with a fingerprint (SHA-256) of the whole request:
//!
//! - the first call claims the key, does its work and records the resource it made or
//!   changed, all in **one write transaction** ([`keyed_write!`](crate::keyed_write));
//! - a retry (same key, same request) finds the key taken and gets the recorded resource,
//!   writing nothing; on PostgreSQL a retry racing the first call waits on the key's index entry
//!   until the first commits (or rolls back, freeing the key), so it never fails on the key;
//! - the same key with a *different* request is the client's mistake (as Stripe treats it):
//!   INVALID_ARGUMENT on `request_id`, nothing done.
//!
//! The key is claimed first, with one `INSERT … ON CONFLICT DO NOTHING` and no look-up before
//! it, so two concurrent first calls cannot both pass a check and both write.

use sha2::{Digest, Sha256};

use crate::Error;
use crate::auth::Principal;

/// Longest request id accepted (it is stored and compared, not interpreted).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The key of one requested change, and the fingerprint of the request it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    /// Who, which method, on what: `subject|org|Method|target`.
    pub scope: String,
    /// The client's request id.
    pub request_id: String,
    /// Hex SHA-256 of the request as sent (its protobuf encoding).
    pub fingerprint: String,
}

impl RequestKey {
    /// The key for `request` (the whole message, request id included) sent by `who` to
    /// `method` on `target`. INVALID_ARGUMENT when the request id is empty or too long.
    pub fn new(
        who: &Principal,
        method: &str,
        target: &str,
        request_id: &str,
        request: &impl prost::Message,
    ) -> Result<RequestKey, Error> {
        Self::from_bytes(who, method, target, request_id, &request.encode_to_vec())
    }

    /// As [`RequestKey::new`], for a request already encoded (or any bytes that stand for it).
    pub fn from_bytes(
        who: &Principal,
        method: &str,
        target: &str,
        request_id: &str,
        request: &[u8],
    ) -> Result<RequestKey, Error> {
        let request_id = crate::grpc::request_id(request_id)?;
        Ok(RequestKey {
            scope: format!(
                "{}|{}|{method}|{target}",
                who.subject,
                who.org.as_deref().unwrap_or_default()
            ),
            request_id: request_id.to_string(),
            fingerprint: hex::encode(Sha256::digest(request)),
        })
    }

    /// What a retry finds when the key was claimed: the recorded resource, or INVALID_ARGUMENT
    /// when the key was used for another request.
    pub fn replay(&self, stored_fingerprint: &str, resource_id: String) -> Result<String, Error> {
        // Keys stored before fingerprints were kept have none: they replay as before.
        if !stored_fingerprint.is_empty() && stored_fingerprint != self.fingerprint {
            return Err(Error::invalid(
                "request_id",
                format!(
                    "{:?} was used already by this caller for a different request to the same \
                     method and target; use a new request id for every change",
                    self.request_id
                ),
            ));
        }
        Ok(resource_id)
    }
}

/// The resource recorded under `key`, if a call with it has committed: a read-only look-up for
/// writes that do slow work before their write transaction (a retry should not redo it, nor
/// fail the checks the first call's effect now fails). [`keyed_write!`] still decides.
pub async fn recorded(db: &crate::db::Db, key: &RequestKey) -> Result<Option<String>, Error> {
    let row: Option<(String, String)> = crate::with_db!(db, pool => sqlx::query_as(
        "SELECT request_hash, resource_id FROM idempotency WHERE scope = $1 AND request_id = $2",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .fetch_optional(pool)
    .await?);
    match row {
        // Claimed by a call still running: its transaction decides.
        Some((_, id)) if id.is_empty() => Ok(None),
        Some((fingerprint, id)) => key.replay(&fingerprint, id).map(Some),
        None => Ok(None),
    }
}

/// Runs `$body` in one write transaction `$tx` under the [`RequestKey`] `$key`, on either
/// engine, and evaluates to the id (a `String`) of the resource made or changed. `$body`
/// evaluates to that id; it may `return Err(…)` (or use `?`), which rolls back and frees the
/// key. A retry of the same request evaluates to the id the first call recorded without running
/// `$body`; the same key with a different request returns INVALID_ARGUMENT from the enclosing
/// function.
///
/// `$body` reads on `$tx`, never through the pool: on SQLite the pool's few connections may all
/// be waiting for the write lock `$tx` holds, and a read through the pool would wait for them.
///
/// Each service keeps the table
/// `idempotency (scope, request_id, resource_id, request_hash, created_at_ms)` with the primary
/// key `(scope, request_id)`.
#[macro_export]
macro_rules! keyed_write {
    ($db:expr, $key:expr, $tx:ident => $body:block) => {{
        let key: &$crate::idempotency::RequestKey = $key;
        $crate::with_db!($db, pool => {
            let mut $tx = $crate::db::BeginWrite::begin_write(pool).await?;
            let claimed = sqlx::query(
                "INSERT INTO idempotency (scope, request_id, resource_id, request_hash, created_at_ms) \
                 VALUES ($1, $2, '', $3, $4) ON CONFLICT (scope, request_id) DO NOTHING",
            )
            .bind(&key.scope)
            .bind(&key.request_id)
            .bind(&key.fingerprint)
            .bind($crate::now_ms())
            .execute(&mut *$tx)
            .await?
            .rows_affected()
                == 1;
            if claimed {
                let id: String = $body;
                sqlx::query("UPDATE idempotency SET resource_id = $1 WHERE scope = $2 AND request_id = $3")
                    .bind(&id)
                    .bind(&key.scope)
                    .bind(&key.request_id)
                    .execute(&mut *$tx)
                    .await?;
                $tx.commit().await?;
                id
            } else {
                let (fingerprint, first): (String, String) = sqlx::query_as(
                    "SELECT request_hash, resource_id FROM idempotency WHERE scope = $1 AND request_id = $2",
                )
                .bind(&key.scope)
                .bind(&key.request_id)
                .fetch_one(&mut *$tx)
                .await?;
                $tx.commit().await?;
                key.replay(&fingerprint, first)?
            }
        })
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn who(subject: &str, org: Option<&str>) -> Principal {
        Principal {
            subject: subject.to_string(),
            role: Role::Company,
            org: org.map(str::to_string),
            scope: crate::auth::Scope::Platform,
        }
    }

    #[test]
    fn the_key_binds_caller_method_and_target() {
        let a = who("li", Some("91320411MA1QX7B2F8"));
        let k = RequestKey::from_bytes(&a, "VerifyPeriod", "p-1", "r-1", b"x").unwrap();
        assert_eq!(k.scope, "li|91320411MA1QX7B2F8|VerifyPeriod|p-1");
        let other_target = RequestKey::from_bytes(&a, "VerifyPeriod", "p-2", "r-1", b"x").unwrap();
        assert_ne!(k.scope, other_target.scope);
        let other_person =
            RequestKey::from_bytes(&who("wang", None), "VerifyPeriod", "p-1", "r-1", b"x").unwrap();
        assert_ne!(k.scope, other_person.scope);
    }

    #[test]
    fn a_key_reused_for_another_request_is_refused() {
        let a = who("li", None);
        let first = RequestKey::from_bytes(&a, "M", "t", "r", b"one").unwrap();
        let again = RequestKey::from_bytes(&a, "M", "t", "r", b"one").unwrap();
        let other = RequestKey::from_bytes(&a, "M", "t", "r", b"two").unwrap();
        assert_eq!(again.replay(&first.fingerprint, "id".into()).unwrap(), "id");
        let err = other.replay(&first.fingerprint, "id".into()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { ref field, .. } if field == "request_id"));
        // Keys kept before fingerprints replay as they did.
        assert_eq!(other.replay("", "id".into()).unwrap(), "id");
    }

    #[test]
    fn request_ids_are_required_and_bounded() {
        let a = who("li", None);
        assert!(RequestKey::from_bytes(&a, "M", "t", " ", b"").is_err());
        let long = "r".repeat(MAX_REQUEST_ID_LEN + 1);
        assert!(RequestKey::from_bytes(&a, "M", "t", &long, b"").is_err());
    }
}
