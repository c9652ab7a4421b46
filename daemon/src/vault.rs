//! Secrets at rest (SPEC §8): refresh tokens and passwords are sealed with XChaCha20-Poly1305
//! under a 256-bit key kept in `key_file`.
//!
//! A sealed blob is `version (1 byte) || nonce (24 bytes) || ciphertext+tag`. The nonce is random
//! (XChaCha's 192 bits make collisions negligible without bookkeeping). The link's id and email
//! are bound in as associated data, so a blob copied onto another link's row fails to open.
//!
//! The key file is created 0600 on first start, or supplied by systemd's `LoadCredential=`. A
//! key file that is group- or world-readable is refused: the database alone must be useless. It
//! is opened through [`crate::files`] (its owner, its directories, no link in its place).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Generate, Key, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::files::{self, FileError, What};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// Why the vault could not open, seal or unseal.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot read the key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create the key file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "the key file {0} is not {KEY_LEN} bytes; restore the right key or remove it and re-link every account"
    )]
    BadKey(PathBuf),
    #[error("the key file {0} is readable by other users; run `chmod 600 {0}`")]
    TooOpen(PathBuf),
    #[error(
        "a stored secret cannot be decrypted (wrong key file, or the database was tampered with)"
    )]
    Unseal,
    #[error("encryption failed")]
    Seal,
}

/// The key that seals and opens secrets. `Debug` never shows it.
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key redacted>)")
    }
}

impl Vault {
    /// Loads the key from `path`, creating a fresh random key there (0600) if it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Vault, VaultError> {
        match files::open(path, What::KeyFile, std::fs::OpenOptions::new().read(true)) {
            Ok(mut file) => {
                let read = |source| VaultError::Read { path: path.to_owned(), source };
                // The mode of what was opened, not of whatever the path names now.
                let mode = file.metadata().map_err(read)?.permissions().mode();
                if mode & 0o077 != 0 && !under_systemd_credentials(path) {
                    return Err(VaultError::TooOpen(path.to_owned()));
                }
                let mut bytes = Vec::with_capacity(KEY_LEN);
                file.read_to_end(&mut bytes).map_err(read)?;
                let key: [u8; KEY_LEN] =
                    bytes.try_into().map_err(|_| VaultError::BadKey(path.to_owned()))?;
                Ok(Vault::from_key(&key))
            }
            Err(e) if e.is_not_found() => {
                let key = Key::<XChaCha20Poly1305>::generate();
                let create = |source| VaultError::Create { path: path.to_owned(), source };
                let mut file = files::open(
                    path,
                    What::KeyFile,
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600),
                )?;
                file.write_all(key.as_slice()).and_then(|()| file.sync_all()).map_err(create)?;
                tracing::info!(key_file = %path.display(), "created a new secret key");
                Ok(Vault { cipher: XChaCha20Poly1305::new(&key) })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn from_key(key: &[u8; KEY_LEN]) -> Vault {
        Vault { cipher: XChaCha20Poly1305::new(&(*key).into()) }
    }

    /// Seals `secret`, bound to `context` (e.g. the link's id and email).
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> Result<Vec<u8>, VaultError> {
        let nonce = XNonce::generate();
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: secret, aad: context })
            .map_err(|_| VaultError::Seal)?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(VERSION);
        blob.extend_from_slice(nonce.as_slice());
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Opens a blob made by [`Vault::seal`] with the same `context`.
    pub fn open(&self, blob: &[u8], context: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (&version, rest) = blob.split_first().ok_or(VaultError::Unseal)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(VaultError::Unseal);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| VaultError::Unseal)?;
        self.cipher
            .decrypt(&nonce, Payload { msg: sealed, aad: context })
            .map_err(|_| VaultError::Unseal)
    }
}

/// systemd's credential directory is owned by the service and mounted read-only; its files'
/// modes are systemd's business.
fn under_systemd_credentials(path: &Path) -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY").is_some_and(|dir| path.starts_with(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_binds_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open_or_create(&dir.path().join("key")).unwrap();
        let blob = vault.seal(b"refresh-token", b"link:1:alice@contoso.test").unwrap();
        assert!(!blob.windows(13).any(|w| w == b"refresh-token"), "ciphertext leaks plaintext");
        assert_eq!(vault.open(&blob, b"link:1:alice@contoso.test").unwrap(), b"refresh-token");
        assert!(matches!(vault.open(&blob, b"link:2:bob@contoso.test"), Err(VaultError::Unseal)));
        let mut tampered = blob.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            vault.open(&tampered, b"link:1:alice@contoso.test"),
            Err(VaultError::Unseal)
        ));
    }

    #[test]
    fn the_key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let blob = Vault::open_or_create(&path).unwrap().seal(b"pw", b"ctx").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Vault::open_or_create(&path).unwrap().open(&blob, b"ctx").unwrap(), b"pw");
    }

    #[test]
    fn an_open_or_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, [7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Vault::open_or_create(&path), Err(VaultError::TooOpen(_))));
        std::fs::write(&path, [7u8; 5]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(Vault::open_or_create(&path), Err(VaultError::BadKey(_))));
    }

    #[test]
    fn a_linked_key_file_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (target, link) = (dir.path().join("target"), dir.path().join("key"));
        std::fs::write(&target, [7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(Vault::open_or_create(&link), Err(VaultError::File(_))));
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
        // A dangling link is not a missing key: no key is written through it.
        std::fs::remove_file(&target).unwrap();
        assert!(matches!(Vault::open_or_create(&link), Err(VaultError::File(_))));
        assert!(!target.exists(), "a key was created through the link");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open_or_create(&dir.path().join("key")).unwrap();
        assert_eq!(format!("{vault:?}"), "Vault(<key redacted>)");
    }
}
