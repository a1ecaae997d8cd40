//! The connection to the hospital database from `[hospital]`: `database` is a libpq-style
//! `key=value` string (host, port, user, dbname, …) that must not hold a password; the
//! password is read from `password_file` at each connect, and a file other users can read is
//! refused; with `ssl_root_cert` the connection is TLS (rustls, ring) trusting that CA only,
//! without it plain, and only to this machine (loopback or a Unix socket).

use super::{HospitalError, HospitalSettings};
use postgres::config::Host;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection attempt may take when the string names no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection string parsed and checked (no password in it; plain only to this machine).
/// [`crate::serve`]'s configuration check uses it too.
pub fn parse(settings: &HospitalSettings) -> Result<postgres::Config, HospitalError> {
    let config: postgres::Config = settings
        .database
        .parse()
        .map_err(HospitalError::ConnectionString)?;
    if config.get_password().is_some() {
        return Err(HospitalError::PasswordInConnectionString);
    }
    if settings.ssl_root_cert.as_os_str().is_empty()
        && let Some(host) = config.get_hosts().iter().find_map(beyond_this_machine)
    {
        return Err(HospitalError::PlainToAnotherHost { host });
    }
    Ok(config)
}

/// A connection: the password file read now, TLS when `ssl_root_cert` is set.
pub fn connect(
    settings: &HospitalSettings,
    application_name: &str,
) -> Result<postgres::Client, HospitalError> {
    let mut config = parse(settings)?;
    if !settings.password_file.as_os_str().is_empty() {
        config.password(read_password(&settings.password_file)?);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name(application_name);
    let connected = if settings.ssl_root_cert.as_os_str().is_empty() {
        config.connect(postgres::NoTls)
    } else {
        config.ssl_mode(postgres::config::SslMode::Require);
        config.connect(tls(&settings.ssl_root_cert)?)
    };
    connected.map_err(HospitalError::Unreachable)
}

/// A host the connection would reach over the network: not a Unix socket, not loopback.
fn beyond_this_machine(host: &Host) -> Option<String> {
    let Host::Tcp(name) = host else {
        return None;
    };
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| name.clone())
}

/// The password file's first line; refused when other users may read it.
fn read_password(path: &Path) -> Result<String, HospitalError> {
    let file_error = |source| HospitalError::PasswordFile {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(file_error)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(HospitalError::PasswordFileOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(file_error)?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// TLS trusting `root_cert`'s certificates only.
fn tls(root_cert: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, HospitalError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let cert_error = |reason: String| HospitalError::RootCert {
        path: root_cert.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(root_cert).map_err(|e| cert_error(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| cert_error(e.to_string()))?;
        roots.add(cert).map_err(|e| cert_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(cert_error("it holds no PEM certificate".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(database: &str, root: &str) -> HospitalSettings {
        HospitalSettings {
            database: database.to_owned(),
            password_file: Default::default(),
            ssl_root_cert: root.into(),
            ship_interval: Duration::from_millis(500),
        }
    }

    #[test]
    fn a_password_in_the_string_and_plain_text_to_another_host_are_refused() {
        let with_password = settings("host=127.0.0.1 user=medcard password=x", "");
        assert!(matches!(
            parse(&with_password),
            Err(HospitalError::PasswordInConnectionString)
        ));
        let remote = settings("host=db.hospital user=medcard", "");
        assert!(matches!(
            parse(&remote),
            Err(HospitalError::PlainToAnotherHost { .. })
        ));
        assert!(parse(&settings("host=db.hospital user=medcard", "/ca.pem")).is_ok());
        assert!(parse(&settings("host=/run/postgresql user=medcard", "")).is_ok());
        assert!(parse(&settings("host=localhost,::1 user=medcard", "")).is_ok());
        assert!(parse(&settings("host='unterminated", "")).is_err());
    }

    #[test]
    fn a_password_file_others_can_read_is_refused() {
        let path = std::env::temp_dir().join(format!("medcard-pw-{}", std::process::id()));
        std::fs::write(&path, "secret\nignored\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = read_password(&path).unwrap_err();
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&path).unwrap(), "secret");
        let _ = std::fs::remove_file(&path);
    }
}
