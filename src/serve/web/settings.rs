//! The `[web]`, `[kiosk]` and `[metrics]` sections of the configuration: the loopback HTTP +
//! WebSocket endpoint for browser-based HIS and kiosks (off unless `web.listen` is set), who
//! may call it, what the kiosk page offers, and the listener of its own that serves only
//! `GET /metrics` (off unless `metrics.listen` is set; loopback unless `allow_remote`).

use super::super::config::Findings;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The loopback web endpoint (docs/web.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    /// `127.0.0.1:PORT` or `[::1]:PORT`; empty: no web endpoint (the default).
    pub listen: String,
    /// Origins whose pages may call (exact, as the browser sends them:
    /// `http://his.example:8080`); none by default. The kiosk page the daemon serves itself
    /// is always allowed.
    pub allowed_origins: Vec<String>,
    /// The HIS's client token (every method); made at the first start when missing.
    pub token_file: PathBuf,
    /// The kiosk page's narrower token; made at the first start when missing.
    pub kiosk_token_file: PathBuf,
}

impl Default for WebSection {
    fn default() -> WebSection {
        WebSection {
            listen: String::new(),
            allowed_origins: Vec::new(),
            token_file: PathBuf::from("/var/lib/medcard/web.token"),
            kiosk_token_file: PathBuf::from("/var/lib/medcard/kiosk.token"),
        }
    }
}

/// `GET /metrics` on a listener of its own (docs/metrics.md): for when the web endpoint is
/// off, or to keep Prometheus off its port. The web endpoint serves `/metrics` too.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// `127.0.0.1:PORT` or `[::1]:PORT`; empty: no listener of its own (the default).
    pub listen: String,
    /// Let `listen` be an address other hosts reach (a Prometheus server elsewhere): the
    /// metrics hold no personal data, but this must be said explicitly.
    pub allow_remote: bool,
}

impl MetricsSection {
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }

    /// The address to listen on, when it is loopback or other hosts are allowed.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listen
            .trim()
            .parse()
            .ok()
            .filter(|addr: &SocketAddr| addr.ip().is_loopback() || self.allow_remote)
    }

    pub(in crate::serve) fn check(&self, web: &WebSection, findings: &mut Findings) {
        if !self.enabled() {
            if self.allow_remote {
                findings
                    .warnings
                    .push("metrics.allow_remote has no effect without metrics.listen".to_owned());
            }
            return;
        }
        let listen = self.listen.trim();
        match listen.parse::<SocketAddr>() {
            Err(_) => findings.errors.push(format!(
                "metrics.listen {listen:?} is not an address like \"127.0.0.1:9465\""
            )),
            Ok(addr) if !addr.ip().is_loopback() && !self.allow_remote => {
                findings.errors.push(format!(
                    "metrics.listen {listen:?} is not a loopback address; set \
                     metrics.allow_remote = true to let a Prometheus server on another host \
                     scrape it (the metrics hold no personal data), or use 127.0.0.1"
                ))
            }
            Ok(addr) if !addr.ip().is_loopback() => findings.warnings.push(format!(
                "metrics.listen {listen:?} answers other hosts (metrics.allow_remote): let only \
                 the Prometheus server through the firewall"
            )),
            Ok(addr) if addr.port() != 0 && web.addr() == Some(addr) => {
                findings.errors.push(format!(
                    "metrics.listen {listen:?} is web.listen's address: the web endpoint serves \
                     /metrics already; leave metrics.listen empty or give it another port"
                ))
            }
            Ok(_) => {}
        }
    }
}

/// A department the kiosk offers for self-service registration.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KioskDepartment {
    pub dept_code: String,
    pub dept_name: String,
    pub dr_name: String,
}

/// What the kiosk page shows and offers (`kiosk.config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KioskSection {
    /// Shown on the idle screen.
    pub hospital_name: String,
    /// Departments for self-service registration; none: the page offers no registration.
    pub departments: Vec<KioskDepartment>,
    /// With no touch for this long, the page goes back to its first screen.
    pub idle_seconds: u64,
}

impl Default for KioskSection {
    fn default() -> KioskSection {
        KioskSection {
            hospital_name: "medcard测试医院".to_owned(),
            departments: Vec::new(),
            idle_seconds: 60,
        }
    }
}

