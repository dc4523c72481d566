//! A CA of the test's own and a server certificate from it, for receivers started by tests
//! (webhook endpoints, SMTP servers) that the code under test must trust through a CA file.

/// A CA and one server certificate it issued.
#[derive(Debug)]
pub struct TestTls {
    /// The CA certificate, PEM (what the client trusts).
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// Its key, PEM (PKCS#8).
    pub key_pem: String,
    /// The server certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its key, DER (PKCS#8).
    pub key_der: Vec<u8>,
}

/// A new CA and a server certificate for `names` (host names or IP addresses).
///
/// # Panics
/// If rcgen cannot make them (a broken build).
pub fn ca_and_server(names: &[&str]) -> TestTls {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut leaf = rcgen::CertificateParams::new(names).expect("server params");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &issuer).expect("server certificate");
    TestTls {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
        cert_der: leaf.der().to_vec(),
        key_der: key.serialize_der(),
    }
}
