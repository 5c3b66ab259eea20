//! Passwords: the policy (NIST SP 800-63B: a length range, no composition rules) and argon2id
//! hashing at OWASP's parameters (m = 19456 KiB, t = 2, p = 1), stored as a PHC string.
//!
//! Hashing and verifying cost tens of milliseconds of CPU and 19 MiB each: they run on
//! `spawn_blocking`, never on the async runtime's workers, and at most `permits` at once
//! (a [`Semaphore`] sized to the available parallelism), so a burst of sign-ins or invite
//! acceptances waits its turn instead of starving token issuance or exhausting memory.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::keys::envelope::random_bytes;
use crate::model::Secret;

/// The shortest password accepted, in bytes of UTF-8.
pub const MIN_PASSWORD_BYTES: usize = 12;
/// The longest password accepted, in bytes of UTF-8 (bounds the work a request can cause).
pub const MAX_PASSWORD_BYTES: usize = 256;

/// OWASP Password Storage Cheat Sheet, argon2id: 19 MiB, two iterations, one lane.
pub const OWASP_MEMORY_KIB: u32 = 19_456;
pub const OWASP_ITERATIONS: u32 = 2;
pub const OWASP_PARALLELISM: u32 = 1;

/// What is wrong with a password (the message is shown to the person or the admin as is).
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.len();
    if n < MIN_PASSWORD_BYTES {
        return Err(format!(
            "must be at least {MIN_PASSWORD_BYTES} bytes long (it is {n}); any characters, \
             a passphrase of a few words is fine"
        ));
    }
    if n > MAX_PASSWORD_BYTES {
        return Err(format!(
            "must be at most {MAX_PASSWORD_BYTES} bytes long (it is {n})"
        ));
    }
    if password.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// A stored hash that does not parse (never the hash itself in the message).
    #[error("the stored password hash is not a valid PHC string")]
    BadHash,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The blocking task panicked or the runtime is shutting down.
    #[error("password hashing did not complete")]
    Aborted,
}

/// argon2id hashing off the async runtime, bounded in concurrency.
pub struct Passwords {
    permits: Arc<Semaphore>,
    params: Params,
    /// A hash of a random password, verified against by [`Passwords::verify_dummy`].
    dummy: OnceCell<String>,
}

impl Passwords {
    /// OWASP parameters, as many hashes at once as the machine has cores (at least one).
    pub fn new() -> Self {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::with(n, OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM)
    }

    /// Other parameters (tests of the concurrency bound); out-of-range ones fall back to OWASP.
    pub fn with(permits: usize, m_kib: u32, t: u32, p: u32) -> Self {
        let params = Params::new(m_kib, t, p, None).unwrap_or_else(|_| owasp());
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            params,
            dummy: OnceCell::new(),
        }
    }

    /// How many hashes may run at once.
    pub fn available_permits(&self) -> usize {
        self.permits.available_permits()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Aborted)?;
        let params = self.params.clone();
        // The permit goes with the blocking task, not with this future: a request dropped
        // (client gone, timeout) while its hash runs must not free a slot for another hash
        // while this one still burns a core and its memory (review finding).
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
        })
        .await
        .map_err(|_| PasswordError::Aborted)
    }

    /// The PHC string of `password` with a fresh 128-bit salt.
    pub async fn hash(&self, password: &Secret) -> Result<String, PasswordError> {
        let pw = password.expose().to_owned();
        self.blocking(move |a| {
            let salt = SaltString::encode_b64(&random_bytes::<16>())
                .map_err(|e| PasswordError::Hashing(e.to_string()))?;
            a.hash_password(pw.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hashing(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches the stored PHC string (constant-time comparison inside the
    /// argon2 crate; the parameters are the stored ones, so older hashes keep verifying).
    pub async fn verify(&self, password: &Secret, phc: &str) -> Result<bool, PasswordError> {
        let pw = password.expose().to_owned();
        let phc = phc.to_owned();
        self.blocking(move |a| {
            let parsed = PasswordHash::new(&phc).map_err(|_| PasswordError::BadHash)?;
            if parsed.algorithm.as_str() != "argon2id" {
                return Err(PasswordError::BadHash);
            }
            Ok(a.verify_password(pw.as_bytes(), &parsed).is_ok())
        })
        .await?
    }

    /// Spends the time of a verification and answers `false`: for a sign-in with an unknown
    /// email or an account without a password, so the answer's timing does not tell whether
    /// the account exists.
    pub async fn verify_dummy(&self, password: &Secret) -> Result<bool, PasswordError> {
        let dummy = self
            .dummy
            .get_or_try_init(|| async {
                let random = crate::keys::envelope::random_token();
                self.hash(&random).await
            })
            .await?
            .clone();
        self.verify(password, &dummy).await.map(|_| false)
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

fn owasp() -> Params {
    // These constants are within argon2's ranges; `DEFAULT` is the same as OWASP's choice.
    Params::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM, None)
        .unwrap_or(Params::DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_length_only() {
        assert!(check_policy("short").unwrap_err().contains("at least 12"));
        assert!(check_policy("twelve bytes").is_ok());
        assert!(check_policy("aaaaaaaaaaaa").is_ok(), "no composition rules");
        assert!(check_policy(&"x".repeat(256)).is_ok());
        assert!(
            check_policy(&"x".repeat(257))
                .unwrap_err()
                .contains("at most 256")
        );
        // Bytes, not characters: four 3-byte characters are 12 bytes.
        assert!(check_policy("€€€€").is_ok());
        assert!(check_policy("€€€").is_err());
        assert!(check_policy("abcdefghijk\0").is_err());
    }

    #[tokio::test]
    async fn hashes_are_owasp_argon2id_and_verify() {
        let p = Passwords::new();
        let pw = Secret::new("correct horse battery");
        let phc = p.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(p.verify(&pw, &phc).await.unwrap());
        assert!(
            !p.verify(&Secret::new("wrong horse battery"), &phc)
                .await
                .unwrap()
        );
        assert_ne!(p.hash(&pw).await.unwrap(), phc, "a fresh salt each time");
        assert!(matches!(
            p.verify(&pw, "not a phc").await,
            Err(PasswordError::BadHash)
        ));
        assert!(!p.verify_dummy(&pw).await.unwrap());
        assert!(p.available_permits() >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_permits_hashes_run_at_once() {
        // One permit, OWASP memory (tens of milliseconds a hash): while four hashes are asked
        // for at once, the permit is taken and the others wait for it.
        let p = Arc::new(Passwords::with(1, OWASP_MEMORY_KIB, 2, 1));
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let p = p.clone();
                tokio::spawn(
                    async move { p.hash(&Secret::new(format!("password number {i}"))).await },
                )
            })
            .collect();
        let mut seen_taken = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            assert!(p.available_permits() <= 1);
            if p.available_permits() == 0 {
                seen_taken = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
        assert!(seen_taken, "a hash holds the permit while it runs");
        for t in tasks {
            assert!(t.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
        assert_eq!(p.available_permits(), 1, "every permit is given back");
    }
}