impl WebSection {
    /// The address to listen on, when the endpoint is on and the address is loopback.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listen
            .trim()
            .parse()
            .ok()
            .filter(|addr: &SocketAddr| addr.ip().is_loopback())
    }

    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }

    pub(in crate::serve) fn check(&self, findings: &mut Findings) {
        if !self.enabled() {
            return;
        }
        let listen = self.listen.trim();
        match listen.parse::<SocketAddr>() {
            Err(_) => findings.errors.push(format!(
                "web.listen {listen:?} is not an address like \"127.0.0.1:8765\""
            )),
            Ok(addr) if !addr.ip().is_loopback() => findings.errors.push(format!(
                "web.listen {listen:?} is not a loopback address; the web endpoint listens on \
                 127.0.0.1 or ::1 only (card data must not leave the workstation)"
            )),
            Ok(_) => {}
        }
        for origin in &self.allowed_origins {
            if let Err(why) = check_origin(origin) {
                findings
                    .errors
                    .push(format!("web.allowed_origins: {origin:?} {why}"));
            }
        }
        if self.token_file == self.kiosk_token_file {
            findings.errors.push(
                "web.token_file and web.kiosk_token_file are the same file: the kiosk would hold \
                 the HIS's token"
                    .to_owned(),
            );
        }
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn check_origin(origin: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err("is not an origin like \"http://his.example:8080\"");
    };
    if !matches!(scheme, "http" | "https") {
        return Err("must start with http:// or https://");
    }
    if rest.is_empty() || rest.contains('/') || origin.ends_with(':') {
        return Err("must be scheme://host[:port] with no path (no trailing slash)");
    }
    if origin == "null" || rest.contains('*') {
        return Err("must name one origin exactly (no wildcard)");
    }
    Ok(())
}

impl KioskSection {
    pub(in crate::serve) fn check(&self, findings: &mut Findings) {
        if self.idle_seconds == 0 {
            findings
                .errors
                .push("kiosk.idle_seconds must be at least 1".to_owned());
        }
        for department in &self.departments {
            for (key, value, field) in [
                ("dept_code", &department.dept_code, crate::fields::DEPT_CODE),
                ("dept_name", &department.dept_name, crate::fields::DEPT_NAME),
                ("dr_name", &department.dr_name, crate::fields::DR_NAME),
            ] {
                if value.trim().is_empty() {
                    findings
                        .errors
                        .push(format!("kiosk.departments: {key} must not be empty"));
                } else if let Err(e) = field.check(value) {
                    findings.errors.push(format!("kiosk.departments: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_exact() {
        assert!(check_origin("http://his.example:8080").is_ok());
        assert!(check_origin("https://his.example").is_ok());
        for bad in [
            "his.example",
            "http://his.example/",
            "ftp://x",
            "http://*.example",
            "http://",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_metrics_listener_is_loopback_unless_allowed() {
        let web = WebSection {
            listen: "127.0.0.1:8765".into(),
            ..WebSection::default()
        };
        let check = |listen: &str, allow_remote: bool| {
            let mut findings = Findings::default();
            let metrics = MetricsSection {
                listen: listen.into(),
                allow_remote,
            };
            metrics.check(&web, &mut findings);
            (findings, metrics.addr())
        };
        let (found, addr) = check("0.0.0.0:9465", false);
        assert!(found.errors[0].contains("allow_remote"), "{found:?}");
        assert_eq!(addr, None);
        let (found, addr) = check("0.0.0.0:9465", true);
        assert!(found.errors.is_empty() && found.warnings[0].contains("firewall"));
        assert!(addr.is_some());
        let (found, _) = check("127.0.0.1:8765", false);
        assert!(found.errors[0].contains("web.listen"), "{found:?}");
        let (found, addr) = check("127.0.0.1:9465", false);
        assert_eq!(found, Findings::default());
        assert!(addr.is_some());
        assert!(check("localhost:9465", false).0.errors[0].contains("not an address"));
        assert!(check("", true).0.warnings[0].contains("no effect"));
    }

    #[test]
    fn the_endpoint_listens_on_loopback_only() {
        let mut findings = Findings::default();
        let web = WebSection {
            listen: "0.0.0.0:8765".into(),
            ..WebSection::default()
        };
        web.check(&mut findings);
        assert!(findings.errors[0].contains("loopback"), "{findings:?}");
        assert_eq!(web.addr(), None);
        let web = WebSection {
            listen: "127.0.0.1:8765".into(),
            ..WebSection::default()
        };
        assert!(web.addr().is_some());
    }
}
