//! The card side of vsmartcard's vpcd protocol (virtual-reader.md §4), so that the real pcscd
//! shows a reader ("Virtual PCD 00 00" on port 35963, "… 00 01" on 35964) holding a
//! [`Chip`]: a [`VirtualCard`](super::VirtualCard) or a [`VirtualPsam`](super::VirtualPsam).
//!
//! One TCP connection to vpcd is one inserted card: connect = insert, close = pull. Frames are
//! `u16 big-endian length ‖ body` both ways; a 1-byte body from vpcd is a control byte (power
//! off/on, reset, get ATR; only get ATR is answered), a longer one is a command APDU answered
//! with `data ‖ SW1 SW2` in one write. `TCP_QUICKACK` is re-armed before every read, or each
//! APDU costs ~44 ms of delayed ACK (§4.2).
//!
//! [`VpcdCard::run`] keeps the card connected and obeys [`Control`]s while it waits for vpcd:
//! reads time out every 50 ms to look at the controls, and pcscd's polls are always answered
//! (a silent connected card blocks that reader inside pcscd).

use super::{Chip, SimError};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// How long a read waits before the loop looks at the controls again.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Pause between connection attempts while vpcd (pcscd) is not listening.
const CONNECT_RETRY: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A frame that started but is not complete after this long means a broken connection.
const FRAME_DEADLINE: Duration = Duration::from_secs(2);

/// vpcd control bytes (1-byte frames).
const CTRL_POWER_OFF: u8 = 0x00;
const CTRL_POWER_ON: u8 = 0x01;
const CTRL_RESET: u8 = 0x02;
const CTRL_GET_ATR: u8 = 0x04;

/// What the operator (or a test) asks of the simulator.
#[derive(Debug)]
pub enum Control {
    /// Put the card (back) into the reader: connect to vpcd.
    Insert,
    /// Take the card out: close the connection.
    Pull,
    /// Pull the card, replace it with this chip (a card or a PSAM; a `CardImage` or
    /// `PsamImage` becomes one with `.into()`), insert it.
    Swap(Chip),
    /// Pull the card and stop.
    Quit,
}

/// What happened to the card, for whoever watches (the CLI prints insertions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpcdEvent {
    /// Connected to vpcd: pcscd will see the card at its next poll.
    Inserted,
    /// The card left the reader.
    Removed(Removal),
}

/// Why the card left the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A `Pull`, `Swap` or `Quit` control.
    Pulled,
    /// The card's `vanish_after` count ran out mid-command; it stays out until `Insert`.
    Vanished,
    /// vpcd closed the connection (pcscd stopped); the card reconnects by itself.
    Disconnected,
}

/// How long a swapped card stays out: two of pcscd's 400 ms presence polls.
const SWAP_OUT_TIME: Duration = Duration::from_millis(900);

type Observer = Box<dyn FnMut(&VpcdEvent) + Send>;

/// A virtual card (or PSAM) plugged into vpcd.
pub struct VpcdCard {
    addr: SocketAddr,
    card: Chip,
    observer: Option<Observer>,
    stream: Option<TcpStream>,
    /// The card should be in the reader (connected, or trying to connect).
    wanted: bool,
    /// "vpcd is not listening" was already logged for this round of attempts.
    waiting_logged: bool,
}

/// One step of serving the connection.
enum Served {
    Continue,
    Vanished,
    Closed,
}

/// What a message from vpcd calls for.
enum Answer {
    Silent,
    Reply(Vec<u8>),
    Vanished,
}

/// What one wait for a frame produced.
enum Incoming {
    Idle,
    Closed,
    Message(Vec<u8>),
}

/// The outcome of filling a buffer from the socket.
enum Filled {
    Done,
    Idle,
    Closed,
}

