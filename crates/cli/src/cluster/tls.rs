//! TLS on the command line: the server's etcd flags
//! (`--cert-file` ... `--peer-cert-allowed-cn`) into
//! [`ServerTlsFiles`], the clients' etcdctl flags (`--cacert`, `--cert`,
//! `--key`) into [`ClientTls`], and `flotilla certs`.
//!
//! Invariant: a TLS flag is never ignored. A server given any of them
//! serves TLS only, or refuses to start saying which flag is missing; a
//! client given any of them, or an `https://` endpoint, dials TLS only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles, TlsFiles};

use super::server::ServerArgs;

/// The flag's value, else the file's.
fn either<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
    a.clone().or_else(|| b.clone())
}

/// The server's TLS files from its flags (else its config file); `None`
/// when no TLS flag is given. The files are read and checked now, so a
/// bad one stops the server before it binds, naming the file.
pub fn server_files(
    args: &ServerArgs,
    file: &ServerArgs,
) -> anyhow::Result<Option<ServerTlsFiles>> {
    let cert = either(&args.cert_file, &file.cert_file);
    let key = either(&args.key_file, &file.key_file);
    let peer_cert = either(&args.peer_cert_file, &file.peer_cert_file);
    let peer_key = either(&args.peer_key_file, &file.peer_key_file);
    let files = ServerTlsFiles {
        client: TlsFiles {
            cert: cert.clone().unwrap_or_default(),
            key: key.clone().unwrap_or_default(),
            ca: either(&args.trusted_ca_file, &file.trusted_ca_file),
        },
        client_cert_auth: args.client_cert_auth || file.client_cert_auth,
        peer: TlsFiles {
            cert: peer_cert.clone().unwrap_or_default(),
            key: peer_key.clone().unwrap_or_default(),
            ca: either(&args.peer_trusted_ca_file, &file.peer_trusted_ca_file),
        },
        peer_client_cert_auth: args.peer_client_cert_auth || file.peer_client_cert_auth,
        peer_allowed_cn: either(&args.peer_cert_allowed_cn, &file.peer_cert_allowed_cn),
    };
    let any = cert.is_some()
        || key.is_some()
        || peer_cert.is_some()
        || peer_key.is_some()
        || files.client.ca.is_some()
        || files.peer.ca.is_some()
        || files.client_cert_auth
        || files.peer_client_cert_auth
        || files.peer_allowed_cn.is_some();
    if !any {
        return Ok(None);
    }
    ServerTls::new(&files).context("TLS settings")?;
    Ok(Some(files))
}

/// A client's TLS flags, etcdctl's names.
#[derive(Debug, Default, Args)]
pub struct ClientTlsArgs {
    /// The CA that servers' certificates must chain to (PEM): dial over
    /// TLS. Default with `https://` endpoints from `flotilla up --tls`:
    /// its CA in ./flotilla-data/tls.
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        global = true,
        env = "FLOTILLA_CACERT"
    )]
    pub cacert: Option<PathBuf>,
    /// A client certificate, for servers with --client-cert-auth (PEM).
    #[arg(long = "cert", id = "tls_cert", global = true, env = "FLOTILLA_CERT")]
    pub cert: Option<PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long = "key", id = "tls_key", global = true, env = "FLOTILLA_KEY")]
    pub key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The client's TLS: from the flags; else, for `https://` endpoints,
    /// the certificates `flotilla up --tls` made in `default_dir`; else
    /// none (plaintext).
    pub fn resolve(
        &self,
        endpoints: &[String],
        default_dir: &Path,
    ) -> anyhow::Result<Option<Arc<ClientTls>>> {
        let https = endpoints.iter().any(|e| e.starts_with("https://"));
        let files = match (&self.cacert, &self.cert, &self.key) {
            (None, None, None) if !https => return Ok(None),
            (None, None, None) if default_dir.join("ca.pem").exists() => ClientTlsFiles {
                ca: default_dir.join("ca.pem"),
                cert: Some(default_dir.join("client.pem")),
                key: Some(default_dir.join("client-key.pem")),
            },
            (None, _, _) => {
                bail!("TLS needs --cacert, the CA that the servers' certificates chain to")
            }
            (Some(ca), cert, key) => ClientTlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
        };
        let tls = ClientTls::new(&files).context("TLS settings")?;
        Ok(Some(Arc::new(tls)))
    }
}

/// `flotilla certs` arguments.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Where to write the files (created if missing).
    #[arg(long, default_value = "flotilla-certs")]
    pub dir: PathBuf,
    /// The members' names: each gets `<name>.pem` and `<name>-key.pem`,
    /// with its name as CN and among its names (SANs).
    #[arg(long, value_delimiter = ',', default_value = "node1,node2,node3")]
    pub members: Vec<String>,
    /// More names and IP addresses every member certificate carries
    /// (besides its name, localhost and 127.0.0.1).
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// The client certificate's CN (`client.pem`, `client-key.pem`).
    #[arg(long, default_value = "client")]
    pub client_cn: String,
    /// Replace files already in --dir.
    #[arg(long)]
    pub force: bool,
}

/// Runs `flotilla certs`.
pub fn certs_main(args: CertsArgs) -> anyhow::Result<ExitCode> {
    if args.dir.join("ca.pem").exists() && !args.force {
        bail!(
            "{} already holds a CA (ca.pem); pass --force to replace it and every certificate",
            args.dir.display()
        );
    }
    if args.members.iter().any(|m| m.is_empty() || m.contains('/')) {
        bail!("--members: each name must be non-empty and without '/'");
    }
    let written =
        flotilla_tls::generate::write_set(&args.dir, &args.members, &args.hosts, &args.client_cn)?;
    println!(
        "CA: {} (its key: {})",
        written.ca.display(),
        args.dir.join("ca-key.pem").display()
    );
    for (name, pair) in &written.members {
        println!(
            "member {name}: {} {}",
            pair.cert.display(),
            pair.key.display()
        );
    }
    println!(
        "client {}: {} {}",
        args.client_cn,
        written.client.cert.display(),
        written.client.key.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The `flotilla server` flags of member `name`'s certificates in `dir`
/// (as `flotilla certs` names them): mutual TLS for clients and peers.
pub fn member_flags(dir: &Path, name: &str) -> Vec<String> {
    let (cert, key, ca) = member_files(dir, name);
    let mut flags = port_flags(dir, name);
    flags.extend([
        "--peer-cert-file".into(),
        cert,
        "--peer-key-file".into(),
        key,
        "--peer-trusted-ca-file".into(),
        ca,
        "--peer-client-cert-auth".into(),
    ]);
    flags
}

/// The flags of one TLS port with member `name`'s certificate in `dir`,
/// clients' certificates checked: the client side of [`member_flags`],
/// and all a shard server takes (its servers are peers on one port).
pub fn port_flags(dir: &Path, name: &str) -> Vec<String> {
    let (cert, key, ca) = member_files(dir, name);
    vec![
        "--cert-file".into(),
        cert,
        "--key-file".into(),
        key,
        "--trusted-ca-file".into(),
        ca,
        "--client-cert-auth".into(),
    ]
}

/// Member `name`'s certificate, key and CA in `dir`, as `flotilla certs`
/// names them.
fn member_files(dir: &Path, name: &str) -> (String, String, String) {
    let path = |f: String| dir.join(f).display().to_string();
    (
        path(format!("{name}.pem")),
        path(format!("{name}-key.pem")),
        path("ca.pem".into()),
    )
}
