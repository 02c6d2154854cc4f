//! Validated domain types. Each `parse` states the rule it enforces; a value of the type is
//! proof that the rule holds, so later code never re-checks.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::image::{ExtraFormat, ThumbnailFormat};
use ulid::Ulid;

/// A rejected value, with a message written for the API user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Ulid);

        impl $name {
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }
            /// Parses the 26-character text form; anything else is not an id of ours.
            pub fn parse(s: &str) -> Option<Self> {
                Ulid::from_string(s).ok().map(Self)
            }
            /// Big-endian bytes: sort in creation order, used in sled keys.
            pub fn to_bytes(self) -> [u8; 16] {
                self.0.to_bytes()
            }
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Ulid::from_bytes(bytes))
            }
            pub fn ulid(self) -> Ulid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

ulid_id!(
    /// An image; time-ordered, so a user's images sort newest-first by id.
    ImageId
);
ulid_id!(
    /// A user account.
    UserId
);
ulid_id!(
    /// A thumbnail job; also its task id in the queue, so delivering it twice is a no-op.
    JobId
);
ulid_id!(
    /// An API token (its id, not its secret).
    TokenId
);
ulid_id!(
    /// An expiring link (its id, not its secret token).
    LinkId
);

/// A tier's slug: `[a-z0-9-]{1,32}`, chosen at creation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TierId(String);

