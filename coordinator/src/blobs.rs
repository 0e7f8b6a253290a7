//! Job data, content-addressed: model files, inputs and outputs are stored by their SHA-256
//! behind one [`BlobStore`] interface. [`LocalBlobStore`] keeps them in a directory (the
//! default); a store shared by replicas (S3 and the like, e.g. through the `object_store`
//! crate) implements the same trait.
//!
//! An upload is streamed to a temporary file while it is hashed and counted: past the size
//! limit it stops at once, and bytes that do not hash to the claimed digest are discarded, so
//! a blob under a digest always is the bytes of that digest. The rename that publishes it is
//! atomic, so a reader never sees half a blob and two concurrent uploads of one digest both
//! succeed with the same bytes.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use ciro_protocol::Digest;
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

/// A stream of body chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Why a blob was not stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The body was longer than the limit.
    #[error("the body exceeds the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The body does not hash to the claimed digest.
    #[error("the body hashes to {actual}, not to {claimed}")]
    DigestMismatch {
        /// The digest the upload claimed.
        claimed: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The body could not be read from the client.
    #[error("reading the body: {0}")]
    Body(io::Error),
    /// The store failed.
    #[error("the blob store: {0}")]
    Storage(#[from] io::Error),
}

/// Where blobs live.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` in as the blob `digest` without publishing it (readers do not see it
    /// yet); the staged blob, with its size. Refuses a body longer than `limit` bytes or not
    /// hashing to `digest` and then keeps nothing. A staged blob dropped unpublished is
    /// discarded.
    async fn stage(
        &self,
        digest: &Digest,
        body: ByteStream,
        limit: u64,
    ) -> Result<StagedBlob, BlobError>;

    /// Publishes a staged blob under its digest, at once (a reader sees all of it or none).
    /// Publishing a blob that is already there succeeds (the bytes are the same). The API
    /// records an upload between the two steps, so that retention, which forgets a blob's
    /// records before it sets its bytes aside, never deletes bytes published after a record.
    async fn publish(&self, staged: StagedBlob) -> Result<u64, BlobError>;

    /// [`BlobStore::stage`] then [`BlobStore::publish`]; the size.
    async fn put(&self, digest: &Digest, body: ByteStream, limit: u64) -> Result<u64, BlobError> {
        let staged = self.stage(digest, body, limit).await?;
        self.publish(staged).await
    }

    /// The blob's size and a stream of its bytes, or `None` if absent.
    async fn open(&self, digest: &Digest) -> Result<Option<(u64, ByteStream)>, BlobError>;

    /// Whether the blob is stored.
    async fn contains(&self, digest: &Digest) -> Result<bool, BlobError>;

    /// Moves the blob out of reach (`open` and `contains` no longer see it) and returns where
    /// it went, or `None` if it is absent. Retention sets a blob aside, checks that no upload
    /// of the same bytes recorded itself meanwhile, and then [`BlobStore::purge`]s it or
    /// [`BlobStore::restore`]s it.
    async fn set_aside(&self, digest: &Digest) -> Result<Option<String>, BlobError>;

    /// Puts a blob set aside back as `digest` (or drops it if an upload has stored the same
    /// bytes again meanwhile).
    async fn restore(&self, digest: &Digest, aside: &str) -> Result<(), BlobError>;

    /// Deletes a blob set aside (absent is not an error).
    async fn purge(&self, aside: &str) -> Result<(), BlobError>;

    /// Bytes free for new blobs where they are kept, when the store can tell.
    async fn free_bytes(&self) -> Result<Option<u64>, BlobError> {
        Ok(None)
    }
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
fn available_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is a valid place for the call to write.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The field types vary by platform (u32 on some), hence the conversions.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

/// How long a staged or set-aside file may go untouched before a store opening the directory
/// removes it as a dead process's leftover.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3_600);

/// Blobs as files of a directory: `<root>/<first two hex digits>/<digest>`, uploads staged in
/// `<root>/tmp`, blobs retention is deleting set aside in `<root>/aside`.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// A store in `root` (created if missing). Staged and set-aside files untouched for a day
    /// are removed (left by a process that died mid-upload or mid-collection); newer ones may
    /// be another replica's work in progress on the same directory, and are left alone.
    pub async fn open_dir(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        for dir in [root.join("tmp"), root.join("aside")] {
            tokio::fs::create_dir_all(&dir).await?;
            let mut entries = tokio::fs::read_dir(&dir).await?;
            while let Some(entry) = entries.next_entry().await? {
                let stale = entry
                    .metadata()
                    .await
                    .and_then(|m| m.modified())
                    .map(|at| at.elapsed().unwrap_or_default() > LEFTOVER_AGE)
                    .unwrap_or(false);
                if stale {
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        }
        Ok(Self { root })
    }

    fn aside_path(&self, aside: &str) -> io::Result<PathBuf> {
        if aside.is_empty() || !aside.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::other(format!(
                "{aside:?} names no blob set aside"
            )));
        }
        Ok(self.root.join("aside").join(aside))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_string();
        self.root.join(&hex[..2]).join(hex)
    }
}

