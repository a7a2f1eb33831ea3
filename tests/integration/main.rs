//! The one integration-test binary: runs the real `cis` executable against the simulator
//! in temporary state directories, and checks the simulated account from outside.

#[cfg(feature = "aws")]
mod analysis;
#[cfg(feature = "aws")]
mod aws;
mod cli;
mod crash;
mod detector;
mod faults;
// Flow-log records as the lab's target writes them, shared with the functions' tests.
#[cfg(feature = "aws")]
#[path = "../support/flows.rs"]
mod flows;
mod fuzz;
mod layers;
mod lifecycle;
#[cfg(feature = "aws")]
#[path = "../support/moto.rs"]
mod moto;
mod policies;
mod report;
mod simulator;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary state directory and a way to run `cis` in it.
pub struct Lab {
    pub dir: tempfile::TempDir,
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Lab {
    pub fn new() -> Lab {
        Lab { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cis"));
        c.args(args)
            .env("CIS_STATE_DIR", self.state())
            .env_remove("CIS_LAB")
            .env_remove("CIS_CLOUD")
            .env_remove("AWS_REGION")
            .env_remove(cis::backends::sim::CRASH_AFTER_ENV);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("cis runs")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cis {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    pub fn account_path(&self) -> PathBuf {
        self.state().join("sim/account/account.json")
    }

    /// Live resources in the simulated account, as (kind, id), read from its file.
    pub fn live_resources(&self) -> Vec<(String, String)> {
        let path = self.account_path();
        let text = std::fs::read_to_string(&path).expect("account exists");
        let world = cis::backends::sim::load_world(&text, &path).expect("account loads");
        world.live_resources().iter().map(|r| (r.kind.name().to_string(), r.id.clone())).collect()
    }

    /// The live resources the lab graph creates: all but the instance's volumes and
    /// containment's snapshots.
    pub fn graph_resources(&self) -> Vec<(String, String)> {
        self.live_resources().into_iter().filter(|(kind, _)| kind != "ec2:volume" && kind != "ec2:snapshot").collect()
    }
}
