//! Labelled tables of numbers (CSV with a header), the form public anomaly-detection data
//! sets come in: what `cis detect --format csv` evaluates the isolation forest on.
//!
//! Every column whose first value is a number (or empty) is a feature; the others (names,
//! addresses) are left out and listed. An empty cell is 0. A label column, when named, is
//! read as positive (`1`, `true`, `yes`, `malicious`, `attack`, `anomaly`) or negative
//! (`0`, `false`, `no`, `benign`, `normal`); rows with any other label are skipped and
//! counted. Fields may be quoted but may not contain commas.

use std::io::BufRead;
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

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(f)
}

/// Reads a CSV table; `label_column` names the labels, if any.
pub fn read_csv(path: &Path, label_column: Option<&str>) -> Result<Table> {
    let bad = |line: usize, message: String| Error::BadFile { path: path.to_path_buf(), line, message };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = std::io::BufReader::with_capacity(1 << 16, file).lines();
    let header = match lines.next() {
        Some(h) => h.map_err(|e| Error::io(path, e))?,
        None => return Err(bad(1, "empty file: expected a header line of column names".into())),
    };
    let names: Vec<String> = header.split(',').map(|n| unquote(n).to_string()).collect();
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
    for (i, line) in lines.enumerate() {
        let number = i + 2;
        let line = line.map_err(|e| bad(number, format!("cannot be read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(unquote).collect();
        if fields.len() != names.len() {
            return Err(bad(number, format!("{} fields, the header has {}", fields.len(), names.len())));
        }
        let cols = features.get_or_insert_with(|| {
            let (keep, drop): (Vec<usize>, Vec<usize>) =
                (0..names.len()).filter(|&c| Some(c) != label_at).partition(|&c| fields[c].is_empty() || fields[c].parse::<f64>().is_ok());
            table.columns = keep.iter().map(|&c| names[c].clone()).collect();
            table.ignored = drop.iter().map(|&c| names[c].clone()).collect();
            keep
        });
        if let (Some(at), Some(labels)) = (label_at, table.labels.as_mut()) {
            match label(fields[at]) {
                Some(l) => labels.push(l),
                None => {
                    table.skipped_rows += 1;
                    continue;
                }
            }
        }
        for &c in cols.iter() {
            let v = fields[c];
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
    }
}
