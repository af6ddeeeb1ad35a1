//! A file sink: the auths JSON on a (shared) volume, for consumers that read
//! registry credentials from a file, such as a sidecar's neighbour.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Sink, SinkError, WriteOutcome};
use crate::render::AuthsDocument;

/// Writes the document atomically: a temporary file in the same directory,
/// fsync, then rename over the target, so a reader sees the old document or
/// the new one and never half of one.
/// The files to write (`--output-file`) and their permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSettings {
    pub paths: Vec<PathBuf>,
    pub mode: u32,
}

pub(crate) struct FileSink {
    path: PathBuf,
    mode: u32,
    name: String,
}

impl FileSink {
    pub(crate) fn new(path: PathBuf, mode: u32) -> Self {
        let name = format!("file {}", path.display());
        Self { path, mode, name }
    }
}

impl FileSink {
    /// The failure in words that point at the fix.
    fn explain(&self, e: &std::io::Error) -> String {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match e.kind() {
            std::io::ErrorKind::NotFound if !dir.is_dir() => format!(
                "cannot write {}: the directory {} does not exist; create it, or mount a volume there",
                self.path.display(),
                dir.display()
            ),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => format!(
                "cannot write {}: {e}; regcred needs write access to the directory {} (a writable volume)",
                self.path.display(),
                dir.display()
            ),
            _ => format!("cannot write {}: {e}", self.path.display()),
        }
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&self, doc: &AuthsDocument, _expires_at: Option<SystemTime>) -> Result<WriteOutcome, SinkError> {
        let (path, mode, bytes) = (self.path.clone(), self.mode, doc.expose_bytes().to_vec());
        let result = tokio::task::spawn_blocking(move || write_atomically(&path, mode, &bytes)).await;
        let io = |message: String| SinkError::Io { sink: self.name.clone(), message };
        match result {
            Ok(r) => r.map_err(|e| io(self.explain(&e))),
            Err(e) => Err(io(format!("writer task failed: {e}"))),
        }
    }
}

/// Writes `bytes` to `path` with `mode` atomically, or leaves the file alone
/// when it already holds them with that mode. `install-credential-provider`
/// puts its files on a node with it too.
pub(crate) fn write_atomically(path: &Path, mode: u32, bytes: &[u8]) -> std::io::Result<WriteOutcome> {
    let existed = match fs::read(path) {
        Ok(current) if current == bytes && permissions(path)? == mode => return Ok(WriteOutcome::Unchanged),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| std::io::Error::other("the output path has no file name"))?;
    let tmp =
        dir.join(format!(".{}.regcred-{}-{}", file_name.to_string_lossy(), std::process::id(), fastrand::u32(..)));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have cleared bits the user asked for.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(if existed { WriteOutcome::Updated } else { WriteOutcome::Created })
}

fn permissions(path: &Path) -> std::io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Credential;
    use crate::registry::RegistryHost;
    use crate::secret::Secret;

    fn doc(pass: &str) -> AuthsDocument {
        let cred = Credential { username: "u".into(), password: Secret::new(pass.into()), expires_at: None };
        crate::render::render(&cred, &[RegistryHost::defaults()[0].clone()]).unwrap()
    }

    #[tokio::test]
    async fn writes_atomically_with_the_mode_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let sink = FileSink::new(path.clone(), 0o640);
        assert_eq!(sink.write(&doc("a"), None).await.unwrap(), WriteOutcome::Created);
        assert_eq!(fs::read(&path).unwrap(), doc("a").expose_bytes());
        assert_eq!(permissions(&path).unwrap(), 0o640);
        assert_eq!(sink.write(&doc("a"), None).await.unwrap(), WriteOutcome::Unchanged);
        assert_eq!(sink.write(&doc("b"), None).await.unwrap(), WriteOutcome::Updated);
        assert_eq!(fs::read(&path).unwrap(), doc("b").expose_bytes());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("config.json")], "no temporary files left behind");
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the final rename fails.
        let path = dir.path().join("config.json");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "x").unwrap();
        let err = FileSink::new(path.clone(), 0o600).write(&doc("new"), None).await.unwrap_err();
        assert!(err.to_string().contains("cannot write"), "{err}");
        assert!(!err.to_string().contains("password"), "no document content in errors: {err}");
        assert_eq!(fs::read(path.join("keep")).unwrap(), b"x");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file removed");
    }
}
