//! Status words (SW1 SW2) and what they mean to an operator (card-spec.md §3.4).

use std::fmt;

/// The two status bytes that end every response APDU.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const OK: StatusWord = StatusWord(0x9000);
    pub const SECURITY_NOT_SATISFIED: StatusWord = StatusWord(0x6982);
    pub const AUTH_BLOCKED: StatusWord = StatusWord(0x6983);
    pub const FILE_NOT_FOUND: StatusWord = StatusWord(0x6A82);
    pub const RECORD_NOT_FOUND: StatusWord = StatusWord(0x6A83);
    pub const WRONG_LENGTH: StatusWord = StatusWord(0x6700);
    pub const INCOMPATIBLE_FILE: StatusWord = StatusWord(0x6981);
    pub const CONDITIONS_NOT_SATISFIED: StatusWord = StatusWord(0x6985);
    pub const NO_CURRENT_EF: StatusWord = StatusWord(0x6986);
    pub const FUNCTION_NOT_SUPPORTED: StatusWord = StatusWord(0x6A81);
    pub const WRONG_P1P2: StatusWord = StatusWord(0x6A86);
    pub const KEY_NOT_FOUND: StatusWord = StatusWord(0x6A88);
    pub const WRONG_OFFSET: StatusWord = StatusWord(0x6B00);
    pub const INS_NOT_SUPPORTED: StatusWord = StatusWord(0x6D00);
    pub const CLA_NOT_SUPPORTED: StatusWord = StatusWord(0x6E00);
    pub const NOTHING_PENDING: StatusWord = StatusWord(0x6F00);

    pub fn new(sw1: u8, sw2: u8) -> StatusWord {
        StatusWord(u16::from_be_bytes([sw1, sw2]))
    }

    pub fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    pub fn sw2(self) -> u8 {
        self.0 as u8
    }

    pub fn is_success(self) -> bool {
        self.0 == 0x9000
    }

    /// `61xx`: xx more bytes wait for GET RESPONSE (00 means 256 or more).
    pub fn bytes_available(self) -> Option<u8> {
        (self.sw1() == 0x61).then_some(self.sw2())
    }

    /// `6Cxx`: wrong Le; resend with Le = xx.
    pub fn exact_length(self) -> Option<u8> {
        (self.sw1() == 0x6C).then_some(self.sw2())
    }

    /// `63Cx`: verification failed, x tries left.
    pub fn tries_left(self) -> Option<u8> {
        (self.sw1() == 0x63 && self.sw2() & 0xF0 == 0xC0).then_some(self.sw2() & 0x0F)
    }

    /// The status word as the national reader interface reports it: −(SW1SW2).
    pub fn reader_code(self) -> i32 {
        -i32::from(self.0)
    }

    /// Operator-readable meaning, in Chinese and English.
    pub fn meaning(self) -> (&'static str, &'static str) {
        match self.0 {
            0x9000 => ("成功", "success"),
            0x6581 => ("卡内存储错误", "card memory error"),
            0x6700 => ("长度错误(Lc/Le)", "wrong length (Lc/Le)"),
            0x6901 => (
                "命令不接受(无效状态)",
                "command not accepted (invalid state)",
            ),
            0x6981 => (
                "命令与文件结构不相容",
                "command incompatible with the file structure",
            ),
            0x6982 => (
                "不满足安全状态(需认证)",
                "security status not satisfied (authentication needed)",
            ),
            0x6983 => ("认证方法锁定", "authentication method or PIN locked"),
            0x6984 => ("引用数据无效", "referenced data invalidated"),
            0x6985 => ("使用条件不满足", "conditions of use not satisfied"),
            0x6986 => ("没有当前文件", "no current file selected"),
            0x6988 => ("安全报文数据项不正确", "secure-messaging data wrong"),
            0x6A80 => ("数据域参数不正确", "wrong data field"),
            0x6A81 => ("功能不支持", "function not supported"),
            0x6A82 => ("文件或应用未找到", "file or application not found"),
            0x6A83 => ("记录未找到", "record not found"),
            0x6A86 => ("参数P1P2不正确", "wrong P1/P2"),
            0x6A88 => ("引用数据(密钥)未找到", "referenced data (key) not found"),
            0x6B00 => ("偏移量超出文件", "offset outside the file"),
            0x6D00 => ("指令不支持", "instruction not supported"),
            0x6E00 => ("类别不支持", "class not supported"),
            0x6F00 => ("数据无效", "no precise diagnosis"),
            0x9302 => ("MAC无效", "MAC invalid"),
            0x9303 => ("应用已被永久锁定", "application permanently locked"),
            0x9401 => ("余额不足", "insufficient balance"),
            0x9402 => ("交易计数器达到最大值", "transaction counter at maximum"),
            0x9403 => ("密钥索引不支持", "key index not supported"),
            0x9406 => ("所需MAC不可用", "required MAC unavailable"),
            _ if self.bytes_available().is_some() => ("还有数据待取", "more data available"),
            _ if self.exact_length().is_some() => ("Le长度错误", "wrong Le"),
            _ if self.tries_left().is_some() => ("认证失败", "verification failed"),
            _ => ("未知状态码", "unknown status word"),
        }
    }

    /// A one-line description for an operator, with tries left where that applies.
    pub fn describe(self) -> String {
        let (zh, en) = self.meaning();
        match self.tries_left() {
            Some(n) => format!("{self}: {zh}，剩余{n}次 / {en}, {n} tries left"),
            None => format!("{self}: {zh} / {en}"),
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.0)
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SW {:04X}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_t0_and_pin_status_words() {
        assert_eq!(StatusWord(0x611E).bytes_available(), Some(0x1E));
        assert_eq!(StatusWord(0x6C14).exact_length(), Some(0x14));
        assert_eq!(StatusWord(0x63C2).tries_left(), Some(2));
        assert_eq!(StatusWord(0x6300).tries_left(), None);
        assert_eq!(StatusWord(0x9000).bytes_available(), None);
    }

    #[test]
    fn reader_codes_match_the_national_interface_table() {
        // card-spec.md §5.1: 6A82 → −27266, 6982 → −27010, 9303 → −37635.
        assert_eq!(StatusWord(0x6A82).reader_code(), -27266);
        assert_eq!(StatusWord(0x6982).reader_code(), -27010);
        assert_eq!(StatusWord(0x9303).reader_code(), -37635);
    }

    #[test]
    fn describes_in_operator_terms() {
        assert!(StatusWord(0x6A82).describe().contains("文件或应用未找到"));
        assert!(StatusWord(0x63C1).describe().contains("1 tries left"));
        assert!(StatusWord(0x6FAA).describe().contains("unknown"));
    }
}
