//! Opening what a user points `cis detect` and `cis train` at: a file or standard input,
//! holding flow-log text, gzip of it, or CloudWatch Logs JSON. Text streams a line at a
//! time; JSON (bounded by what CloudWatch Logs hands out) is read whole.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use super::envelope;
use super::{FlowLogReader, FlowRecordOf, LineError, LogFormat};
use crate::base::error::{Error, Result};

/// Where records come from: a path, or `-` for standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }

    /// How errors name it.
    pub fn name(&self) -> PathBuf {
        match self {
            Input::Stdin => PathBuf::from("<stdin>"),
            Input::File(p) => p.clone(),
        }
    }

    fn open(&self) -> Result<Box<dyn BufRead + Send>> {
        Ok(match self {
            Input::Stdin => Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
            Input::File(p) => Box::new(BufReader::with_capacity(1 << 16, std::fs::File::open(p).map_err(|e| Error::io(p, e))?)),
        })
    }

    /// The records' text: gzip inflated, CloudWatch Logs JSON unwrapped to its messages.
    pub fn open_text(&self) -> Result<Box<dyn BufRead + Send>> {
        let name = self.name();
        let mut input = self.open()?;
        let head = input.fill_buf().map_err(|e| Error::io(&name, e))?;
        if head.starts_with(&[0x1f, 0x8b]) {
            input = Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(input)));
        }
        let head = input.fill_buf().map_err(|e| Error::io(&name, e))?;
        let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if !matches!(first, Some(b'{') | Some(b'[')) {
            return Ok(input);
        }
        let mut json = Vec::new();
        input.take(envelope::MAX_INFLATED + 1).read_to_end(&mut json).map_err(|e| Error::io(&name, e))?;
        if json.len() as u64 > envelope::MAX_INFLATED {
            return Err(Error::BadFile { path: name, line: 1, message: envelope::EnvelopeError::TooLarge.to_string() });
        }
        let messages = envelope::messages_from_json(&json).map_err(|e| Error::BadFile { path: name, line: 1, message: e.to_string() })?;
        Ok(Box::new(std::io::Cursor::new(messages.join("\n").into_bytes())))
    }

    /// Calls `each` with what `convert` makes of every record (read with its text
    /// borrowed from the line) and the record's line number, or with a malformed line, in
    /// order;
    /// `format` `None` takes it from the first line ([`LogFormat::guess`]).
    ///
    /// Parsing runs on every core: this thread's reader cuts the text into blocks at line
    /// ends and numbers their lines, workers parse blocks, and the records come back to
    /// `each` in input order. A header line in the middle of the input changes the format
    /// for the rest of its block only.
    pub fn for_each_flow<T: Send>(
        &self,
        format: Option<&LogFormat>,
        convert: impl Fn(FlowRecordOf<&str>) -> T + Sync,
        mut each: impl FnMut(std::result::Result<(usize, T), LineError>),
    ) -> Result<()> {
        let name = self.name();
        let mut text = self.open_text()?;
        let format = match format {
            Some(f) => f.clone(),
            None => {
                let head = text.fill_buf().map_err(|e| Error::io(&name, e))?;
                let first = head.split(|&b| b == b'\n').map(String::from_utf8_lossy).find(|l| !l.trim().is_empty());
                first.map(|l| LogFormat::guess(l.trim())).unwrap_or_else(LogFormat::default_v2)
            }
        };
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        type Parsed<T> = Vec<std::result::Result<(usize, T), LineError>>;
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<(u64, usize, Vec<u8>)>(workers);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<(u64, Parsed<T>)>(workers * 2);
        let job_rx = std::sync::Mutex::new(job_rx);
        std::thread::scope(|s| {
            for _ in 0..workers {
                let (job_rx, done_tx, format, convert) = (&job_rx, done_tx.clone(), &format, &convert);
                s.spawn(move || loop {
                    let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((seq, first_line, block)) = job else { return };
                    let mut parsed = Vec::with_capacity(block.len() / 100);
                    FlowLogReader::new(&block[..], format.clone()).for_each_borrowed(|r| {
                        parsed.push(match r {
                            Ok((line, r)) => Ok((first_line + line - 1, convert(r))),
                            Err(e) => Err(LineError { line: first_line + e.line - 1, message: e.message }),
                        })
                    });
                    if done_tx.send((seq, parsed)).is_err() {
                        return;
                    }
                });
            }
            drop(done_tx);
            let reader = s.spawn(move || -> std::io::Result<()> {
                let (mut seq, mut line) = (0u64, 1usize);
                loop {
                    let mut block = Vec::with_capacity(BLOCK as usize + 4096);
                    (&mut text).take(BLOCK).read_to_end(&mut block)?;
                    text.read_until(b'\n', &mut block)?;
                    if block.is_empty() {
                        return Ok(());
                    }
                    let lines = block.iter().filter(|&&b| b == b'\n').count() + usize::from(!block.ends_with(b"\n"));
                    if job_tx.send((seq, line, block)).is_err() {
                        return Ok(());
                    }
                    seq += 1;
                    line += lines;
                }
            });
            // Blocks finish out of order; hand their records on in order.
            let (mut pending, mut next) = (std::collections::BTreeMap::new(), 0u64);
            for (seq, parsed) in done_rx {
                pending.insert(seq, parsed);
                while let Some(parsed) = pending.remove(&next) {
                    parsed.into_iter().for_each(&mut each);
                    next += 1;
                }
            }
            reader.join().expect("the reader does not panic").map_err(|e| Error::io(&name, e))
        })
    }
}

/// Bytes of text a worker parses at a time.
const BLOCK: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::flowlog::envelope::{LogEvent, LogsData};
    use std::path::Path;

    #[test]
    fn reads_text_gzip_and_subscription_json() {
        let dir = tempfile::tempdir().unwrap();
        let line = "2 1 eni-1 10.0.0.1 203.0.113.5 40000 443 6 3 300 100 160 ACCEPT OK";
        let text = format!("{line}\nbroken\n{line}\n");
        let plain = dir.path().join("f.log");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("f.log.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let json = dir.path().join("f.json");
        let doc = LogsData {
            message_type: "DATA_MESSAGE".into(),
            owner: "1".into(),
            log_group: "g".into(),
            log_stream: "s".into(),
            subscription_filters: vec![],
            log_events: vec![LogEvent { id: "1".into(), timestamp: 1, message: line.into() }],
        };
        std::fs::write(&json, envelope::encode_lambda_event(&doc)).unwrap();
        let count = |p: &Path| {
            let (mut ok, mut bad) = (0, vec![]);
            Input::File(p.to_path_buf())
                .for_each_flow(
                    None,
                    |r| r.to_owned_record(),
                    |r| match r {
                        Ok(_) => ok += 1,
                        Err(e) => bad.push(e.line),
                    },
                )
                .unwrap();
            (ok, bad)
        };
        assert_eq!(count(&plain), (2, vec![2]));
        assert_eq!(count(&gz), (2, vec![2]));
        assert_eq!(count(&json), (1, vec![]));
        let missing = Input::File(dir.path().join("nope")).for_each_flow(Some(&LogFormat::default_v2()), |_| (), |_| {});
        assert!(matches!(missing, Err(Error::Io { .. })));
    }
}
