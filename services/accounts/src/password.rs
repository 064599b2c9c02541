//! Password hashes: argon2id at the OWASP cost (m = 19 MiB, t = 2, p = 1), PHC strings with a
//! random 16-byte salt. Hashing runs on the blocking pool, at most two at once (each takes
//! 19 MiB and a core), so a burst of sign-ins queues instead of exhausting memory.

use std::sync::Arc;

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

/// OWASP's first recommended argon2id configuration.
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// Hashes at once; more wait.
const CONCURRENT_HASHES: usize = 2;

#[derive(Clone)]
pub struct Hasher {
    /// A hash of a random password, verified when the login is unknown so that an unknown
    /// login costs the same as a wrong password.
    dummy: Arc<String>,
    permits: Arc<Semaphore>,
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hash = argon2()?
        .hash_password_with_salt(password, &salt)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(hash.to_string())
}

impl Hasher {
    pub fn new() -> anyhow::Result<Hasher> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Hasher {
            dummy: Arc::new(hash_now(&random)?),
            permits: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
        })
    }

    /// A new PHC hash of `password`.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        tokio::task::spawn_blocking(move || hash_now(password.as_bytes()))
            .await
            .context("hashing task")?
    }

    /// Whether `password` matches `hash`; with no hash (an unknown login) the dummy hash is
    /// verified and the answer is false, in about the same time.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let dummy = self.dummy.clone();
        tokio::task::spawn_blocking(move || {
            let known = hash.is_some();
            let phc = hash.as_deref().unwrap_or(dummy.as_str());
            let ok = argon2()?.verify_password(password.as_bytes(), phc).is_ok();
            Ok(ok && known)
        })
        .await
        .context("verifying task")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_logins_never_do() {
        let h = Hasher::new().expect("hasher");
        let phc = h.hash("correct horse".into()).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            h.verify("correct horse".into(), Some(phc.clone()))
                .await
                .expect("v")
        );
        assert!(!h.verify("wrong horse".into(), Some(phc)).await.expect("v"));
        assert!(!h.verify("correct horse".into(), None).await.expect("v"));
    }
}