/// A blob streamed in and verified, not published yet (see [`BlobStore::stage`]); its staged
/// file is removed when it is dropped unpublished.
#[derive(Debug)]
pub struct StagedBlob {
    digest: Digest,
    size: u64,
    path: Option<PathBuf>,
}

impl StagedBlob {
    /// Its digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Its size, in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A random name for a staged or set-aside file (32 hex digits).
fn random_name() -> io::Result<String> {
    let mut name = [0u8; 16];
    getrandom::getrandom(&mut name).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(name.iter().map(|b| format!("{b:02x}")).collect())
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn free_bytes(&self) -> Result<Option<u64>, BlobError> {
        let root = self.root.clone();
        let free = tokio::task::spawn_blocking(move || available_bytes(&root))
            .await
            .map_err(|e| io::Error::other(e.to_string()))??;
        Ok(Some(free))
    }

    async fn stage(
        &self,
        digest: &Digest,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<StagedBlob, BlobError> {
        let staged_path = self.root.join("tmp").join(random_name()?);
        let mut staged = StagedBlob {
            digest: *digest,
            size: 0,
            path: Some(staged_path.clone()),
        };
        let mut file = tokio::fs::File::create(&staged_path).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Body)?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        let actual = Digest(hasher.finalize().into());
        if actual != *digest {
            return Err(BlobError::DigestMismatch {
                claimed: *digest,
                actual,
            });
        }
        file.sync_all().await?;
        drop(file);
        staged.size = size;
        Ok(staged)
    }

    async fn publish(&self, mut staged: StagedBlob) -> Result<u64, BlobError> {
        let Some(staged_path) = staged.path.clone() else {
            return Err(io::Error::other("the blob was published already").into());
        };
        let path = self.path(&staged.digest);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::rename(&staged_path, &path).await?;
        staged.path = None;
        Ok(staged.size)
    }

    async fn open(&self, digest: &Digest) -> Result<Option<(u64, ByteStream)>, BlobError> {
        let file = match tokio::fs::File::open(self.path(digest)).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        Ok(Some((
            size,
            Box::pin(tokio_util::io::ReaderStream::new(file)),
        )))
    }

    async fn contains(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(tokio::fs::try_exists(self.path(digest)).await?)
    }

    async fn set_aside(&self, digest: &Digest) -> Result<Option<String>, BlobError> {
        let aside = random_name()?;
        let to = self.aside_path(&aside)?;
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        match tokio::fs::rename(self.path(digest), &to).await {
            Ok(()) => {
                // Its time is the blob's: made now, so that a store opening the directory does
                // not take it for a day-old leftover while it may still be restored.
                let file = std::fs::File::options().append(true).open(&to)?;
                file.set_modified(std::time::SystemTime::now())?;
                Ok(Some(aside))
            }
            // Absent (the directory was made above, so this is the blob).
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn restore(&self, digest: &Digest, aside: &str) -> Result<(), BlobError> {
        let from = self.aside_path(aside)?;
        let path = self.path(digest);
        if tokio::fs::try_exists(&path).await? {
            // Stored again meanwhile: the same bytes.
            return self.purge(aside).await;
        }
        tokio::fs::rename(from, path).await?;
        Ok(())
    }

    async fn purge(&self, aside: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.aside_path(aside)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    async fn read_all(store: &LocalBlobStore, digest: &Digest) -> Option<Vec<u8>> {
        let (size, mut stream) = store.open(digest).await.unwrap()?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(bytes.len() as u64, size);
        Some(bytes)
    }

    fn staged_files(store: &LocalBlobStore) -> usize {
        std::fs::read_dir(store.root().join("tmp")).unwrap().count()
    }

    #[tokio::test]
    async fn stores_streamed_bytes_under_their_digest_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open_dir(dir.path()).await.unwrap();
        let digest = Digest::of(b"hello world");
        assert_eq!(
            store
                .put(&digest, body(&[b"hello", b" ", b"world"]), 100)
                .await
                .unwrap(),
            11
        );
        assert!(store.contains(&digest).await.unwrap());
        assert_eq!(read_all(&store, &digest).await.unwrap(), b"hello world");
        // Again: idempotent.
        store
            .put(&digest, body(&[b"hello world"]), 100)
            .await
            .unwrap();

        // Bytes of another digest: refused, nothing stored, nothing left staged.
        let claimed = Digest::of(b"something else");
        let err = store
            .put(&claimed, body(&[b"hello world"]), 100)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BlobError::DigestMismatch { actual, .. } if actual == digest),
            "{err}"
        );
        assert!(!store.contains(&claimed).await.unwrap());

        // Over the limit: refused at the chunk that crosses it.
        let big = Digest::of(b"0123456789");
        let err = store
            .put(&big, body(&[b"01234", b"56789"]), 9)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 9 }), "{err}");
        assert!(!store.contains(&big).await.unwrap());
        assert_eq!(staged_files(&store), 0);

        // A body that fails mid-way stores nothing.
        let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"01234")),
            Err(io::Error::other("client went away")),
        ]));
        assert!(matches!(
            store.put(&big, failing, 100).await.unwrap_err(),
            BlobError::Body(_)
        ));
        assert!(!store.contains(&big).await.unwrap());
        assert_eq!(staged_files(&store), 0);

        // Set aside: out of reach, and back when restored.
        let aside = store.set_aside(&digest).await.unwrap().expect("stored");
        assert!(!store.contains(&digest).await.unwrap());
        assert!(read_all(&store, &digest).await.is_none());
        assert_eq!(store.set_aside(&digest).await.unwrap(), None);
        store.restore(&digest, &aside).await.unwrap();
        assert_eq!(read_all(&store, &digest).await.unwrap(), b"hello world");
        // Stored again while set aside: the upload's copy stays, the one set aside goes.
        let aside = store.set_aside(&digest).await.unwrap().expect("stored");
        store
            .put(&digest, body(&[b"hello world"]), 100)
            .await
            .unwrap();
        store.restore(&digest, &aside).await.unwrap();
        assert_eq!(read_all(&store, &digest).await.unwrap(), b"hello world");
        assert_eq!(
            std::fs::read_dir(dir.path().join("aside")).unwrap().count(),
            0
        );
        // Purged: gone (twice is not an error); a name outside the store is refused.
        let aside = store.set_aside(&digest).await.unwrap().expect("stored");
        store.purge(&aside).await.unwrap();
        store.purge(&aside).await.unwrap();
        assert!(read_all(&store, &digest).await.is_none());
        assert!(store.purge("../../etc").await.is_err());

        // Staged: not visible until published; dropped unpublished, nothing is left.
        let staged = store
            .stage(&digest, body(&[b"hello world"]), 100)
            .await
            .unwrap();
        assert_eq!(staged.size(), 11);
        assert!(!store.contains(&digest).await.unwrap());
        drop(staged);
        assert_eq!(staged_files(&store), 0);
        let staged = store
            .stage(&digest, body(&[b"hello world"]), 100)
            .await
            .unwrap();
        // Another replica opening the same directory leaves work in progress alone.
        let other = LocalBlobStore::open_dir(dir.path()).await.unwrap();
        assert_eq!(staged_files(&other), 1);
        assert_eq!(store.publish(staged).await.unwrap(), 11);
        assert_eq!(read_all(&other, &digest).await.unwrap(), b"hello world");
        assert_eq!(staged_files(&store), 0);
    }
}
