//! Certificates for a quick start or a small deployment (`flotilla certs`,
//! `flotilla up --tls`, the tests): a CA, member certificates usable both
//! as server and as peer client certificates, and client certificates.
//!
//! Keys are ECDSA P-256 (what rcgen makes on ring, and what etcd's Go
//! clients accept). Certificates are valid from rcgen's default start to
//! its default end (far in the future): they are meant to be rotated by
//! replacing the files, which the servers notice ([`crate::reload`]).
//! Files are written to a temporary name and renamed into place, key files
//! with mode 0600, so a server never reads half a file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::TlsError;

/// A certificate authority, its key held in memory.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, DER.
    pub der: Vec<u8>,
    /// Its certificate, PEM.
    pub pem: String,
    /// Its key, PEM.
    pub key_pem: String,
}

/// A certificate issued by an [`Authority`].
pub struct Issued {
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// Its key, PEM.
    pub key_pem: String,
}

fn failed(what: &str) -> impl Fn(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::Generate {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

impl Authority {
    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str) -> Result<Authority, TlsError> {
        let what = format!("CA {cn:?}");
        let key = KeyPair::generate().map_err(failed(&what))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed(&what))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(failed(&what))?;
        Ok(Authority {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate named `cn` for the names and addresses `sans`, good
    /// for both ends of a TLS connection (a member serves clients and
    /// dials peers with the same one).
    pub fn issue(&self, cn: &str, sans: &[String]) -> Result<Issued, TlsError> {
        let what = format!("certificate {cn:?}");
        let key = KeyPair::generate().map_err(failed(&what))?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(failed(&what))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(failed(&what))?;
        Ok(Issued {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes `contents` to `path` through a temporary file renamed into
/// place; `secret` files are readable by their owner only.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Where [`write_set`] put a certificate and its key.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
}

/// What [`write_set`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// The CA's certificate (`ca.pem`); its key is `ca-key.pem`.
    pub ca: PathBuf,
    /// Each member's pair (`<name>.pem`, `<name>-key.pem`), by name.
    pub members: Vec<(String, Pair)>,
    /// The client's pair (`client.pem`, `client-key.pem`).
    pub client: Pair,
}

/// Writes `dir`'s pair `name` issued by `ca`.
fn write_pair(dir: &Path, ca: &Authority, name: &str, sans: &[String]) -> Result<Pair, TlsError> {
    let issued = ca.issue(name, sans)?;
    let pair = Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    write_file(&pair.key, &issued.key_pem, true)?;
    write_file(&pair.cert, &issued.pem, false)?;
    Ok(pair)
}

/// A new CA in `dir`, a certificate per member (CN its name; SANs its
/// name, `localhost`, `127.0.0.1` and `hosts`) and a client certificate
/// with CN `client_cn`.
pub fn write_set(
    dir: &Path,
    members: &[String],
    hosts: &[String],
    client_cn: &str,
) -> Result<Written, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = Authority::new("flotilla CA")?;
    let ca_path = dir.join("ca.pem");
    write_file(&dir.join("ca-key.pem"), &ca.key_pem, true)?;
    write_file(&ca_path, &ca.pem, false)?;
    let mut written = Vec::new();
    for name in members {
        let mut sans = vec![
            name.clone(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        sans.extend(
            hosts
                .iter()
                .filter(|h| !sans.contains(h))
                .cloned()
                .collect::<Vec<_>>(),
        );
        written.push((name.clone(), write_pair(dir, &ca, name, &sans)?));
    }
    let client = write_pair(dir, &ca, client_cn, &[])?;
    Ok(Written {
        ca: ca_path,
        members: written,
        client,
    })
}
