//! The national reader interface's `iReadCardBas` output (card-spec.md §5.1): eleven
//! `|`-separated fields with a trailing `|`, so HIS parsers written for the vendor DLLs
//! read medcard's output unchanged.

use super::CardRead;

/// `region|certno|card_no|card_id|name|ATR historical bytes|version|issue|expiry|terminal|device|`
///
/// 终端机编号 comes from the PSAM that authenticated the read (`000000000000` without one);
/// 终端设备号 is the reader's device id, empty when unknown.
pub fn ireadcardbas_string(card: &CardRead, device_id: &str) -> String {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let compact_date = |v: &Option<String>| text(v).replace('-', "");
    let fields = [
        text(&card.issuer_admdvs),
        text(&card.holder.certno),
        text(&card.card_no),
        text(&card.card_id),
        text(&card.holder.psn_name),
        card.atr_historical_bytes(),
        text(&card.spec_version),
        compact_date(&card.issue_date),
        compact_date(&card.expiry_date),
        card.psam_terminal_no
            .clone()
            .unwrap_or_else(|| "000000000000".to_owned()),
        device_id.to_owned(),
    ];
    let mut out = fields.join("|");
    out.push('|');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_the_interface_specification_example() {
        // SC-RW §1.1.2 example (card-spec.md §5.1).
        let mut card = CardRead {
            issuer_admdvs: Some("639900".into()),
            card_no: Some("X00000019".into()),
            card_id: Some("639900D15600000500BF7C7A48FB4966".into()),
            spec_version: Some("1.00".into()),
            issue_date: Some("2010-10-01".into()),
            expiry_date: Some("2020-10-01".into()),
            atr: "3B6D0000".to_owned() + "00814E43238697159900BF7C7A",
            ..CardRead::default()
        };
        card.holder.certno = Some("111111198101011110".into());
        card.holder.psn_name = Some("张三".into());
        card.psam_terminal_no = Some("410100813475".into());
        assert_eq!(
            ireadcardbas_string(&card, "终端设备号"),
            "639900|111111198101011110|X00000019|639900D15600000500BF7C7A48FB4966|张三|\
             00814E43238697159900BF7C7A|1.00|20101001|20201001|410100813475|终端设备号|"
        );
    }

    #[test]
    fn without_psam_or_holder_fields_the_positions_stay() {
        let card = CardRead {
            atr: "3B6D0000".into(),
            ..CardRead::default()
        };
        let out = ireadcardbas_string(&card, "");
        assert_eq!(out, "|||||||||000000000000||");
        assert_eq!(out.matches('|').count(), 11);
    }
}
