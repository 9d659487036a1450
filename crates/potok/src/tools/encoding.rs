//! Base64, and topic ids printed the way Kafka prints them.

use uuid::Uuid;

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(alphabet[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(data: &[u8]) -> String {
    encode(data, STANDARD, true)
}

/// A topic id as Kafka's `Uuid.toString()` prints it: URL-safe base64, no padding.
pub(crate) fn kafka_uuid(id: &Uuid) -> String {
    encode(id.as_bytes(), URL_SAFE, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn topic_ids_print_as_kafkas_url_safe_base64() {
        // 22 characters, URL-safe alphabet, no padding, like "pQWf3Ii8TFO1Fjz0OZ_Utg".
        let id = Uuid::from_bytes([
            0xa5, 0x05, 0x9f, 0xdc, 0x88, 0xbc, 0x4c, 0x53, 0xb5, 0x16, 0x3c, 0xf4, 0x39, 0x9f,
            0xd4, 0xb6,
        ]);
        assert_eq!(kafka_uuid(&id), "pQWf3Ii8TFO1Fjz0OZ_Utg");
        assert_eq!(kafka_uuid(&Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
    }
}
