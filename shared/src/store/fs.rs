//! [`BlobStore`] on a local (or shared network) directory.
//!
//! Writes go to a temporary file that is fsynced and then renamed into place, and the folder is
//! fsynced too, so a blob is either absent or complete — also after a crash or on a full disk
//! (which is [`StoreError::OutOfSpace`], with nothing left behind).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use futures_util::stream::BoxStream;

use super::{BlobBody, BlobInfo, BlobKey, BlobStore, ByteRange, StoreError, WHOLE_BODY_MAX};
use imageapi_core::domain::ImageId;

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
    } else if super::is_out_of_space(&source) {
        StoreError::OutOfSpace { key: key.as_str().to_owned() }
    } else {
        StoreError::Io { key: key.as_str().to_owned(), source }
    }
}

/// A file being written: what [`write_durably`] needs of it (a seam for tests that inject
/// short writes and failing fsyncs).
trait DurableFile: Write {
    fn sync_all(&self) -> io::Result<()>;
}

impl DurableFile for std::fs::File {
    fn sync_all(&self) -> io::Result<()> {
        std::fs::File::sync_all(self)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing the parent of each folder it creates, so
/// that a new shard folder (and with it the blob inside) survives a power loss.
fn create_dir_durable(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut probe = Some(dir);
    while let Some(d) = probe {
        if d.try_exists()? {
            break;
        }
        missing.push(d.to_owned());
        probe = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` so that it is either absent or complete, also after a crash or a
/// full disk: into a temporary file in the same folder, every byte checked (`write_all` on a
/// blocking file returns the short write's error itself — tokio's would keep it for the next
/// call), fsynced, renamed into place, and the folder fsynced. On any error nothing is left:
/// neither the temporary file nor a renamed blob whose folder entry may not be durable.
fn write_durably<F: DurableFile>(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    create: impl FnOnce(&Path) -> io::Result<F>,
) -> io::Result<()> {
    create_dir_durable(dir)?;
    let tmp = dir.join(format!(".tmp-{}", ulid::Ulid::new()));
    let mut renamed = false;
    let written = (|| {
        let mut file = create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        renamed = true;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(if renamed { path } else { &tmp });
    }
    written
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
        // One blocking call for the folder, the write, both fsyncs and the rename.
        tokio::task::spawn_blocking(move || {
            write_durably(&dir, &path, &bytes, |tmp: &Path| std::fs::File::create_new(tmp))
        })
        .await
        .map_err(io::Error::other)
        .and_then(|written| written)
        .map_err(|e| io_error(key, e))
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
    use imageapi_core::image::{ImageFormat, ThumbnailFormat};

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
        let thumb = BlobKey::thumbnail(id, 200, ImageFormat::Png, ThumbnailFormat::Source);
        store.put(&BlobKey::original(id), Bytes::from_static(b"o")).await.expect("put");
        store.put(&thumb, Bytes::from_static(b"t")).await.expect("put");

        store.delete_image(id).await.expect("delete");
        assert!(matches!(store.get(&thumb).await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.get(&BlobKey::original(id)).await, Err(StoreError::NotFound(_))));
        store.delete_image(id).await.expect("second delete is fine");
    }

    // Linux's error numbers.
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    const EIO: i32 = 5;

    /// A file on a disk that has room for `budget` more bytes: a write past it is short, the
    /// next one fails with `ENOSPC` — what the kernel does. `sync_fails` makes fsync fail
    /// with `EIO` instead.
    struct FillingDisk {
        file: std::fs::File,
        budget: usize,
        sync_fails: bool,
    }

    impl Write for FillingDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 && !buf.is_empty() {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            let n = buf.len().min(self.budget);
            self.file.write_all(&buf[..n])?;
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl DurableFile for FillingDisk {
        fn sync_all(&self) -> io::Result<()> {
            if self.sync_fails {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            self.file.sync_all()
        }
    }

    fn disk(budget: usize, sync_fails: bool) -> impl FnOnce(&Path) -> io::Result<FillingDisk> {
        move |path| Ok(FillingDisk { file: std::fs::File::create_new(path)?, budget, sync_fails })
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_short_write_on_a_full_disk_is_an_out_of_space_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        let bytes = vec![7u8; 100_000];

        let error = write_durably(dir.path(), &path, &bytes, disk(33_000, false)).expect_err("the disk filled up");

        assert!(super::super::is_out_of_space(&error), "{error:?}");
        let key = BlobKey::original(ImageId::from_ulid(ulid::Ulid::new()));
        assert!(matches!(io_error(&key, error), StoreError::OutOfSpace { .. }));
        assert!(names_in(dir.path()).is_empty(), "neither the blob nor a temporary file: {:?}", names_in(dir.path()));
    }

    #[test]
    fn a_failed_fsync_is_an_error_and_keeps_the_previous_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"previous").expect("previous blob");

        let error =
            write_durably(dir.path(), &path, b"next version", disk(usize::MAX, true)).expect_err("fsync failed");

        assert_eq!(error.raw_os_error(), Some(EIO));
        assert_eq!(std::fs::read(&path).expect("read"), b"previous", "the blob in place is untouched");
        assert_eq!(names_in(dir.path()), vec!["blob".to_owned()], "no temporary file left");
    }

    #[test]
    fn a_write_with_room_to_spare_lands_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shard").join("blob");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();

        write_durably(&dir.path().join("shard"), &path, &bytes, disk(100_000, false)).expect("fits exactly");

        assert_eq!(std::fs::read(&path).expect("read"), bytes);
        assert_eq!(names_in(&dir.path().join("shard")), vec!["blob".to_owned()]);
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn a_put_on_a_really_full_disk_is_refused_whole_and_works_once_there_is_room() {
        let Some(fs) = crate::testing::small_fs::SmallFs::mount(1 << 20) else { return };
        let store = FsBlobStore::open(fs.path().join("blobs")).expect("store");
        let key = BlobKey::original(ImageId::from_ulid(ulid::Ulid::new()));
        let bytes: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();

        let refused = store.put(&key, Bytes::from(bytes.clone())).await;

        assert!(matches!(refused, Err(StoreError::OutOfSpace { .. })), "{refused:?}");
        assert_eq!(files_under(store.root()), Vec::<PathBuf>::new(), "nothing left behind");
        fs.resize(8 << 20);
        store.put(&key, Bytes::from(bytes.clone())).await.expect("fits now");
        assert_eq!(store.get(&key).await.expect("get"), bytes);
    }

    #[test]
    fn out_of_space_is_recognised_however_it_is_wrapped() {
        assert!(super::super::is_out_of_space(&io::Error::from_raw_os_error(ENOSPC)));
        assert!(super::super::is_out_of_space(&io::Error::from_raw_os_error(EDQUOT)));
        assert!(super::super::is_out_of_space(&io::Error::other(io::Error::from_raw_os_error(ENOSPC))));
        // sled keeps the kind and the message, not the code.
        assert!(super::super::is_out_of_space(&io::Error::new(io::ErrorKind::StorageFull, "No space left on device")));
        assert!(!super::super::is_out_of_space(&io::Error::from_raw_os_error(EIO)));
    }

    #[test]
    fn keys_are_made_of_ids_only() {
        let id = ImageId::from_ulid(ulid::Ulid::new());
        let key = BlobKey::thumbnail(id, 400, ImageFormat::Jpeg, ThumbnailFormat::Source);
        assert!(key.as_str().starts_with("thumbnails/"));
        assert!(key.as_str().ends_with(&format!("{id}/400.jpg")));
        assert!(!key.as_str().contains(".."));
    }
}
