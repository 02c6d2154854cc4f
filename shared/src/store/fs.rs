//! [`BlobStore`] on a local (or shared network) directory.
//!
//! Writes go to a temporary file that is fsynced and then renamed into place, and the folder is
//! fsynced too, so a blob is either absent or complete — also after a crash.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use futures_util::stream::BoxStream;

use super::{BlobBody, BlobInfo, BlobKey, BlobStore, ByteRange, StoreError, WHOLE_BODY_MAX};
use crate::domain::ImageId;

/// Chunk size when streaming a blob to a client.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Uses (and creates) `root` as the store's folder.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

fn io_error(key: &BlobKey, source: io::Error) -> StoreError {
    if source.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(key.as_str().to_owned())
    } else {
        StoreError::Io { key: key.as_str().to_owned(), source }
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await.map_err(io::Error::other)?
}

/// Creates `dir` and any missing parents, fsyncing the parent of each folder it creates, so
/// that a new shard folder (and with it the blob inside) survives a power loss.
async fn create_dir_durable(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut probe = Some(dir);
    while let Some(d) = probe {
        if tokio::fs::try_exists(d).await? {
            break;
        }
        missing.push(d.to_owned());
        probe = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    tokio::fs::create_dir_all(dir).await?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent).await?;
        }
    }
    Ok(())
}

enum Opened {
    Whole(Bytes),
    /// Positioned at the start of the wanted bytes.
    Large {
        file: std::fs::File,
        len: u64,
    },
}

fn open_for_serving(path: &Path, range: Option<ByteRange>) -> io::Result<Opened> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path)?;
    let (start, len) = match range {
        Some(r) => (r.start, r.len()),
        None => (0, file.metadata()?.len()),
    };
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))?;
    }
    if len > WHOLE_BODY_MAX {
        return Ok(Opened::Large { file, len });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob is shorter than expected"));
    }
    Ok(Opened::Whole(Bytes::from(bytes)))
}

async fn remove_missing_ok(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key);
        let dir = path.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        let tmp = dir.join(format!(".tmp-{}", ulid::Ulid::new()));
        let write = async {
            create_dir_durable(&dir).await?;
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(&bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp, &path).await?;
            sync_dir(&dir).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_error(key, e));
        }
        Ok(())
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        tokio::fs::read(self.path(key)).await.map(Bytes::from).map_err(|e| io_error(key, e))
    }

    async fn open(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<BlobBody, StoreError> {
        let path = self.path(key);
        // One blocking call opens the file and, for a small body, reads all of it.
        let opened = tokio::task::spawn_blocking(move || open_for_serving(&path, range))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|e| io_error(key, e))?;
        Ok(match opened {
            Opened::Whole(bytes) => BlobBody::Whole(bytes),
            Opened::Large { file, len } => {
                let file = tokio::fs::File::from_std(file).take(len);
                BlobBody::Stream { len, stream: ReaderStream::with_capacity(file, READ_CHUNK).boxed() }
            }
        })
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        remove_missing_ok(tokio::fs::remove_file(self.path(key)).await).await.map_err(|e| io_error(key, e))
    }

    async fn delete_image(&self, id: ImageId) -> Result<(), StoreError> {
        self.delete(&BlobKey::original(id)).await?;
        let thumbs = BlobKey::thumbnails_of(id);
        remove_missing_ok(tokio::fs::remove_dir_all(self.path(&thumbs)).await).await.map_err(|e| io_error(&thumbs, e))
    }

    async fn check(&self) -> Result<(), StoreError> {
        let root = BlobKey(String::new());
        tokio::fs::metadata(&self.root).await.map(|_| ()).map_err(|e| io_error(&root, e))
    }

    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(key, e)),
        }
    }

    fn list(&self) -> BoxStream<'_, Result<BlobInfo, StoreError>> {
        // A blocking walk feeding a small channel: memory stays bounded for any number of blobs.
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || walk(&root, &root, &tx));
        tokio_stream_from(rx).boxed()
    }

    fn location(&self) -> String {
        let absolute = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("directory {}", absolute.display())
    }
}

type ListSender = tokio::sync::mpsc::Sender<Result<BlobInfo, StoreError>>;

