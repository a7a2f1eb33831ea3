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
            let compressed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = Counted { inner: input, count: std::sync::Arc::clone(&compressed) };
            let guarded = InflationGuard { inner: flate2::read::MultiGzDecoder::new(counted), compressed, inflated: 0 };
            input = Box::new(BufReader::with_capacity(1 << 16, guarded));
        }
        let head = input.fill_buf().map_err(|e| Error::io(&name, e))?;
        let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if !matches!(first, Some(b'{') | Some(b'[')) {
            return Ok(input);
        }
        let mut json = Vec::new();
        input.take(envelope::MAX_INFLATED + 1).read_to_end(&mut json).map_err(|e| read_error(&name, e))?;
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
        mut each: impl FnMut(Result<(usize, T), LineError>),
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
        type Parsed<T> = Vec<Result<(usize, T), LineError>>;
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
                            Err(e) => Err(LineError::new(first_line + e.line - 1, e.message)),
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
                    // The block ends at a line's end; a line too long to hold is replaced
                    // by a mark with its length, and never held whole.
                    let line_start = block.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    let too_long = match super::read_line_capped(&mut text, &mut block)? {
                        Err(rest) => Some((block.len() - line_start) as u64 + rest),
                        Ok(_) => Some((block.len() - line_start) as u64).filter(|&n| n > super::MAX_LINE as u64 + 1),
                    };
                    if let Some(length) = too_long {
                        block.truncate(line_start);
                        block.extend_from_slice(format!("{}{length}\n", super::TOO_LONG_MARK).as_bytes());
                    }
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
            reader.join().expect("the reader does not panic").map_err(|e| read_error(&name, e))
        })
    }
}

/// How many times its size gzip may inflate, past the first [`envelope::MAX_INFLATED`]
/// bytes: flow-log text compresses about ten to one; a file of zeros a thousand to one.
pub const MAX_INFLATION_RATIO: u64 = 100;

/// Counts the compressed bytes a decoder reads.
struct Counted<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A gzip stream that inflates past [`MAX_INFLATION_RATIO`] times its compressed size (once
/// over [`envelope::MAX_INFLATED`]) is refused: a decompression bomb, not flow logs.
struct InflationGuard<R> {
    inner: R,
    compressed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    inflated: u64,
}

/// The error an [`InflationGuard`] reads as.
#[derive(Debug, thiserror::Error)]
#[error("gzip inflates {inflated} bytes from {compressed}, over {MAX_INFLATION_RATIO} times its size: not flow-log text (a decompression bomb?)")]
pub struct InflationError {
    inflated: u64,
    compressed: u64,
}

impl<R: Read> Read for InflationGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let compressed = self.compressed.load(std::sync::atomic::Ordering::Relaxed).max(1);
        if self.inflated > envelope::MAX_INFLATED && self.inflated > MAX_INFLATION_RATIO * compressed {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, InflationError { inflated: self.inflated, compressed }));
        }
        Ok(n)
    }
}

/// An I/O error while reading `name`: a refused gzip bomb is bad input (the file's fault,
/// exit 2), anything else an I/O failure.
fn read_error(name: &std::path::Path, e: std::io::Error) -> Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<InflationError>()) {
        Some(bomb) => Error::BadFile { path: name.to_path_buf(), line: 1, message: bomb.to_string() },
        None => Error::io(name, e),
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

    #[test]
    fn a_huge_line_is_one_short_error_and_a_gzip_bomb_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let line = "2 1 eni-1 10.0.0.1 203.0.113.5 40000 443 6 3 300 100 160 ACCEPT OK";
        // A 3 MiB line between two records, crossing the reader's 1 MiB blocks.
        let huge = "x".repeat(3 << 20);
        let path = dir.path().join("huge.log");
        std::fs::write(&path, format!("{line}\n{huge}\n{line}\n2 1 eni-1 {huge}\n")).unwrap();
        let (mut ok, mut errors) = (0, vec![]);
        Input::File(path)
            .for_each_flow(
                None,
                |_| (),
                |r| match r {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e),
                },
            )
            .unwrap();
        assert_eq!(ok, 2);
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 4]);
        for e in &errors {
            assert!(e.message.len() < 300 && e.message.contains("over the 64 KiB"), "{}", e.message);
        }
        assert!(errors[0].message.contains(&format!("{} bytes", 3 << 20)), "{}", errors[0].message);
        // A quoted field is clipped too.
        let long_field = format!("2 1 eni-1 10.0.0.1 203.0.113.5 {} 443 6 3 300 100 160 ACCEPT OK", "9".repeat(5000));
        let e = FlowLogReader::new(long_field.as_bytes(), LogFormat::default_v2()).next_record().unwrap().unwrap_err();
        assert!(e.message.len() < 300, "{}", e.message);

        // 64 MiB of zeros in a few hundred kilobytes of gzip.
        let bomb = dir.path().join("bomb.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..80 {
            std::io::Write::write_all(&mut enc, &zeros).unwrap();
        }
        std::fs::write(&bomb, enc.finish().unwrap()).unwrap();
        let refused = Input::File(bomb).for_each_flow(Some(&LogFormat::default_v2()), |_| (), |_| {});
        match refused {
            Err(Error::BadFile { line: 1, message, .. }) => assert!(message.contains("decompression bomb"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
