//! ThumbHash placeholders (issue 31 part 5): a ~25-byte blurred preview a client can paint
//! before any thumbnail arrives. Computed from the render's own pixels, at most 100x100 (the
//! `thumbhash` crate refuses more, and more would change nothing in a 5x5-coefficient hash).

use image::DynamicImage;

/// Largest side the hash is computed from.
pub const THUMBHASH_MAX_SIDE: u32 = 100;

/// Size to shrink a `width` x `height` image to before hashing: within 100x100, keeping the
/// aspect ratio (the hash stores it), never enlarged, at least 1 px per side.
pub(crate) fn hash_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let max = u64::from(THUMBHASH_MAX_SIDE);
    if w <= max && h <= max {
        return (w as u32, h as u32);
    }
    let (w, h) = if w >= h { (max, (h * max + w / 2) / w) } else { ((w * max + h / 2) / h, max) };
    (w.clamp(1, max) as u32, h.clamp(1, max) as u32)
}

/// The ThumbHash of an image of at most [`THUMBHASH_MAX_SIDE`] per side (oriented,
/// un-premultiplied); `None` if it is larger.
pub(crate) fn thumbhash(image: &DynamicImage) -> Option<Vec<u8>> {
    let (width, height) = (image.width(), image.height());
    if width == 0 || height == 0 || width > THUMBHASH_MAX_SIDE || height > THUMBHASH_MAX_SIDE {
        return None;
    }
    let rgba = image.to_rgba8();
    Some(::thumbhash::rgba_to_thumb_hash(width as usize, height as usize, rgba.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_sizes_fit_100_and_keep_the_aspect() {
        assert_eq!(hash_size(6028, 3391), (100, 56));
        assert_eq!(hash_size(1080, 1920), (56, 100));
        assert_eq!(hash_size(50, 20), (50, 20));
        assert_eq!(hash_size(30000, 1), (100, 1));
        assert_eq!(hash_size(100, 100), (100, 100));
    }

    #[test]
    fn oversized_input_gives_no_hash_instead_of_a_panic() {
        assert!(thumbhash(&DynamicImage::new_rgb8(101, 10)).is_none());
        assert!(thumbhash(&DynamicImage::new_rgb8(100, 10)).is_some());
    }
}