/// Sends every blob under `dir`; returns false once the receiver is gone.
fn walk(root: &Path, dir: &Path, tx: &ListSender) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
        Err(e) => return tx.blocking_send(Err(io_error(&BlobKey(dir.display().to_string()), e))).is_ok(),
    };
    for entry in entries {
        let sent = match entry.and_then(|e| Ok((e.path(), e.file_type()?, e.metadata()?.len()))) {
            Ok((path, kind, _)) if kind.is_dir() => walk(root, &path, tx),
            Ok((path, _, len)) => {
                let relative = path.strip_prefix(root).ok().and_then(|p| p.to_str()).and_then(BlobKey::from_listing);
                match relative {
                    Some(key) => tx.blocking_send(Ok(BlobInfo { key, size: len })).is_ok(),
                    None => true,
                }
            }
            Err(e) => tx.blocking_send(Err(io_error(&BlobKey(dir.display().to_string()), e))).is_ok(),
        };
        if !sent {
            return false;
        }
    }
    true
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ImageFormat;

    async fn read_all(body: BlobBody) -> Vec<u8> {
        match body {
            BlobBody::Whole(bytes) => bytes.to_vec(),
            BlobBody::Stream { len, mut stream } => {
                let mut out = Vec::new();
                while let Some(chunk) = stream.next().await {
                    out.extend_from_slice(&chunk.expect("chunk"));
                }
                assert_eq!(out.len() as u64, len, "the stream has the announced length");
                out
            }
        }
    }

    #[tokio::test]
    async fn a_blob_put_can_be_read_whole_and_by_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("store");
        let id = ImageId::from_ulid(ulid::Ulid::new());
        let key = BlobKey::original(id);
        store.put(&key, Bytes::from_static(b"0123456789")).await.expect("put");

        assert_eq!(store.get(&key).await.expect("get"), Bytes::from_static(b"0123456789"));
        let ranged = store.open(&key, Some(ByteRange { start: 2, end: 4 })).await.expect("open");
        assert_eq!(read_all(ranged).await, b"234");
        assert!(matches!(store.open(&key, None).await.expect("open"), BlobBody::Whole(_)), "small blobs come whole");
        let leftovers: Vec<_> = std::fs::read_dir(store.path(&key).parent().expect("dir"))
            .expect("read_dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left behind");
    }

    #[tokio::test]
    async fn large_blobs_stream_whole_and_by_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("store");
        let key = BlobKey::original(ImageId::from_ulid(ulid::Ulid::new()));
        let data: Vec<u8> = (0..(WHOLE_BODY_MAX as usize * 3)).map(|i| (i % 251) as u8).collect();
        store.put(&key, Bytes::from(data.clone())).await.expect("put");

        let whole = store.open(&key, None).await.expect("open");
        assert!(matches!(whole, BlobBody::Stream { .. }), "large blobs stream");
        assert_eq!(read_all(whole).await, data);
        let (start, end) = (100, WHOLE_BODY_MAX * 2);
        let ranged = store.open(&key, Some(ByteRange { start, end })).await.expect("open");
        assert!(matches!(ranged, BlobBody::Stream { .. }));
        assert_eq!(read_all(ranged).await, &data[start as usize..=end as usize]);
        let small_range = store.open(&key, Some(ByteRange { start: 10, end: 19 })).await.expect("open");
        assert_eq!(read_all(small_range).await, &data[10..20]);
    }

    #[tokio::test]
    async fn deleting_an_image_removes_original_and_thumbnails_and_tolerates_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("store");
        let id = ImageId::from_ulid(ulid::Ulid::new());
        let thumb = BlobKey::thumbnail(id, 200, ImageFormat::Png);
        store.put(&BlobKey::original(id), Bytes::from_static(b"o")).await.expect("put");
        store.put(&thumb, Bytes::from_static(b"t")).await.expect("put");

        store.delete_image(id).await.expect("delete");
        assert!(matches!(store.get(&thumb).await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.get(&BlobKey::original(id)).await, Err(StoreError::NotFound(_))));
        store.delete_image(id).await.expect("second delete is fine");
    }

    #[test]
    fn keys_are_made_of_ids_only() {
        let id = ImageId::from_ulid(ulid::Ulid::new());
        let key = BlobKey::thumbnail(id, 400, ImageFormat::Jpeg);
        assert!(key.as_str().starts_with("thumbnails/"));
        assert!(key.as_str().ends_with(&format!("{id}/400.jpg")));
        assert!(!key.as_str().contains(".."));
    }
}
