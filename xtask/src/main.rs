//! `cargo xtask lambdas [--out DIR]`: builds the lab's Lambda functions for the
//! `provided.al2023` runtime on x86_64 and writes one deployment package per function,
//! `DIR/containment.zip`, `DIR/detector.zip` and `DIR/janitor.zip` (default `target/lambda`), each holding
//! an executable `bootstrap`. A binary that needs a glibc newer than Amazon Linux 2023's
//! (2.34) would not start there, so it is refused before it is packaged.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use xtask::{elf, zip, AL2023_GLIBC};

const TARGET: &str = "x86_64-unknown-linux-gnu";
/// (binary, package name)
const FUNCTIONS: [(&str, &str); 3] = [("cis-containment", "containment"), ("cis-detector", "detector"), ("cis-janitor", "janitor")];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("lambdas") => lambdas(&args[1..]),
        _ => {
            Err("usage: cargo xtask lambdas [--out DIR]\n  builds target/lambda/{containment,detector}.zip for provided.al2023 (x86_64)"
                .into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

fn lambdas(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let out = match args {
        [] => root.join("target/lambda"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => return Err(format!("unexpected arguments {args:?}: usage: cargo xtask lambdas [--out DIR]")),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(&root).args(["build", "--release", "--locked", "--package", "cis-lambda", "--target", TARGET]);
    for (bin, _) in FUNCTIONS {
        build.args(["--bin", bin]);
    }
    eprintln!("xtask: building the functions for {TARGET} (release)");
    let status = build.status().map_err(|e| format!("could not run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (bin, name) in FUNCTIONS {
        let path = root.join("target").join(TARGET).join("release").join(bin);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        check(&path, &bytes)?;
        let archive = zip::write(&[zip::Entry { name: "bootstrap", data: &bytes, mode: 0o755 }]).map_err(|e| e.to_string())?;
        let zip_path = out.join(format!("{name}.zip"));
        let tmp = out.join(format!(".{name}.zip.tmp"));
        std::fs::write(&tmp, &archive)
            .and_then(|()| std::fs::rename(&tmp, &zip_path))
            .map_err(|e| format!("{}: {e}", zip_path.display()))?;
        println!(
            "{} ({:.1} MiB, bootstrap {:.1} MiB)",
            zip_path.display(),
            archive.len() as f64 / 1048576.0,
            bytes.len() as f64 / 1048576.0
        );
    }
    Ok(())
}

/// Refuses a bootstrap that would not run on `provided.al2023` x86_64.
fn check(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let info = elf::read(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if !info.x86_64 {
        return Err(format!("{}: not an x86_64 executable", path.display()));
    }
    let newer = info.glibc_newer_than(AL2023_GLIBC);
    if !newer.is_empty() {
        let names: Vec<String> = newer.iter().map(|n| n.to_string()).collect();
        return Err(format!(
            "{} needs {}, newer than Amazon Linux 2023's glibc {}.{}: it would fail to start on provided.al2023; build on an older distribution (or in an AL2023 container)",
            path.display(),
            names.join(", "),
            AL2023_GLIBC.0,
            AL2023_GLIBC.1
        ));
    }
    Ok(())
}
