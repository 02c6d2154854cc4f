//! Which encoding of a thumbnail a request gets: by its `Accept` header, among the formats the
//! tier grants (RFC 9110 §12.5.1), or by an explicit extension in the path.
//!
//! Rules: a format's weight is the `q` of the most specific media range that names it; `q=0`
//! excludes it. The extra formats (WebP, AVIF) must be named — `image/*` or `*/*` alone give
//! the source's own format, which old clients and `<img>` fallbacks expect. Among equal
//! weights AVIF beats WebP beats the source's (smallest first). A header that cannot be
//! parsed, or that accepts nothing we have, gets the source's format: negotiation never
//! turns a request into an error.

use imageapi_core::image::{ExtraFormat, ImageFormat, ThumbnailFormat};

/// The encodings to serve, best first: never empty.
pub fn by_accept(accept: Option<&str>, granted: &[ThumbnailFormat], source: ImageFormat) -> Vec<ThumbnailFormat> {
    let fallback = vec![ThumbnailFormat::Source];
    let Some(ranges) = accept.and_then(parse) else { return fallback };
    let mut weighted: Vec<(u16, ThumbnailFormat)> = granted
        .iter()
        .filter_map(|&format| {
            let mime = format.mime(source);
            let q = weight(&ranges, mime, format.is_source())?;
            (q > 0).then_some((q, format))
        })
        .collect();
    if weighted.is_empty() {
        return fallback;
    }
    // Heaviest first; among equals the smallest encoding (AVIF, WebP, then the source's).
    weighted.sort_by_key(|&(q, format)| (std::cmp::Reverse(q), std::cmp::Reverse(format)));
    weighted.into_iter().map(|(_, format)| format).collect()
}

/// The encoding an explicit path extension names (`jpg`, `jpeg`, `png`, `webp`, `avif`), if it
/// is one this image can have at all (a `.png` of a JPEG image is not).
pub fn by_extension(extension: &str, source: ImageFormat) -> Option<ThumbnailFormat> {
    match (extension, source) {
        ("jpg" | "jpeg", ImageFormat::Jpeg) | ("png", ImageFormat::Png) => Some(ThumbnailFormat::Source),
        _ => ExtraFormat::parse(extension).map(ThumbnailFormat::from),
    }
}

/// One media range: type, subtype (either may be `*`) and weight in thousandths.
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: u16,
}

/// Parses an `Accept` header; `None` if any part is malformed.
fn parse(header: &str) -> Option<Vec<Range<'_>>> {
    let mut ranges = Vec::new();
    for part in header.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue; // RFC 9110 lists tolerate empty elements.
        }
        let mut pieces = part.split(';');
        let (kind, subtype) = pieces.next()?.trim().split_once('/')?;
        if !is_token(kind) || !is_token(subtype) || (kind == "*" && subtype != "*") {
            return None;
        }
        let mut q = 1000;
        for param in pieces {
            let (name, value) = param.trim().split_once('=')?;
            if name.trim().eq_ignore_ascii_case("q") {
                q = qvalue(value.trim())?;
            }
        }
        ranges.push(Range { kind, subtype, q });
    }
    Some(ranges)
}

