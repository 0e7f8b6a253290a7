//! Signed requests: no API keys, a Starknet account signs each write and each read of private
//! data as SNIP-12 revision 1 typed data. The client signs here, the server recomputes the
//! same hash here and asks the account contract (`is_valid_signature`, SRC-6), so any account
//! type works.
//!
//! The typed data (what a wallet shows, from [`RequestMessage::typed_data`]):
//!
//! ```text
//! domain  {name: "CIRO Coordinator", version: "1", chainId, revision: "1"}
//! "Request"("Job Manager":"ContractAddress","Coordinator":"string","Method":"shortstring",
//!           "Path":"string","Body SHA-256":"u256","Timestamp":"timestamp","Nonce":"felt")
//! ```
//!
//! `Job Manager` is the deployment's JobMgr contract: a request signed for one deployment's
//! coordinator is refused by another's on the same chain (the chain id alone would let one be
//! replayed to the other within the window, e.g. a worker serving two networks with one
//! account).
//! `Coordinator` is the origin of the URL the client sends the request to
//! (`https://coordinator.example`, `http://127.0.0.1:8080`: scheme, host and any non-default
//! port, as [`origin_of`] writes it), also sent in [`headers::COORDINATOR`]; a coordinator
//! refuses a request signed for an origin it does not answer as, so a look-alike coordinator
//! a user was led to cannot replay the user's signed requests (a private download) to the
//! real one within the window.
//! `Path` is the path and query exactly as sent (`/v1/jobs?submitter=0x1`); `Body SHA-256` is
//! the SHA-256 of the exact body bytes (of nothing for a `GET`), also sent in
//! [`headers::CONTENT_SHA256`] so a server can check the signature before it streams a large
//! body and reject the body afterwards if it hashes differently. A server accepts a request
//! whose timestamp is within its window of its own clock and whose nonce that account has not
//! used within the window ([`RequestAuth::check_freshness`]).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use starknet::signers::SigningKey;
use starknet_crypto::poseidon_hash_many;

use super::error::ErrorCode;
pub use crate::snip12::ShortStringError;
use crate::snip12::{self, Domain};
use crate::wire::{parse_felt, parse_u64, Digest, DigestU256, Felt};

/// The names of the headers that carry a request's signature (lowercase, as HTTP/2 sends them).
pub mod headers {
    /// The signing account's address (`0x`-hex).
    pub const ACCOUNT: &str = "x-ciro-account";
    /// When the request was signed (unix seconds, decimal).
    pub const TIMESTAMP: &str = "x-ciro-timestamp";
    /// A felt the account never used before within the window (`0x`-hex).
    pub const NONCE: &str = "x-ciro-nonce";
    /// The signature: `0x`-hex felts separated by commas (`r,s` for a single-key account).
    pub const SIGNATURE: &str = "x-ciro-signature";
    /// SHA-256 of the body as 64 hex digits.
    pub const CONTENT_SHA256: &str = "x-ciro-content-sha256";
    /// The origin the request was signed for (`scheme://host[:port]`).
    pub const COORDINATOR: &str = "x-ciro-coordinator";
}

/// Longest origin a request may be signed for (a bound on what a header makes the server
/// hash).
pub const MAX_ORIGIN_LEN: usize = 255;

