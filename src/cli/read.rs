//! `medcard read`: read the card in a reader and print it.

use clap::{Args, ValueEnum};
use medcard::apdu::ReaderError;
use medcard::card::{
    CardRead, Pin, PinEntry, PsamSlot, ReadExtras, ireadcardbas_string, read_in_reader_with,
    reader_error_code,
};
use medcard::codes::ReaderCode;
use medcard::psam::find_psam;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::reader::{ReaderBackend, ReaderStatus, choose_reader};
use medcard::serve::messages;
use medcard::sim::card::Chip;
use medcard::sim::card::VirtualReaders;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Read the social security card in a reader.
///
/// Selects the SSSE application, reads the issuer file (EF05) and the holder file (EF06) as
/// the matching profile says, and prints the result. Without --reader, the only reader that
/// holds a card is used. Exit status 0 on success, otherwise the magnitude of the national
/// reader-interface code (1 not a social security card, 2 no card, 4 card stopped answering,
/// 5 profile error, 11 reader/pcscd error, 15 corrupt card data, 22 required item missing)
/// or 100 when the card answered a status word (the code is then −SW, e.g. −27266 for 6A82).
#[derive(Args)]
pub struct ReadArgs {
    /// PC/SC reader name (as `pcsc_scan` or `opensc-tool -l` show it).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// Output format: json (one object), text (for people), ireadcardbas (the national
    /// interface's 11-field `|` string that HIS software already parses).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Wait up to this many seconds for a card to be inserted (0: fail at once if none).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    wait: f64,
    /// Extra card profiles (apdu-specs/*.toml) besides the built-in ones.
    #[arg(long, value_name = "DIR")]
    profiles: Option<PathBuf>,
    /// The reader holding the PSAM that authenticates 3.0 cards: a reader name, `auto` (the
    /// first other reader whose card answers as a PSAM; none is fine) or `none`.
    #[arg(long, value_name = "NAME|auto|none", default_value = "auto")]
    psam: String,
    /// Read the holder's PIN from one line of standard input and, with it, the medical
    /// application (DF04): an offline card's balance and annual totals.
    #[arg(long)]
    pin_from_stdin: bool,
    /// Let the patient type the PIN on the reader's own PIN pad (PC/SC part 10) instead:
    /// it never reaches the workstation. Six digits.
    #[arg(long, conflicts_with = "pin_from_stdin")]
    pin_pad: bool,
    /// With the PIN: also list the card's transaction records (医疗交易明细).
    #[arg(long)]
    records: bool,
    /// With --card-file: the virtual reader has a PIN pad on which these digits are typed.
    #[arg(long, value_name = "DIGITS", requires = "card_file", hide = true)]
    sim_pin_pad: Option<String>,
    /// Read a virtual card from a fixture file in-process instead of a PC/SC reader.
    #[arg(long, value_name = "CARD.toml", conflicts_with = "reader")]
    card_file: Option<PathBuf>,
    /// With --card-file: a virtual PSAM (fixtures/psam/*.toml) in a second in-process reader.
    #[arg(long, value_name = "PSAM.toml", requires = "card_file")]
    psam_file: Option<PathBuf>,
    /// 终端设备号 for the ireadcardbas string (empty by default).
    #[arg(long, default_value = "")]
    device_id: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Text,
    Ireadcardbas,
}

const VIRTUAL_CARD_READER: &str = "medcard virtual reader";
const VIRTUAL_PSAM_READER: &str = "medcard virtual PSAM reader";

/// A failed read as the operator sees it.
struct Failure {
    code: ReaderCode,
    message: String,
}

