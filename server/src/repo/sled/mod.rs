//! Metadata in sled, the embedded default: one tree per logical map, keys laid out so that
//! every hot query is a point lookup or a prefix/range scan: a user's images are
//! `user ++ image` keys with time-ordered image ids, so "newest first after a cursor" is a
//! reverse range scan, never a full scan. Writes that touch several trees run in one sled
//! transaction.
//!
//! [`SledDb`] is synchronous (sled is); [`SledRepo`] implements the repository traits over it,
//! running every call on tokio's blocking threads and making each write durable before it
//! returns through one group commit shared by concurrent writers ([`group_commit`]).

mod adapter;
mod export;
mod group_commit;
mod images;
mod jobs;
mod links;
mod users;

use std::path::Path;
use std::sync::Mutex;

use imageapi_core::domain::{ImageId, TierId, UserId};
use imageapi_core::image::ThumbnailFormat;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Tree};

pub use adapter::SledRepo;

use super::{
    ImageRecord, LinkRecord, ReconcileEntry, RepoError, ThumbState, ThumbStates, TierEdit, TierRecord, TokenRecord,
    UploadWindow, Usage, UserEdit, UserRecord,
};

/// Whether sled failed for lack of disk space. sled 0.34 then refuses every later write and
/// flush until the database is reopened, also once there is room again (reads keep working,
/// and what was flushed before is intact): see `a_full_disk_stops_sled_writes_until_it_is_reopened`.
fn sled_out_of_space(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if imageapi_shared::store::is_out_of_space(io))
}

impl From<sled::Error> for RepoError {
    fn from(e: sled::Error) -> Self {
        if sled_out_of_space(&e) {
            // sled may have applied the write in memory and may yet have it on disk at the
            // next start.
            return RepoError::OutOfSpace { outcome_unknown: true };
        }
        RepoError::Storage(e.to_string())
    }
}

