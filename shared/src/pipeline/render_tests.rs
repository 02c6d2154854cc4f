//! Tests of `render`: WebP and AVIF variants beside the source format, and the ThumbHash.
//! WebP is decoded with libwebp (the `webp` crate the encoder already uses). There is no light
//! AVIF decoder (image's needs the dav1d C library), so AVIF files are checked by their boxes:
//! the `ftyp` brand, `ispe` dimensions, the `colr` sRGB signalling and the alpha auxiliary
//! image.

use image::{DynamicImage, Rgba, RgbaImage};
use imageapi_core::image::ThumbnailFormat;

use crate::pipeline::test_support::*;
use crate::pipeline::{make_thumbnails, render, Limits, Rendered};

const ALL: [ThumbnailFormat; 3] = [ThumbnailFormat::Source, ThumbnailFormat::Webp, ThumbnailFormat::Avif];

fn rendered(bytes: &[u8], heights: &[u32], formats: &[ThumbnailFormat]) -> Rendered {
    render(bytes, heights, formats, &Limits::default()).expect("render")
}

fn ok(rendered: &Rendered, index: usize, format: ThumbnailFormat) -> &[u8] {
    let variant = rendered.thumbnails[index].variant(format).expect("variant asked for");
    variant.result.as_deref().expect("variant encoded")
}

/// Decodes a WebP with libwebp: (width, height, RGBA pixels).
fn decode_webp(bytes: &[u8]) -> (u32, u32, RgbaImage) {
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WEBP");
    let image = webp::Decoder::new(bytes).decode().expect("libwebp decodes it");
    let (w, h) = (image.width(), image.height());
    let rgba = if image.is_alpha() {
        RgbaImage::from_raw(w, h, image.to_vec()).expect("rgba")
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, image.to_vec()).expect("rgb")).to_rgba8()
    };
    (w, h, rgba)
}

/// The payload after the first box of type `kind` (searched by name; enough for these files).
fn find_box<'a>(bytes: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let at = bytes.windows(4).position(|w| w == kind)?;
    Some(&bytes[at + 4..])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks an AVIF's container: brand, dimensions (`ispe`), 8-bit 4:4:4 (`av1C`), and sRGB
/// signalling. avif-serialize leaves `colr` out when the values are the AVIF defaults, which are
/// exactly ours (BT.709 primaries 1, sRGB transfer 13, BT.601 matrix 6, full range; also what
/// Safari assumes without `colr`), and the same values are in the AV1 sequence header; if a
/// `colr` nclx box is there, it must say so. Returns whether it carries an alpha auxiliary image.
fn check_avif(bytes: &[u8], width: u32, height: u32) -> bool {
    assert_eq!(&bytes[4..8], b"ftyp", "an ISO-BMFF file");
    assert!(&bytes[8..12] == b"avif", "major brand avif, got {:?}", String::from_utf8_lossy(&bytes[8..12]));
    let ispe = find_box(bytes, b"ispe").expect("ispe box");
    assert_eq!((be32(&ispe[4..]), be32(&ispe[8..])), (width, height), "ispe dimensions");
    let av1c = find_box(bytes, b"av1C").expect("av1C box");
    assert_eq!(av1c[2] & 0x40, 0, "8-bit");
    assert_eq!(av1c[2] & 0x0C, 0, "4:4:4, no chroma subsampling");
    if let Some(colr) = find_box(bytes, b"colr") {
        assert_eq!(&colr[..4], b"nclx");
        let (primaries, transfer, matrix) = (
            u16::from_be_bytes([colr[4], colr[5]]),
            u16::from_be_bytes([colr[6], colr[7]]),
            u16::from_be_bytes([colr[8], colr[9]]),
        );
        assert_eq!((primaries, transfer, matrix), (1, 13, 6), "sRGB primaries/transfer, BT.601 matrix");
        assert_eq!(colr[10] & 0x80, 0x80, "full range");
    }
    assert!(find_box(bytes, b"Exif").is_none(), "no EXIF");
    bytes.windows(b"auxiliary:alpha".len()).any(|w| w == b"auxiliary:alpha")
}

#[test]
fn every_variant_of_every_height_decodes_at_the_same_size() {
    let jpeg = encode_jpeg_rgb(&gradient_rgb(600, 400));
    let out = rendered(&jpeg, &[120, 60], &ALL);
    assert_eq!(out.thumbnails.len(), 2);
    for (i, (w, h)) in [(180, 120), (90, 60)].into_iter().enumerate() {
        let t = &out.thumbnails[i];
        assert_eq!((t.width, t.height), (w, h));
        assert_eq!(t.variants.iter().map(|v| v.format).collect::<Vec<_>>(), ALL.to_vec(), "in the order asked");
        let jpeg = decode(ok(&out, i, ThumbnailFormat::Source));
        assert_eq!((jpeg.width(), jpeg.height()), (w, h));
        let (ww, wh, webp) = decode_webp(ok(&out, i, ThumbnailFormat::Webp));
        assert_eq!((ww, wh), (w, h));
        // Lossy, but the same picture: the gradient's corners are where they were.
        let ssim = ssim(&DynamicImage::ImageRgba8(webp), &jpeg);
        assert!(ssim > 0.9, "WebP looks like the JPEG variant: SSIM {ssim:.3}");
        assert!(!check_avif(ok(&out, i, ThumbnailFormat::Avif), w, h), "opaque: no alpha plane");
    }
}