impl VpcdCard {
    /// `chip` (a [`Chip`], or a card or PSAM or their image) for vpcd at `addr` (`PORT` on
    /// 127.0.0.1, or `HOST:PORT`).
    pub fn new(addr: &str, chip: impl Into<Chip>) -> Result<VpcdCard, SimError> {
        Ok(VpcdCard {
            addr: parse_addr(addr)?,
            card: chip.into(),
            observer: None,
            stream: None,
            wanted: true,
            waiting_logged: false,
        })
    }

    /// Where vpcd is expected.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls `observer` on every insertion and removal.
    pub fn on_event(mut self, observer: impl FnMut(&VpcdEvent) + Send + 'static) -> VpcdCard {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Inserts the card and serves vpcd until [`Control::Quit`] (or until every sender of
    /// `controls` is gone). Connection attempts are retried every 100 ms while vpcd is not
    /// listening, and again whenever vpcd closes the connection.
    pub fn run(mut self, controls: Receiver<Control>) -> Result<(), SimError> {
        loop {
            let control = if self.stream.is_some() {
                poll(&controls)
            } else if self.wanted {
                if self.connect()? {
                    continue;
                }
                wait(&controls, CONNECT_RETRY)
            } else {
                Some(controls.recv().unwrap_or(Control::Quit))
            };
            match control {
                Some(Control::Quit) => {
                    self.remove(Removal::Pulled);
                    tracing::info!(addr = %self.addr, "virtual card stopped");
                    return Ok(());
                }
                Some(control) => self.apply(control),
                None => self.serve(),
            }
        }
    }

    fn apply(&mut self, control: Control) {
        match control {
            Control::Insert => {
                if !self.wanted {
                    tracing::info!(addr = %self.addr, "inserting the card");
                }
                self.wanted = true;
            }
            Control::Pull => {
                self.remove(Removal::Pulled);
                self.wanted = false;
            }
            Control::Swap(chip) => {
                self.remove(Removal::Pulled);
                // A hand swapping cards leaves the slot empty for a moment; pcscd only
                // notices a removal at its next poll, so stay out for two poll periods.
                std::thread::sleep(SWAP_OUT_TIME);
                // Not the description: it names the (invented) holder.
                tracing::info!(addr = %self.addr, kind = chip.kind(), "swapping the card");
                self.card = chip;
                self.wanted = true;
            }
            Control::Quit => {}
        }
    }

    /// One connection attempt; `Ok(true)` when connected. Only errors that retrying cannot
    /// fix (a bad address, no permission) end the run.
    fn connect(&mut self) -> Result<bool, SimError> {
        let stream = match TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT) {
            Ok(stream) => stream,
            Err(e) if is_permanent(&e) => {
                return Err(SimError::Vpcd {
                    addr: self.addr,
                    source: e,
                });
            }
            Err(e) => {
                if !self.waiting_logged {
                    tracing::info!(addr = %self.addr, error = %e, "vpcd is not listening; retrying every 100 ms");
                    self.waiting_logged = true;
                }
                return Ok(false);
            }
        };
        if let Err(e) = configure(&stream) {
            tracing::warn!(addr = %self.addr, error = %e, "cannot set up the vpcd connection; retrying");
            return Ok(false);
        }
        self.card.insert();
        self.stream = Some(stream);
        self.waiting_logged = false;
        tracing::info!(addr = %self.addr, "card inserted into vpcd");
        self.notify(VpcdEvent::Inserted);
        Ok(true)
    }