impl From<group_commit::FlushError> for RepoError {
    fn from(e: group_commit::FlushError) -> Self {
        match e {
            group_commit::FlushError::Failed(why) if why.out_of_space => {
                RepoError::OutOfSpace { outcome_unknown: true }
            }
            other => RepoError::Storage(other.to_string()),
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<RepoError>>;

impl From<TransactionError<RepoError>> for RepoError {
    fn from(e: TransactionError<RepoError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

fn abort<T>(e: RepoError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RepoError> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RepoError> {
    Ok(serde_json::from_slice(bytes)?)
}

fn tx_encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    encode(value).map_err(ConflictableTransactionError::Abort)
}

fn tx_decode<T: DeserializeOwned>(bytes: &[u8]) -> TxResult<T> {
    decode(bytes).map_err(ConflictableTransactionError::Abort)
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + b.len());
    key.extend_from_slice(a);
    key.extend_from_slice(b);
    key
}

/// A thumbnail variant's key: image id, height (big-endian, so an image's thumbnails sort by
/// height), then one byte naming an extra format. The source's own encoding has no format
/// byte, so the keys written before formats existed still name the same thumbnails.
fn thumb_key(image: ImageId, height: u32, format: ThumbnailFormat) -> Vec<u8> {
    let mut key = cat(&image.to_bytes(), &height.to_be_bytes());
    match format {
        ThumbnailFormat::Source => {}
        ThumbnailFormat::Webp => key.push(1),
        ThumbnailFormat::Avif => key.push(2),
    }
    key
}

/// The image, height and encoding a [`thumb_key`] names; `None` for a key of another shape.
fn parse_thumb_key(key: &[u8]) -> Option<(ImageId, u32, ThumbnailFormat)> {
    let id = id16(key.get(..16)?)?;
    let height = u32::from_be_bytes(<[u8; 4]>::try_from(key.get(16..20)?).ok()?);
    let format = match key.get(20..)? {
        [] => ThumbnailFormat::Source,
        [1] => ThumbnailFormat::Webp,
        [2] => ThumbnailFormat::Avif,
        _ => return None,
    };
    Some((ImageId::from_bytes(id), height, format))
}

fn tier_user_key(tier: &TierId, user: UserId) -> Vec<u8> {
    let mut key = cat(tier.as_str().as_bytes(), &[0]);
    key.extend_from_slice(&user.to_bytes());
    key
}

fn tier_prefix(tier: &TierId) -> Vec<u8> {
    cat(tier.as_str().as_bytes(), &[0])
}

fn id16(bytes: &[u8]) -> Option<[u8; 16]> {
    bytes.try_into().ok()
}

/// A user's [`Usage`] as stored: three big-endian u64 (images, original bytes, thumbnail
/// bytes), then the upload window's entries (see [`UploadWindow::encode`]; absent in records
/// written before it).
fn read_usage(stored: Option<&[u8]>) -> Usage {
    let field = |i: usize| {
        stored.and_then(|v| v.get(i * 8..i * 8 + 8)).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes)
    };
    Usage {
        images: field(0).unwrap_or(0),
        original_bytes: field(1).unwrap_or(0),
        thumbnail_bytes: field(2).unwrap_or(0),
        uploads: UploadWindow::decode(stored.and_then(|v| v.get(24..)).unwrap_or_default()),
    }
}

fn write_usage(usage: &Usage) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&usage.images.to_be_bytes());
    out.extend_from_slice(&usage.original_bytes.to_be_bytes());
    out.extend_from_slice(&usage.thumbnail_bytes.to_be_bytes());
    out.extend_from_slice(&usage.uploads.encode());
    out
}

/// A change to a user's usage: images, original bytes, thumbnail bytes.
type UsageDelta = (i64, i64, i64);

fn adjust_usage(current: Option<IVec>, (images, original, thumbnails): UsageDelta) -> Vec<u8> {
    let u = read_usage(current.as_deref());
    write_usage(&Usage {
        images: u.images.saturating_add_signed(images),
        original_bytes: u.original_bytes.saturating_add_signed(original),
        thumbnail_bytes: u.thumbnail_bytes.saturating_add_signed(thumbnails),
        uploads: u.uploads,
    })
}

/// The content index's key: owner, then the original's SHA-256.
fn content_key(owner: UserId, sha256: &[u8; 32]) -> Vec<u8> {
    cat(&owner.to_bytes(), sha256)
}

pub struct SledDb {
    db: sled::Db,
    users: Tree,
    usernames: Tree,
    users_by_tier: Tree,
    tokens: Tree,
    user_tokens: Tree,
    tiers: Tree,
    images: Tree,
    user_images: Tree,
    /// Per user: [`Usage`] (see [`read_usage`]).
    usage: Tree,
    /// `owner ++ sha256` → image id: the owner's image of that content (idempotent uploads).
    image_by_content: Tree,
    thumbs: Tree,
    pending: Tree,
    links: Tree,
    link_tokens: Tree,
    user_links: Tree,
    image_links: Tree,
    /// Live links by expiry (`expires_ms ++ link`), for pruning (see [`links`]).
    link_expiry: Tree,
    /// Token hashes of pruned links, answered 410 until forgotten; and the same by expiry.
    expired_link_tokens: Tree,
    forget_link_tokens: Tree,
    reconcile: Tree,
    /// Unfinished thumbnail jobs by job id: the outbox the dispatcher delivers to the queue.
    outbox: Tree,
    /// Serialises admin writes to users and tiers, so that checks like "no user holds this
    /// tier" cannot race with a user being moved onto it. These writes are rare.
    admin_writes: Mutex<()>,
    /// Serialises link creations, so that counting a user's live links and adding one are
    /// one step (the per-user cap).
    link_writes: Mutex<()>,
    /// The one flusher: acknowledged writes wait for it (see [`group_commit`]).
    commit: group_commit::GroupCommit,
}

/// sled's page cache when none is configured. sled's own default (1 GiB) would let the cache
/// alone outgrow a small server; pict-rs uses 64 MiB too.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// In sled's default tree, beside the named trees.
const STORE_MARKER_KEY: &[u8] = b"store_marker";
/// Present once the `usage` tree is complete (databases from before it kept only counts).
const USAGE_MARKER_KEY: &[u8] = b"usage_v1";
/// Present once `link_expiry` indexes every link (databases from before it had none).
const LINK_EXPIRY_MARKER_KEY: &[u8] = b"link_expiry_v1";

impl SledDb {
    /// Opens (or creates) the database with the default cache.
    pub fn open(path: &Path) -> Result<Self, RepoError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, RepoError> {
        let db = sled::Config::new().path(path).cache_capacity(cache_bytes).open().map_err(|e| match e {
            sled::Error::Io(ref io)
                if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
            {
                RepoError::Locked { path: path.display().to_string() }
            }
            other => other.into(),
        })?;
        let tree = |name: &str| db.open_tree(name);
        let opened = Self {
            users: tree("users")?,
            usernames: tree("usernames")?,
            users_by_tier: tree("users_by_tier")?,
            tokens: tree("tokens")?,
            user_tokens: tree("user_tokens")?,
            tiers: tree("tiers")?,
            images: tree("images")?,
            user_images: tree("user_images")?,
            usage: tree("usage")?,
            image_by_content: tree("image_by_content")?,
            thumbs: tree("thumbs")?,
            pending: tree("pending")?,
            links: tree("links")?,
            link_tokens: tree("link_tokens")?,
            user_links: tree("user_links")?,
            image_links: tree("image_links")?,
            link_expiry: tree("link_expiry")?,
            expired_link_tokens: tree("expired_link_tokens")?,
            forget_link_tokens: tree("forget_link_tokens")?,
            reconcile: tree("reconcile")?,
            outbox: tree("outbox")?,
            admin_writes: Mutex::new(()),
            link_writes: Mutex::new(()),
            commit: {
                let db = db.clone();
                group_commit::GroupCommit::start(move || {
                    db.flush().map(|_| ()).map_err(|e| group_commit::FlushFailure {
                        message: e.to_string().into(),
                        out_of_space: sled_out_of_space(&e),
                    })
                })
                .map_err(|e| RepoError::Storage(format!("starting the flusher: {e}")))?
            },
            db,
        };
        opened.ensure_usage()?;
        opened.ensure_link_expiry()?;
        opened.ensure_tier_fields()?;
        Ok(opened)
    }

