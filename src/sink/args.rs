//! The flags that say where the document is written: Secrets and files.

use std::path::PathBuf;

use super::{FileSettings, SecretKey, SecretTarget, DOCKERCONFIGJSON_KEY};

/// Destination flags of `run` and `once`.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// Kubernetes Secret to keep fresh, as [NAMESPACE/]NAME; repeat or
    /// comma-separate. The namespace defaults to the pod's own (in a cluster)
    /// or the kubeconfig's current namespace.
    #[arg(long = "secret", env = "REGCRED_SECRET", value_name = "[NAMESPACE/]NAME", value_delimiter = ',')]
    pub(crate) secrets: Vec<SecretTarget>,

    /// Data key of the Secret. `.dockerconfigjson` makes a
    /// kubernetes.io/dockerconfigjson Secret; any other key an Opaque Secret
    /// holding the auths JSON under that key.
    #[arg(long, env = "REGCRED_SECRET_KEY", value_name = "KEY", default_value = DOCKERCONFIGJSON_KEY)]
    pub(crate) secret_key: SecretKey,

    /// Also write the auths JSON to this file, atomically; repeat or comma-separate.
    #[arg(long = "output-file", env = "REGCRED_OUTPUT_FILE", value_name = "PATH", value_delimiter = ',')]
    output_files: Vec<PathBuf>,

    /// Permission bits of output files, in octal.
    #[arg(long, env = "REGCRED_OUTPUT_FILE_MODE", value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    output_file_mode: u32,
}

impl Args {
    /// The files to write.
    pub(crate) fn files(&self) -> FileSettings {
        FileSettings { paths: self.output_files.clone(), mode: self.output_file_mode }
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err("expected octal permission bits such as 0600 or 0640".into()),
    }
}
