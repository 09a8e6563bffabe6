//! Image checks and thumbnails: decode PNG/JPEG/GIF/WebP under hard limits, learn the size,
//! and render a thumbnail that fits in 320×320.
//!
//! Blocking and CPU-heavy: callers run [`probe`] on the blocking pool. Only the four formats
//! the SPEC names are accepted, recognised by their bytes (never by the claimed name or
//! type), and [`image::Limits`] caps dimensions and decoder memory so a small
//! "decompression bomb" cannot exhaust the server. Thumbnails are JPEG when the picture is
//! opaque and PNG when it has real transparency.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder as _, ImageError, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Thumbnails fit in a square of this many pixels.
pub const THUMB_MAX: u32 = 320;
/// Largest width or height accepted for decoding.
pub const MAX_DIMENSION: u32 = 16_384;
/// Most memory one decode may allocate.
pub const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
/// JPEG thumbnail quality.
const JPEG_QUALITY: u8 = 82;

/// File-name extensions that make an upload count as an image whatever its media type.
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "jpe", "gif", "webp"];

/// What is known of a decodable image (cached beside its blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    /// Width in pixels (after EXIF orientation).
    pub width: u32,
    /// Height in pixels (after EXIF orientation).
    pub height: u32,
    /// The media type of the decoded format (`image/png`, …), whatever the uploader claimed.
    pub mime: String,
    /// SHA-256 (hex) of the thumbnail blob.
    pub thumb_sha256: String,
}

/// A successful probe: the facts and the encoded thumbnail.
#[derive(Debug)]
pub struct Probed {
    /// Size, format and thumbnail hash.
    pub facts: ImageFacts,
    /// The thumbnail's bytes (JPEG or PNG).
    pub thumbnail: Vec<u8>,
}

/// Whether an upload claims to be an image: an `image/*` type or an image file extension.
/// Such uploads must decode, or they are refused.
pub fn looks_like_image(mime: &str, name: &str) -> bool {
    if mime.starts_with("image/") {
        return true;
    }
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// The media type a served image may carry inline (decodable raster formats only).
pub fn is_inline_image_mime(mime: &str) -> bool {
    matches!(mime, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
}

/// The media type of a thumbnail's bytes.
pub fn thumbnail_mime(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

/// An I/O failure of the server (as opposed to bytes that are not an image).
fn server_io(e: &std::io::Error) -> bool {
    !matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
    )
}

/// Decodes the file at `path` and renders its thumbnail. `Ok(Err(reason))` when the bytes
/// are not an acceptable image; `Err` only for I/O failures of the server itself.
pub fn probe(path: &Path) -> std::io::Result<Result<Probed, String>> {
    let file = File::open(path)?;
    let reader = ImageReader::new(BufReader::new(file)).with_guessed_format()?;
    let (format, mime) = match reader.format() {
        Some(ImageFormat::Png) => (ImageFormat::Png, "image/png"),
        Some(ImageFormat::Jpeg) => (ImageFormat::Jpeg, "image/jpeg"),
        Some(ImageFormat::Gif) => (ImageFormat::Gif, "image/gif"),
        Some(ImageFormat::WebP) => (ImageFormat::WebP, "image/webp"),
        Some(other) => return Ok(Err(format!("{other:?} images are not accepted"))),
        None => return Ok(Err("not a PNG, JPEG, GIF or WebP image".into())),
    };
    let mut reader = reader;
    reader.set_format(format);
    reader.limits(limits());
    match decode(reader) {
        Ok(img) => Ok(thumbnail(&img, mime)),
        Err(ImageError::IoError(e)) if server_io(&e) => Err(e),
        Err(ImageError::Limits(e)) => Ok(Err(format!("image too large to decode: {e}"))),
        Err(e) => Ok(Err(format!("cannot decode image: {e}"))),
    }
}

fn decode(reader: ImageReader<BufReader<File>>) -> image::ImageResult<DynamicImage> {
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Renders the thumbnail of a decoded image.
fn thumbnail(img: &DynamicImage, mime: &str) -> Result<Probed, String> {
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err("image has no pixels".into());
    }
    let thumb = if width > THUMB_MAX || height > THUMB_MAX {
        img.thumbnail(THUMB_MAX, THUMB_MAX)
    } else {
        img.clone()
    };
    let transparent = thumb.color().has_alpha() && thumb.to_rgba8().pixels().any(|p| p.0[3] < u8::MAX);
    let mut out = Cursor::new(Vec::new());
    let encoded = if transparent {
        thumb.to_rgba8().write_to(&mut out, ImageFormat::Png)
    } else {
        JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).encode_image(&thumb.to_rgb8())
    };
    encoded.map_err(|e| format!("cannot encode thumbnail: {e}"))?;
    let thumbnail = out.into_inner();
    Ok(Probed {
        facts: ImageFacts {
            width,
            height,
            mime: mime.to_string(),
            thumb_sha256: hex::encode(Sha256::digest(&thumbnail)),
        },
        thumbnail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_claims() {
        assert!(looks_like_image("image/png", "x"));
        assert!(looks_like_image("application/octet-stream", "Holiday.JPG"));
        assert!(!looks_like_image("application/pdf", "report.pdf"));
        assert!(!looks_like_image("application/octet-stream", "png"));
    }

    #[test]
    fn probes_png_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("a");
        let img = image::RgbImage::from_fn(640, 400, |x, y| image::Rgb([x as u8, y as u8, 7]));
        img.save_with_format(&png, ImageFormat::Png).unwrap();
        let probed = probe(&png).unwrap().unwrap();
        assert_eq!((probed.facts.width, probed.facts.height), (640, 400));
        assert_eq!(probed.facts.mime, "image/png");
        assert_eq!(thumbnail_mime(&probed.thumbnail), "image/jpeg");
        let thumb = image::load_from_memory(&probed.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 200));

        let junk = dir.path().join("b");
        std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really a png at all").unwrap();
        assert!(probe(&junk).unwrap().is_err());
        std::fs::write(&junk, b"<svg xmlns='http://www.w3.org/2000/svg'/>").unwrap();
        assert!(probe(&junk).unwrap().is_err());
    }

    #[test]
    fn transparent_thumbnails_are_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let img =
            image::RgbaImage::from_fn(10, 10, |x, _| image::Rgba([1, 2, 3, if x < 5 { 0 } else { 255 }]));
        img.save_with_format(&path, ImageFormat::Png).unwrap();
        let probed = probe(&path).unwrap().unwrap();
        assert_eq!(thumbnail_mime(&probed.thumbnail), "image/png");
    }

    #[test]
    fn dimension_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide");
        let img = image::GrayImage::new(MAX_DIMENSION + 1, 1);
        img.save_with_format(&path, ImageFormat::Png).unwrap();
        assert!(probe(&path).unwrap().is_err());
    }
}
