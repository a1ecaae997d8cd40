//! `medcard settle`: settlement previews. `settle calc` computes one settlement's split (the
//! catalogue split of the fee lines, deductible, bands, cap, fund cap, account, 共济, cash)
//! under a cost-sharing policy, with `medcard::settle` — no insurer, no card.

use super::Format;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use medcard::insurer::{CatalogueItem, ChrgitmLv};
use medcard::money::{CatalogueTotals, MAX_AMOUNT, is_whole_fen, two_places};
use medcard::settle::receipt::{amount_table, pad};
use medcard::settle::{
    AccountFunds, BandKind, FeeLine, LineSplit, Policy, PolicyError, RuleKey, Split, YearToDate,
    settle, split_lines,
};
use medcard::sim::insurer::Fixtures;
use medcard::sim::insurer::fixtures::ItemFixture;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

/// `medcard settle calc --help`: details beyond the flags.
const CALC_DETAILS: &str = "\
The rules (docs/settlement.md): the in-scope amount is laid on this calendar year's cumulative
in-scope amount (--ytd-inscp, 0 in a new year): below the deductible the person pays all, then
each band's personal share (rounded half-up to the fen per band), above the cap the person pays
all; a yearly fund cap moves the excess to the person. The person's part is paid from the own
account, then relatives' accounts (--mulaid) in order, then cash.

--items FILE.json is a JSON array of fee lines:
  [{\"code\": \"XJ01CAA040A001010100001\", \"name\": \"阿莫西林胶囊\", \"qty\": \"2\", \"price\": \"12.50\"}]
(national names med_list_codg, fee_name, cnt, pric are accepted too; feedetl_sn and
medins_list_codg are optional). Each line's class (甲/乙/丙), price cap and 先行自付比例 come from
the catalogue; codes it lacks are 全自费.

Examples:
  medcard settle calc --ytd-inscp 230 --balc 102.80 --inscp 120
  medcard settle calc --policy cq-employee-outpatient --hosp-lv 3 --retired \\
      --ytd-inscp 0 --balc 50 --items bill.json --format text";

/// Settlement previews under a cost-sharing policy (no insurer involved).
#[derive(Args)]
pub struct SettleArgs {
    #[command(subcommand)]
    command: SettleCommand,
}

#[derive(Subcommand)]
pub enum SettleCommand {
    /// Compute one settlement's split: fund, account, 共济, cash, balance after, bands.
    Calc(CalcArgs),
}

/// Compute one settlement's split.
#[derive(Args)]
#[command(
    after_long_help = CALC_DETAILS,
    group(ArgGroup::new("bill").required(true).args(["inscp", "items"]))
)]
pub struct CalcArgs {
    /// The cost-sharing policy: a policy file (TOML, fixtures/policy/README.md) or a built-in
    /// id (cq-seed, cq-employee-outpatient).
    #[arg(long, value_name = "FILE|ID", default_value = "cq-seed")]
    policy: String,
    /// The person's cumulative in-scope amount (符合政策范围金额) this calendar year before this
    /// visit, in yuan; 0 in a new year (that resets the deductible).
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    ytd_inscp: String,
    /// The personal account's balance (余额) before this visit, in yuan.
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    balc: String,
    /// What the pooled fund has paid this calendar year before this visit, in yuan (for a
    /// policy with a yearly fund cap).
    #[arg(
        long,
        value_name = "AMOUNT",
        default_value = "0",
        allow_hyphen_values = true
    )]
    ytd_fund_pay: String,
    /// A bound relative's account balance (家庭共济), in yuan; repeat in binding order. Their
    /// accounts pay after the patient's own is empty.
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    mulaid: Vec<String>,
    /// acct_used_flag: let the personal account(s) pay the person's part.
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    acct_used: YesNo,
    /// 险种类型 (310 职工基本医疗保险, 390 城乡居民 …).
    #[arg(long, value_name = "CODE", default_value = "310")]
    insutype: String,
    /// 医疗类别 (11 普通门诊, 14 门诊慢特病, 21 普通住院 …).
    #[arg(long, value_name = "CODE", default_value = "11")]
    med_type: String,
    /// Hospital grade: 1, 2 or 3 (三级). Needed by policies whose rules depend on it.
    #[arg(long, value_name = "GRADE")]
    hosp_lv: Option<String>,
    /// The person is retired (人员类别 12 退休 / 13 离休).
    #[arg(long)]
    retired: bool,
    /// The bill as one in-scope amount (符合政策范围金额), in yuan.
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    inscp: Option<String>,
    /// The bill as fee lines: a JSON array of {code, name, qty, price} (see below).
    #[arg(long, value_name = "FILE.json")]
    items: Option<PathBuf>,
    /// The catalogue for --items (TOML, [[item]] as fixtures/insurer/catalogue.toml); default:
    /// the built-in copy of fixtures/insurer/catalogue.toml.
    #[arg(long, value_name = "FILE.toml", requires = "items")]
    catalogue: Option<PathBuf>,
    /// Output: json (national field names) or text (a receipt).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum YesNo {
    Yes,
    No,
}

