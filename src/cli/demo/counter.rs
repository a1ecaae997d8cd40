//! A whole hospital counter in one process, on embedded defaults: the insurer simulator on
//! 127.0.0.1:0 (its own SQLite file, the built-in fixtures) and the [`Daemon`] on virtual
//! readers pointed at it (the cache and settlement journal in a directory of the caller's,
//! verdicts, the background sync and resolver, the socket). `medcard demo` plays its script against it; `medcard bench settle` measures
//! settlements through it. [`Counter::client`] is the cashier's side: one socket connection.

use medcard::reader::ReaderBackend;
use medcard::reader::scanner::Terminator;
use medcard::serve::client::Client;
use medcard::serve::config::{Config, KioskDepartment, SerialScannerConfig, WebSection};
use medcard::serve::{Daemon, MonitorHandle, RunningDaemon};
use medcard::sim::card::SharedVirtualReaders;
use medcard::sim::insurer::{SimOptions, SimState, remove_db, serve};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The hospital's region in the simulator's fixtures (重庆).
const REGION: &str = "500000";
/// How long [`Counter::wait_synced`] waits for the first sync.
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// What the counter is made of.
pub struct CounterSetup<'a> {
    /// Where the simulator's database and the cache file go (an existing directory).
    pub dir: &'a Path,
    /// The daemon's socket.
    pub socket: &'a Path,
    /// The readers the monitor watches.
    pub readers: SharedVirtualReaders,
    /// `settle.links`: visits that can settle at the same moment.
    pub links: usize,
    /// Serve the web endpoint too (loopback, an ephemeral port, tokens in `dir`).
    pub web: bool,
    /// A serial scanner's device to read (`[[scanners.serial]]` named `counter`).
    pub scanner: Option<&'a Path>,
}

/// The counter's web endpoint: where it listens and its two tokens.
pub struct WebEndpoint {
    pub addr: std::net::SocketAddr,
    pub client_token: String,
    pub kiosk_token: String,
}

impl WebEndpoint {
    /// The kiosk page's address, its token in the fragment (as a kiosk's browser opens it).
    pub fn kiosk_url(&self) -> String {
        format!("http://{}/kiosk#token={}", self.addr, self.kiosk_token)
    }
}

/// The running counter; [`stop`](Counter::stop) takes it down and removes its files.
pub struct Counter {
    pub handle: MonitorHandle,
    pub socket: PathBuf,
    pub insurer_url: String,
    pub cache_path: PathBuf,
    /// The web endpoint, when [`CounterSetup::web`] asked for it.
    pub web: Option<WebEndpoint>,
    /// The insurer simulator's address (its `/admin` endpoint).
    pub sim_addr: std::net::SocketAddr,
    daemon: RunningDaemon,
    sim: Stopper<std::io::Result<()>>,
    sim_db: PathBuf,
}

/// A task that finishes when told to.
pub(crate) struct Stopper<T> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<T>,
}

impl<T> Stopper<T> {
    pub(crate) async fn stop(self) -> Option<T> {
        let _ = self.stop.send(());
        self.task.await.ok()
    }
}

impl Counter {
    /// Starts the simulator, then the daemon pointed at it.
    pub async fn start(setup: CounterSetup<'_>) -> Result<Counter, String> {
        let sim_db = setup.dir.join("insurer-sim.sqlite");
        let (sim, sim_addr) = start_sim(&sim_db).await?;
        let config = counter_config(&setup, &format!("http://{sim_addr}/fsi/api/callService"));
        let (insurer_url, cache_path) = (config.insurer.url.clone(), config.cache.path.clone());
        let web_config = config.web.clone();
        let readers = setup.readers;
        let backends = move || Box::new(readers.clone()) as Box<dyn ReaderBackend + Send>;
        let daemon = Daemon::start(config, backends, None)
            .await
            .map_err(|e| e.to_string())?;
        if daemon.services().settler.is_none() {
            return Err("settlement could not be set up (run with --log info to see why)".into());
        }
        let web = match daemon.web_addr() {
            Some(addr) => Some(web_endpoint(addr, &web_config)?),
            None => None,
        };
        Ok(Counter {
            handle: daemon.handle().clone(),
            socket: setup.socket.to_path_buf(),
            insurer_url,
            cache_path,
            web,
            sim_addr,
            daemon: daemon.spawn(),
            sim,
            sim_db,
        })
    }

