//! The functions' binaries as built here would start on `provided.al2023`: x86_64, and
//! no glibc symbol version newer than Amazon Linux 2023's 2.34. (`cargo xtask lambdas`
//! applies the same check to the release build it packages.)

use xtask::{elf, AL2023_GLIBC};

#[test]
fn the_bootstraps_need_no_glibc_newer_than_amazon_linux_2023s() {
    for path in [env!("CARGO_BIN_EXE_cis-containment"), env!("CARGO_BIN_EXE_cis-detector")] {
        let info = elf::read(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(info.x86_64, "{path} is not x86_64");
        let libc: Vec<_> = info.needed.iter().filter(|n| n.glibc().is_some()).collect();
        assert!(!libc.is_empty(), "{path}: no glibc versions read: the check would be empty");
        let newer = info.glibc_newer_than(AL2023_GLIBC);
        assert!(newer.is_empty(), "{path} needs {newer:?}, newer than glibc 2.34");
        eprintln!("{path}: newest glibc needed {:?}", info.newest_glibc());
    }
}
