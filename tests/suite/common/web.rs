//! The web endpoint from the test side: the `[web]` lines for a daemon's configuration
//! (an ephemeral loopback port, token files beside the configuration, one allowed HIS
//! origin), where the daemon listens and its tokens, and plain HTTP/1.1 by hand for the
//! requests a well-behaved client would never send (a rebinding `Host`, a foreign `Origin`).

use super::daemon::Daemon;
use super::rpc::{Client, Rpc};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

/// The HIS origin the tests' configurations allow.
pub const HIS_ORIGIN: &str = "http://his.example:8080";

/// `[web]` and `[kiosk]` for a configuration in `dir`.
pub fn config_lines(dir: &Path) -> String {
    format!(
        "\n[web]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [{HIS_ORIGIN:?}]\n\
         token_file = {:?}\nkiosk_token_file = {:?}\n\n[kiosk]\nhospital_name = \"测试医院\"\n\
         idle_seconds = 30\ndepartments = [{{dept_code = \"A03\", dept_name = \"内科\", dr_name = \"张医生\"}}]\n",
        dir.join("web.token").display().to_string(),
        dir.join("kiosk.token").display().to_string(),
    )
}

/// Where a daemon's web endpoint listens, and its tokens.
pub struct Web {
    pub addr: SocketAddr,
    pub client_token: String,
    pub kiosk_token: String,
}

impl Web {
    /// The endpoint of `daemon`, whose configuration is `config` (tokens beside it).
    pub fn of(daemon: &Daemon, config: &Path) -> Web {
        let info = Client::connect(&daemon.socket).result("system.info", json!({}));
        let listen = info["web"]["listen"]
            .as_str()
            .expect("system.info.web.listen");
        let dir = config.parent().expect("the configuration's directory");
        Web::in_dir(listen.parse().expect("an address"), dir)
    }

    /// The endpoint at `addr` whose token files [`config_lines`] put in `dir`.
    pub fn in_dir(addr: SocketAddr, dir: &Path) -> Web {
        let token = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .expect("the token file")
                .trim()
                .to_owned()
        };
        Web {
            addr,
            client_token: token("web.token"),
            kiosk_token: token("kiosk.token"),
        }
    }

    /// A WebSocket as the HIS page (allowed origin, client token).
    pub fn his(&self) -> Client {
        Client::connect_web(self.addr, Some(HIS_ORIGIN), Some(&self.client_token))
    }

    /// A WebSocket as the kiosk page (the daemon's own origin, the kiosk token).
    pub fn kiosk(&self) -> Client {
        let own = format!("http://{}", self.addr);
        Client::connect_web(self.addr, Some(&own), Some(&self.kiosk_token))
    }

    /// `POST /rpc` by hand with `headers` (`Host` defaults to the endpoint's): the HTTP
    /// status and the body as JSON (null when empty or not JSON).
    pub fn post(&self, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut head = format!(
            "POST /rpc HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(super::rpc::PATIENCE))
            .expect("timeout");
        stream.write_all(head.as_bytes()).expect("send the head");
        let _ = stream.write_all(body.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}