impl Failure {
    fn new(code: ReaderCode, message: impl ToString) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl From<ReaderError> for Failure {
    fn from(e: ReaderError) -> Failure {
        Failure::new(reader_error_code(&e), e)
    }
}

pub fn run(args: ReadArgs) -> ExitCode {
    match read(&args) {
        Ok(card) => {
            print_card(&card, &args);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            print_failure(&failure, args.format);
            ExitCode::from(failure.code.exit_status())
        }
    }
}

fn read(args: &ReadArgs) -> Result<CardRead, Failure> {
    let profiles = medcard::profile::ProfileSet::load(args.profiles.as_deref())
        .map_err(|e| Failure::new(ReaderCode::LOAD_ERROR, e))?;
    let Backends {
        cards: mut backend,
        psam: mut psam_backend,
    } = backends(args)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.wait.max(0.0));
    let (reader, psam) = loop {
        let readers = backend.readers()?;
        let psam = choose_psam(psam_backend.as_mut(), &readers, args)?;
        let cards: Vec<ReaderStatus> = readers
            .into_iter()
            .filter(|r| Some(&r.name) != psam.as_ref())
            .collect();
        match choose_reader(&cards, args.reader.as_deref()) {
            Ok(reader) => break (reader, psam),
            Err(ReaderError::NoCard(_) | ReaderError::NoReaders) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let pin = read_pin(args)?;
    let extras = ReadExtras {
        psam: psam.as_deref().map(|reader| PsamSlot {
            backend: psam_backend.as_mut(),
            reader,
        }),
        pin: if args.pin_pad {
            Some(PinEntry::PinPad)
        } else {
            pin.as_ref().map(PinEntry::Typed)
        },
        records: args.records,
    };
    read_in_reader_with(backend.as_mut(), &reader, &profiles, extras)
        .map_err(|e| Failure::new(e.reader_code(), e))
}

/// The PIN from one line of standard input, when asked for (never from an argument: those
/// show in `ps` and shell history).
fn read_pin(args: &ReadArgs) -> Result<Option<Pin>, Failure> {
    if !args.pin_from_stdin {
        return Ok(None);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line).map_err(|e| {
        Failure::new(
            ReaderCode(-33),
            format!("cannot read the PIN from stdin: {e}"),
        )
    })?;
    Pin::new(&line)
        .map(Some)
        .map_err(|e| Failure::new(ReaderCode(-33), e))
}

/// The PSAM reader per `--psam`: named (and then it must be one), found, or none.
fn choose_psam(
    psam_backend: &mut dyn ReaderBackend,
    readers: &[ReaderStatus],
    args: &ReadArgs,
) -> Result<Option<String>, Failure> {
    let mut candidates: Vec<String> = readers
        .iter()
        .filter(|r| r.atr.is_some() && Some(&r.name) != args.reader.as_ref())
        .map(|r| r.name.clone())
        .collect();
    if args.psam_file.is_some() {
        candidates = vec![VIRTUAL_PSAM_READER.to_owned()];
    }
    match args.psam.as_str() {
        "none" => Ok(None),
        "auto" => Ok(find_psam(psam_backend, &candidates)),
        named => find_psam(psam_backend, &[named.to_owned()])
            .map(Some)
            .ok_or_else(|| {
                Failure::new(
                    ReaderCode::NO_PSAM,
                    format!(
                        "no PSAM in reader {named:?} (a card answering as a PSAM is needed there)"
                    ),
                )
            }),
    }
}

/// The readers holding the card, and a second connection for the PSAM.
struct Backends {
    cards: Box<dyn ReaderBackend>,
    psam: Box<dyn ReaderBackend>,
}

/// PC/SC, or the virtual card (and PSAM) of --card-file (--psam-file) in-process.
fn backends(args: &ReadArgs) -> Result<Backends, Failure> {
    let Some(path) = &args.card_file else {
        return Ok(Backends {
            cards: Box::new(PcscReaders::new()),
            psam: Box::new(PcscReaders::new()),
        });
    };
    let load =
        |path: &PathBuf| Chip::load(path).map_err(|e| Failure::new(ReaderCode::LOAD_ERROR, e));
    let card = load(path)?;
    let psam = match &args.psam_file {
        Some(path) => VirtualReaders::with_card(VIRTUAL_PSAM_READER, load(path)?),
        None => VirtualReaders::new(),
    };
    let mut cards = VirtualReaders::with_card(VIRTUAL_CARD_READER, card);
    cards.set_pin_pad(VIRTUAL_CARD_READER, args.sim_pin_pad.as_deref());
    Ok(Backends {
        cards: Box::new(cards),
        psam: Box::new(psam),
    })
}

fn print_card(card: &CardRead, args: &ReadArgs) {
    match args.format {
        Format::Json => match serde_json::to_string_pretty(card) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("medcard: cannot format the card as JSON: {e}"),
        },
        Format::Text => print!("{}", text_report(card)),
        Format::Ireadcardbas => println!("{}", ireadcardbas_string(card, &args.device_id)),
    }
}

fn print_failure(failure: &Failure, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            json!({"error": {
                "code": failure.code,
                "message": failure.message,
                "message_zh": messages::reader_code_zh(failure.code),
            }})
        ),
        _ => eprintln!(
            "medcard: {}",
            messages::reader_failure_line(&failure.message, failure.code)
        ),
    }
}

pub fn text_report(card: &CardRead) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let gender = match card.holder.gend.as_deref() {
        Some("1") => "男 (1)".to_owned(),
        Some("2") => "女 (2)".to_owned(),
        other => or_dash(&other.map(str::to_owned)),
    };
    let rows = [
        ("姓名 name", or_dash(&card.holder.psn_name)),
        ("社会保障号码 certno", or_dash(&card.holder.certno)),
        ("性别 gender", gender),
        ("民族 ethnicity", or_dash(&card.holder.naty)),
        ("出生日期 birth date", or_dash(&card.holder.brdy)),
        ("出生地 birthplace", or_dash(&card.holder.birthplace)),
        ("卡号 card no", or_dash(&card.card_no)),
        ("卡识别码 card id", or_dash(&card.card_id)),
        ("发卡地区 issuer", or_dash(&card.issuer_admdvs)),
        ("规范版本 version", or_dash(&card.spec_version)),
        ("发卡日期 issued", or_dash(&card.issue_date)),
        ("卡有效期 expires", or_dash(&card.expiry_date)),
        ("ATR", card.atr.clone()),
        (
            "read",
            format!(
                "profile {}, {} APDUs, {} ms",
                card.profile, card.apdus, card.elapsed_ms
            ),
        ),
    ];
    let mut rows = rows.to_vec();
    if let Some(balance) = &card.balance {
        rows.push((
            "个人账户余额 balance",
            format!("{} 元 (on the card)", balance.balc),
        ));
        rows.push((
            "年度累计 this year",
            format!(
                "{}: self-paid {} 元, fund-paid {} 元",
                balance.year, balance.annual_self_pay, balance.annual_fund_pay
            ),
        ));
    } else if card.balance_source == Some(medcard::card::BalanceSource::Insurer) {
        rows.push((
            "个人账户余额 balance",
            "at the insurer (online card)".to_owned(),
        ));
    }
    if let Some(terminal) = &card.psam_terminal_no {
        rows.push(("PSAM 终端机编号", terminal.clone()));
    }
    let mut out = String::new();
    for (label, value) in rows {
        out.push_str(&format!("{label:<24} {value}\n"));
    }
    for warning in &card.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}
