//! The certificates of a small test mesh, made with openssl by
//! `tests/envoy/certs.sh` (which says what each one is for).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use super::process::{program, repo_root};

/// Whose certificate a TLS client presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// `spiffe://default/demo-app`, signed by the mesh CA: a mesh client.
    DemoApp,
    /// Same SPIFFE URI, signed by a CA the sidecar does not trust.
    Untrusted,
    /// Signed by the mesh CA, but for `spiffe://other/demo-app`.
    WrongSan,
}

impl Identity {
    fn file_stem(self) -> &'static str {
        match self {
            Identity::DemoApp => "demo-app",
            Identity::Untrusted => "untrusted",
            Identity::WrongSan => "wrong-san",
        }
    }
}

/// The SPIFFE identity of the mesh client, as MeshTrafficPermission names it.
pub const DEMO_APP_SPIFFE: &str = "spiffe://default/demo-app";

#[derive(Debug, Clone)]
pub struct MeshCerts {
    dir: PathBuf,
}

impl MeshCerts {
    /// Generates a fresh mesh into `dir`.
    pub fn generate(dir: &Path) -> Result<MeshCerts> {
        program("openssl")?;
        let script = repo_root().join("tests/envoy/certs.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .output()
            .with_context(|| format!("cannot run {}", script.display()))?;
        ensure!(
            output.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(MeshCerts {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn mesh_ca(&self) -> PathBuf {
        self.dir.join("mesh-ca.crt")
    }

    /// The sidecar's certificate and key (`spiffe://default/redis`).
    pub fn sidecar(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("redis.crt"), self.dir.join("redis.key"))
    }

    /// The certificate and key a client with `identity` presents.
    pub fn client(&self, identity: Identity) -> (PathBuf, PathBuf) {
        let stem = identity.file_stem();
        (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
        )
    }
}