pub fn run(args: SettleArgs) -> ExitCode {
    match args.command {
        SettleCommand::Calc(args) => match calc(&args) {
            Ok(output) => {
                print!("{output}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("medcard settle calc: {message}");
                ExitCode::from(2)
            }
        },
    }
}

/// The whole command: inputs checked, the split computed, the output rendered.
fn calc(args: &CalcArgs) -> Result<String, String> {
    let policy = load_policy(&args.policy)?;
    let key = RuleKey {
        insutype: &args.insutype,
        med_type: &args.med_type,
        hosp_lv: args.hosp_lv.as_deref().unwrap_or(""),
        retired: args.retired,
    };
    let rule = policy.rule_for(&key).map_err(|e| match e {
        PolicyError::NoRule { .. } => {
            format!("{e} (--insutype, --med-type, --hosp-lv and --retired choose the rule)")
        }
        other => other.to_string(),
    })?;
    let ytd = YearToDate {
        inscp_scp_amt: amount("--ytd-inscp", &args.ytd_inscp)?,
        fund_pay: amount("--ytd-fund-pay", &args.ytd_fund_pay)?,
    };
    let funds = AccountFunds {
        balc: amount("--balc", &args.balc)?,
        mulaid: args
            .mulaid
            .iter()
            .map(|text| amount("--mulaid", text))
            .collect::<Result<_, _>>()?,
        acct_used: args.acct_used == YesNo::Yes,
    };
    let (totals, lines) = bill(args)?;
    let split = settle(&policy, rule, &totals, &ytd, &funds);
    split
        .check_invariants()
        .map_err(|e| format!("internal error: the split does not add up: {e}"))?;
    match args.format {
        Format::Json => json_output(&split, lines.as_deref()),
        Format::Text => Ok(text_output(&policy, &split, lines.as_deref())),
    }
}

/// A policy file, or a built-in policy by id.
fn load_policy(spec: &str) -> Result<Policy, String> {
    let path = Path::new(spec);
    let looks_like_path = path.exists() || spec.contains('/') || spec.ends_with(".toml");
    let policy = if looks_like_path {
        Policy::load(path)
    } else {
        Policy::built_in(spec)
    };
    policy.map_err(|e| match e {
        PolicyError::UnknownId { .. } => format!("--policy: {e}; or give a policy file's path"),
        other => format!("--policy: {other}"),
    })
}

/// The largest amount the national interface carries, N(16,2).
/// An amount in yuan from the command line: a decimal number, 0 or more, at most two places.
fn amount(flag: &str, text: &str) -> Result<Decimal, String> {
    let not_amount = || format!("{flag}: '{text}' is not an amount in yuan (e.g. 102.80)");
    let d = Decimal::from_str(text.trim()).map_err(|_| not_amount())?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!(
            "{flag}: '{text}' is negative; amounts are 0 or more"
        ));
    }
    if !is_whole_fen(d) {
        return Err(format!(
            "{flag}: '{text}' has fractions of a fen (at most 2 decimal places)"
        ));
    }
    if d > MAX_AMOUNT {
        return Err(format!("{flag}: '{text}' is larger than {MAX_AMOUNT}"));
    }
    Ok(d)
}

