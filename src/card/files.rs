//! Reading one file's records by the strategies its profile lists, falling back when the
//! card says a strategy is not supported and remembering that for the rest of the card.

use super::ReadError;
use super::records::{Records, parse_one, parse_records};
use crate::apdu::{ApduError, Command, Exchanger, Redaction, StatusWord};
use crate::profile::{FileSpec, ItemSpec, ReadStrategy};
use std::collections::HashSet;

/// READ RECORD reference modes (P2 low bits, card-spec.md §3.2).
const MODE_BY_IDENTIFIER: u8 = 0b000;
const MODE_BY_NUMBER: u8 = 0b100;
const MODE_TO_LAST: u8 = 0b101;

/// Status words that mean "this card does not do that": try the next strategy.
fn is_unsupported(sw: StatusWord) -> bool {
    matches!(
        sw.0,
        0x6700 | 0x6981 | 0x6A80 | 0x6A81 | 0x6A86 | 0x6D00 | 0x6E00
    )
}

/// Why one strategy did not deliver.
enum Attempt {
    Unsupported(StatusWord),
    Failed(ReadError),
}

impl From<ReadError> for Attempt {
    fn from(e: ReadError) -> Attempt {
        Attempt::Failed(e)
    }
}

/// Reads files of one card through one exchanger.
pub struct FileReader<'e, 'c> {
    ex: &'e mut Exchanger<'c>,
    unsupported: HashSet<ReadStrategy>,
    current_ef: Option<u16>,
}

impl<'e, 'c> FileReader<'e, 'c> {
    pub fn new(ex: &'e mut Exchanger<'c>) -> FileReader<'e, 'c> {
        FileReader {
            ex,
            unsupported: HashSet::new(),
            current_ef: None,
        }
    }

    /// The application was (re)selected: no EF is current any more.
    pub fn application_selected(&mut self) {
        self.current_ef = None;
    }

    pub fn exchanger(&mut self) -> &mut Exchanger<'c> {
        self.ex
    }

    /// Reads the `wanted` items of `file` that `records` does not know yet.
    pub fn read(
        &mut self,
        file: &FileSpec,
        wanted: &[&ItemSpec],
        records: &mut Records,
    ) -> Result<(), ReadError> {
        if wanted.iter().all(|item| records.knows(item.tag)) {
            return Ok(());
        }
        let mut refusals = Vec::new();
        for &strategy in &file.read {
            if self.unsupported.contains(&strategy) {
                continue;
            }
            match self.attempt(strategy, file, wanted, records) {
                Ok(()) => return Ok(()),
                Err(Attempt::Unsupported(sw)) => {
                    tracing::debug!(file = %file.name, ?strategy, %sw, "read strategy not supported; falling back");
                    self.unsupported.insert(strategy);
                    refusals.push(format!("{strategy:?} → {sw}"));
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(ReadError::NoReadStrategy {
            file: file.name.clone(),
            refusals: refusals.join(", "),
        })
    }

    fn attempt(
        &mut self,
        strategy: ReadStrategy,
        file: &FileSpec,
        wanted: &[&ItemSpec],
        records: &mut Records,
    ) -> Result<(), Attempt> {
        match strategy {
            ReadStrategy::WholeFile => self.read_whole(file, records),
            item_by_item => self.read_items(file, wanted, records, item_by_item),
        }
    }

    fn read_whole(&mut self, file: &FileSpec, records: &mut Records) -> Result<(), Attempt> {
        let le = file.whole_file_length().min(256) as u16;
        let command = self.addressed(file, 1, MODE_TO_LAST, le, file.sfi)?;
        let data = match self.send(file, &command)? {
            Some(data) => data,
            // 6A83 on record 1: nothing to read this way; read item by item instead.
            None => return Err(Attempt::Unsupported(StatusWord::RECORD_NOT_FOUND)),
        };
        let parsed = parse_records(&data).map_err(|detail| malformed(file, detail))?;
        for (tag, value) in parsed {
            records.insert(tag, value);
        }
        records.mark_complete();
        Ok(())
    }

    fn read_items(
        &mut self,
        file: &FileSpec,
        wanted: &[&ItemSpec],
        records: &mut Records,
        strategy: ReadStrategy,
    ) -> Result<(), Attempt> {
        for item in wanted {
            if records.knows(item.tag) {
                continue;
            }
            let le = u16::from(item.length) + 2;
            let command = match strategy {
                ReadStrategy::ByTag => {
                    self.addressed(file, item.tag, MODE_BY_IDENTIFIER, le, None)?
                }
                ReadStrategy::ByRecord => {
                    self.addressed(file, item.record, MODE_BY_NUMBER, le, None)?
                }
                _ => self.addressed(file, item.record, MODE_BY_NUMBER, le, file.sfi)?,
            };
            match self.send(file, &command)? {
                Some(data) => {
                    let value = parse_one(&data, item.tag).map_err(|detail| {
                        malformed(file, format!("{} ({:02X}): {detail}", item.label, item.tag))
                    })?;
                    records.insert(item.tag, value);
                }
                None => records.mark_missing(item.tag),
            }
        }
        Ok(())
    }

    /// A READ RECORD addressed by SFI when one is given, else after selecting the file.
    fn addressed(
        &mut self,
        file: &FileSpec,
        p1: u8,
        mode: u8,
        le: u16,
        sfi: Option<u8>,
    ) -> Result<Command, Attempt> {
        let sfi = match sfi {
            Some(sfi) => {
                self.current_ef = Some(file.fid);
                sfi
            }
            None => {
                self.select(file)?;
                0
            }
        };
        let redaction = if file.personal_data {
            Redaction::ResponseData
        } else {
            Redaction::None
        };
        Ok(Command::read_record(p1, sfi, mode, le).redacted(redaction))
    }

    fn select(&mut self, file: &FileSpec) -> Result<(), Attempt> {
        if self.current_ef == Some(file.fid) {
            return Ok(());
        }
        let command = Command::select_ef(file.fid);
        let response = self.ex.exchange(&command).map_err(ReadError::from)?;
        if !response.is_ok() {
            return Err(Attempt::Failed(ReadError::FileUnavailable {
                file: file.name.clone(),
                sw: response.sw,
                message: response.sw.describe(),
            }));
        }
        self.current_ef = Some(file.fid);
        Ok(())
    }

    /// Sends a read; `None` when the record is not on the card (6A83).
    fn send(&mut self, file: &FileSpec, command: &Command) -> Result<Option<Vec<u8>>, Attempt> {
        let response = self.ex.exchange(command).map_err(ReadError::from)?;
        match response.sw {
            sw if sw.is_success() => Ok(Some(response.data)),
            StatusWord::RECORD_NOT_FOUND => Ok(None),
            StatusWord::SECURITY_NOT_SATISFIED => Err(Attempt::Failed(ReadError::AccessDenied {
                file: file.name.clone(),
                sw: response.sw,
            })),
            sw if is_unsupported(sw) => Err(Attempt::Unsupported(sw)),
            sw => Err(Attempt::Failed(ReadError::Apdu(crate::apdu::status_error(
                sw, command,
            )))),
        }
    }
}

fn malformed(file: &FileSpec, detail: String) -> Attempt {
    Attempt::Failed(ReadError::Malformed {
        file: file.name.clone(),
        detail,
    })
}

impl From<ApduError> for Attempt {
    fn from(e: ApduError) -> Attempt {
        Attempt::Failed(ReadError::Apdu(e))
    }
}
