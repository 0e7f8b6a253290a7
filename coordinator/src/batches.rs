//! Batches' manifests (JobMgr's `submit_batch`): a batch's `input_hash` is the SHA-256 of its
//! input manifest and its committed `output_hash` that of its output manifest, each `items`
//! SHA-256 digests of 32 bytes, in order, with nothing else. A blob is read by its digest alone,
//! so each manifest a batch names is parsed once into `manifest_items` (see
//! [`crate::store::Store::record_manifest`]), which the read, quota and retention rules join.
//!
//! Only manifests a batch names are expanded, each by the party whose upload counts (the
//! submitter for an input manifest, the assigned worker for an output manifest): expanding
//! every blob whose size is a multiple of 32 would let one account create a thousand rows per
//! 32 kB uploaded.

use anyhow::{Context, Result};
use ciro_protocol::Digest;
use futures_util::StreamExt;

use crate::blobs::BlobStore;
use crate::store::Store;

/// The fewest and most inputs of a batch (JobMgr's bounds).
pub const MIN_ITEMS: u64 = 2;
/// See [`MIN_ITEMS`].
pub const MAX_ITEMS: u64 = 1000;

/// Why a manifest is not expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Its length is not 32 bytes per input, or the count is out of JobMgr's bounds.
    #[error("a manifest of {bytes} bytes is not {items} SHA-256 digests of 32 bytes")]
    Length {
        /// Its size.
        bytes: u64,
        /// The batch's inputs on chain.
        items: u64,
    },
    /// Its bytes are not stored.
    #[error("the manifest is not stored")]
    Missing,
}

/// The digests of a manifest's bytes (64 lowercase hex each), or why they are not a manifest
/// of `items`.
pub fn parse(bytes: &[u8], items: u64) -> std::result::Result<Vec<String>, ManifestError> {
    let length = ManifestError::Length {
        bytes: bytes.len() as u64,
        items,
    };
    if !(MIN_ITEMS..=MAX_ITEMS).contains(&items) {
        return Err(length);
    }
    ciro_protocol::parse_manifest(bytes, items)
        .map(|digests| digests.iter().map(ToString::to_string).collect())
        .ok_or(length)
}

/// Records manifest `digest` of a batch of `items` inputs from the stored blob, unless recorded
/// already: its size must be `32 × items` (read no further than that).
pub async fn expand(
    store: &Store,
    blobs: &dyn BlobStore,
    digest: &str,
    items: u64,
) -> Result<std::result::Result<(), ManifestError>> {
    if let Some(recorded) = store.manifest_len(digest).await? {
        return Ok(if recorded == items {
            Ok(())
        } else {
            Err(ManifestError::Length {
                bytes: 32 * recorded,
                items,
            })
        });
    }
    let parsed: Digest = digest.parse().context("a manifest's digest")?;
    let Some((size, mut body)) = blobs
        .open(&parsed)
        .await
        .with_context(|| format!("opening manifest {digest}"))?
    else {
        return Ok(Err(ManifestError::Missing));
    };
    if !(MIN_ITEMS..=MAX_ITEMS).contains(&items) || size != 32 * items {
        return Ok(Err(ManifestError::Length { bytes: size, items }));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("reading manifest {digest}"))?;
        if bytes.len() + chunk.len() > size as usize {
            return Ok(Err(ManifestError::Length {
                bytes: (bytes.len() + chunk.len()) as u64,
                items,
            }));
        }
        bytes.extend_from_slice(&chunk);
    }
    let listed = match parse(&bytes, items) {
        Ok(listed) => listed,
        Err(e) => return Ok(Err(e)),
    };
    store
        .record_manifest(digest, &listed, crate::indexer::unix_now())
        .await?;
    tracing::info!(manifest = %digest, items, "batch manifest recorded");
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_32_bytes_per_input_within_jobmgrs_bounds() {
        let two = [[1u8; 32], [2u8; 32]].concat();
        assert_eq!(
            parse(&two, 2).expect("two digests"),
            vec!["01".repeat(32), "02".repeat(32)]
        );
        assert_eq!(
            parse(&two[..63], 2),
            Err(ManifestError::Length {
                bytes: 63,
                items: 2
            })
        );
        assert_eq!(
            parse(&two, 3),
            Err(ManifestError::Length {
                bytes: 64,
                items: 3
            })
        );
        assert_eq!(
            parse(&two[..32], 1),
            Err(ManifestError::Length {
                bytes: 32,
                items: 1
            })
        );
        let many = vec![0u8; 32 * 1001];
        assert!(parse(&many, 1001).is_err());
        assert_eq!(parse(&many[..32 * 1000], 1000).map(|v| v.len()), Ok(1000));
    }
}
