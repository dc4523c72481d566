//! The layout of every file the agent seals (its state, the file store's entries): an 8-byte
//! magic naming the kind of file, a random 96-bit nonce, then the AES-256-GCM ciphertext and
//! tag, with associated data naming the file (its name; a file-store slot adds its generation)
//! so a file copied over another does not open.

use ring::aead::{Aad, LessSafeKey, Nonce};
use zeroize::Zeroizing;

use crate::secret::random_bytes;

const NONCE: usize = 12;
const TAG: usize = 16;

/// Why a sealed file did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// Too short, or another kind of file (its magic differs).
    NotOurs,
    /// Wrong key, or the file was altered (or renamed).
    Altered,
}

/// Seals `plain` (encrypted in place) into the bytes of a file.
pub fn seal(
    key: &LessSafeKey,
    magic: &[u8; 8],
    aad: &[u8],
    plain: &mut Zeroizing<Vec<u8>>,
) -> Result<Vec<u8>, &'static str> {
    let nonce = random_bytes::<NONCE>().map_err(|_| "random source failed")?;
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            plain.as_mut_slice(),
        )
        .map_err(|_| "encryption failed")?;
    let mut out = Vec::with_capacity(magic.len() + NONCE + plain.len() + TAG);
    for part in [magic.as_slice(), &nonce, plain.as_slice(), tag.as_ref()] {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Opens the bytes of a sealed file in place; the plaintext borrows `data`.
pub fn open<'a>(
    key: &LessSafeKey,
    magic: &[u8; 8],
    aad: &[u8],
    data: &'a mut [u8],
) -> Result<&'a [u8], Unsealed> {
    if data.len() < magic.len() + NONCE + TAG || &data[..magic.len()] != magic {
        return Err(Unsealed::NotOurs);
    }
    let (head, body) = data.split_at_mut(magic.len() + NONCE);
    let nonce: [u8; NONCE] = head[magic.len()..].try_into().map_err(|_| Unsealed::NotOurs)?;
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
        .map_err(|_| Unsealed::Altered)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use ring::aead::{AES_256_GCM, UnboundKey};

    use super::*;

    fn key(byte: u8) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[byte; 32]).expect("key"))
    }

    #[test]
    fn opens_only_with_its_key_magic_and_name() {
        let mut plain = Zeroizing::new(b"{\"a\":1}".to_vec());
        let sealed = seal(&key(1), b"DSOPSTS1", b"a.entry", &mut plain).expect("seal");
        assert!(!sealed.windows(7).any(|w| w == b"{\"a\":1}"), "the content is encrypted");
        let open_with = |k: u8, magic: &[u8; 8], aad: &[u8]| {
            let mut data = sealed.clone();
            open(&key(k), magic, aad, &mut data).map(<[u8]>::to_vec)
        };
        assert_eq!(open_with(1, b"DSOPSTS1", b"a.entry"), Ok(b"{\"a\":1}".to_vec()));
        assert_eq!(open_with(2, b"DSOPSTS1", b"a.entry"), Err(Unsealed::Altered));
        assert_eq!(open_with(1, b"DSOPSTS1", b"b.entry"), Err(Unsealed::Altered));
        assert_eq!(open_with(1, b"DSOPSXX1", b"a.entry"), Err(Unsealed::NotOurs));
        let mut short = sealed[..20].to_vec();
        assert_eq!(open(&key(1), b"DSOPSTS1", b"a.entry", &mut short), Err(Unsealed::NotOurs));
    }
}
