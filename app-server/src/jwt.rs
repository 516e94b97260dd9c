//! Access tokens as HS256 JWTs. They are short-lived and self-contained so any instance can
//! verify a request without a lookup; revocation happens on the refresh-token side, which
//! is why the token carries its login's family id.

use std::time::Duration;

use core_domain::member::Role;
use core_domain::{MemberId, TokenFamilyId};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation};
use ports::{AccessClaims, AccessTokenError, AccessTokens};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

/// Clock skew tolerated between the instance that issued a token and the one verifying it.
const LEEWAY_SECS: u64 = 5;

/// Who issues hexride's access tokens (`iss`), checked on every token.
pub const ISSUER: &str = "hexride";
/// Whom they are for (`aud`): hexride's API. A token of another service signed with the
/// same secret by mistake is refused.
pub const AUDIENCE: &str = "hexride-api";

/// The shortest secret accepted: HS256 keys shorter than the hash (32 bytes) weaken it.
pub const MIN_SECRET_BYTES: usize = 32;

/// Secrets from documentation and examples, refused whatever their length.
const PLACEHOLDERS: &[&str] = &["change-me-to-a-long-random-secret", "changeme", "change-me", "secret"];

/// Why `secret` is not fit to sign tokens: too short, or a placeholder from an example.
///
/// # Errors
/// The reason, for the start-up error.
pub fn check_secret(secret: &str) -> Result<(), String> {
    let lowered = secret.trim().to_lowercase();
    if PLACEHOLDERS.iter().any(|p| lowered == *p) || lowered.contains("change-me") || lowered.contains("changeme") {
        return Err("is a placeholder from an example; generate one, e.g. `openssl rand -hex 32`".to_owned());
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "is {} bytes; at least {MIN_SECRET_BYTES} are needed (e.g. `openssl rand -hex 32`)",
            secret.len()
        ));
    }
    Ok(())
}

/// HS256 with RustCrypto's `hmac`: the only algorithm hexride signs or accepts, so
/// jsonwebtoken is built without its crypto features (whose RustCrypto set brings `rsa`).
struct Hs256(Hmac<Sha256>);

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    /// In constant time.
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.verify_slice(signature).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn hs256(algorithm: Algorithm, family: AlgorithmFamily, secret: &[u8]) -> jsonwebtoken::errors::Result<Hs256> {
    if algorithm != Algorithm::HS256 || family != AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Hmac::new_from_slice(secret)
        .map(Hs256)
        .map_err(|_| ErrorKind::InvalidKeyFormat.into())
}

/// jsonwebtoken's process-wide crypto: HS256 only. JWK helpers are not supported.
static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: |algorithm, key| Ok(Box::new(hs256(*algorithm, key.family(), key.as_bytes())?)),
    verifier_factory: |algorithm, key| match key.kind() {
        DecodingKeyKind::SecretOrDer(secret) => Ok(Box::new(hs256(*algorithm, key.family(), secret)?)),
        _ => Err(ErrorKind::InvalidKeyFormat.into()),
    },
    key_utils: KeyUtils::new_unimplemented(),
};

/// The JWT body.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Uuid,
    role: Role,
    fam: Uuid,
    iat: i64,
    exp: i64,
}

/// [`ports::AccessTokens`] signing HS256 JWTs with a shared secret, so every instance given
/// the same secret accepts the others' tokens.
pub struct JwtAccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtAccessTokens {
    /// Tokens signed with `secret` that callers are told live for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        // Once per process; a provider an embedding application installed first stays (it
        // signs HS256 too).
        let _ = HS256_ONLY.install_default();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }
}

