//! Decoding pictures (thumbnails, avatars, full-size images) into pixel
//! buffers. Runs on worker threads: the bytes come from the network or disk
//! and decoding them is too slow for the UI thread. The buffer is `Send`;
//! the UI thread turns it into a `slint::Image`.

use slint::{Rgba8Pixel, SharedPixelBuffer};

/// A decoded picture, ready to become a `slint::Image` on the UI thread.
pub type Pixels = SharedPixelBuffer<Rgba8Pixel>;

/// Decodes an image, scaled down to fit in `max_side`×`max_side` (0: as is).
/// `None` for bytes that are not a supported image.
pub fn decode(bytes: &[u8], max_side: u32) -> Option<Pixels> {
    let image = match image::load_from_memory(bytes) {
        Ok(image) => image,
        Err(e) => {
            tracing::debug!("undecodable image: {e}");
            return None;
        }
    };
    let image = if max_side > 0 && (image.width() > max_side || image.height() > max_side) {
        image.thumbnail(max_side, max_side)
    } else {
        image
    };
    let rgba = image.to_rgba8();
    Some(SharedPixelBuffer::clone_from_slice(
        rgba.as_raw(),
        rgba.width(),
        rgba.height(),
    ))
}

/// Reads and decodes an image file (a full-size image opened from a chat).
pub fn decode_file(path: &std::path::Path, max_side: u32) -> Option<Pixels> {
    let bytes = std::fs::read(path).ok()?;
    decode(&bytes, max_side)
}

/// Whether a file name looks like an image the server makes thumbnails of.
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg", ".gif", ".webp"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbaImage::from_pixel(width, height, image::Rgba([10, 20, 30, 255]))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_and_scales_down() {
        let pixels = decode(&png(400, 200), 100).unwrap();
        assert_eq!((pixels.width(), pixels.height()), (100, 50));
        let pixels = decode(&png(40, 20), 100).unwrap();
        assert_eq!((pixels.width(), pixels.height()), (40, 20));
        assert!(decode(b"not an image", 100).is_none());
    }

    #[test]
    fn image_names() {
        assert!(is_image_name("Holiday.JPG"));
        assert!(!is_image_name("notes.txt"));
    }
}
