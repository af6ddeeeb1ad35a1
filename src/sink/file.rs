//! A file sink: the auths JSON on a (shared) volume, for consumers that read
//! registry credentials from a file, such as a sidecar's neighbour.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Sink, SinkError};
use crate::atomic_write::{write_atomically, WriteOutcome};
use crate::render::AuthsDocument;

/// The files to write (`--output-file`) and their permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSettings {
    pub paths: Vec<PathBuf>,
    pub mode: u32,
}

/// Keeps one file holding the document, written with [`write_atomically`].
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

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
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
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