impl std::fmt::Debug for JwtAccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys.
        f.debug_struct("JwtAccessTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AccessTokens for JwtAccessTokens {
    /// Signs `claims`; the token expires at `claims.expires_at` (callers set it to now + ttl).
    fn issue(&self, claims: &AccessClaims) -> Result<String, AccessTokenError> {
        let body = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: claims.member_id.as_uuid(),
            role: claims.role,
            fam: claims.family_id.as_uuid(),
            iat: OffsetDateTime::now_utc().unix_timestamp(),
            exp: claims.expires_at.unix_timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, &self.encoding)
            .map_err(|e| AccessTokenError::Signing(e.to_string()))
    }

    fn verify(&self, token: &str) -> Result<AccessClaims, AccessTokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            tracing::debug!(error = %e, "access token rejected");
            AccessTokenError::Invalid
        })?;
        let claims = data.claims;
        let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| AccessTokenError::Invalid)?;
        Ok(AccessClaims {
            member_id: MemberId(claims.sub),
            role: claims.role,
            family_id: TokenFamilyId(claims.fam),
            expires_at,
        })
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret that is long enough!";

    fn tokens() -> JwtAccessTokens {
        JwtAccessTokens::new(SECRET, Duration::from_secs(900))
    }

    fn claims(expires_in: time::Duration) -> AccessClaims {
        // JWTs carry whole seconds.
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        AccessClaims {
            member_id: MemberId(Uuid::now_v7()),
            role: Role::Cx,
            family_id: TokenFamilyId(Uuid::now_v7()),
            expires_at: now + expires_in,
        }
    }

    #[test]
    fn an_issued_token_verifies_to_the_same_claims() {
        let tokens = tokens();
        let claims = claims(time::Duration::minutes(15));
        let token = tokens.issue(&claims).unwrap();
        assert_eq!(tokens.verify(&token), Ok(claims));
        assert_eq!(tokens.ttl(), Duration::from_secs(900));
    }

    #[test]
    fn the_payload_has_the_documented_claims() {
        let claims = claims(time::Duration::minutes(15));
        let token = tokens().issue(&claims).unwrap();
        let json: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
        assert_eq!(json["sub"], claims.member_id.to_string());
        assert_eq!(json["role"], "cx");
        assert_eq!(json["fam"], claims.family_id.to_string());
        assert_eq!(json["exp"], claims.expires_at.unix_timestamp());
        assert!(json["iat"].is_i64());
        assert_eq!(
            (json["iss"].as_str(), json["aud"].as_str()),
            (Some(ISSUER), Some(AUDIENCE))
        );
    }

    #[test]
    fn a_token_for_another_audience_or_issuer_is_invalid() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for (iss, aud) in [("hexride", "another-api"), ("someone-else", "hexride-api")] {
            let body = serde_json::json!({
                "iss": iss, "aud": aud, "sub": Uuid::now_v7(), "role": "rider", "fam": Uuid::now_v7(),
                "iat": now, "exp": now + 600,
            });
            let token =
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, &EncodingKey::from_secret(SECRET)).unwrap();
            assert_eq!(tokens().verify(&token), Err(AccessTokenError::Invalid), "{iss} {aud}");
        }
    }

    #[test]
    fn short_and_placeholder_secrets_are_refused() {
        assert!(check_secret("too short").is_err());
        assert!(check_secret(&"x".repeat(31)).is_err());
        assert!(check_secret("change-me-to-a-long-random-secret").is_err());
        assert!(check_secret("please-CHANGE-ME-before-production-0123456789").is_err());
        assert!(check_secret(&"x".repeat(32)).is_ok());
        assert!(check_secret("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0").is_ok());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_invalid() {
        let other = JwtAccessTokens::new(b"another secret entirely, also long", Duration::from_secs(900));
        let token = other.issue(&claims(time::Duration::minutes(15))).unwrap();
        assert_eq!(tokens().verify(&token), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_invalid() {
        let tokens = tokens();
        let token = tokens.issue(&claims(time::Duration::seconds(-30))).unwrap();
        assert_eq!(tokens.verify(&token), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn garbage_is_invalid() {
        let tokens = tokens();
        for garbage in ["", "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
            assert_eq!(tokens.verify(garbage), Err(AccessTokenError::Invalid), "{garbage}");
        }
    }

    #[test]
    fn a_tampered_payload_is_invalid() {
        let tokens = tokens();
        let token = tokens.issue(&claims(time::Duration::minutes(15))).unwrap();
        let forged = tokens.issue(&AccessClaims {
            role: Role::Admin,
            ..claims(time::Duration::minutes(15))
        });
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = forged.unwrap();
        parts[1] = forged.split('.').nth(1).unwrap();
        assert_eq!(tokens.verify(&parts.join(".")), Err(AccessTokenError::Invalid));
    }
}
