//! TLS for MapReduce (and for the shard servers, which are peers the
//! same way), with etcd's server flag names: `--cert-file`,
//! `--key-file`, `--trusted-ca-file`, `--client-cert-auth`.
//!
//! Every process of a job is a server (the coordinator; each worker's
//! shuffle) and every worker also dials (the coordinator; other workers'
//! shuffles). So a process has one certificate, which it serves and, when
//! asked, presents when it dials; the trusted CA checks the servers a
//! worker dials and, with `--client-cert-auth`, the clients a server
//! accepts. That is etcd's peer model: a job's processes are peers.
//!
//! Invariant: a TLS flag is never ignored. Given any of them, a process
//! serves and dials TLS only, or refuses to start saying which flag is
//! missing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_mr::worker::WorkerTls;
use flotilla_tls::{ClientTls, ClientTlsFiles, ServerTls, TlsFiles};

/// The TLS flags of `mr coordinator`, `mr worker` and `mr run`.
#[derive(Clone, Debug, Default, Args)]
pub struct MrTlsArgs {
    /// This process's certificate (PEM): it serves over TLS with it and
    /// presents it to servers that ask. It must name the host the others
    /// dial (the coordinator's address, a worker's --advertise).
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// The CA bundle (PEM) that checks the servers a worker dials and,
    /// with --client-cert-auth, the clients a server accepts.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Accept only clients with a certificate from --trusted-ca-file.
    #[arg(long)]
    pub client_cert_auth: bool,
}

impl MrTlsArgs {
    /// The flags for `dir`'s CA and its one member certificate, `mr`,
    /// with every client checked: what `mr run --tls` makes.
    pub fn generated(dir: &Path) -> anyhow::Result<MrTlsArgs> {
        let written = flotilla_tls::generate::write_set(dir, &["mr".to_string()], &[], "client")
            .context("making the job's certificates")?;
        let Some((_, pair)) = written.members.first() else {
            bail!("making the job's certificates: no member certificate was written");
        };
        Ok(MrTlsArgs {
            cert_file: Some(pair.cert.clone()),
            key_file: Some(pair.key.clone()),
            trusted_ca_file: Some(written.ca),
            client_cert_auth: true,
        })
    }

    fn any(&self) -> bool {
        self.cert_file.is_some()
            || self.key_file.is_some()
            || self.trusted_ca_file.is_some()
            || self.client_cert_auth
    }

    fn files(&self) -> anyhow::Result<TlsFiles> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            bail!("TLS needs both --cert-file and --key-file (this process's certificate)");
        };
        Ok(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: self.trusted_ca_file.clone(),
        })
    }

    /// A server's TLS (`None` without flags), its files read and checked
    /// now.
    pub fn server(&self) -> anyhow::Result<Option<Arc<ServerTls>>> {
        if !self.any() {
            return Ok(None);
        }
        let tls = ServerTls::single(&self.files()?, self.client_cert_auth).context("TLS")?;
        Ok(Some(Arc::new(tls)))
    }

    /// A worker's TLS (`None` without flags): its shuffle's, and the
    /// dialing side's, which needs the CA to check servers with.
    pub fn worker(&self) -> anyhow::Result<Option<WorkerTls>> {
        self.peer("a worker checks the coordinator's and other workers' certificates")
    }

    /// The TLS of a process that serves and dials its peers (`None`
    /// without flags); `why` says why the CA is needed, when missing.
    pub fn peer(&self, why: &str) -> anyhow::Result<Option<WorkerTls>> {
        let Some(serve) = self.server()? else {
            return Ok(None);
        };
        let files = self.files()?;
        let Some(ca) = files.ca else {
            bail!("{why}: --trusted-ca-file is needed");
        };
        let dial = ClientTls::new(&ClientTlsFiles {
            ca,
            cert: Some(files.cert),
            key: Some(files.key),
        })
        .context("TLS")?;
        Ok(Some(WorkerTls {
            serve,
            dial: Arc::new(dial),
        }))
    }

    /// The same flags, for a worker process `mr run` starts.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        let files = [
            ("--cert-file", &self.cert_file),
            ("--key-file", &self.key_file),
            ("--trusted-ca-file", &self.trusted_ca_file),
        ];
        for (flag, path) in files {
            if let Some(path) = path {
                args.push(OsString::from(flag));
                args.push(path.clone().into_os_string());
            }
        }
        if self.client_cert_auth {
            args.push("--client-cert-auth".into());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pass_to_workers_as_given() {
        let none = MrTlsArgs::default();
        assert!(none.to_args().is_empty());
        assert!(none.server().unwrap().is_none());
        let all = MrTlsArgs {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            trusted_ca_file: Some("ca.pem".into()),
            client_cert_auth: true,
        };
        let args: Vec<String> = all
            .to_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--cert-file",
                "c.pem",
                "--key-file",
                "k.pem",
                "--trusted-ca-file",
                "ca.pem",
                "--client-cert-auth"
            ]
        );
    }

    #[test]
    fn a_half_given_certificate_or_a_worker_without_a_ca_is_refused() {
        let dir = std::env::temp_dir().join(format!("flotilla-mr-tls-{}", std::process::id()));
        let made = MrTlsArgs::generated(&dir).unwrap();
        let half = MrTlsArgs {
            key_file: None,
            ..made.clone()
        };
        let e = format!("{:#}", half.server().unwrap_err());
        assert!(e.contains("--cert-file and --key-file"), "{e}");
        let auth_only = MrTlsArgs {
            client_cert_auth: true,
            ..MrTlsArgs::default()
        };
        assert!(auth_only.server().is_err());
        let no_ca = MrTlsArgs {
            trusted_ca_file: None,
            client_cert_auth: false,
            ..made.clone()
        };
        assert!(no_ca.server().unwrap().is_some());
        let e = format!("{:#}", no_ca.worker().unwrap_err());
        assert!(e.contains("--trusted-ca-file is needed"), "{e}");
        assert!(made.worker().unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
