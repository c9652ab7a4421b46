//! Binding the control socket safely.
//!
//! A socket file left by a crash is replaced; one that a live daemon answers on is refused; a
//! non-socket file at the path is never deleted. The socket is bound under a temporary name,
//! given its mode and group, then renamed into place, so it is never reachable with looser
//! permissions than configured (umask cannot widen it either). Its directory passes
//! [`crate::files`]'s rule first: whoever may write there could put their own socket in our place.

use std::fs::{DirBuilder, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::identity::group_id;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another mslinkd is already listening on {0}; stop it first (systemctl stop mslinkd)")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; move it away or set `socket` to another path")]
    NotASocket(PathBuf),
    #[error(
        "`socket_group` names the group `{0}`, which does not exist; create it or fix the config"
    )]
    NoSuchGroup(String),
    #[error(transparent)]
    Directory(#[from] crate::files::FileError),
    #[error("cannot bind the control socket {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Binds `path` with mode 0600, or 0660 owned by `group`.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, BindError> {
    let io = |source| BindError::Io { path: path.to_owned(), source };
    let gid = group
        .map(|g| group_id(g).ok_or_else(|| BindError::NoSuchGroup(g.to_owned())))
        .transpose()?;
    if let Some(dir) = path.parent() {
        crate::files::check_owned(dir, crate::files::What::SocketDir)?;
        DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(io)?;
        crate::files::check_owned(dir, crate::files::What::SocketDir)?;
    }
    clear_stale(path)?;

    let staging = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = std::os::unix::net::UnixListener::bind(&staging).map_err(io)?;
    // By path, as a socket's mode cannot be set through its descriptor; safe because the
    // directory passed the rule above, so no one else can swap the name for a link.
    let prepared = (|| {
        std::os::unix::fs::chown(&staging, None, gid.map(|g| g.as_raw()))?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&staging, Permissions::from_mode(mode))?;
        std::fs::rename(&staging, path)?;
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener)
    })();
    if prepared.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    prepared.map_err(io)
}

/// Removes a socket file that nobody listens on any more.
fn clear_stale(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(BindError::Io { path: path.to_owned(), source }),
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "replacing a stale socket left by an earlier run");
            std::fs::remove_file(path)
                .map_err(|source| BindError::Io { path: path.to_owned(), source })
        }
        Err(source) => Err(BindError::Io { path: path.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_private_and_refuses_a_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/mslinkd.sock");
        let _live = bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind(&path, None), Err(BindError::InUse(_))));
    }

    #[tokio::test]
    async fn replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mslinkd.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        bind(&path, None).unwrap();
    }

    #[tokio::test]
    async fn never_deletes_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mslinkd.sock");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(bind(&path, None), Err(BindError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn a_socket_group_gives_0660_and_that_group() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mslinkd.sock");
        bind(&path, Some("daemon")).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(Some(meta.gid()), group_id("daemon").map(|g| g.as_raw()));
        assert!(matches!(bind(&path, Some("no-such-group-xyz")), Err(BindError::NoSuchGroup(_))));
    }
}
