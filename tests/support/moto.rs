//! A moto server on a free loopback port for one test, stopped when dropped. Shared by
//! the cis integration tests and the functions' tests (`#[path]`-included by both).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("CIS_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    // The workspace's .venv/ci, from this crate's folder or an ancestor's.
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join(".venv/ci/bin/moto_server"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("moto_server is missing from .venv/ci: run .ci/run once (it installs moto[server] there), or set CIS_MOTO_SERVER")
        })
}

impl Moto {
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            // AWS managed policies exist, so attaching AmazonSSMManagedInstanceCore works.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        // A readiness wait, not a timing assertion: moto imports a lot before it listens.
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within 2 minutes");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// SDK configuration for this server, with moto's dummy credentials.
    #[allow(dead_code)] // each including test binary uses its own part
    #[allow(dead_code)] // not every test binary talks to moto through the SDK
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
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
        let addr = self.endpoint.trim_start_matches("http://");
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
