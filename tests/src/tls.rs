//! Certificates made for a test: a private CA and the certificates it signs,
//! written as PEM files (rcgen on ring). Nothing is shared between tests.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A private certificate authority whose certificate is `ca_file`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    /// The CA's certificate (what clients trust: `NATS_TLS_CA_FILE`, `sslrootcert`).
    pub ca_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, writing its files into `dir`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?).context("make the test CA")?;
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, issuer.pem()).context("write the CA certificate")?;
        Ok(Self { issuer, dir: dir.to_path_buf(), ca_file })
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server_cert(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.issue(name, vec!["127.0.0.1".to_owned(), "localhost".to_owned()], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `name`.
    pub fn client_cert(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> anyhow::Result<CertFiles> {
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer).with_context(|| format!("sign the certificate {name}"))?;
        let files =
            CertFiles { cert: self.dir.join(format!("{name}.pem")), key: self.dir.join(format!("{name}-key.pem")) };
        std::fs::write(&files.cert, cert.pem()).context("write a certificate")?;
        std::fs::write(&files.key, key.serialize_pem()).context("write a private key")?;
        Ok(files)
    }
}
