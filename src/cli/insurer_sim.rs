//! `medcard insurer-sim`: the insurer simulator on loopback (the national platform's one POST
//! endpoint, its own SQLite, fault injection, `POST /admin`). Prints the bound address as the
//! first line on stdout so a parent process can find it.

use clap::Args;
use medcard::sim::insurer::db::CardTexts;
use medcard::sim::insurer::ec_voucher::{DEFAULT_CODE_TTL, DEFAULT_TOKEN_TTL};
use medcard::sim::insurer::faults::Faults;
use medcard::sim::insurer::{
    DEFAULT_MAX_BODY_BYTES, SimOptions, SimState, remove_db, serve, temp_db_path,
};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `medcard insurer-sim --help`: details beyond the summary.
const DETAILS: &str = "\
Transactions (POST any path but /admin, envelope as in insurer-api.md §1.2): 9001 签到,
1101 人员信息获取 (mdtrt_cert_type 03 + card_sn, 02 + certno, or 01 + an ecToken), the outpatient settlement
chain 2201/2202 挂号, 2203 就诊信息, 2204/2205 费用明细, 2206 预结算, 2207 结算, 2208 结算撤销,
2601 冲正, 3201 对总账, 3202 对明细账 with its files 9101 文件上传 and 9102 文件下载 (the
zipped result file as the HTTP body, until its dld_endtime), and the medcard extensions X101
(card-status feed by version), X102 (catalogue by version) and X302 (a day's settlements with
their msgids, a simulator convenience) and 1162 (医保电子凭证 code → ecToken and holder, the
stand-in for the platform SDK's decode), docs/insurer-extension.md (section Settlement in the
simulator). --no-extensions answers the
X transactions and 1162 as a real platform does (交易编号[X101]不存在或未开通): card status is then
known only from 1101's refusals, worded as --card-text sets them.

Settlement: the split is medcard's engine (src/settle/). A person is settled under the first
policy (--policy-dir files, the simulator's resident policy, then the built-ins cq-seed and
cq-employee-outpatient) whose region prefixes their insuplc_admdvs and whose insutypes hold
the settlement's, else under --policy; the rule by med_type, --hosp-lv and retirement.
Personal accounts are ledgers (fixtures: balc, or account = {wage, carried_over,
credited_months}, prior_visits, [[binding]] for 家庭共济).

Admin: POST /admin with JSON, e.g.
  {\"action\": \"report_lost\", \"card_no\": \"C06123455\"}   (also unlock, cancel)
  {\"action\": \"replace\", \"card_no\": \"…\", \"new_card_no\": \"…\"}
  {\"action\": \"suspend_person\", \"certno\": \"…\"}          (resume_person)
  {\"action\": \"set_balc\", \"certno\": \"…\", \"insutype\": \"310\", \"balc\": \"100.00\"}
  {\"action\": \"faults\", \"latency_ms\": 0, \"http_500\": 1, \"infcode_minus1\": 0, \"garbage\": 0,
   \"duplicate_msgid\": 0, \"drop_after_processing\": 0, \"fail_rate\": 0.0, \"for_infno\": \"1101\"}
  {\"action\": \"generate_card_events\", \"count\": 100000}   (generate_catalogue)
  {\"action\": \"stats\"}, {\"action\": \"msg_log\", \"msgid\": \"…\"}, {\"action\": \"expire_signins\"}
  {\"action\": \"clock\", \"date\": \"2027-01-05\"}          (business date; no date = today)
  {\"action\": \"credit_month\", \"month\": 4}             (monthly credit to accounts with a wage)
  {\"action\": \"year_end\", \"year\": 2026}               (interest, carry-over; clock → next 1 Jan)
  {\"action\": \"bind\", \"payer_psn_no\": \"…\", \"beneficiary_psn_no\": \"…\"}   (家庭共济)
  {\"action\": \"ec_issue\", \"certno\": \"…\", \"ttl_s\": 300}  (a 医保电子凭证 code → {code, expires_at})

Example: medcard insurer-sim --listen 127.0.0.1:0 --latency-ms 50";

/// Run the insurer simulator (HTTP on loopback, SQLite, fault injection).
#[derive(Args, Debug)]
#[command(after_long_help = DETAILS)]
pub struct InsurerSimArgs {
    /// Address to listen on (port 0 = pick one); the bound address is printed first.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The SQLite file (kept, and reused when it exists); default: a temporary file removed
    /// on exit.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Seed fixtures (persons.toml, card_events.toml, catalogue.toml); default: the copies
    /// of fixtures/insurer/ built into medcard.
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability (0–1) that a request gets HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// The insurer's region code (inf_refmsgid prefix).
    #[arg(long, default_value = "500000")]
    pub region: String,
    /// The default cost-sharing policy (by id), for persons no policy's region matches.
    #[arg(long, default_value = "cq-seed")]
    pub policy: String,
    /// A directory of policy files (*.toml), tried before the built-in policies.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// The hospital grade settlements are made at (1, 2 or 3): chooses the policy's rule.
    #[arg(long, default_value = "3", value_parser = ["1", "2", "3"])]
    pub hosp_lv: String,
    /// Offer none of medcard's extension transactions (X101, X102, X302), as a real
    /// platform does not.
    #[arg(long)]
    pub no_extensions: bool,
    /// 1101's wording for an unusable card, KIND=TEXT (lost, replaced, cancelled); may be
    /// repeated.
    #[arg(long = "card-text", value_name = "KIND=TEXT")]
    pub card_texts: Vec<String>,
    /// The largest request body taken, in bytes; a larger one is answered HTTP 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// How long a 医保电子凭证 code (admin ec_issue) can be decoded, in seconds.
    #[arg(long, default_value_t = DEFAULT_CODE_TTL.as_secs())]
    pub ec_code_ttl_s: u64,
    /// How long an ecToken (from 1162) is taken by 1101, in seconds.
    #[arg(long, default_value_t = DEFAULT_TOKEN_TTL.as_secs())]
    pub ec_token_ttl_s: u64,
}

pub fn run(args: InsurerSimArgs) -> ExitCode {
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "medcard insurer-sim: listens on loopback only (got {})",
            args.listen
        );
        return ExitCode::from(2);
    }
    let temp = args.db.is_none();
    let db = args.db.clone().unwrap_or_else(temp_db_path);
    if temp {
        remove_db(&db);
    }
    let result = run_server(&args, db.clone());
    if temp {
        remove_db(&db);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medcard insurer-sim: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(args: &InsurerSimArgs, db: PathBuf) -> Result<(), String> {
    let mut card_texts = CardTexts::default();
    for assignment in &args.card_texts {
        card_texts.set(assignment)?;
    }
    let options = SimOptions {
        fixtures: args.fixtures.clone(),
        faults: Faults {
            latency_ms: args.latency_ms,
            fail_rate: args.fail_rate,
            ..Faults::default()
        },
        region: args.region.clone(),
        policy: args.policy.clone(),
        policy_dir: args.policy_dir.clone(),
        hosp_lv: args.hosp_lv.clone(),
        extensions: !args.no_extensions,
        card_texts,
        max_body_bytes: args.max_body_bytes,
        ec_code_ttl: Duration::from_secs(args.ec_code_ttl_s),
        ec_token_ttl: Duration::from_secs(args.ec_token_ttl_s),
        ..SimOptions::new(db)
    };
    let state = SimState::open(&options).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("binding {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{addr}");
        let _ = out.flush();
        serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