/// The origin of `url` as requests are signed for it: `scheme://host[:port]`, the host
/// lowercase and the port left out when it is the scheme's default (WHATWG URL origin
/// serialization). `None` for a URL without a host-based origin (not http or https).
pub fn origin_of(url: &url::Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// `'CIRO Coordinator'`, the domain name of signed requests.
const DOMAIN: Domain = Domain {
    name: Felt::from_hex_unchecked("0x4349524f20436f6f7264696e61746f72"),
    version: Felt::ONE,
};
const DOMAIN_NAME: &str = "CIRO Coordinator";
const REQUEST_TYPE_NAME: &str = "Request";
/// The encoded type of the message: the struct, then the `u256` preset it uses.
const REQUEST_TYPE: &str = concat!(
    r#""Request"("Job Manager":"ContractAddress","Coordinator":"string","Method":"shortstring","Path":"string","Body SHA-256":"u256","Timestamp":"timestamp","Nonce":"felt")"#,
    r#""u256"("low":"u128","high":"u128")"#
);

/// Most felts a request signature may have (a single key signs with 2; multisig accounts
/// with a few per signer): a bound on what a request makes the server hold and pass on.
pub const MAX_SIGNATURE_FELTS: usize = 16;

/// What a client signs for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMessage<'a> {
    /// The deployment's JobMgr contract (the coordinator's deployment).
    pub job_manager: Felt,
    /// The origin of the coordinator's URL the request is sent to ([`origin_of`]).
    pub coordinator: &'a str,
    /// The HTTP method, uppercase (`GET`, `PUT`, `POST`).
    pub method: &'a str,
    /// The path and query, exactly as sent.
    pub path_and_query: &'a str,
    /// SHA-256 of the body bytes as sent.
    pub body_sha256: Digest,
    /// When it was signed (unix seconds).
    pub timestamp: u64,
    /// A fresh felt.
    pub nonce: Felt,
}

impl RequestMessage<'_> {
    /// The SNIP-12 struct hash of the message.
    pub fn struct_hash(&self) -> Result<Felt, ShortStringError> {
        Ok(poseidon_hash_many(&[
            snip12::type_hash(REQUEST_TYPE),
            self.job_manager,
            snip12::string_hash(self.coordinator),
            snip12::short_string(self.method)?,
            snip12::string_hash(self.path_and_query),
            snip12::u256_hash(self.body_sha256.to_u256()),
            Felt::from(self.timestamp),
            self.nonce,
        ]))
    }

    /// The hash `account` signs on chain `chain_id` (and the server passes to the account's
    /// `is_valid_signature`). Fails only for a method that is not a short string.
    pub fn message_hash(&self, account: Felt, chain_id: Felt) -> Result<Felt, ShortStringError> {
        Ok(DOMAIN.message_hash(chain_id, account, self.struct_hash()?))
    }

    /// The typed-data JSON of the message, as a wallet signs it (starknet.js
    /// `account.signMessage(typedData)` gives the same hash).
    pub fn typed_data(&self, chain_id: Felt) -> serde_json::Value {
        serde_json::json!({
            "types": {
                "StarknetDomain": snip12::domain_type_json(),
                REQUEST_TYPE_NAME: [
                    {"name": "Job Manager", "type": "ContractAddress"},
                    {"name": "Coordinator", "type": "string"},
                    {"name": "Method", "type": "shortstring"},
                    {"name": "Path", "type": "string"},
                    {"name": "Body SHA-256", "type": "u256"},
                    {"name": "Timestamp", "type": "timestamp"},
                    {"name": "Nonce", "type": "felt"}
                ]
            },
            "primaryType": REQUEST_TYPE_NAME,
            "domain": DOMAIN.json(DOMAIN_NAME, chain_id),
            "message": {
                "Job Manager": format!("{:#x}", self.job_manager),
                "Coordinator": self.coordinator,
                "Method": self.method,
                "Path": self.path_and_query,
                "Body SHA-256": snip12::u256_json(self.body_sha256.to_u256()),
                "Timestamp": self.timestamp,
                "Nonce": format!("{:#x}", self.nonce),
            }
        })
    }
}

/// Why a request's signature headers were refused (before the account is asked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A signature header is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A signature header is malformed.
    #[error("malformed header {name}: {reason}")]
    MalformedHeader {
        /// The header.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The timestamp is too far from the server's clock.
    #[error("request signed at {timestamp}, outside the {window_secs} s window around {now}")]
    Stale {
        /// The request's timestamp.
        timestamp: u64,
        /// The server's clock.
        now: u64,
        /// The window, each side.
        window_secs: u64,
    },
    /// The body does not hash to the signed SHA-256.
    #[error("the body hashes to {actual}, the request signed {signed}")]
    BodyMismatch {
        /// What the request signed.
        signed: Digest,
        /// What the body hashes to.
        actual: Digest,
    },
    /// The method cannot be signed (not a short string).
    #[error(transparent)]
    Method(#[from] ShortStringError),
}

impl AuthError {
    /// The API error code the server answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MissingHeader(_) => ErrorCode::Unauthenticated,
            Self::MalformedHeader { .. } | Self::BodyMismatch { .. } | Self::Method(_) => {
                ErrorCode::InvalidSignature
            }
            Self::Stale { .. } => ErrorCode::StaleRequest,
        }
    }
}