#[test]
fn the_source_variant_is_what_make_thumbnails_makes() {
    let jpeg = encode_jpeg_rgb(&gradient_rgb(300, 200));
    let out = rendered(&jpeg, &[50, 100, 50], &[ThumbnailFormat::Source]);
    let thumbs = make_thumbnails(&jpeg, &[50, 100, 50], &Limits::default()).expect("thumbnails");
    assert_eq!(out.thumbnails.len(), 3);
    for (t, r) in thumbs.iter().zip(&out.thumbnails) {
        assert_eq!((t.requested_height, t.width, t.height), (r.requested_height, r.width, r.height));
        assert_eq!(Some(&t.bytes), r.variants[0].result.as_ref().ok());
    }
}

#[test]
fn formats_may_omit_the_source_and_duplicates_are_made_once() {
    let png = encode_png_rgb(&gradient_rgb(200, 100));
    let out = rendered(&png, &[50], &[ThumbnailFormat::Webp, ThumbnailFormat::Webp]);
    let formats: Vec<_> = out.thumbnails[0].variants.iter().map(|v| v.format).collect();
    assert_eq!(formats, vec![ThumbnailFormat::Webp]);
    assert_eq!(decode_webp(ok(&out, 0, ThumbnailFormat::Webp)).0, 100);
}

/// A 64x32 RGBA image: the left half fully transparent, the right half opaque red.
fn half_transparent() -> Vec<u8> {
    let image = RgbaImage::from_fn(64, 32, |x, _| if x < 32 { Rgba([0, 0, 255, 0]) } else { Rgba([255, 0, 0, 255]) });
    encode_png(&DynamicImage::ImageRgba8(image))
}

#[test]
fn alpha_of_an_rgba_png_is_kept_in_webp_and_avif() {
    let out = rendered(&half_transparent(), &[16], &ALL);
    let (w, h, webp) = decode_webp(ok(&out, 0, ThumbnailFormat::Webp));
    assert_eq!((w, h), (32, 16));
    assert_eq!(webp.get_pixel(2, 8).0[3], 0, "transparent stays transparent");
    let opaque = webp.get_pixel(29, 8).0;
    assert_eq!(opaque[3], 255, "opaque stays opaque");
    assert!(opaque[0] > 200 && opaque[1] < 60, "and red: {opaque:?}");
    assert!(check_avif(ok(&out, 0, ThumbnailFormat::Avif), 32, 16), "AVIF carries an alpha plane");
}

#[test]
fn the_thumbhash_has_the_displayed_aspect_ratio() {
    let check = |bytes: &[u8], heights: &[u32], expected: f32| {
        let out = rendered(bytes, heights, &[ThumbnailFormat::Source]);
        let hash = out.thumbhash.expect("a thumbhash");
        assert!(hash.len() >= 5 && hash.len() <= 32, "a few bytes: {}", hash.len());
        let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).expect("decodes");
        assert!((ratio - expected).abs() / expected < 0.15, "aspect {ratio} for {expected}");
        let (w, h, _) = thumbhash::thumb_hash_to_rgba(&hash).expect("renders");
        assert!(w > 0 && h > 0);
    };
    let wide = encode_jpeg_rgb(&gradient_rgb(400, 200));
    check(&wide, &[100], 2.0);
    // No thumbnails asked for: the hash is still made, from the decode itself.
    check(&wide, &[], 2.0);
    check(&encode_png_rgb(&gradient_rgb(90, 160)), &[40], 90.0 / 160.0);
    // EXIF orientation 6 (quarter turn): displayed portrait.
    let rotated = splice_after_soi(&wide, &exif_orientation_segment(6));
    check(&rotated, &[100], 0.5);
}

#[test]
fn a_failing_encoder_fails_only_its_variant() {
    // WebP is limited to 16383 px per side; JPEG, PNG and AVIF are not. A 17000x4 source's
    // thumbnail at its own height keeps the width.
    let png = encode_png_rgb(&gradient_rgb(17_000, 4));
    let out = rendered(&png, &[4], &[ThumbnailFormat::Webp, ThumbnailFormat::Source]);
    let t = &out.thumbnails[0];
    assert_eq!((t.width, t.height), (17_000, 4));
    let webp = t.variant(ThumbnailFormat::Webp).expect("webp asked").result.as_ref();
    let reason = webp.expect_err("WebP cannot be 17000 px wide");
    assert!(reason.contains("17000x4"), "the reason names the size: {reason}");
    let png_thumb = decode(t.variant(ThumbnailFormat::Source).expect("asked").result.as_ref().expect("PNG encodes"));
    assert_eq!(png_thumb.width(), 17_000);
    assert!(out.thumbhash.is_some());
}

#[test]
fn errors_of_the_whole_render_are_still_errors() {
    assert!(render(&b"not an image"[..], &[100], &ALL, &Limits::default()).is_err());
    let jpeg = encode_jpeg_rgb(&gradient_rgb(40, 40));
    assert!(render(&jpeg, &[0], &ALL, &Limits::default()).is_err());
    let out = rendered(&jpeg, &[20], &[]);
    assert!(out.thumbnails[0].variants.is_empty(), "no formats: nothing encoded");
    assert_eq!((out.thumbnails[0].width, out.thumbnails[0].height), (20, 20));
}
