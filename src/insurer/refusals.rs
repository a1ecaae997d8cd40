//! What a refusal (infcode ≠ 0) is about, read from its `err_msg` by rules kept as data
//! (`insurer-refusals/national.toml`, built in; a region's own file is tried first): the
//! message (a duplicate msgid, a lapsed sign-in, a malformed field — sent again or a bug,
//! never a verdict), a transient state of the platform (busy, try later — retried, never a
//! final refusal), the person or the card (lost, replaced, cancelled, not insured,
//! suspended, unknown — each its verdict), the 医保电子凭证 (a code expired, used or unknown,
//! a token invalid — the patient shows a fresh code), or else a business refusal of the
//! request.
//!
//! Regions word these differently; the safe default for a text no rule knows is
//! [`Refusal::Business`]: final for a settlement call, and for 1101 "the insurer could not
//! answer" (the swipe is judged from the cache), never `unknown_person`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

/// The built-in rules' file.
const NATIONAL: &str = include_str!("../../insurer-refusals/national.toml");

/// What a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// 报文ID重复: the message was not processed; send it again with a new msgid.
    DuplicateMsgid,
    /// 签到信息不存在 / 已失效: sign in again, then send it again.
    SignInLapsed,
    /// A malformed envelope or input field (the sender's, not the person's).
    Format,
    /// The message's `inf_time` is too far from the platform's clock (时间相差过大): not
    /// processed; the workstation's clock needs synchronising.
    ClockSkew,
    /// 系统繁忙 / 请稍后再试 / a timeout at the platform: not processed; retry later.
    Transient,
    /// 1101: the card was reported lost (挂失).
    Lost,
    /// 1101: the card was replaced (补换卡).
    Replaced,
    /// 1101: the card was cancelled (注销).
    Cancelled,
    /// 1101: insurance suspended (暂停参保).
    Suspended,
    /// 1101: not insured, or insurance ended (未参保 / 终止参保).
    NotInsured,
    /// 1101: the insurer knows no such person or card (查无此人).
    UnknownPerson,
    /// The e-voucher decode: the code's time has passed (二维码已过期).
    EcCodeExpired,
    /// The e-voucher decode: the code was decoded before (二维码已使用).
    EcCodeUsed,
    /// The e-voucher decode: no such code (二维码无效).
    EcCodeUnknown,
    /// 1101 by e-voucher (mdtrt_cert_type 01): the ecToken is unknown or expired (令牌无效).
    EcTokenInvalid,
    /// Anything else: the insurer refused the request itself.
    Business,
}

impl Refusal {
    /// About the person or the card: a verdict (only meaningful for 1101).
    pub fn is_about_the_person(self) -> bool {
        matches!(
            self,
            Refusal::Lost
                | Refusal::Replaced
                | Refusal::Cancelled
                | Refusal::Suspended
                | Refusal::NotInsured
                | Refusal::UnknownPerson
        )
    }
}

/// One rule: a class and the texts that mean it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    class: Refusal,
    texts: Vec<String>,
}

/// A rules file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    refusal: Vec<Rule>,
}

/// Why a rules file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RefusalRulesError {
    #[error("refusal rules {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusal rules {}: {source}", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("refusal rules {}: a rule for {class:?} has an empty text", path.display())]
    EmptyText { path: PathBuf, class: Refusal },
}

/// The rules, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRules {
    rules: Vec<Rule>,
}

static BUILT_IN: LazyLock<Arc<RefusalRules>> = LazyLock::new(|| {
    // The built-in file is checked by a unit test; a broken one would know no text.
    let rules = parse(NATIONAL, Path::new("insurer-refusals/national.toml"))
        .map(|file| file.refusal)
        .unwrap_or_default();
    Arc::new(RefusalRules { rules })
});

fn parse(text: &str, path: &Path) -> Result<RulesFile, RefusalRulesError> {
    let file: RulesFile = toml::from_str(text).map_err(|source| RefusalRulesError::Syntax {
        path: path.to_owned(),
        source,
    })?;
    if let Some(rule) = file
        .refusal
        .iter()
        .find(|r| r.texts.iter().any(|t| t.split('*').all(str::is_empty)))
    {
        return Err(RefusalRulesError::EmptyText {
            path: path.to_owned(),
            class: rule.class,
        });
    }
    Ok(file)
}

impl RefusalRules {
    /// The built-in rules (`insurer-refusals/national.toml`).
    pub fn built_in() -> Arc<RefusalRules> {
        BUILT_IN.clone()
    }

    /// A region's file, tried before the built-in rules; `None` or an empty path: the
    /// built-in rules alone.
    pub fn with_region_file(path: Option<&Path>) -> Result<Arc<RefusalRules>, RefusalRulesError> {
        let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(RefusalRules::built_in());
        };
        let text = std::fs::read_to_string(path).map_err(|source| RefusalRulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut rules = parse(&text, path)?.refusal;
        rules.extend(BUILT_IN.rules.iter().cloned());
        Ok(Arc::new(RefusalRules { rules }))
    }

