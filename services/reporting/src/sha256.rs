//! The fingerprint of a loaded plan file (SHA-256, hex), with the `sha2` crate the database
//! drivers already build.

use sha2::{Digest, Sha256};

/// The SHA-256 digest of `data`, as lower-case hex.
pub fn hex_digest(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::hex_digest;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex_digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
