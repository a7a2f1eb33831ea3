//! A moto server on a free loopback port for one test, stopped when dropped, and on
//! request the project's stricter AWS in front of it (`strict_aws.py`: what moto lets
//! through and AWS refuses). Shared by the cis integration tests and the functions' tests
//! (`#[path]`-included by both).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    proxy: Option<Child>,
    /// What cis is pointed at: the strict proxy when there is one, else moto itself.
    pub endpoint: String,
    /// moto itself: what the test reads the account through (`sdk_config`, `post`).
    pub direct: String,
}

/// A file of the workspace, from this crate's folder or an ancestor's.
fn in_workspace(relative: &str) -> Option<PathBuf> {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(|d| d.join(relative)).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A readiness wait, not a timing assertion: moto imports a lot before it listens.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within 2 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("CIS_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    in_workspace(".venv/ci/bin/moto_server").unwrap_or_else(|| {
        panic!("moto_server is missing from .venv/ci: run .ci/run once (it installs moto[server] there), or set CIS_MOTO_SERVER")
    })
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            // AWS managed policies exist, so attaching AmazonSSMManagedInstanceCore works.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, proxy: None, endpoint: endpoint.clone(), direct: endpoint };
        wait_listening(port, "moto_server");
        moto
    }

    /// moto behind the strict proxy: cis (through `endpoint` and `env`) meets AWS's
    /// documented behaviour where moto is lenient; the test still reads moto directly.
    /// `seed` chooses where the throttling bursts fall.
    #[allow(dead_code)]
    pub fn strict(seed: u64) -> Moto {
        Moto::strict_with(seed, 0.01)
    }

    /// [`Moto::strict`] with the chance that a request starts a burst of throttling.
    #[allow(dead_code)]
    pub fn strict_with(seed: u64, throttle_rate: f64) -> Moto {
        let mut moto = Moto::start();
        let script = in_workspace("tests/support/strict_aws.py").expect("tests/support/strict_aws.py in the workspace");
        let python = moto_server().with_file_name("python3");
        let port = free_port();
        let proxy = Command::new(python)
            .arg(script)
            .args(["--port", &port.to_string(), "--moto", &moto.direct, "--seed", &seed.to_string()])
            .args(["--throttle-rate", &throttle_rate.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the strict proxy starts");
        moto.proxy = Some(proxy);
        wait_listening(port, "the strict proxy");
        moto.endpoint = format!("http://127.0.0.1:{port}");
        moto
    }

    /// What the strict proxy did, by rule (`requests`, `duplicate_tags_refused`,
    /// `not_found_after_create`, `role_not_assumable`, `function_pending_refused`,
    /// `function_pending_polls`, `throttled`, `throttle_bursts`).
    #[allow(dead_code)]
    pub fn strict_stats(&self) -> std::collections::BTreeMap<String, u64> {
        use std::io::{Read, Write};
        assert!(self.proxy.is_some(), "strict_stats needs Moto::strict");
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET /strict-aws/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("strict proxy stats {body:?}: {e}"))
    }

    /// SDK configuration for this server, with moto's dummy credentials.
    #[allow(dead_code)] // each including test binary uses its own part
    #[allow(dead_code)] // not every test binary talks to moto through the SDK
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        cis::backends::aws::sdk_loader()
            .endpoint_url(&self.direct)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }

    /// POSTs a JSON body to one of moto's own APIs (`/moto-api/...`): its configuration,
    /// the answers its SageMaker runtime gives. Panics unless moto answers 2xx.
    #[allow(dead_code)]
    pub fn post(&self, path: &str, body: &str) {
        use std::io::{Read, Write};
        let addr = self.direct.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let status = answer.split_whitespace().nth(1).unwrap_or_default();
        assert!(status.starts_with('2'), "moto {path}: {answer}");
    }

    /// The environment that points a child process's SDK at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(proxy) = &mut self.proxy {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