impl TierId {
    pub const BASIC: &'static str = "basic";
    pub const PREMIUM: &'static str = "premium";
    pub const ENTERPRISE: &'static str = "enterprise";

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok =
            (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid("must be 1 to 32 characters of a-z, 0-9 and '-'"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A thumbnail height in pixels, 1..=4096.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Height(u32);

impl Height {
    pub const MAX: u32 = 4096;

    pub fn parse(value: i64) -> Result<Self, InvalidValue> {
        match u32::try_from(value) {
            Ok(h) if (1..=Self::MAX).contains(&h) => Ok(Self(h)),
            _ => Err(invalid(format!("heights must be between 1 and {} px", Self::MAX))),
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The thumbnail heights a tier grants: each valid, no duplicates, kept sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Heights(Vec<Height>);

impl Heights {
    /// Most heights one tier may grant.
    pub const MAX_LEN: usize = 32;

    pub fn parse(values: &[i64]) -> Result<Self, InvalidValue> {
        let mut heights = values.iter().map(|&v| Height::parse(v)).collect::<Result<Vec<_>, _>>()?;
        heights.sort_unstable();
        let before = heights.len();
        heights.dedup();
        if heights.len() != before {
            return Err(invalid("heights must not repeat"));
        }
        if heights.len() > Self::MAX_LEN {
            return Err(invalid(format!("at most {} heights per tier", Self::MAX_LEN)));
        }
        Ok(Self(heights))
    }
    pub fn iter(&self) -> impl Iterator<Item = Height> + '_ {
        self.0.iter().copied()
    }
    pub fn contains(&self, height: Height) -> bool {
        self.0.binary_search(&height).is_ok()
    }
    pub fn as_slice(&self) -> &[Height] {
        &self.0
    }
}

/// The formats a tier grants beyond the source's own: no duplicates, kept in
/// [`ExtraFormat`]'s order (WebP before AVIF).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Formats(Vec<ExtraFormat>);

impl Formats {
    /// Parses names as the admin API takes them (`["webp", "avif"]`).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, InvalidValue> {
        let mut formats = names
            .iter()
            .map(|n| {
                ExtraFormat::parse(n.as_ref()).ok_or_else(|| {
                    invalid(format!("{:?} is not a format a tier can grant: use \"webp\" or \"avif\"", n.as_ref()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        formats.sort_unstable();
        let before = formats.len();
        formats.dedup();
        if formats.len() != before {
            return Err(invalid("formats must not repeat"));
        }
        Ok(Self(formats))
    }
    pub fn of(formats: &[ExtraFormat]) -> Self {
        let mut formats = formats.to_vec();
        formats.sort_unstable();
        formats.dedup();
        Self(formats)
    }
    pub fn iter(&self) -> impl Iterator<Item = ExtraFormat> + '_ {
        self.0.iter().copied()
    }
    pub fn contains(&self, format: ExtraFormat) -> bool {
        self.0.contains(&format)
    }
    pub fn as_slice(&self) -> &[ExtraFormat] {
        &self.0
    }
    /// Every thumbnail variant a tier with these formats gets: the source's, then these.
    pub fn variants(&self) -> Vec<ThumbnailFormat> {
        std::iter::once(ThumbnailFormat::Source).chain(self.iter().map(ThumbnailFormat::from)).collect()
    }
}

/// Lifetime of an expiring link in seconds, 300..=30000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpirySeconds(u32);

impl ExpirySeconds {
    pub const MIN: u32 = 300;
    pub const MAX: u32 = 30_000;

    pub fn parse(value: i64) -> Result<Self, InvalidValue> {
        match u32::try_from(value) {
            Ok(s) if (Self::MIN..=Self::MAX).contains(&s) => Ok(Self(s)),
            _ => Err(Self::range_error()),
        }
    }
    pub fn range_error() -> InvalidValue {
        invalid(format!("must be a whole number of seconds from {} to {}", Self::MIN, Self::MAX))
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A login name: 3..=64 characters of `A-Z a-z 0-9 _ . @ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid("must be 3 to 64 characters of letters, digits and _ . @ -"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as typed: 8..=1024 characters. Never logged (no `Display`, redacted `Debug`).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if (8..=1024).contains(&s.chars().count()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid("must be 8 to 1024 characters"))
        }
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Unicode format characters that change how text is shown or hide in it: bidi embeddings,
/// overrides, isolates and marks, zero-width characters, the BOM (`evil\u{202E}gpj.exe` shows
/// as `evilexe.jpg`). Names users or admins see never carry them.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A tier's display name: 1..=64 characters, no control characters and no invisible
/// formatting ones ([`is_invisible_format`]: a name must look like what it is), not only
/// spaces. Kept as given (the OpenAPI document states the same rule as a pattern, so clients
/// can check it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TierName(String);

impl TierName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let control = |c: char| c <= '\u{1f}' || c == '\u{7f}' || is_invisible_format(c);
        let ok =
            (1..=Self::MAX_LEN).contains(&s.chars().count()) && !s.chars().any(control) && s.chars().any(|c| c != ' ');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "must be 1 to 64 characters, not only spaces, with no control characters and no invisible formatting ones (bidi overrides, zero-width characters)",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an expiring link serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Original,
    Thumbnail(Height),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_names_reject_control_and_invisible_formatting_characters() {
        assert!(TierName::parse("Gold plus").is_ok());
        assert!(TierName::parse("Ünïcødé ✓").is_ok());
        for bad in ["", "   ", "a\nb", "tab\t", "evil\u{202E}dlog", "zero\u{200B}width", "\u{FEFF}bom", &"x".repeat(65)]
        {
            assert!(TierName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn tier_id_accepts_slugs_and_rejects_everything_else() {
        assert!(TierId::parse("gold-2").is_ok());
        assert!(TierId::parse(&"a".repeat(32)).is_ok());
        for bad in ["", "Gold", "a_b", "a b", "../x", &"a".repeat(33)] {
            assert!(TierId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_are_known_ordered_and_unique() {
        let f = Formats::parse(&["avif", "webp"]).expect("valid");
        assert_eq!(f.as_slice(), &[ExtraFormat::Webp, ExtraFormat::Avif]);
        assert_eq!(f.variants(), vec![ThumbnailFormat::Source, ThumbnailFormat::Webp, ThumbnailFormat::Avif]);
        assert!(Formats::parse::<&str>(&[]).is_ok());
        for bad in [&["gif"][..], &["webp", "webp"], &["WEBP"], &["source"], &["jpeg"]] {
            assert!(Formats::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn heights_are_bounded_sorted_and_unique() {
        let h = Heights::parse(&[400, 200]).expect("valid");
        assert_eq!(h.iter().map(Height::get).collect::<Vec<_>>(), vec![200, 400]);
        assert!(Heights::parse(&[]).is_ok());
        assert!(Heights::parse(&[0]).is_err());
        assert!(Heights::parse(&[4097]).is_err());
        assert!(Heights::parse(&[-1]).is_err());
        assert!(Heights::parse(&[4096, 1]).is_ok());
        assert!(Heights::parse(&[200, 200]).is_err());
    }

    #[test]
    fn expiry_accepts_exactly_300_to_30000_seconds() {
        assert!(ExpirySeconds::parse(299).is_err());
        assert!(ExpirySeconds::parse(300).is_ok());
        assert!(ExpirySeconds::parse(30_000).is_ok());
        assert!(ExpirySeconds::parse(30_001).is_err());
        assert!(ExpirySeconds::parse(-300).is_err());
        assert!(ExpirySeconds::parse(i64::MAX).is_err());
    }

    #[test]
    fn username_rules() {
        assert!(Username::parse("ann.o-k_1@x").is_ok());
        for bad in ["ab", "has space", "ünï", "a/b", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn password_debug_never_shows_the_secret() {
        let p = Password::parse("hunter2hunter2").expect("valid");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(Password::parse("short").is_err());
    }

    #[test]
    fn ids_round_trip_through_text_and_bytes() {
        let id = ImageId::from_ulid(Ulid::new());
        assert_eq!(ImageId::parse(&id.to_string()), Some(id));
        assert_eq!(ImageId::from_bytes(id.to_bytes()), id);
        assert_eq!(ImageId::parse("../../etc/passwd"), None);
    }
}

/// What a tier restricts: each `None` is unlimited. Validated by [`TierLimits::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierLimits {
    /// Most images a user may hold (null: unlimited).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000_000_i64, example = 100))]
    pub max_images: Option<u64>,
    /// Most bytes a user's originals and ready thumbnails (every format) may take (null:
    /// unlimited).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 1_125_899_906_842_624_i64, example = 1_073_741_824_i64)
    )]
    pub max_storage_bytes: Option<u64>,
    /// Largest upload in bytes, at most the server's own limit (null: the server's limit).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, example = 10_485_760))]
    pub max_upload_bytes: Option<u64>,
    /// Most uploads in any 60 minutes (null: unlimited).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000, example = 60))]
    pub uploads_per_hour: Option<u64>,
}

impl TierLimits {
    pub const MAX_IMAGES: u64 = 1_000_000_000;
    /// 1 PiB: far beyond any real quota, well inside JSON's exact integers.
    pub const MAX_STORAGE_BYTES: u64 = 1 << 50;
    pub const MAX_UPLOADS_PER_HOUR: u64 = 1_000_000;

    pub const UNLIMITED: TierLimits =
        TierLimits { max_images: None, max_storage_bytes: None, max_upload_bytes: None, uploads_per_hour: None };

    /// The limit on `quota`.
    pub fn limit(&self, quota: Quota) -> Option<u64> {
        match quota {
            Quota::MaxImages => self.max_images,
            Quota::MaxStorageBytes => self.max_storage_bytes,
            Quota::UploadsPerHour => self.uploads_per_hour,
        }
    }

    /// The range one limit may take (`server_max_upload` bounds `max_upload_bytes`), as the
    /// admin API states it.
    pub fn range(field: LimitField, server_max_upload: u64) -> (u64, u64) {
        match field {
            LimitField::MaxImages => (0, Self::MAX_IMAGES),
            LimitField::MaxStorageBytes => (0, Self::MAX_STORAGE_BYTES),
            LimitField::MaxUploadBytes => (1, server_max_upload),
            LimitField::UploadsPerHour => (1, Self::MAX_UPLOADS_PER_HOUR),
        }
    }

    /// Checks one limit's value against [`TierLimits::range`].
    pub fn check(field: LimitField, value: Option<u64>, server_max_upload: u64) -> Result<Option<u64>, InvalidValue> {
        let (min, max) = Self::range(field, server_max_upload);
        match value {
            Some(v) if v < min || v > max => Err(invalid(format!(
                "must be a whole number from {min} to {max}{}, or null for unlimited",
                if field == LimitField::MaxUploadBytes { " (the server's upload limit)" } else { "" }
            ))),
            other => Ok(other),
        }
    }

    pub fn get(&self, field: LimitField) -> Option<u64> {
        match field {
            LimitField::MaxImages => self.max_images,
            LimitField::MaxStorageBytes => self.max_storage_bytes,
            LimitField::MaxUploadBytes => self.max_upload_bytes,
            LimitField::UploadsPerHour => self.uploads_per_hour,
        }
    }

    pub fn set(&mut self, field: LimitField, value: Option<u64>) {
        match field {
            LimitField::MaxImages => self.max_images = value,
            LimitField::MaxStorageBytes => self.max_storage_bytes = value,
            LimitField::MaxUploadBytes => self.max_upload_bytes = value,
            LimitField::UploadsPerHour => self.uploads_per_hour = value,
        }
    }

    /// The largest upload a holder may send: the tier's limit within the server's.
    pub fn upload_limit(&self, server_max_upload: u64) -> u64 {
        self.max_upload_bytes.map_or(server_max_upload, |t| t.min(server_max_upload))
    }
}

/// One of a tier's limits, named as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitField {
    MaxImages,
    MaxStorageBytes,
    MaxUploadBytes,
    UploadsPerHour,
}

impl LimitField {
    pub const ALL: [LimitField; 4] =
        [LimitField::MaxImages, LimitField::MaxStorageBytes, LimitField::MaxUploadBytes, LimitField::UploadsPerHour];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitField::MaxImages => "max_images",
            LimitField::MaxStorageBytes => "max_storage_bytes",
            LimitField::MaxUploadBytes => "max_upload_bytes",
            LimitField::UploadsPerHour => "uploads_per_hour",
        }
    }
}

/// A limit an upload can exceed once it is read (the size limit is checked before: 413).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    MaxImages,
    MaxStorageBytes,
    UploadsPerHour,
}

impl Quota {
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::MaxImages => "max_images",
            Quota::MaxStorageBytes => "max_storage_bytes",
            Quota::UploadsPerHour => "uploads_per_hour",
        }
    }
}
