//! The accounts service's Ed25519 signing keys: generated here, kept in its own database
//! (never leaving the service), published as a JWKS with their RFC 7638 thumbprints as `kid`.
//!
//! Rotation without downtime: a new key is published at once and signs only from
//! `signs_from` (after the verifiers' refresh interval); a key stays published until the last
//! token it signed has expired.

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};

/// The fixed PKCS#8 v1 header of an Ed25519 private key (RFC 8410): the key is this plus the
/// 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A key as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredKey {
    pub kid: String,
    pub private_key: String,
    pub public_x: String,
    pub created_at_ms: i64,
    pub signs_from_ms: i64,
}

impl StoredKey {
    /// A new random key that signs from `signs_from_ms`.
    pub fn generate(now_ms: i64, signs_from_ms: i64) -> anyhow::Result<StoredKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let jwk = Jwk::from_encoding_key(&EncodingKey::from_ed_der(&der), Algorithm::EdDSA)
            .context("deriving the public key")?;
        let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm else {
            anyhow::bail!("an Ed25519 key gave a JWK of another type");
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .context("key thumbprint")?;
        Ok(StoredKey {
            kid,
            private_key: hex::encode(der),
            public_x: okp.x.clone(),
            created_at_ms: now_ms,
            signs_from_ms,
        })
    }

    pub fn encoding_key(&self) -> anyhow::Result<EncodingKey> {
        let der = hex::decode(&self.private_key)
            .with_context(|| format!("signing key {} is not hex", self.kid))?;
        Ok(EncodingKey::from_ed_der(&der))
    }

    /// The public half as a JWK.
    pub fn jwk(&self) -> Jwk {
        use jsonwebtoken::jwk::{
            AlgorithmParameters, CommonParameters, EllipticCurve, OctetKeyPairParameters,
            OctetKeyPairType,
        };
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(self.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: self.public_x.clone(),
            }),
        }
    }
}

/// The key that signs at `now_ms`: the latest whose `signs_from` has come.
pub fn signer(keys: &[StoredKey], now_ms: i64) -> Option<&StoredKey> {
    keys.iter()
        .filter(|k| k.signs_from_ms <= now_ms)
        .max_by_key(|k| (k.signs_from_ms, k.created_at_ms))
}

/// The keys to publish at `now_ms`: those not yet signing, the signer, and older ones until
/// `keep_ms` (the longest access token lifetime and the clock leeway) after a newer key took
/// over.
pub fn published(keys: &[StoredKey], now_ms: i64, keep_ms: i64) -> JwkSet {
    let mut sorted: Vec<&StoredKey> = keys.iter().collect();
    sorted.sort_by_key(|k| (k.signs_from_ms, k.created_at_ms));
    let mut out = Vec::new();
    for (i, key) in sorted.iter().enumerate() {
        // When a later key took over from this one (none: it still signs or will).
        let replaced_at = sorted[i + 1..]
            .iter()
            .map(|k| k.signs_from_ms)
            .find(|&from| from <= now_ms);
        let keep = match replaced_at {
            None => true,
            Some(at) => now_ms < at.saturating_add(keep_ms),
        };
        if keep {
            out.push(key.jwk());
        }
    }
    JwkSet { keys: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verified tokens are kept, but a revoked one is refused at once and a withdrawn key's
    /// tokens are refused as soon as the key set no longer has it.
    #[test]
    fn kept_verified_tokens_still_meet_revocation_and_withdrawn_keys() {
        use cwsm_platform::auth::{AccessClaims, Revocations, Role, TokenVerifier};
        let key = StoredKey::generate(0, 0).expect("key");
        let other = StoredKey::generate(0, 0).expect("key");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let claims = AccessClaims {
            sub: "person-1".into(),
            role: Role::Company,
            org: "91320411MA1MQ2H7XU".into(),
            approved: true,
            sid: "session-1".into(),
            jur: "320411".into(),
            dept: None,
            iat: now,
            exp: now + 600,
            iss: cwsm_platform::auth::ACCOUNTS_ISSUER.into(),
            aud: cwsm_platform::auth::ACCESS_AUDIENCE.into(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding_key().expect("key"))
            .expect("token");
        let verifier = TokenVerifier::new(None);
        verifier
            .set_jwks(&JwkSet {
                keys: vec![key.jwk(), other.jwk()],
            })
            .expect("jwks");
        assert_eq!(verifier.verify_access(&token).ok(), Some(claims.clone()));
        // Kept: the same answer from memory.
        assert_eq!(verifier.verify_access(&token).ok(), Some(claims.clone()));
        // The same keys again keep it; a revoked session is refused though kept.
        verifier
            .set_jwks(&JwkSet {
                keys: vec![other.jwk(), key.jwk()],
            })
            .expect("jwks");
        let mut revoked = Revocations::default();
        revoked.sessions.insert("session-1".into());
        verifier.set_revocations(revoked);
        assert!(verifier.verify_access(&token).is_err());
        verifier.set_revocations(Revocations::default());
        assert!(verifier.verify_access(&token).is_ok());
        // Its key withdrawn: refused.
        verifier
            .set_jwks(&JwkSet {
                keys: vec![other.jwk()],
            })
            .expect("jwks");
        assert!(verifier.verify_access(&token).is_err());
    }

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_until_its_tokens_expire() {
        let old = StoredKey::generate(0, 0).expect("key");
        let new = StoredKey::generate(1_000, 2_000).expect("key");
        let keys = vec![old.clone(), new.clone()];
        let ids = |set: JwkSet| {
            set.keys
                .into_iter()
                .filter_map(|k| k.common.key_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(signer(&keys, 1_500).map(|k| &k.kid), Some(&old.kid));
        assert_eq!(
            ids(published(&keys, 1_500, 900_000)),
            vec![old.kid.clone(), new.kid.clone()]
        );
        assert_eq!(signer(&keys, 2_000).map(|k| &k.kid), Some(&new.kid));
        assert_eq!(ids(published(&keys, 2_000 + 899_999, 900_000)).len(), 2);
        assert_eq!(
            ids(published(&keys, 2_000 + 900_000, 900_000)),
            vec![new.kid]
        );
    }
}