    /// Makes every write that finished before this call durable. Call before acknowledging a
    /// write. Concurrent callers share one flush (never sled's `flush_async`, which deadlocks).
    pub async fn flush(&self) -> Result<(), RepoError> {
        Ok(self.commit.flush().await?)
    }

    /// Flushes run so far by the group commit.
    pub fn flushes(&self) -> u64 {
        self.commit.flushes()
    }

    /// Stops the flusher after a final flush; false if that did not finish within `deadline`.
    pub fn close(&self, deadline: std::time::Duration) -> bool {
        self.commit.stop(deadline)
    }

    /// [`Self::flush`] for synchronous callers (command-line tools).
    pub fn flush_blocking(&self) -> Result<(), RepoError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn check(&self) -> Result<(), RepoError> {
        self.tiers.get(TierId::BASIC)?;
        Ok(())
    }

    /// The id of the blob store this metadata belongs to (see
    /// [`imageapi_shared::store::StoreMarker`]), once recorded.
    pub fn store_marker(&self) -> Result<Option<String>, RepoError> {
        Ok(self.db.get(STORE_MARKER_KEY)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the blob store's id; durable when the next flush returns.
    pub fn record_store_marker(&self, id: &str) -> Result<(), RepoError> {
        self.db.insert(STORE_MARKER_KEY, id.as_bytes())?;
        Ok(())
    }

    /// Fills the `usage` tree from the images and thumbnails the first time a database that
    /// predates it is opened (one pass, no more memory than one user's totals at a time).
    fn ensure_usage(&self) -> Result<(), RepoError> {
        if self.db.contains_key(USAGE_MARKER_KEY)? {
            return Ok(());
        }
        let mut totals: std::collections::BTreeMap<UserId, Usage> = std::collections::BTreeMap::new();
        for value in self.images.iter().values() {
            let image: ImageRecord = decode(&value?)?;
            let usage = totals.entry(image.owner).or_default();
            usage.images += 1;
            usage.original_bytes += image.size_bytes;
            for state in self.thumbs.scan_prefix(image.id.to_bytes()).values() {
                if let ThumbState::Ready { size_bytes, .. } = decode(&state?)? {
                    usage.thumbnail_bytes += size_bytes;
                }
            }
        }
        for (user, usage) in totals {
            self.usage.insert(user.to_bytes(), write_usage(&usage))?;
        }
        self.db.drop_tree("image_counts")?;
        self.db.insert(USAGE_MARKER_KEY, &[])?;
        self.db.flush()?;
        Ok(())
    }

    fn lock_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock only means another admin write panicked; the data is in sled.
        self.admin_writes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn thumbnail_keys_name_height_and_format_and_old_keys_are_the_source() {
        let image = ImageId::from_ulid(ulid::Ulid::new());
        for format in [ThumbnailFormat::Source, ThumbnailFormat::Webp, ThumbnailFormat::Avif] {
            assert_eq!(parse_thumb_key(&thumb_key(image, 400, format)), Some((image, 400, format)));
        }
        // Written before formats existed: image id and height only.
        let old = cat(&image.to_bytes(), &200u32.to_be_bytes());
        assert_eq!(parse_thumb_key(&old), Some((image, 200, ThumbnailFormat::Source)));
        let mut unknown = old.clone();
        unknown.push(9);
        assert_eq!(parse_thumb_key(&unknown), None);
        assert_eq!(parse_thumb_key(&old[..19]), None);
        // An image's variants sort together, by height.
        let mut keys = [thumb_key(image, 400, ThumbnailFormat::Source), thumb_key(image, 200, ThumbnailFormat::Avif)];
        keys.sort();
        assert_eq!(parse_thumb_key(&keys[0]).map(|k| k.1), Some(200));
    }
    use chrono::Utc;
    use imageapi_core::domain::{TierId, UserId, Username};
    use imageapi_core::image::ImageFormat;
    use imageapi_core::jobs::{JobReport, ThumbnailOutcome, ThumbnailResult};

    use super::*;

    fn user_on(tier: &str) -> UserRecord {
        UserRecord {
            id: UserId::from_ulid(ulid::Ulid::new()),
            username: Username::parse("ann").expect("name"),
            password_hash: "x".into(),
            tier: TierId::parse(tier).expect("tier"),
            is_active: true,
            is_admin: false,
            created_at: Utc::now(),
            credentials_version: 0,
        }
    }

    /// A database from before the `usage` tree (counts only) gets its usage filled at open.
    #[test]
    fn usage_is_rebuilt_once_for_a_database_that_predates_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let user = user_on("basic");
        let image = ImageRecord {
            thumbhash: None,
            sha256: None,
            id: crate::ids::new_image_id(),
            owner: user.id,
            name: "a.png".into(),
            format: ImageFormat::Png,
            width: 10,
            height: 10,
            size_bytes: 1234,
            created_at: Utc::now(),
        };
        {
            let db = SledDb::open(dir.path()).expect("open");
            for tier in TierRecord::builtins() {
                db.tiers.insert(tier.id.as_str(), encode(&tier).expect("encode")).expect("tier");
            }
            db.create_user(&user).expect("user");
            let job = db.insert_image(&image, crate::ids::new_job_id()).expect("image").created().job.expect("job");
            let outcome = ThumbnailOutcome {
                variant: imageapi_core::image::ThumbnailFormat::Source,
                image_id: image.id,
                format: ImageFormat::Png,
                requested_height: 200,
                result: ThumbnailResult::Ready { width: 10, height: 10, size_bytes: 99 },
            };
            let report = JobReport {
                thumbhash: None,
                job_id: job.id,
                image_id: image.id,
                outcomes: vec![outcome],
                worker: "t".into(),
                duration_ms: 1,
            };
            db.apply_report(&report).expect("report");
            // Back to how an older version left it.
            db.db.drop_tree("usage").expect("drop");
            db.db.remove(USAGE_MARKER_KEY).expect("marker");
            db.db.open_tree("image_counts").expect("old").insert(user.id.to_bytes(), &1u64.to_be_bytes()).expect("old");
            db.flush_blocking().expect("flush");
            assert!(db.close(std::time::Duration::from_secs(5)));
        }
        let db = SledDb::open(dir.path()).expect("reopen");
        let expected = Usage { images: 1, original_bytes: 1234, thumbnail_bytes: 99, ..Usage::default() };
        assert_eq!(db.usage(user.id).expect("usage"), expected);
        assert!(!db.db.tree_names().iter().any(|n| n.as_ref() == b"image_counts"), "the old counts are gone");
        db.delete_image(image.id).expect("delete");
        assert_eq!(db.usage(user.id).expect("usage"), Usage::default());
    }

    /// A database from before `link_expiry` gets it filled at open, so its links are pruned.
    #[test]
    fn the_link_expiry_index_is_built_once_for_a_database_that_predates_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let user = user_on("enterprise");
        let image = image_of(user.id, 1);
        let now = Utc::now();
        let link = LinkRecord {
            id: imageapi_core::domain::LinkId::from_ulid(ulid::Ulid::new()),
            owner: user.id,
            image_id: image.id,
            variant: imageapi_core::domain::Variant::Original,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(300),
        };
        {
            let db = SledDb::open(dir.path()).expect("open");
            for tier in TierRecord::builtins() {
                db.tiers.insert(tier.id.as_str(), encode(&tier).expect("encode")).expect("tier");
            }
            db.create_user(&user).expect("user");
            db.insert_image(&image, crate::ids::new_job_id()).expect("image");
            db.insert_link(&link, &[5; 32], 10).expect("link");
            // Back to how an older version left it: no expiry index, the owner's index holding
            // only the token hash.
            db.db.drop_tree("link_expiry").expect("drop");
            db.user_links.insert(cat(&user.id.to_bytes(), &link.id.to_bytes()), &[5; 32]).expect("old entry");
            db.db.remove(LINK_EXPIRY_MARKER_KEY).expect("marker");
            db.flush_blocking().expect("flush");
            assert!(db.close(std::time::Duration::from_secs(5)));
        }
        let db = SledDb::open(dir.path()).expect("reopen");
        assert_eq!(db.link_expiry.len(), 1, "indexed at open");
        let another = LinkRecord { id: imageapi_core::domain::LinkId::from_ulid(ulid::Ulid::new()), ..link.clone() };
        let refused = db.insert_link(&another, &[6; 32], 1);
        assert!(matches!(refused, Err(RepoError::LinkLimit(_))), "an old entry counts: {refused:?}");
        assert_eq!(db.prune_expired_links(link.expires_at, now).expect("prune"), (1, 0));
        assert!(db.is_expired_link_token(&[5; 32]).expect("tombstone"));
    }