/// The bill's totals, and the line split when it came as fee lines.
fn bill(args: &CalcArgs) -> Result<(CatalogueTotals, Option<Vec<LineSplit>>), String> {
    match (&args.inscp, &args.items) {
        (Some(inscp), _) => Ok((
            CatalogueTotals::in_scope_only(amount("--inscp", inscp)?),
            None,
        )),
        (None, Some(items)) => {
            let lines = read_items(items)?;
            let catalogue = load_catalogue(args.catalogue.as_deref())?;
            let split = split_lines(&lines, &catalogue).map_err(|e| format!("--items: {e}"))?;
            Ok((CatalogueTotals::from_lines(&split), Some(split)))
        }
        (None, None) => Err("give the bill: --inscp AMOUNT or --items FILE.json".into()),
    }
}

/// One fee line of `--items`, in the short names or the national ones.
#[derive(Deserialize)]
struct ItemInput {
    #[serde(alias = "med_list_codg")]
    code: String,
    #[serde(alias = "fee_name", default)]
    name: String,
    #[serde(alias = "cnt")]
    qty: Decimal,
    #[serde(alias = "pric")]
    price: Decimal,
    feedetl_sn: Option<String>,
    medins_list_codg: Option<String>,
}

/// The `--items` file as fee lines (numbered 1, 2, … when they carry no feedetl_sn).
fn read_items(path: &Path) -> Result<Vec<FeeLine>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--items: cannot read {}: {e}", path.display()))?;
    let items: Vec<ItemInput> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "--items: {} is not a JSON array of {{code, name, qty, price}}: {e}",
            path.display()
        )
    })?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| FeeLine {
            feedetl_sn: item.feedetl_sn.unwrap_or_else(|| (i + 1).to_string()),
            medins_list_codg: item.medins_list_codg.unwrap_or_else(|| item.code.clone()),
            med_list_codg: item.code,
            fee_name: item.name,
            cnt: item.qty,
            pric: item.price,
        })
        .collect())
}

/// The catalogue file's shape (the insurer simulator's fixtures/insurer/catalogue.toml).
#[derive(Deserialize)]
struct CatalogueFile {
    #[serde(default)]
    item: Vec<ItemFixture>,
}

/// The catalogue for `--items`: a file, or the simulator's built-in fixture.
fn load_catalogue(path: Option<&Path>) -> Result<Vec<CatalogueItem>, String> {
    let items = match path {
        None => {
            Fixtures::built_in()
                .map_err(|e| format!("the built-in catalogue: {e}"))?
                .catalogue
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--catalogue: cannot read {}: {e}", path.display()))?;
            let file: CatalogueFile = toml::from_str(&text)
                .map_err(|e| format!("--catalogue: {}: {e}", path.display()))?;
            file.item
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| catalogue_item(i as u64 + 1, item))
        .collect()
}

/// A catalogue fixture row as a [`CatalogueItem`] (version = its position).
fn catalogue_item(version: u64, item: ItemFixture) -> Result<CatalogueItem, String> {
    let bad = |what: &str| format!("--catalogue: item {}: {what}", item.hilist_code);
    let chrgitm_lv = match item.chrgitm_lv.as_str() {
        "01" => ChrgitmLv::A,
        "02" => ChrgitmLv::B,
        "03" => ChrgitmLv::C,
        other => return Err(bad(&format!("chrgitm_lv {other:?} is not 01, 02 or 03"))),
    };
    let decimal = |field: &str, text: &str| {
        Decimal::from_str(text.trim())
            .map_err(|_| bad(&format!("{field} {text:?} is not a number")))
    };
    Ok(CatalogueItem {
        version,
        selfpay_prop: decimal("selfpay_prop", &item.selfpay_prop)?,
        pric_uplmt_amt: item
            .pric_uplmt_amt
            .as_deref()
            .map(|cap| decimal("pric_uplmt_amt", cap))
            .transpose()?,
        chrgitm_lv,
        vali_flag: item.vali_flag,
        hilist_name: item.hilist_name,
        hilist_code: item.hilist_code,
    })
}

/// `settle calc`'s JSON: the split's fields in order, then `lines` when there are any.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    #[serde(flatten)]
    split: &'a Split,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<&'a [LineSplit]>,
}