/// `0`, `0.5`, `1.000`: at most three decimals, at most 1 (RFC 9110 §12.4.2).
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The weight of `mime` by the most specific range naming it; wildcards count only for the
/// source's format. `None` when no range names it.
fn weight(ranges: &[Range<'_>], mime: &str, wildcards_count: bool) -> Option<u16> {
    let (kind, subtype) = mime.split_once('/')?;
    let mut best: Option<(u8, u16)> = None;
    for range in ranges {
        let specificity = if range.kind.eq_ignore_ascii_case(kind) && range.subtype.eq_ignore_ascii_case(subtype) {
            3
        } else if wildcards_count && range.kind.eq_ignore_ascii_case(kind) && range.subtype == "*" {
            2
        } else if wildcards_count && range.kind == "*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, range.q));
        }
    }
    best.map(|(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ThumbnailFormat::{Avif, Source, Webp};

    const ALL: [ThumbnailFormat; 3] = [Source, Webp, Avif];

    fn pick(accept: Option<&str>, granted: &[ThumbnailFormat]) -> Vec<ThumbnailFormat> {
        by_accept(accept, granted, ImageFormat::Jpeg)
    }

    #[test]
    fn browsers_get_the_smallest_format_they_name() {
        let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        assert_eq!(pick(Some(chrome), &ALL), vec![Avif, Webp, Source]);
        assert_eq!(pick(Some(chrome), &[Source, Webp]), vec![Webp, Source]);
        let safari = "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
        assert_eq!(pick(Some(safari), &ALL), vec![Avif, Webp, Source]);
    }

    #[test]
    fn q_values_order_and_zero_excludes() {
        assert_eq!(pick(Some("image/webp;q=0.9, image/avif;q=0.5, image/jpeg"), &ALL), vec![Source, Webp, Avif]);
        assert_eq!(pick(Some("image/avif;q=0, image/webp, */*"), &ALL), vec![Webp, Source]);
        assert_eq!(pick(Some("image/avif, image/jpeg;q=0"), &ALL), vec![Avif]);
        assert_eq!(pick(Some("image/avif;Q=0.500, image/webp;q=0.6"), &ALL), vec![Webp, Avif]);
        // A specific range beats a wildcard for the same type, in either order.
        assert_eq!(pick(Some("image/jpeg;q=0, image/*"), &ALL), vec![Source]);
    }

    #[test]
    fn wildcards_absence_and_formats_not_granted_give_the_source() {
        for accept in
            [None, Some(""), Some("*/*"), Some("image/*"), Some("image/*;q=0.3, */*;q=0.1"), Some("text/html")]
        {
            assert_eq!(pick(accept, &ALL), vec![Source], "{accept:?}");
        }
        assert_eq!(pick(Some("image/avif"), &[Source, Webp]), vec![Source]);
        assert_eq!(pick(Some("image/avif;q=0"), &[Source]), vec![Source]);
    }

    #[test]
    fn malformed_headers_fall_back_to_the_source() {
        for bad in [
            "image/webp;q=2",
            "image/webp;q=-1",
            "image/webp;q=0.1234",
            "image/webp;q=abc",
            "image/webp;q",
            "webp",
            "image/",
            "*/webp",
            "image/we bp",
            "image/webp;;q=1;",
            "\u{1F600}/avif",
        ] {
            assert_eq!(pick(Some(bad), &ALL), vec![Source], "{bad:?}");
        }
        // Other parameters are allowed and ignored.
        assert_eq!(pick(Some("image/webp; charset=x; q=0.5"), &ALL), vec![Webp]);
    }

    #[test]
    fn png_sources_are_negotiated_by_their_own_type() {
        assert_eq!(by_accept(Some("image/png, image/webp;q=0.5"), &ALL, ImageFormat::Png), vec![Source, Webp]);
        assert_eq!(by_accept(Some("image/jpeg"), &ALL, ImageFormat::Png), vec![Source]);
    }

    #[test]
    fn extensions_name_the_formats_an_image_can_have() {
        assert_eq!(by_extension("jpg", ImageFormat::Jpeg), Some(Source));
        assert_eq!(by_extension("jpeg", ImageFormat::Jpeg), Some(Source));
        assert_eq!(by_extension("png", ImageFormat::Jpeg), None);
        assert_eq!(by_extension("jpg", ImageFormat::Png), None);
        assert_eq!(by_extension("png", ImageFormat::Png), Some(Source));
        assert_eq!(by_extension("webp", ImageFormat::Png), Some(Webp));
        assert_eq!(by_extension("avif", ImageFormat::Jpeg), Some(Avif));
        for bad in ["", "gif", "WEBP", "jpg.webp", "source"] {
            assert_eq!(by_extension(bad, ImageFormat::Jpeg), None, "{bad:?}");
        }
    }
}
