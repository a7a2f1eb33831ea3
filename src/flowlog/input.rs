//! Opening what a user points `cis detect` and `cis train` at: a file or standard input,
//! holding flow-log text, gzip of it, or CloudWatch Logs JSON. Text streams a line at a
//! time; JSON (bounded by what CloudWatch Logs hands out) is read whole.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::envelope;
use super::{FlowLogReader, FlowRecord, LineError, LogFormat};
use crate::error::{Error, Result};

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

    fn open(&self) -> Result<Box<dyn BufRead>> {
        Ok(match self {
            Input::Stdin => Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
            Input::File(p) => Box::new(BufReader::with_capacity(1 << 16, std::fs::File::open(p).map_err(|e| Error::io(p, e))?)),
        })
    }

    /// Calls `each` with every record or malformed line, in order; `format` `None` guesses
    /// it ([`FlowLogReader::guessing`]).
    pub fn for_each_record(&self, format: Option<&LogFormat>, mut each: impl FnMut(std::result::Result<FlowRecord, LineError>)) -> Result<()> {
        let name = self.name();
        let mut input = self.open()?;
        let head = input.fill_buf().map_err(|e| Error::io(&name, e))?;
        if head.starts_with(&[0x1f, 0x8b]) {
            let inflated = BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(input));
            return read_stream(inflated, &name, format, &mut each);
        }
        read_stream(input, &name, format, &mut each)
    }
}

fn reader<R: BufRead>(input: R, format: Option<&LogFormat>) -> FlowLogReader<R> {
    match format {
        Some(f) => FlowLogReader::new(input, f.clone()),
        None => FlowLogReader::guessing(input),
    }
}

fn read_stream(mut input: impl BufRead, name: &Path, format: Option<&LogFormat>, each: &mut dyn FnMut(std::result::Result<FlowRecord, LineError>)) -> Result<()> {
    let head = input.fill_buf().map_err(|e| Error::io(name, e))?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if matches!(first, Some(b'{') | Some(b'[')) {
        let mut json = Vec::new();
        input.take(envelope::MAX_INFLATED + 1).read_to_end(&mut json).map_err(|e| Error::io(name, e))?;
        if json.len() as u64 > envelope::MAX_INFLATED {
            return Err(Error::BadFile { path: name.to_path_buf(), line: 1, message: envelope::EnvelopeError::TooLarge.to_string() });
        }
        let messages = envelope::messages_from_json(&json).map_err(|e| Error::BadFile { path: name.to_path_buf(), line: 1, message: e.to_string() })?;
        let text = messages.join("\n");
        reader(text.as_bytes(), format).for_each(each);
        return Ok(());
    }
    reader(input, format).for_each(each);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flowlog::envelope::{LogEvent, LogsData};

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
                .for_each_record(None, |r| match r {
                    Ok(_) => ok += 1,
                    Err(e) => bad.push(e.line),
                })
                .unwrap();
            (ok, bad)
        };
        assert_eq!(count(&plain), (2, vec![2]));
        assert_eq!(count(&gz), (2, vec![2]));
        assert_eq!(count(&json), (1, vec![]));
        let missing = Input::File(dir.path().join("nope")).for_each_record(Some(&LogFormat::default_v2()), |_| {});
        assert!(matches!(missing, Err(Error::Io { .. })));
    }
}
