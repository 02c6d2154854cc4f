//! TEMPORARY stand-in until the pipeline module lands (being written in parallel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}
impl ImageFormat {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }
}
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_side: u32,
}
impl Default for Limits {
    fn default() -> Self {
        Self { max_bytes: 25 << 20, max_pixels: 100_000_000, max_side: 30_000 }
    }
}
pub fn thumbnail_size(w: u32, h: u32, t: u32) -> (u32, u32) {
    let hh = t.min(h);
    (((w as u64 * hh as u64 + h as u64 / 2) / h as u64).max(1) as u32, hh)
}
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}
#[derive(thiserror::Error, Debug)]
pub enum ProbeError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    TooLarge(String),
}
pub fn probe(bytes: &[u8], _limits: &Limits) -> Result<Probe, ProbeError> {
    let r = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ProbeError::Corrupt(e.to_string()))?;
    let format = match r.format() {
        Some(image::ImageFormat::Png) => ImageFormat::Png,
        Some(image::ImageFormat::Jpeg) => ImageFormat::Jpeg,
        _ => return Err(ProbeError::Unsupported("not png/jpeg".into())),
    };
    let (width, height) = r.into_dimensions().map_err(|e| ProbeError::Corrupt(e.to_string()))?;
    Ok(Probe { format, width, height })
}
pub struct Thumbnail {
    pub requested_height: u32,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}
#[derive(thiserror::Error, Debug)]
pub enum ThumbnailError {
    #[error("{0}")]
    Decode(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Encode(String),
}
pub fn make_thumbnails(original: &[u8], heights: &[u32], _limits: &Limits) -> Result<Vec<Thumbnail>, ThumbnailError> {
    let img = image::load_from_memory(original).map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    let fmt = image::guess_format(original).map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    heights
        .iter()
        .map(|&h| {
            let (w, hh) = thumbnail_size(img.width(), img.height(), h);
            let t = img.resize_exact(w, hh, image::imageops::FilterType::Triangle);
            let mut out = std::io::Cursor::new(Vec::new());
            t.write_to(&mut out, fmt).map_err(|e| ThumbnailError::Encode(e.to_string()))?;
            Ok(Thumbnail { requested_height: h, width: w, height: hh, bytes: out.into_inner() })
        })
        .collect()
}