/// A request's signature, as its headers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    /// The signing account.
    pub account: Felt,
    /// The origin it was signed for ([`RequestMessage::coordinator`]).
    pub coordinator: String,
    /// When it was signed (unix seconds).
    pub timestamp: u64,
    /// The request's nonce.
    pub nonce: Felt,
    /// SHA-256 of the body, as signed.
    pub body_sha256: Digest,
    /// The signature (`[r, s]` for a single-key account; opaque felts for others).
    pub signature: Vec<Felt>,
}

impl RequestAuth {
    /// The request's auth headers, or `None` when it carries no [`headers::ACCOUNT`] (an
    /// unsigned request). Every other header is then required.
    pub fn from_headers(map: &HeaderMap) -> Result<Option<Self>, AuthError> {
        let Some(account) = header(map, headers::ACCOUNT).transpose() else {
            return Ok(None);
        };
        let required = |name| header(map, name)?.ok_or(AuthError::MissingHeader(name));
        let malformed =
            |name: &'static str| move |reason: String| AuthError::MalformedHeader { name, reason };
        let account =
            parse_felt(account?).map_err(|e| malformed(headers::ACCOUNT)(e.to_string()))?;
        let timestamp = parse_u64(required(headers::TIMESTAMP)?)
            .map_err(|e| malformed(headers::TIMESTAMP)(e.to_string()))?;
        let nonce = parse_felt(required(headers::NONCE)?)
            .map_err(|e| malformed(headers::NONCE)(e.to_string()))?;
        let body_sha256 = required(headers::CONTENT_SHA256)?.parse().map_err(
            |e: crate::wire::DigestParseError| malformed(headers::CONTENT_SHA256)(e.to_string()),
        )?;
        let coordinator = required(headers::COORDINATOR)?;
        if coordinator.len() > MAX_ORIGIN_LEN {
            return Err(malformed(headers::COORDINATOR)(format!(
                "longer than {MAX_ORIGIN_LEN} bytes"
            )));
        }
        let coordinator = coordinator.to_owned();
        let text = required(headers::SIGNATURE)?;
        if text.split(',').count() > MAX_SIGNATURE_FELTS {
            return Err(malformed(headers::SIGNATURE)(format!(
                "more than {MAX_SIGNATURE_FELTS} felts"
            )));
        }
        let signature = text
            .split(',')
            .map(|part| parse_felt(part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| malformed(headers::SIGNATURE)(e.to_string()))?;
        Ok(Some(Self {
            account,
            coordinator,
            timestamp,
            nonce,
            body_sha256,
            signature,
        }))
    }

    /// The headers that carry this signature.
    pub fn to_headers(&self) -> HeaderMap {
        let signature = self
            .signature
            .iter()
            .map(|felt| format!("{felt:#x}"))
            .collect::<Vec<_>>()
            .join(",");
        let pairs = [
            (headers::ACCOUNT, format!("{:#x}", self.account)),
            (headers::COORDINATOR, self.coordinator.clone()),
            (headers::TIMESTAMP, self.timestamp.to_string()),
            (headers::NONCE, format!("{:#x}", self.nonce)),
            (headers::CONTENT_SHA256, self.body_sha256.to_string()),
            (headers::SIGNATURE, signature),
        ];
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            // Hex, decimal and commas are always valid header values, and so is an origin
            // (ASCII by its serialization).
            if let Ok(value) = HeaderValue::from_str(&value) {
                map.insert(HeaderName::from_static(name), value);
            }
        }
        map
    }

