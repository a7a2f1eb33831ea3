//! Zip archives for Lambda deployment packages, written by the `zip` crate: deflated
//! entries with Unix modes, so Lambda finds an executable `bootstrap` (it runs the file as
//! packaged). Also built into `xtask` (by `#[path]`), which must not depend on cis.

use std::io::{Cursor, Seek, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// One file of the archive.
pub struct Entry<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    /// Unix permission bits, 0o755 for `bootstrap`.
    pub mode: u32,
}

/// The archive's bytes. Timestamps are fixed (1980-01-01), so the same inputs give the
/// same archive, byte for byte.
pub fn write(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for e in entries {
        add(&mut zip, e)?;
    }
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

/// The archive with one more file: its entries kept byte for byte (no re-compression),
/// the new one appended. How the lab's model joins the detector's package.
pub fn with_file(archive: &[u8], entry: &Entry) -> std::io::Result<Vec<u8>> {
    let mut zip = ZipWriter::new_append(Cursor::new(archive.to_vec()))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a zip archive that can be extended: {e}")))?;
    add(&mut zip, entry)?;
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

fn add<W: Write + Seek>(zip: &mut ZipWriter<W>, e: &Entry) -> std::io::Result<()> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(9))
        .unix_permissions(e.mode)
        .last_modified_time(DateTime::default());
    zip.start_file(e.name, options).map_err(std::io::Error::other)?;
    zip.write_all(e.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's zipfile is the independent reader: it checks the CRC on extraction.
    #[test]
    fn pythons_zipfile_reads_the_files_and_their_modes_back() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let zip = write(&[Entry { name: "bootstrap", data: &data, mode: 0o755 }, Entry { name: "model.json", data: b"{}", mode: 0o644 }])
            .unwrap();
        assert_eq!(
            zip,
            write(&[Entry { name: "bootstrap", data: &data, mode: 0o755 }, Entry { name: "model.json", data: b"{}", mode: 0o644 }])
                .unwrap()
        );
        let dir = std::env::temp_dir().join(format!("cis-zip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.zip");
        std::fs::write(&path, &zip).unwrap();
        let script = "import sys, zipfile, hashlib\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nfor i in z.infolist(): print(i.filename, oct(i.external_attr >> 16), len(z.read(i)), hashlib.sha256(z.read(i)).hexdigest()[:8])";
        let out = std::process::Command::new("python3").arg("-c").arg(script).arg(&path).output().expect("python3 runs");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("bootstrap 0o100755 200000 "), "{text}");
        assert!(lines[1].starts_with("model.json 0o100644 2 "), "{text}");
    }

    #[test]
    fn a_file_joins_an_archive_whose_entries_stay_as_they_were() {
        let first = write(&[Entry { name: "bootstrap", data: b"#!/bin/sh\n", mode: 0o755 }]).unwrap();
        let joined = with_file(&first, &Entry { name: "model.json", data: b"{\"trees\": []}", mode: 0o644 }).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(&joined)).unwrap();
        let names: Vec<(String, Option<u32>)> = (0..archive.len())
            .map(|i| {
                let f = archive.by_index(i).unwrap();
                (f.name().unwrap().to_string(), f.unix_mode())
            })
            .collect();
        assert_eq!(names, vec![("bootstrap".to_string(), Some(0o100755)), ("model.json".to_string(), Some(0o100644))]);
        assert!(with_file(b"not a zip", &Entry { name: "x", data: b"", mode: 0o644 }).is_err());
    }
}