    /// Closes the connection, if there is one.
    fn remove(&mut self, why: Removal) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.shutdown(Shutdown::Both);
            tracing::info!(addr = %self.addr, reason = ?why, "card pulled from vpcd");
            self.notify(VpcdEvent::Removed(why));
        }
    }

    fn notify(&mut self, event: VpcdEvent) {
        if let Some(observer) = self.observer.as_mut() {
            observer(&event);
        }
    }

    /// Waits (at most [`READ_TIMEOUT`]) for one frame from vpcd and answers it.
    fn serve(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let served = read_frame(stream).and_then(|incoming| match incoming {
            Incoming::Idle => Ok(Served::Continue),
            Incoming::Closed => Ok(Served::Closed),
            Incoming::Message(message) => match answer(&mut self.card, &message) {
                Answer::Silent => Ok(Served::Continue),
                Answer::Reply(reply) => write_frame(stream, &reply).map(|()| Served::Continue),
                Answer::Vanished => Ok(Served::Vanished),
            },
        });
        match served {
            Ok(Served::Continue) => {}
            Ok(Served::Vanished) => {
                tracing::info!(addr = %self.addr, "card vanished mid-command (vanish_after)");
                self.remove(Removal::Vanished);
                self.wanted = false;
            }
            Ok(Served::Closed) => {
                tracing::info!(addr = %self.addr, "vpcd closed the connection; reconnecting");
                self.remove(Removal::Disconnected);
            }
            Err(e) => {
                tracing::warn!(addr = %self.addr, error = %e, "vpcd connection failed; reconnecting");
                self.remove(Removal::Disconnected);
            }
        }
    }
}

/// Parses `PORT` (→ 127.0.0.1:PORT) or `HOST:PORT`.
pub fn parse_addr(text: &str) -> Result<SocketAddr, SimError> {
    let bad = |problem: AddressProblem| SimError::Address {
        addr: text.to_owned(),
        problem,
    };
    let text = text.trim();
    let addr = if let Ok(port) = text.parse::<u16>() {
        SocketAddr::from(([127, 0, 0, 1], port))
    } else if text.contains(':') {
        let mut addrs = text
            .to_socket_addrs()
            .map_err(|e| bad(AddressProblem::Resolve(e)))?;
        addrs
            .next()
            .ok_or_else(|| bad(AddressProblem::NoHostAddress))?
    } else {
        return Err(bad(AddressProblem::NotAPort));
    };
    if addr.port() == 0 {
        return Err(bad(AddressProblem::PortZero));
    }
    Ok(addr)
}

/// Why a vpcd address cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AddressProblem {
    #[error("{0}")]
    Resolve(#[source] io::Error),
    #[error("the host has no address")]
    NoHostAddress,
    #[error("not a port number")]
    NotAPort,
    #[error("port 0")]
    PortZero,
}

/// A message from vpcd and the card's answer to it.
fn answer(card: &mut Chip, message: &[u8]) -> Answer {
    match message {
        [CTRL_GET_ATR] => Answer::Reply(card.atr().to_vec()),
        [CTRL_POWER_ON] | [CTRL_RESET] => {
            card.power_on();
            Answer::Silent
        }
        [CTRL_POWER_OFF] => Answer::Silent,
        [other] => {
            tracing::debug!(control = other, "unknown vpcd control byte ignored");
            Answer::Silent
        }
        [] => Answer::Silent,
        apdu => card.process(apdu).map_or(Answer::Vanished, Answer::Reply),
    }
}

fn poll(controls: &Receiver<Control>) -> Option<Control> {
    match controls.try_recv() {
        Ok(control) => Some(control),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(Control::Quit),
    }
}

fn wait(controls: &Receiver<Control>, timeout: Duration) -> Option<Control> {
    match controls.recv_timeout(timeout) {
        Ok(control) => Some(control),
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) => Some(Control::Quit),
    }
}

fn is_permanent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::Unsupported
            | io::ErrorKind::NetworkUnreachable
    )
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))
}

/// One frame from vpcd, or `Idle` when none started within [`READ_TIMEOUT`].
fn read_frame(stream: &mut TcpStream) -> io::Result<Incoming> {
    let mut header = [0u8; 2];
    match fill(stream, &mut header, true)? {
        Filled::Done => {}
        Filled::Idle => return Ok(Incoming::Idle),
        Filled::Closed => return Ok(Incoming::Closed),
    }
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(header))];
    Ok(match fill(stream, &mut body, false)? {
        Filled::Done => Incoming::Message(body),
        Filled::Idle | Filled::Closed => Incoming::Closed,
    })
}

