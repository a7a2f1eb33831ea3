//! Labelled tables of numbers (CSV with a header), the form public anomaly-detection data
//! sets come in: what `cis detect --format csv` evaluates the isolation forest on.
//!
//! Every column whose first value is a number (or empty) is a feature; the others (names,
//! addresses) are left out and listed. An empty cell is 0. A label column, when named, is
//! read as positive (`1`, `true`, `yes`, `malicious`, `attack`, `anomaly`) or negative
//! (`0`, `false`, `no`, `benign`, `normal`); rows with any other label are skipped and
//! counted. Fields are read as RFC 4180 has them (the `csv` crate): quoted fields may hold
//! commas, quotes and line breaks; spaces around a field are trimmed.

use std::path::Path;

use crate::base::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The feature columns, in order.
    pub columns: Vec<String>,
    /// Columns left out because they are not numbers.
    pub ignored: Vec<String>,
    /// Row-major values.
    pub data: Vec<f64>,
    pub labels: Option<Vec<bool>>,
    /// Rows skipped for a label that is neither positive nor negative.
    pub skipped_rows: usize,
    pub empty_cells: usize,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.data.len() / self.columns.len().max(1)
    }
}

/// A label as data sets write them: positive, negative, or neither.
pub fn label(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "malicious" | "attack" | "anomaly" => Some(true),
        "0" | "0.0" | "false" | "no" | "benign" | "normal" => Some(false),
        _ => None,
    }
}

/// Reads a CSV table; `label_column` names the labels, if any.
pub fn read_csv(path: &Path, label_column: Option<&str>) -> Result<Table> {
    let bad = |line: usize, message: String| Error::BadFile { path: path.to_path_buf(), line, message };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).buffer_capacity(1 << 16).from_reader(file);
    let mut records = reader.records();
    let line_of = |e: &csv::Error| e.position().map_or(0, |p| p.line() as usize);
    let names: Vec<String> = match records.next() {
        Some(h) => h.map_err(|e| bad(line_of(&e).max(1), format!("cannot be read: {e}")))?.iter().map(str::to_string).collect(),
        None => return Err(bad(1, "empty file: expected a header line of column names".into())),
    };
    let label_at = match label_column {
        Some(l) => Some(
            names
                .iter()
                .position(|n| n == l)
                .ok_or_else(|| bad(1, format!("no column '{l}' for the labels; the columns are: {}", names.join(", "))))?,
        ),
        None => None,
    };
    let mut table =
        Table { columns: vec![], ignored: vec![], data: vec![], labels: label_at.map(|_| vec![]), skipped_rows: 0, empty_cells: 0 };
    // Decided on the first data row: which columns are features.
    let mut features: Option<Vec<usize>> = None;
    for record in records {
        let record = record.map_err(|e| bad(line_of(&e), format!("cannot be read: {e}")))?;
        let number = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != names.len() {
            return Err(bad(number, format!("{} fields, the header has {}", record.len(), names.len())));
        }
        let cols = features.get_or_insert_with(|| {
            let (keep, drop): (Vec<usize>, Vec<usize>) =
                (0..names.len()).filter(|&c| Some(c) != label_at).partition(|&c| record[c].is_empty() || record[c].parse::<f64>().is_ok());
            table.columns = keep.iter().map(|&c| names[c].clone()).collect();
            table.ignored = drop.iter().map(|&c| names[c].clone()).collect();
            keep
        });
        if let (Some(at), Some(labels)) = (label_at, table.labels.as_mut()) {
            match label(&record[at]) {
                Some(l) => labels.push(l),
                None => {
                    table.skipped_rows += 1;
                    continue;
                }
            }
        }
        for &c in cols.iter() {
            let v = &record[c];
            if v.is_empty() {
                table.empty_cells += 1;
                table.data.push(0.0);
            } else {
                let x: f64 = v.parse().map_err(|_| bad(number, format!("column '{}': '{v}' is not a number", names[c])))?;
                table.data.push(x);
            }
        }
    }
    if table.columns.is_empty() {
        return Err(bad(2, "no numeric column to use as a feature".into()));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_features_labels_and_reports_bad_cells() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "a,name,b,label\n1,x,\"\",benign\n2,y,3.5,malicious\n4,z,5,outlier\n").unwrap();
        let t = read_csv(&p, Some("label")).unwrap();
        assert_eq!(t.columns, vec!["a", "b"]);
        assert_eq!(t.ignored, vec!["name"]);
        assert_eq!(t.data, vec![1.0, 0.0, 2.0, 3.5]);
        assert_eq!(t.labels, Some(vec![false, true]));
        assert_eq!((t.skipped_rows, t.empty_cells), (1, 1));

        std::fs::write(&p, "a,b\n1,2\n3,oops\n").unwrap();
        let e = read_csv(&p, None).unwrap_err().to_string();
        assert!(e.contains("t.csv:3: column 'b': 'oops' is not a number"), "{e}");
        assert!(read_csv(&p, Some("label")).unwrap_err().to_string().contains(":1: no column 'label'"));
        std::fs::write(&p, "a,b\n1\n").unwrap();
        assert!(read_csv(&p, None).unwrap_err().to_string().contains(":2: 1 fields, the header has 2"));
        // Quoted fields may hold the separator, quotes and line breaks.
        std::fs::write(&p, "a,name,label\n1,\"Smith, J. \"\"JS\"\"\",normal\n2,\"two\nlines\",attack\n3,x,oops\n").unwrap();
        let t = read_csv(&p, Some("label")).unwrap();
        assert_eq!(
            (t.columns.clone(), t.ignored.clone(), t.data.clone()),
            (vec!["a".to_string()], vec!["name".to_string()], vec![1.0, 2.0])
        );
        assert_eq!(t.labels, Some(vec![false, true]));
        std::fs::write(&p, "a,b\n1,2\n\"3,4\n").unwrap();
        assert!(read_csv(&p, None).unwrap_err().to_string().contains(":3: 1 fields, the header has 2"));
    }
}
