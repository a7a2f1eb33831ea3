//! A zip archive writer for Lambda deployment packages: deflated entries with Unix modes,
//! so Lambda finds an executable `bootstrap` (it runs the file as packaged). Also built
//! into `xtask` (by `#[path]`), which must not depend on cis.

use std::io::Write;

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
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        add(&mut out, &mut central, e)?;
    }
    finish(out, &central, entries.len())
}

/// The archive with one more file: its entries kept byte for byte (no re-compression),
/// the new one appended. How the lab's model joins the detector's package.
pub fn with_file(archive: &[u8], entry: &Entry) -> std::io::Result<Vec<u8>> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a zip archive this writer can extend: {why}"));
    let eocd = archive.len().checked_sub(22).filter(|&i| archive[i..].starts_with(b"PK\x05\x06")).ok_or_else(|| bad("no end record"))?;
    let u16_at = |i: usize| u16::from_le_bytes([archive[i], archive[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(archive[i..i + 4].try_into().expect("4 bytes")) as usize;
    let (count, cd_size, cd_offset) = (u16_at(eocd + 10), u32_at(eocd + 12), u32_at(eocd + 16));
    if cd_offset.checked_add(cd_size) != Some(eocd) {
        return Err(bad("the central directory is not where the end record says"));
    }
    let mut out = archive[..cd_offset].to_vec();
    let mut central = archive[cd_offset..eocd].to_vec();
    add(&mut out, &mut central, entry)?;
    finish(out, &central, count + 1)
}

fn add(out: &mut Vec<u8>, central: &mut Vec<u8>, e: &Entry) -> std::io::Result<()> {
    let mut crc = flate2::Crc::new();
    crc.update(e.data);
    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflater.write_all(e.data)?;
    let compressed = deflater.finish()?;
    let too_big = |n: usize| n > u32::MAX as usize;
    if too_big(e.data.len()) || too_big(out.len()) {
        return Err(std::io::Error::other(format!("{}: zip64 is not supported (over 4 GiB)", e.name)));
    }
    let offset = out.len() as u32;
    let (name, crc, size, csize) = (e.name.as_bytes(), crc.sum(), e.data.len() as u32, compressed.len() as u32);
    // Local file header.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0 (deflate)
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&8u16.to_le_bytes()); // deflate
    out.extend_from_slice(&0u16.to_le_bytes()); // time 00:00
    out.extend_from_slice(&0x0021u16.to_le_bytes()); // date 1980-01-01
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&csize.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&compressed);
    // Central directory header: made by Unix (3), mode in the external attributes.
    central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes());
    central.extend_from_slice(&20u16.to_le_bytes());
    central.extend_from_slice(&0u16.to_le_bytes());
    central.extend_from_slice(&8u16.to_le_bytes());
    central.extend_from_slice(&0u16.to_le_bytes());
    central.extend_from_slice(&0x0021u16.to_le_bytes());
    central.extend_from_slice(&crc.to_le_bytes());
    central.extend_from_slice(&csize.to_le_bytes());
    central.extend_from_slice(&size.to_le_bytes());
    central.extend_from_slice(&(name.len() as u16).to_le_bytes());
    central.extend_from_slice(&0u16.to_le_bytes()); // extra
    central.extend_from_slice(&0u16.to_le_bytes()); // comment
    central.extend_from_slice(&0u16.to_le_bytes()); // disk
    central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    central.extend_from_slice(&((0o100000 | e.mode) << 16).to_le_bytes());
    central.extend_from_slice(&offset.to_le_bytes());
    central.extend_from_slice(name);
    Ok(())
}

fn finish(mut out: Vec<u8>, central: &[u8], count: usize) -> std::io::Result<Vec<u8>> {
    let (cd_offset, cd_size) = (out.len() as u32, central.len() as u32);
    out.extend_from_slice(central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
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
}