    /// The message the signature is over, for the request's method and path as received by
    /// the coordinator of the deployment whose JobMgr is `job_manager`, at the origin the
    /// request names (the server checks that origin is its own before it trusts the hash).
    pub fn message<'a>(
        &'a self,
        job_manager: Felt,
        method: &'a str,
        path_and_query: &'a str,
    ) -> RequestMessage<'a> {
        RequestMessage {
            job_manager,
            coordinator: &self.coordinator,
            method,
            path_and_query,
            body_sha256: self.body_sha256,
            timestamp: self.timestamp,
            nonce: self.nonce,
        }
    }

    /// Refuses a request signed more than `window_secs` before or after `now`. The server
    /// keeps each (account, nonce) it accepted for that long and refuses a repeat.
    pub fn check_freshness(&self, now: u64, window_secs: u64) -> Result<(), AuthError> {
        if self.timestamp.abs_diff(now) > window_secs {
            return Err(AuthError::Stale {
                timestamp: self.timestamp,
                now,
                window_secs,
            });
        }
        Ok(())
    }

    /// Refuses a body that does not hash to the signed SHA-256.
    pub fn check_body(&self, body: &[u8]) -> Result<(), AuthError> {
        let actual = Digest::of(body);
        if actual != self.body_sha256 {
            return Err(AuthError::BodyMismatch {
                signed: self.body_sha256,
                actual,
            });
        }
        Ok(())
    }
}

/// A header's value as text; `None` if absent.
fn header<'a>(map: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, AuthError> {
    map.get(name)
        .map(|value| {
            value.to_str().map_err(|_| AuthError::MalformedHeader {
                name,
                reason: "not visible ASCII".into(),
            })
        })
        .transpose()
}

/// Signs requests for one account: its key, its address, the chain, the deployment.
#[derive(Debug, Clone)]
pub struct RequestSigner {
    key: SigningKey,
    account: Felt,
    chain_id: Felt,
    job_manager: Felt,
}

/// Signing failed (a method that is not a short string, or the ECDSA step).
#[derive(Debug, thiserror::Error)]
#[error("signing the request failed: {0}")]
pub struct SignError(String);

impl SignError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl RequestSigner {
    /// A signer for `account` (a single-key account whose key is `key`) on `chain_id`, for
    /// the coordinator of the deployment whose JobMgr contract is `job_manager`.
    pub fn new(key: SigningKey, account: Felt, chain_id: Felt, job_manager: Felt) -> Self {
        Self {
            key,
            account,
            chain_id,
            job_manager,
        }
    }

    /// The signing account.
    pub fn account(&self) -> Felt {
        self.account
    }

    /// The chain the signatures are for.
    pub fn chain_id(&self) -> Felt {
        self.chain_id
    }

    /// The deployment's JobMgr contract the signatures are for.
    pub fn job_manager(&self) -> Felt {
        self.job_manager
    }

