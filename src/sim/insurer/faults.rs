//! Fault injection: added latency, HTTP 500, infcode −1 (系统繁忙), a msgid refused as a
//! duplicate, garbage bodies, and a connection dropped after the request was processed (the
//! reply is lost). Counted faults are used up
//! one request at a time, in that order; `fail_rate` adds random HTTP 500s; `for_infno`
//! limits every fault to one transaction.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The fault plan, as set by flags or the admin endpoint's `faults` action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every (matching) request before it is answered.
    pub latency_ms: u64,
    /// The next n requests get HTTP 500 (not processed).
    pub http_500: u32,
    /// The next n requests get infcode −1 "系统繁忙" (not processed).
    pub infcode_minus1: u32,
    /// The next n requests get infcode −1 "发送方报文ID[…]重复" (not processed).
    pub duplicate_msgid: u32,
    /// The next n requests get a 200 with a body that is not JSON (not processed).
    pub garbage: u32,
    /// The next n requests are processed, then the connection is dropped.
    pub drop_after_processing: u32,
    /// Probability (0–1) of a random HTTP 500.
    pub fail_rate: f64,
    /// Only requests with this infno (or one of these, comma-separated: "2207,2601") are
    /// affected.
    pub for_infno: Option<String>,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Http500,
    InfcodeMinus1,
    DuplicateMsgid,
    Garbage,
    DropAfterProcessing,
}

impl Fault {
    /// The msg_log outcome for a request this fault hit.
    pub fn outcome(self) -> &'static str {
        match self {
            Fault::Http500 => "fault_http_500",
            Fault::InfcodeMinus1 => "fault_infcode_minus1",
            Fault::DuplicateMsgid => "fault_duplicate_msgid",
            Fault::Garbage => "fault_garbage",
            Fault::DropAfterProcessing => "processed_reply_dropped",
        }
    }
}

impl Faults {
    fn applies(&self, infno: &str) -> bool {
        self.for_infno
            .as_deref()
            .is_none_or(|only| only.split(',').any(|one| one.trim() == infno))
    }

    /// The latency and fault for one request; `chance` is uniform in [0, 1).
    pub fn take(&mut self, infno: &str, chance: f64) -> (Duration, Option<Fault>) {
        if !self.applies(infno) {
            return (Duration::ZERO, None);
        }
        let latency = Duration::from_millis(self.latency_ms);
        let counters = [
            (&mut self.http_500, Fault::Http500),
            (&mut self.infcode_minus1, Fault::InfcodeMinus1),
            (&mut self.duplicate_msgid, Fault::DuplicateMsgid),
            (&mut self.garbage, Fault::Garbage),
            (&mut self.drop_after_processing, Fault::DropAfterProcessing),
        ];
        for (left, fault) in counters {
            if *left > 0 {
                *left -= 1;
                return (latency, Some(fault));
            }
        }
        let random = (chance < self.fail_rate).then_some(Fault::Http500);
        (latency, random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The faults that requests with these infnos get in turn.
    fn faults_of<const N: usize>(mut plan: Faults, infnos: [&str; N]) -> [Option<Fault>; N] {
        infnos.map(|infno| plan.take(infno, 0.5).1)
    }

    #[test]
    fn counted_faults_are_used_up_and_filtered_by_infno() {
        let plan = Faults {
            http_500: 1,
            garbage: 1,
            for_infno: Some("1101".into()),
            ..Faults::default()
        };
        assert_eq!(
            faults_of(plan, ["9001", "1101", "1101", "1101"]),
            [None, Some(Fault::Http500), Some(Fault::Garbage), None]
        );
    }

    #[test]
    fn several_transactions_may_share_a_plan() {
        let plan = Faults {
            drop_after_processing: 2,
            for_infno: Some("2207, 2601".into()),
            ..Faults::default()
        };
        let dropped = Some(Fault::DropAfterProcessing);
        assert_eq!(
            faults_of(plan, ["X101", "2207", "2601", "2601"]),
            [None, dropped, dropped, None]
        );
    }
}