    /// A new connection to the daemon, as a cashier's program holds it.
    pub fn client(&self) -> Result<Client, String> {
        Client::connect(&self.socket).map_err(|e| e.to_string())
    }

    /// A 医保电子凭证 code for the person with ID number `certno`, as the patient's phone
    /// shows it (the simulator's admin `ec_issue`).
    pub fn issue_ec_code(&self, certno: &str) -> Result<String, String> {
        let url = format!("http://{}/admin", self.sim_addr);
        // The simulator is on loopback: never through a proxy the environment names.
        let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
        let mut response = agent
            .post(&url)
            .send_json(json!({"action": "ec_issue", "certno": certno}))
            .map_err(|e| format!("the insurer simulator issued no code: {e}"))?;
        let issued: serde_json::Value = response
            .body_mut()
            .read_json()
            .map_err(|e| format!("the insurer simulator's answer: {e}"))?;
        issued["code"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the insurer simulator issued no code: {issued}"))
    }

    /// Waits until the first sync brought the catalogue (local previews need its classes).
    pub async fn wait_synced(&self) -> Result<(), String> {
        let mut client = self.client()?;
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        loop {
            let status = client
                .call("sync.status", json!({}))
                .map_err(|e| e.to_string())?;
            if status["versions"]["catalogue"].as_u64().unwrap_or(0) > 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("the first sync did not finish: {status}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the socket (the daemon removes it, when it is still its own), the threads and
    /// the simulator; removes both SQLite files.
    pub async fn stop(self) {
        self.daemon.stop().await;
        if let Some(Err(e)) = self.sim.stop().await {
            tracing::warn!(error = %e, "the insurer simulator stopped with an error");
        }
        remove_db(&self.sim_db);
        remove_db(&self.cache_path);
    }
}

/// The simulator on 127.0.0.1:0 with a new database at `db` and the built-in fixtures.
pub(crate) async fn start_sim(
    db: &Path,
) -> Result<(Stopper<std::io::Result<()>>, std::net::SocketAddr), String> {
    remove_db(db);
    let state = SimState::open(&SimOptions::new(db.to_path_buf())).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("the insurer simulator cannot listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Ok((Stopper { stop, task }, addr))
}

/// The defaults, with the socket, the simulator's URL, the cache file and the link pool.
fn counter_config(setup: &CounterSetup<'_>, insurer_url: &str) -> Config {
    let mut config = Config::default();
    config.socket.path = setup.socket.to_path_buf();
    config.socket.mode = "0600".into();
    // The benches open a connection per client, on both transports at once.
    config.socket.max_connections = 256;
    config.insurer.url = insurer_url.to_owned();
    config.insurer.mdtrtarea_admvs = REGION.into();
    config.cache.path = setup.dir.join("cache.sqlite");
    config.settle.links = setup.links.max(1);
    if let Some(device) = setup.scanner {
        config.scanners.serial.push(SerialScannerConfig {
            name: "counter".into(),
            device: device.to_path_buf(),
            baud: 9600,
            terminator: Terminator::Cr,
        });
    }
    if setup.web {
        config.web.listen = "127.0.0.1:0".into();
        config.web.token_file = setup.dir.join("web.token");
        config.web.kiosk_token_file = setup.dir.join("kiosk.token");
        config.kiosk.departments = ["内科", "外科", "儿科"]
            .iter()
            .zip(["A03", "A04", "A07"])
            .map(|(name, code)| KioskDepartment {
                dept_code: code.into(),
                dept_name: (*name).into(),
                dr_name: "门诊医生".into(),
            })
            .collect();
    }
    config
}

/// The endpoint at `addr` with the tokens the daemon made in the files `web` names.
fn web_endpoint(addr: std::net::SocketAddr, web: &WebSection) -> Result<WebEndpoint, String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("cannot read the token {}: {e}", path.display()))
    };
    Ok(WebEndpoint {
        addr,
        client_token: read(&web.token_file)?,
        kiosk_token: read(&web.kiosk_token_file)?,
    })
}