    /// What `err_msg` is about; a text no rule knows is [`Refusal::Business`].
    pub fn classify(&self, err_msg: &str) -> Refusal {
        self.rules
            .iter()
            .find(|rule| rule.texts.iter().any(|t| occurs(t, err_msg)))
            .map_or(Refusal::Business, |rule| rule.class)
    }
}

/// Whether `pattern` occurs in `text`: its `*`-separated pieces, in order.
fn occurs(pattern: &str, text: &str) -> bool {
    let mut rest = text;
    for piece in pattern.split('*').filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_file_parses_and_knows_every_class() {
        let file = parse(NATIONAL, Path::new("national.toml")).expect("national.toml");
        for class in [
            Refusal::DuplicateMsgid,
            Refusal::SignInLapsed,
            Refusal::Format,
            Refusal::ClockSkew,
            Refusal::Transient,
            Refusal::Lost,
            Refusal::Replaced,
            Refusal::Cancelled,
            Refusal::Suspended,
            Refusal::NotInsured,
            Refusal::UnknownPerson,
            Refusal::EcCodeExpired,
            Refusal::EcCodeUsed,
            Refusal::EcCodeUnknown,
            Refusal::EcTokenInvalid,
        ] {
            assert!(
                file.refusal.iter().any(|r| r.class == class),
                "{class:?} has no rule"
            );
        }
    }

    #[test]
    fn platform_texts_sort_into_their_classes() {
        let rules = RefusalRules::built_in();
        let cases = [
            ("该社会保障卡已挂失，不能使用", Refusal::Lost),
            ("该社会保障卡已补换新卡，原卡不能使用", Refusal::Replaced),
            ("该社会保障卡已注销", Refusal::Cancelled),
            ("未查询到人员信息", Refusal::UnknownPerson),
            ("医保中心查无此人参保信息", Refusal::UnknownPerson),
            ("人员参保状态为暂停参保", Refusal::Suspended),
            ("该人员未参保", Refusal::NotInsured),
            (
                "发送方报文ID[H500103024732026010112000000001]重复",
                Refusal::DuplicateMsgid,
            ),
            ("签到信息不存在或已失效，请重新签到", Refusal::SignInLapsed),
            ("医保中心系统繁忙，请稍后再试", Refusal::Transient),
            ("就诊凭证类型[09]不正确", Refusal::Format),
            (
                "报文时间与中心系统时间相差过大，请校准本机时间",
                Refusal::ClockSkew,
            ),
            (
                "电子凭证二维码已过期，请刷新后重新出示",
                Refusal::EcCodeExpired,
            ),
            (
                "电子凭证二维码已使用，请刷新后重新出示",
                Refusal::EcCodeUsed,
            ),
            (
                "电子凭证二维码无效，未查询到电子凭证信息",
                Refusal::EcCodeUnknown,
            ),
            ("医保电子凭证令牌无效", Refusal::EcTokenInvalid),
            (
                "医保电子凭证令牌已过期，请重新出示电子凭证",
                Refusal::EcTokenInvalid,
            ),
            ("电子凭证二维码已失效", Refusal::EcCodeExpired),
            ("该电子凭证已被使用", Refusal::EcCodeUsed),
            ("医保电子凭证令牌无效或已过期", Refusal::EcTokenInvalid),
            ("该批次已结算", Refusal::Business),
            ("", Refusal::Business),
        ];
        for (text, class) in cases {
            assert_eq!(rules.classify(text), class, "{text}");
        }
    }

    #[test]
    fn a_region_file_is_tried_first_and_checked() {
        let dir = std::env::temp_dir().join(format!("medcard-refusals-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("region.toml");
        std::fs::write(&path, "[[refusal]]\nclass = \"lost\"\ntexts = [\"止付\"]\n").unwrap();
        let rules = RefusalRules::with_region_file(Some(&path)).unwrap();
        assert_eq!(rules.classify("该卡已止付"), Refusal::Lost);
        assert_eq!(rules.classify("医保中心系统繁忙"), Refusal::Transient);
        assert_eq!(
            RefusalRules::built_in().classify("该卡已止付"),
            Refusal::Business
        );
        std::fs::write(&path, "[[refusal]]\nclass = \"lost\"\ntexts = [\"\"]\n").unwrap();
        assert!(matches!(
            RefusalRules::with_region_file(Some(&path)),
            Err(RefusalRulesError::EmptyText { .. })
        ));
        std::fs::write(&path, "[[refusal]]\nclass = \"stolen\"\ntexts = [\"x\"]\n").unwrap();
        assert!(matches!(
            RefusalRules::with_region_file(Some(&path)),
            Err(RefusalRulesError::Syntax { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
