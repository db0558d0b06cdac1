//! Images: `data:` URLs of jpeg, png, gif or webp, checked (size, base64, real format) and turned
//! into base64 image sources. Remote URLs are refused: the gateway never fetches what a client
//! points at.

use base64::Engine;

use crate::error::ApiError;
use crate::wire::anthropic::ImageSource;

/// Largest decoded image Bedrock accepts for Claude (3.75 MB, counted in decimal bytes to stay safe).
pub const MAX_IMAGE_BYTES: usize = 3_750_000;

/// A `data:` URL → base64 image source. Remote URLs are refused: the gateway does not fetch.
pub(super) fn image_source<'a>(url: &'a str, param: &str) -> Result<ImageSource<'a>, ApiError> {
    let lower_prefix = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower_prefix.starts_with("http://") || lower_prefix.starts_with("https://") {
        return Err(ApiError::invalid_request(
            param,
            "unsupported_image_url",
            "image urls are not fetched; send the image inline as a data url (data:image/png;base64,...)",
        ));
    }
    let Some((header, data)) =
        url.get(5..).filter(|_| lower_prefix.starts_with("data:")).and_then(|rest| rest.split_once(','))
    else {
        return Err(ApiError::invalid_request(
            param,
            "invalid_image_url",
            "image url must be a data url (data:image/png;base64,...)",
        ));
    };
    let Some(declared) = header.strip_suffix(";base64") else {
        return Err(ApiError::invalid_request(param, "invalid_image_url", "image data url must be base64-encoded"));
    };
    let declared = match declared.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => "image/jpeg",
        "image/png" => "image/png",
        "image/gif" => "image/gif",
        "image/webp" => "image/webp",
        other => {
            return Err(ApiError::invalid_request(
                param,
                "unsupported_image_type",
                format!("unsupported image type `{other}`; use image/jpeg, image/png, image/gif or image/webp"),
            ));
        }
    };
    let decoded_len = base64_decoded_len(data)
        .ok_or_else(|| ApiError::invalid_request(param, "invalid_image_url", "image data is not valid base64"))?;
    if decoded_len > MAX_IMAGE_BYTES {
        return Err(ApiError::invalid_request(
            param,
            "image_too_large",
            format!("image is {decoded_len} bytes; the limit is {MAX_IMAGE_BYTES} bytes (3.75 MB)"),
        ));
    }
    // The real format wins over the declared one: Anthropic refuses a mismatch.
    let sniffed = sniff_image(data).ok_or_else(|| {
        ApiError::invalid_request(
            param,
            "invalid_image",
            format!("image data is not a jpeg, png, gif or webp image (declared {declared})"),
        )
    })?;
    Ok(ImageSource { media_type: sniffed, data })
}

/// Decoded length of standard, padded base64, or `None` if `data` is not that.
fn base64_decoded_len(data: &str) -> Option<usize> {
    let bytes = data.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let padding = bytes.iter().rev().take_while(|&&byte| byte == b'=').count();
    if padding > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - padding];
    if !body.iter().all(|&byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/') {
        return None;
    }
    Some(bytes.len() / 4 * 3 - padding)
}

fn sniff_image(data: &str) -> Option<&'static str> {
    let head = data.get(..16).unwrap_or(data);
    let bytes = base64::engine::general_purpose::STANDARD.decode(head).ok()?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some("image/png")
    } else if bytes.starts_with(b"GIF8") {
        Some("image/gif")
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else {
        None
    }
}