/// The split as JSON, with `lines` when the bill came as fee lines.
fn json_output(split: &Split, lines: Option<&[LineSplit]>) -> Result<String, String> {
    serde_json::to_string_pretty(&JsonOutput { split, lines })
        .map(|json| json + "\n")
        .map_err(|e| format!("cannot format the split as JSON: {e}"))
}

/// The receipt: amounts with Chinese labels and national names, then the bands (and lines).
fn text_output(policy: &Policy, split: &Split, lines: Option<&[LineSplit]>) -> String {
    let mut out = format!(
        "结算预览 settlement preview — policy {} ({}), rule \"{}\"\n",
        policy.id, policy.name, split.rule_name
    );
    out.push_str(&amount_table(
        &serde_json::to_value(split).unwrap_or(serde_json::Value::Null),
    ));
    for (i, (pay, balc)) in split.mulaid_pay.iter().zip(&split.mulaid_balc).enumerate() {
        out.push_str(&format!(
            "  共济账户 {}: paid {:>12}, balance after {:>12}\n",
            i + 1,
            two_places(*pay),
            two_places(*balc)
        ));
    }
    out.push_str(&bands_table(split));
    if let Some(lines) = lines {
        out.push_str(&lines_table(lines));
    }
    out
}

/// The bands touched, on the year's cumulative in-scope scale.
fn bands_table(split: &Split) -> String {
    let mut out = format!(
        "\n分段 bands (this year's cumulative in-scope amount; after this visit {})\n",
        two_places(split.ytd_inscp_after)
    );
    out.push_str(&format!(
        "  {:<12}{:>12}{:>12}{:>12}{:>8}{:>12}{:>12}\n",
        "", "from", "to", "amount", "psn", "psn_pay", "fund_pay"
    ));
    for band in &split.bands {
        let label = match band.kind {
            BandKind::Deductible => "起付线",
            BandKind::Pooled => "统筹段",
            BandKind::AboveCap => "超封顶",
        };
        let to = band.to.map_or_else(|| "—".to_string(), two_places);
        out.push_str(&format!(
            "  {}{:>12}{:>12}{:>12}{:>8}{:>12}{:>12}\n",
            pad(label, 12),
            two_places(band.from),
            to,
            two_places(band.amount),
            format!("{}%", (band.psn_share * Decimal::ONE_HUNDRED).normalize()),
            two_places(band.psn_pay),
            two_places(band.fund_pay),
        ));
        if !band.over_fund_cap.is_zero() {
            out.push_str(&format!(
                "    基金年度限额 fund cap reached: {} of it moved to the person\n",
                two_places(band.over_fund_cap)
            ));
        }
    }
    out
}

/// The fee lines' catalogue split.
fn lines_table(lines: &[LineSplit]) -> String {
    let mut out = String::from("\n明细 lines (2204 split)\n");
    out.push_str(&format!(
        "  {:<4} {:<24} {:<4} {:>10} {:>10} {:>10} {:>10} {:>10}  memo\n",
        "sn", "med_list_codg", "lv", "sumamt", "fulamt", "overlmt", "preself", "inscp"
    ));
    for line in lines {
        let lv = match line.chrgitm_lv {
            Some(ChrgitmLv::A) => "甲",
            Some(ChrgitmLv::B) => "乙",
            Some(ChrgitmLv::C) => "丙",
            None => "—",
        };
        let row = format!(
            "  {:<4} {:<24} {} {:>10} {:>10} {:>10} {:>10} {:>10}  {}",
            line.feedetl_sn,
            line.med_list_codg,
            pad(lv, 4),
            two_places(line.det_item_fee_sumamt),
            two_places(line.fulamt_ownpay_amt),
            two_places(line.overlmt_amt),
            two_places(line.preselfpay_amt),
            two_places(line.inscp_scp_amt),
            line.memo
        );
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}
