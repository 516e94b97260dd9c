//! argon2id password hashing. Hashing is deliberately slow (tens of milliseconds and
//! megabytes of memory), so it runs on tokio's blocking pool instead of stalling an async
//! worker thread that serves other requests.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version};
use async_trait::async_trait;
use ports::{HashError, PasswordHasher};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory per hash in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// The OWASP recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// [`ports::PasswordHasher`] producing argon2id PHC strings. Verification uses the
/// parameters recorded in each hash, so raising the cost later keeps old hashes valid.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    params: Params,
}

impl Argon2Hasher {
    /// A hasher with these costs.
    ///
    /// # Errors
    /// [`HashError::Failed`] when argon2 refuses the parameters (e.g. less than
    /// `8 * parallelism` KiB of memory, or zero iterations).
    pub fn new(params: Argon2Params) -> Result<Self, HashError> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| HashError::Failed(format!("invalid argon2 parameters: {e}")))?;
        Ok(Self { params })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            Self::argon2(params)
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| HashError::Failed(e.to_string()))
        })
        .await
        .map_err(|e| HashError::Failed(format!("hashing task failed: {e}")))?
    }

    async fn verify(&self, password: &str, hash: &str) -> Result<bool, HashError> {
        let Ok(parsed) = PasswordHash::new(hash) else {
            if !hash.is_empty() {
                tracing::warn!("stored password hash is not a PHC string");
            }
            return Ok(false);
        };
        let params = self.params.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            match Self::argon2(params).verify_password(password.as_bytes(), &parsed) {
                Ok(()) => true,
                Err(argon2::password_hash::Error::PasswordInvalid) => false,
                // An unsupported algorithm, bad parameters or a truncated salt: the stored
                // hash is malformed, which the port defines as "does not match".
                Err(e) => {
                    tracing::warn!(error = %e, "stored password hash cannot be verified");
                    false
                }
            }
        })
        .await
        .map_err(|e| HashError::Failed(format!("verification task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = cheap();
        let hash = hasher.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert_eq!(hasher.verify("correct horse battery", &hash).await, Ok(true));
        assert_eq!(hasher.verify("wrong horse battery", &hash).await, Ok(false));
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_salt() {
        let hasher = cheap();
        let a = hasher.hash("correct horse battery").await.unwrap();
        let b = hasher.hash("correct horse battery").await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn hashes_made_with_other_costs_still_verify() {
        let hash = cheap().hash("correct horse battery").await.unwrap();
        let other = Argon2Hasher::new(Argon2Params {
            memory_kib: 2048,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        assert_eq!(other.verify("correct horse battery", &hash).await, Ok(true));
    }

    #[tokio::test]
    async fn a_malformed_or_empty_hash_does_not_match() {
        let hasher = cheap();
        assert_eq!(hasher.verify("pw", "").await, Ok(false));
        assert_eq!(hasher.verify("pw", "not a hash").await, Ok(false));
        assert_eq!(hasher.verify("pw", "$argon2id$v=19$m=1024,t=1,p=1$").await, Ok(false));
        assert_eq!(hasher.verify("pw", "$bcrypt$whatever").await, Ok(false));
    }

    #[tokio::test]
    async fn parameters_argon2_refuses_are_an_error() {
        let invalid = Argon2Hasher::new(Argon2Params {
            memory_kib: 1024,
            iterations: 0,
            parallelism: 1,
        });
        assert!(matches!(invalid, Err(HashError::Failed(_))));
    }
}
