//! What a card read produces: the card and holder fields, named as the national platform
//! names them where it has a name (`certno`, `psn_name`, `gend`, `naty`, `brdy`).

use serde::Serialize;
use std::collections::BTreeMap;

/// One card, decoded. Absent fields are `None` (JSON `null`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CardRead {
    /// 卡号 (EF05 tag 07), 9 characters.
    pub card_no: Option<String>,
    /// 卡识别码 (EF05 tag 01), 32 hex characters.
    pub card_id: Option<String>,
    /// 卡的类别: 1 学龄前儿童, 2 学生, 3 成年人, 4 老年人.
    pub card_type: Option<String>,
    /// 规范版本 as on the card, e.g. "2.00".
    pub spec_version: Option<String>,
    /// 发卡地区行政区划代码: the first six characters of 卡识别码.
    pub issuer_admdvs: Option<String>,
    /// 初始化机构编号.
    pub init_org: Option<String>,
    /// 发卡日期, YYYY-MM-DD.
    pub issue_date: Option<String>,
    /// 卡有效期, YYYY-MM-DD.
    pub expiry_date: Option<String>,
    /// The card's ATR, upper-case hex.
    pub atr: String,
    pub holder: Holder,
    /// The profile (apdu-specs) the card was read with.
    pub profile: String,
    /// APDUs sent for this read.
    pub apdus: usize,
    /// Wall time of the read in milliseconds.
    pub elapsed_ms: f64,
    /// The on-card medical balance (offline-mode cards, read with the PIN).
    pub balance: Option<Balance>,
    /// Where the balance is: `card` (offline card, read), `insurer` (online card: ask the
    /// insurer), `no_medical_application`; `null` when DF04 was not read (no PIN given).
    pub balance_source: Option<BalanceSource>,
    /// DF04 transaction records (医疗交易明细), newest first, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<BTreeMap<String, String>>>,
    /// 终端机编号 of the PSAM that authenticated the read, when one did.
    pub psam_terminal_no: Option<String>,
    /// Fields the card holds but that need a PSAM (external authentication) to read.
    pub needs_psam: Vec<String>,
    /// Soft problems an operator may want to know about (a card number failing its check
    /// character, for instance); the read itself succeeded.
    pub warnings: Vec<String>,
    /// Items a regional profile adds (`x_` fields).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// Where a card's medical balance is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BalanceSource {
    /// On the card (offline mode, 脱网).
    #[default]
    Card,
    /// At the insurer (online mode, 联网): transaction 1101's `balc`.
    Insurer,
    /// The card has no medical-insurance application (DF04).
    NoMedicalApplication,
}

/// The on-card balance: amounts in yuan as decimal strings.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Balance {
    /// 个人账户余额.
    pub balc: String,
    /// 年度个人自付累计.
    pub annual_self_pay: String,
    /// 年度统筹基金支付累计.
    pub annual_fund_pay: String,
    /// The year of the annual totals.
    pub year: String,
    pub source: BalanceSource,
}

/// 持卡人基本信息 (EF06).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Holder {
    /// 社会保障号码 (= 公民身份号码 for citizens).
    pub certno: Option<String>,
    /// 姓名 (tag 09 ‖ 姓名扩展 tag 4E).
    pub psn_name: Option<String>,
    /// 性别: 1 男, 2 女, 9 未说明.
    pub gend: Option<String>,
    /// 民族 (GB 3304 code, 01 汉族).
    pub naty: Option<String>,
    /// 出生地 (GB/T 2260 area code).
    pub birthplace: Option<String>,
    /// 出生日期, YYYY-MM-DD.
    pub brdy: Option<String>,
}

impl CardRead {
    /// Puts a decoded profile field where it belongs.
    pub fn set_field(&mut self, field: &str, value: Option<String>) {
        let slot = match field {
            "card_no" => &mut self.card_no,
            "card_id" => &mut self.card_id,
            "card_type" => &mut self.card_type,
            "spec_version" => &mut self.spec_version,
            "init_org" => &mut self.init_org,
            "issue_date" => &mut self.issue_date,
            "expiry_date" => &mut self.expiry_date,
            "certno" => &mut self.holder.certno,
            "psn_name" => &mut self.holder.psn_name,
            "gend" => &mut self.holder.gend,
            "naty" => &mut self.holder.naty,
            "birthplace" => &mut self.holder.birthplace,
            "brdy" => &mut self.holder.brdy,
            other => {
                if let Some(value) = value {
                    self.extra.insert(other.to_owned(), value);
                }
                return;
            }
        };
        *slot = value;
    }

    /// The ATR's historical bytes (upper-case hex), for the iReadCardBas string.
    pub fn atr_historical_bytes(&self) -> String {
        hex::decode(&self.atr)
            .map(|atr| hex::encode_upper(historical_bytes(&atr)))
            .unwrap_or_default()
    }
}

/// The historical bytes of an ATR: what follows T0 and the interface bytes, less TCK.
pub fn historical_bytes(atr: &[u8]) -> &[u8] {
    let Some(&t0) = atr.get(1) else {
        return &[];
    };
    let count = usize::from(t0 & 0x0F);
    let mut index = 2;
    let mut indicator = t0;
    let mut needs_tck = false;
    loop {
        let present = (indicator >> 4).count_ones() as usize;
        let has_td = indicator & 0x80 != 0;
        index += present;
        if !has_td {
            break;
        }
        let Some(&td) = atr.get(index - 1) else {
            return &[];
        };
        if td & 0x0F != 0 {
            needs_tck = true;
        }
        indicator = td;
    }
    let end = atr.len() - usize::from(needs_tck && atr.len() > index + count);
    atr.get(index..end.min(index + count)).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn historical_bytes_of_social_security_atrs() {
        // card-spec.md §6: 3B 6D 00 00 + 13 historical bytes.
        let atr = hex::decode("3B6D000000814A444686605199000001AC").unwrap();
        assert_eq!(
            hex::encode_upper(historical_bytes(&atr)),
            "00814A444686605199000001AC"
        );
    }

    #[test]
    fn historical_bytes_skip_interface_bytes_and_tck() {
        // 3B 95 13 81 01 80 73 FF 01 00 0B: TA1, TD1=81 (T=1), TD2=01, then 5 bytes; TCK 0B.
        let atr = hex::decode("3B9513810180 73FF0100 0B".replace(' ', "")).unwrap();
        assert_eq!(hex::encode_upper(historical_bytes(&atr)), "8073FF0100");
        assert!(historical_bytes(&[0x3B]).is_empty());
        assert!(historical_bytes(&hex::decode("3B6D0000").unwrap()).is_empty());
    }

    #[test]
    fn unknown_fields_go_to_extra() {
        let mut card = CardRead::default();
        card.set_field("x_region_code", Some("A1".into()));
        card.set_field("psn_name", Some("王小".into()));
        assert_eq!(card.extra["x_region_code"], "A1");
        assert_eq!(card.holder.psn_name.as_deref(), Some("王小"));
    }
}