    fn image_of(owner: UserId, n: u64) -> ImageRecord {
        ImageRecord {
            thumbhash: None,
            sha256: None,
            id: crate::ids::new_image_id(),
            owner,
            name: format!("photo-{n}.png"),
            format: ImageFormat::Png,
            width: 640,
            height: 480,
            size_bytes: 100_000 + n,
            created_at: Utc::now(),
        }
    }

    /// What sled 0.34 does on a full disk (upstream reports corruption after disk-full stops,
    /// LemmyNet/lemmy#2692): the failing write is an error, and from then on every write and
    /// flush fails — even once there is room again — while reads go on; everything flushed
    /// before is intact after a reopen, and writes work again. So the server keeps a
    /// free-space floor (`crate::disk_space`) that stops uploads before sled meets the wall.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_stops_sled_writes_until_it_is_reopened() {
        use crate::repo::{ImageRepo, Repo, TierRepo, UserRepo};
        let Some(fs) = imageapi_shared::testing::small_fs::SmallFs::mount(32 << 20) else { return };
        let path = fs.path().join("db");
        let user = user_on("enterprise"); // unlimited: the disk, not a quota, is what fills
        let mut acknowledged = Vec::new();
        {
            let repo = SledRepo::new(SledDb::open(&path).expect("open"));
            repo.seed_builtin_tiers().await.expect("tiers");
            repo.create_user(&user).await.expect("user");
            fs.fill_leaving(1 << 20);
            let refusal = loop {
                let image = image_of(user.id, acknowledged.len() as u64);
                match repo.insert_image(&image, crate::ids::new_job_id()).await {
                    Ok(_) => acknowledged.push(image),
                    Err(e) => break e,
                }
                assert!(acknowledged.len() < 200_000, "the disk never filled up");
            };
            assert!(matches!(refusal, RepoError::OutOfSpace { outcome_unknown: true }), "{refusal:?}");
            assert!(repo.writes_refused().is_some(), "the repository says it takes no writes");
            let first = &acknowledged[0];
            assert_eq!(repo.image(first.id).await.expect("reads go on").name, first.name);

            fs.unfill();
            let after_room = repo.insert_image(&image_of(user.id, 1 << 40), crate::ids::new_job_id()).await;
            assert!(
                matches!(after_room, Err(RepoError::OutOfSpace { .. })),
                "sled 0.34 takes no writes after a full disk until it is reopened, even with room again \
                 (if sled now recovers by itself, the floor and the README's full-disk row can say so): {after_room:?}"
            );
            repo.close(std::time::Duration::from_secs(5));
        }
        let repo = SledRepo::new(SledDb::open(&path).expect("reopens once there is room"));
        assert!(acknowledged.len() > 10, "only {} writes fit", acknowledged.len());
        for image in &acknowledged {
            let stored = repo.image(image.id).await.expect("every acknowledged write survives");
            assert_eq!((stored.owner, &stored.name, stored.size_bytes), (image.owner, &image.name, image.size_bytes));
        }
        repo.insert_image(&image_of(user.id, 1 << 41), crate::ids::new_job_id()).await.expect("writes work again");
        assert!(repo.writes_refused().is_none());
    }
}