    /// Signs `message`, giving the headers to send with it. A message for another deployment
    /// than the signer's is refused.
    pub fn sign(&self, message: &RequestMessage<'_>) -> Result<RequestAuth, SignError> {
        if message.job_manager != self.job_manager {
            return Err(SignError(format!(
                "the message names JobMgr {:#x}, the signer is for {:#x}",
                message.job_manager, self.job_manager
            )));
        }
        if message.coordinator.len() > MAX_ORIGIN_LEN
            || !message.coordinator.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(SignError(format!(
                "the coordinator origin {:?} is not visible ASCII of at most {MAX_ORIGIN_LEN} \
                 bytes (as origin_of writes one)",
                message.coordinator
            )));
        }
        let hash = message
            .message_hash(self.account, self.chain_id)
            .map_err(|e| SignError(e.to_string()))?;
        let signature = self.key.sign(&hash).map_err(|e| SignError(e.to_string()))?;
        Ok(RequestAuth {
            account: self.account,
            coordinator: message.coordinator.to_owned(),
            timestamp: message.timestamp,
            nonce: message.nonce,
            body_sha256: message.body_sha256,
            signature: vec![signature.r, signature.s],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starknet::core::types::TypedData;
    use starknet::core::utils::cairo_short_string_to_felt;

    fn message<'a>() -> RequestMessage<'a> {
        RequestMessage {
            job_manager: Felt::from_hex_unchecked(
                "0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d",
            ),
            coordinator: "https://coordinator.ciro.example",
            method: "PUT",
            path_and_query: "/v1/jobs/42/output/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            body_sha256: Digest::of(b"output bytes"),
            timestamp: 1_750_000_000,
            nonce: Felt::from_hex_unchecked("0x5f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        }
    }

    #[test]
    fn constants_are_the_strings_they_name() {
        assert_eq!(
            DOMAIN.name,
            cairo_short_string_to_felt(DOMAIN_NAME).unwrap()
        );
        assert!(REQUEST_TYPE.ends_with(snip12::U256_TYPE));
    }

    #[test]
    fn message_hash_equals_starknet_rs_typed_data_hash() {
        // Two independent SNIP-12 revision 1 encoders agree: this module's and starknet-rs'
        // (which reads the typed-data JSON a wallet would be shown).
        let chain_id = cairo_short_string_to_felt("SN_SEPOLIA").unwrap();
        let account = Felt::from_hex_unchecked(
            "0x5a6f4bd3f4f2b3c5c1f7a1a6e0b6d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c",
        );
        let message = message();
        let typed: TypedData = serde_json::from_value(message.typed_data(chain_id)).unwrap();
        assert_eq!(
            typed.message_hash(account).unwrap(),
            message.message_hash(account, chain_id).unwrap()
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let (account, chain_id) = (Felt::from(2u8), Felt::from(1u8));
        let base = message().message_hash(account, chain_id).unwrap();
        let mut changed = Vec::new();
        let mut m = message();
        m.job_manager += Felt::ONE;
        changed.push(m.message_hash(account, chain_id));
        let mut m = message();
        m.coordinator = "https://look-alike.example";
        changed.push(m.message_hash(account, chain_id));
        let mut m = message();
        m.method = "GET";
        changed.push(m.message_hash(account, chain_id));
        let mut m = message();
        m.path_and_query =
            "/v1/jobs/43/output/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        changed.push(m.message_hash(account, chain_id));
        let mut m = message();
        m.body_sha256 = Digest::of(b"other bytes");
        changed.push(m.message_hash(account, chain_id));
        let mut m = message();
        m.timestamp += 1;
        changed.push(m.message_hash(account, chain_id));
        let mut m = message();
        m.nonce += Felt::ONE;
        changed.push(m.message_hash(account, chain_id));
        changed.push(message().message_hash(Felt::THREE, chain_id));
        changed.push(message().message_hash(account, Felt::TWO));
        for (i, hash) in changed.into_iter().enumerate() {
            assert_ne!(hash.unwrap(), base, "change {i} left the hash unchanged");
        }
    }

    #[test]
    fn signed_headers_parse_back_and_verify_against_the_key() {
        let key = SigningKey::from_secret_scalar(Felt::from(0x5eedu32));
        let signer = RequestSigner::new(
            key.clone(),
            Felt::from(0xacc0u32),
            Felt::ONE,
            message().job_manager,
        );
        let auth = signer.sign(&message()).unwrap();
        let parsed = RequestAuth::from_headers(&auth.to_headers())
            .unwrap()
            .unwrap();
        assert_eq!(parsed, auth);
        let hash = parsed
            .message(
                message().job_manager,
                message().method,
                message().path_and_query,
            )
            .message_hash(parsed.account, Felt::ONE)
            .unwrap();
        let public = key.verifying_key().scalar();
        let verifies = |hash: &Felt| {
            starknet_crypto::verify(&public, hash, &parsed.signature[0], &parsed.signature[1])
                .unwrap()
        };
        assert!(verifies(&hash));
        // Replaying the signature on another path does not verify.
        let other = parsed
            .message(message().job_manager, "PUT", "/v1/jobs/43/receipt")
            .message_hash(parsed.account, Felt::ONE)
            .unwrap();
        assert!(!verifies(&other));
        // Nor for another deployment's coordinator on the same chain.
        let elsewhere = parsed
            .message(
                message().job_manager + Felt::ONE,
                message().method,
                message().path_and_query,
            )
            .message_hash(parsed.account, Felt::ONE)
            .unwrap();
        assert!(!verifies(&elsewhere));
        // Nor at another origin: what a look-alike coordinator received does not verify at
        // the real one (the hash the real one computes names its own origin).
        let mut replayed = parsed.clone();
        replayed.coordinator = "https://coordinator.ciro.example.look-alike.test".into();
        let at_real = replayed
            .message(
                message().job_manager,
                message().method,
                message().path_and_query,
            )
            .message_hash(parsed.account, Felt::ONE)
            .unwrap();
        assert!(!verifies(&at_real));
        let mut foreign = message();
        foreign.job_manager += Felt::ONE;
        assert!(signer.sign(&foreign).is_err());
        // An origin no header can carry is refused at signing, not dropped from the headers.
        for origin in ["https://a\nb.example", "https://café.example"] {
            let mut unsendable = message();
            unsendable.coordinator = origin;
            assert!(signer.sign(&unsendable).is_err(), "{origin}");
        }
        assert!(parsed.check_body(b"output bytes").is_ok());
        assert_eq!(
            parsed.check_body(b"tampered").unwrap_err().code(),
            ErrorCode::InvalidSignature
        );
    }

    #[test]
    fn headers_missing_or_malformed_are_refused_with_their_code() {
        assert_eq!(RequestAuth::from_headers(&HeaderMap::new()), Ok(None));
        let signer = RequestSigner::new(
            SigningKey::from_secret_scalar(Felt::TWO),
            Felt::ONE,
            Felt::ONE,
            message().job_manager,
        );
        let full = signer.sign(&message()).unwrap().to_headers();

        for name in [headers::NONCE, headers::COORDINATOR] {
            let mut missing = full.clone();
            missing.remove(name);
            let error = RequestAuth::from_headers(&missing).unwrap_err();
            assert_eq!(error, AuthError::MissingHeader(name));
            assert_eq!(error.code(), ErrorCode::Unauthenticated);
        }
        let mut long = full.clone();
        long.insert(
            headers::COORDINATOR,
            HeaderValue::from_str(&format!("https://{}.example", "a".repeat(MAX_ORIGIN_LEN)))
                .unwrap(),
        );
        assert!(matches!(
            RequestAuth::from_headers(&long).unwrap_err(),
            AuthError::MalformedHeader {
                name: headers::COORDINATOR,
                ..
            }
        ));

        for (name, bad) in [
            (headers::ACCOUNT, "0xzz"),
            (headers::TIMESTAMP, "-5"),
            (headers::SIGNATURE, "0x1,,0x2"),
            (headers::CONTENT_SHA256, "abc"),
        ] {
            let mut malformed = full.clone();
            malformed.insert(name, HeaderValue::from_static(bad));
            let error = RequestAuth::from_headers(&malformed).unwrap_err();
            assert!(
                matches!(error, AuthError::MalformedHeader { name: n, .. } if n == name),
                "{name}: {error}"
            );
            assert_eq!(error.code(), ErrorCode::InvalidSignature);
        }
    }

    #[test]
    fn an_origin_is_scheme_host_and_non_default_port() {
        let origin = |text: &str| origin_of(&url::Url::parse(text).unwrap());
        assert_eq!(
            origin("HTTPS://Coordinator.CIRO.example:443/api/v1?x=1").as_deref(),
            Some("https://coordinator.ciro.example")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("http://[::1]:80").as_deref(), Some("http://[::1]"));
        assert_eq!(origin("ftp://files.example"), None);
        assert_eq!(origin("file:///tmp/x"), None);
    }

    #[test]
    fn freshness_window_is_inclusive_on_both_sides() {
        let auth = RequestAuth {
            account: Felt::ONE,
            coordinator: "http://127.0.0.1:8080".into(),
            timestamp: 1_000,
            nonce: Felt::ONE,
            body_sha256: Digest::of(b""),
            signature: vec![],
        };
        assert!(auth.check_freshness(1_060, 60).is_ok());
        assert!(auth.check_freshness(940, 60).is_ok());
        let stale = auth.check_freshness(1_061, 60).unwrap_err();
        assert_eq!(stale.code(), ErrorCode::StaleRequest);
        assert!(auth.check_freshness(939, 60).is_err());
    }
}