/// `read_exact` on a socket with a read timeout: `Idle` only if `may_idle` and nothing has
/// arrived yet; once bytes arrived, waits up to [`FRAME_DEADLINE`] for the rest.
fn fill(stream: &mut TcpStream, buf: &mut [u8], may_idle: bool) -> io::Result<Filled> {
    let started = Instant::now();
    let mut have = 0;
    while have < buf.len() {
        quickack(stream);
        match stream.read(&mut buf[have..]) {
            Ok(0) => return Ok(Filled::Closed),
            Ok(n) => have += n,
            Err(e) if is_timeout(&e) => {
                if have == 0 && may_idle {
                    return Ok(Filled::Idle);
                }
                if started.elapsed() > FRAME_DEADLINE {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "vpcd frame stopped midway",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Filled::Done)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Header and body in one buffer, so they leave in one write (virtual-reader.md §4.2).
fn frame(body: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(body.len()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, "reply longer than a vpcd frame")
    })?;
    Ok([&len.to_be_bytes()[..], body].concat())
}

fn write_frame(stream: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    stream.write_all(&frame(body)?)
}

/// Asks the kernel to ACK at once; not sticky, so it is re-armed before every read.
#[cfg(target_os = "linux")]
fn quickack(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: the descriptor belongs to `stream`, which is open for the whole call; the
    // option value points to a live c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::trace!(error = %io::Error::last_os_error(), "TCP_QUICKACK not set");
    }
}

#[cfg(not(target_os = "linux"))]
fn quickack(_stream: &TcpStream) {}

/// A [`VpcdCard`] (a card or a PSAM) served on a thread of its own, for benchmarks, the demo and tests that
/// want the card inside their own process. Dropping it pulls the card and joins the thread.
pub struct CardThread {
    controls: std::sync::mpsc::Sender<Control>,
    handle: Option<std::thread::JoinHandle<Result<(), SimError>>>,
}

impl CardThread {
    /// Inserts `chip` (a card or PSAM, or its image) into vpcd at `addr`.
    pub fn spawn(addr: &str, chip: impl Into<Chip>) -> Result<CardThread, SimError> {
        let card = VpcdCard::new(addr, chip)?;
        let (controls, receiver) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("vpcd-card".into())
            .spawn(move || card.run(receiver))
            .map_err(|source| SimError::Vpcd {
                addr: parse_addr(addr).unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
                source,
            })?;
        Ok(CardThread {
            controls,
            handle: Some(handle),
        })
    }

    /// Sends a control (pull, insert, swap); a card thread that has ended ignores it.
    pub fn send(&self, control: Control) {
        let _ = self.controls.send(control);
    }
}

impl Drop for CardThread {
    fn drop(&mut self) {
        self.send(Control::Quit);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::card::{CardImage, PsamImage};
    use std::net::TcpListener;
    use std::sync::mpsc::{self, Sender};
    use std::thread::JoinHandle;

    const SELECT_SSSE: &str = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF";
    const WAIT: Duration = Duration::from_secs(2);

    fn image(atr: &str, behaviour: &str) -> CardImage {
        let text = format!(
            "description = \"t\"\natr = \"{atr}\"\n[ssse]\n[[ssse.ef05]]\ntag = 3\nan = \"2.00\"\n{behaviour}"
        );
        CardImage::from_toml_str(&text, "t").unwrap()
    }

    /// Starts a card for vpcd at `port`; returns its control sender, events and thread.
    fn start(
        port: u16,
        image: impl Into<Chip>,
    ) -> (
        Sender<Control>,
        mpsc::Receiver<VpcdEvent>,
        JoinHandle<Result<(), SimError>>,
    ) {
        let (controls, rx) = mpsc::channel();
        let (events_tx, events) = mpsc::channel();
        let card = VpcdCard::new(&format!("127.0.0.1:{port}"), image)
            .unwrap()
            .on_event(move |e| {
                let _ = events_tx.send(*e);
            });
        let thread = std::thread::spawn(move || card.run(rx));
        (controls, events, thread)
    }

    fn listen() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    /// The card's next connection (as vpcd's accept), or `None` within `within`.
    fn accept_within(listener: &TcpListener, within: Duration) -> Option<TcpStream> {
        let deadline = Instant::now() + within;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(WAIT)).unwrap();
                    return Some(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    fn accept(listener: &TcpListener) -> TcpStream {
        accept_within(listener, WAIT).expect("the card did not connect")
    }

    /// Sends like vpcd 0.8: header and body in two writes.
    fn send(stream: &mut TcpStream, body: &[u8]) {
        stream
            .write_all(&(body.len() as u16).to_be_bytes())
            .unwrap();
        stream.write_all(body).unwrap();
    }

    fn receive(stream: &mut TcpStream) -> Vec<u8> {
        let mut header = [0u8; 2];
        stream.read_exact(&mut header).unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(header))];
        stream.read_exact(&mut body).unwrap();
        body
    }

    fn assert_closed(stream: &mut TcpStream) {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).unwrap(), 0, "expected EOF, got data");
    }

    #[test]
    fn answers_vpcd_and_obeys_controls() {
        let (listener, port) = listen();
        let (controls, events, thread) = start(port, image("3B 6D 00 00 01", ""));
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &[CTRL_GET_ATR]);
        assert_eq!(receive(&mut vpcd), [0x3B, 0x6D, 0x00, 0x00, 0x01]);
        // Power on gets no reply: the next frame is the ATR asked for after it.
        send(&mut vpcd, &[CTRL_POWER_ON]);
        send(&mut vpcd, &[CTRL_GET_ATR]);
        assert_eq!(receive(&mut vpcd), [0x3B, 0x6D, 0x00, 0x00, 0x01]);
        send(&mut vpcd, &hex::decode(SELECT_SSSE).unwrap());
        let reply = receive(&mut vpcd);
        assert_eq!(reply[..2], [0x6F, 0x1C]);
        assert_eq!(reply[reply.len() - 2..], [0x90, 0x00]);
        send(&mut vpcd, &hex::decode("00B2012C00").unwrap());
        assert_eq!(receive(&mut vpcd), hex::decode("0304322E30309000").unwrap());

        // Pull while the card waits in read: the connection closes.
        controls.send(Control::Pull).unwrap();
        assert_closed(&mut vpcd);
        assert!(accept_within(&listener, Duration::from_millis(200)).is_none());
        controls.send(Control::Insert).unwrap();
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &[CTRL_GET_ATR]);
        assert_eq!(receive(&mut vpcd), [0x3B, 0x6D, 0x00, 0x00, 0x01]);

        controls
            .send(Control::Swap(image("3B 6D 00 00 02", "").into()))
            .unwrap();
        assert_closed(&mut vpcd);
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &[CTRL_GET_ATR]);
        assert_eq!(receive(&mut vpcd), [0x3B, 0x6D, 0x00, 0x00, 0x02]);

        controls.send(Control::Quit).unwrap();
        assert_closed(&mut vpcd);
        thread.join().unwrap().unwrap();
        let seen: Vec<VpcdEvent> = events.try_iter().collect();
        use VpcdEvent::{Inserted, Removed};
        assert_eq!(
            seen,
            [
                Inserted,
                Removed(Removal::Pulled),
                Inserted,
                Removed(Removal::Pulled),
                Inserted,
                Removed(Removal::Pulled)
            ]
        );
    }

    #[test]
    fn a_vanished_card_closes_without_reply_and_waits_for_insert() {
        let (listener, port) = listen();
        let (controls, events, thread) =
            start(port, image("3B 00", "[behaviour]\nvanish_after = 1"));
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &hex::decode(SELECT_SSSE).unwrap());
        assert_eq!(receive(&mut vpcd)[..2], [0x6F, 0x1C]);
        send(&mut vpcd, &hex::decode("00B2012C00").unwrap());
        assert_closed(&mut vpcd);
        assert!(accept_within(&listener, Duration::from_millis(200)).is_none());
        controls.send(Control::Insert).unwrap();
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &hex::decode(SELECT_SSSE).unwrap());
        assert_eq!(receive(&mut vpcd)[..2], [0x6F, 0x1C]);
        drop(controls); // every sender gone: the card stops
        thread.join().unwrap().unwrap();
        assert!(
            events
                .try_iter()
                .any(|e| e == VpcdEvent::Removed(Removal::Vanished))
        );
    }

    #[test]
    fn retries_until_vpcd_listens_and_after_vpcd_closes() {
        let (listener, port) = listen();
        drop(listener);
        let (controls, events, thread) = start(port, image("3B 00", ""));
        std::thread::sleep(Duration::from_millis(250));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let vpcd = accept(&listener);
        drop(vpcd); // pcscd stopped: vpcd closes the card's connection
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &[CTRL_GET_ATR]);
        assert_eq!(receive(&mut vpcd), [0x3B, 0x00]);
        controls.send(Control::Quit).unwrap();
        thread.join().unwrap().unwrap();
        let seen: Vec<VpcdEvent> = events.try_iter().collect();
        assert_eq!(
            seen[..2],
            [
                VpcdEvent::Inserted,
                VpcdEvent::Removed(Removal::Disconnected)
            ]
        );
    }

    #[test]
    fn replies_are_one_buffer_with_a_big_endian_length() {
        assert_eq!(frame(&[0x90, 0x00]).unwrap(), [0x00, 0x02, 0x90, 0x00]);
        assert_eq!(frame(&[7; 300]).unwrap()[..2], [0x01, 0x2C]);
        assert!(frame(&vec![0; 70_000]).is_err());
    }

    #[test]
    fn parses_vpcd_addresses() {
        assert_eq!(
            parse_addr("35963").unwrap(),
            "127.0.0.1:35963".parse().unwrap()
        );
        assert_eq!(parse_addr("127.0.0.1:35964").unwrap().port(), 35964);
        assert_eq!(parse_addr("localhost:35963").unwrap().port(), 35963);
        for bad in ["", "vpcd", "0", "127.0.0.1:99999", "127.0.0.1:0"] {
            assert!(
                matches!(parse_addr(bad), Err(SimError::Address { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serves_a_psam_and_swaps_between_kinds() {
        let psam = PsamImage::from_toml_str(
            "description = \"p\"\natr = \"3B 6C 00 00 50 53 41 4D\"\nterminal_no = \"410100813475\"\n",
            "p",
        )
        .unwrap();
        let (listener, port) = listen();
        let (controls, _events, thread) = start(port, psam.clone());
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &[CTRL_GET_ATR]);
        assert_eq!(receive(&mut vpcd)[4..], *b"PSAM");
        send(&mut vpcd, &hex::decode("00B0960006").unwrap());
        assert_eq!(receive(&mut vpcd), hex::decode("4101008134759000").unwrap());
        controls
            .send(Control::Swap(image("3B 6D 00 00 02", "").into()))
            .unwrap();
        assert_closed(&mut vpcd);
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &hex::decode("00B0960006").unwrap());
        assert_eq!(receive(&mut vpcd), [0x6D, 0x00]);
        controls.send(Control::Swap(psam.into())).unwrap();
        assert_closed(&mut vpcd);
        let mut vpcd = accept(&listener);
        send(&mut vpcd, &hex::decode("00B0960006").unwrap());
        assert_eq!(receive(&mut vpcd), hex::decode("4101008134759000").unwrap());
        controls.send(Control::Quit).unwrap();
        thread.join().unwrap().unwrap();
    }
}
