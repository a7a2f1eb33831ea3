//! A moto server on a free loopback port for one test, stopped when dropped, and on
//! request the project's stricter AWS in front of it (`strict_aws.py`: what moto lets
//! through and AWS refuses). Shared by the cis integration tests and the functions' tests
//! (`#[path]`-included by both).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Moto {
    child: Mutex<Child>,
    proxy: Option<Mutex<Child>>,
    /// Where moto and the proxy write their stderr (moto's request log, the proxy's
    /// tracebacks), removed on drop: read by [`Moto::diagnosis`] when a test fails.
    logs: Vec<(&'static str, PathBuf)>,
    /// What cis is pointed at: the strict proxy when there is one, else moto itself.
    pub endpoint: String,
    /// moto itself: what the test reads the account through (`sdk_config`, `post`).
    pub direct: String,
}

/// A file of the workspace, from this crate's folder or an ancestor's.
fn in_workspace(relative: &str) -> Option<PathBuf> {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(|d| d.join(relative)).find(|p| p.exists())
}

/// A fresh log file for one server's stderr, in the system's temporary folder.
fn log_file(what: &str) -> (PathBuf, std::fs::File) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("cis-{what}-{}-{n}.log", std::process::id()));
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, file)
}

/// The last `lines` lines of a file, or why it could not be read.
fn tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Whether a child still runs, or how it ended.
fn state(child: &Mutex<Child>) -> String {
    match child.lock().unwrap_or_else(|p| p.into_inner()).try_wait() {
        Ok(None) => "running".into(),
        Ok(Some(status)) => format!("exited: {status}"),
        Err(e) => format!("unknown: {e}"),
    }
}

/// The port a server started on port 0 says it listens on, in the first line of its
/// stderr that holds `marker` (`... 127.0.0.1:PORT`). The server chooses its own port:
/// a port chosen here and handed over could be taken by another test's server before this
/// one bound it, and a connection to it would then reach the other server. A readiness
/// wait, not a timing assertion: moto imports a lot before it listens.
fn port_from_log(log: &std::path::Path, marker: &str, child: &Mutex<Child>, what: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .find_map(|l| l.split_once(marker))
            .and_then(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u16>().ok());
        if let Some(port) = port {
            let listening = Instant::now() + Duration::from_secs(120);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < listening, "{what} did not listen on port {port} within 2 minutes");
                std::thread::sleep(Duration::from_millis(100));
            }
            return port;
        }
        let state = state(child);
        assert!(state == "running", "{what} {state} before it listened:\n{}", tail(log, 30));
        assert!(Instant::now() < deadline, "{what} did not say its port within 2 minutes:\n{}", tail(log, 30));
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
        let (log, stderr) = log_file("moto");
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            // AWS managed policies exist, so attaching AmazonSSMManagedInstanceCore works.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("moto_server starts");
        let child = Mutex::new(child);
        let port = port_from_log(&log, "Running on http://127.0.0.1:", &child, "moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        Moto { child, proxy: None, endpoint: endpoint.clone(), direct: endpoint, logs: vec![("moto", log)] }
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
        let (log, stderr) = log_file("strict-aws");
        let proxy = Command::new(python)
            .arg(script)
            .args(["--port", "0", "--moto", &moto.direct, "--seed", &seed.to_string()])
            .args(["--throttle-rate", &throttle_rate.to_string()])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the strict proxy starts");
        let proxy = Mutex::new(proxy);
        let port = port_from_log(&log, "strict AWS on 127.0.0.1:", &proxy, "the strict proxy");
        moto.proxy = Some(proxy);
        moto.logs.push(("strict proxy", log));
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
        sdk_config_at(&self.direct).await
    }

    /// [`Moto::sdk_config`] through the strict proxy: what cis meets, for a test that
    /// calls the backend's parts itself.
    #[allow(dead_code)]
    pub async fn strict_sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_at(&self.endpoint).await
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

impl Moto {
    /// For a failing test's message: whether moto (and the proxy) still run, and the end
    /// of what each wrote to stderr.
    #[allow(dead_code)]
    pub fn diagnosis(&self) -> String {
        let mut out = format!("moto at {}: {}", self.direct, state(&self.child));
        if let Some(proxy) = &self.proxy {
            out += &format!("; strict proxy at {}: {}", self.endpoint, state(proxy));
        }
        for (what, path) in &self.logs {
            out += &format!("\n--- the end of {what}'s stderr ({}):\n{}", path.display(), tail(path, 30));
        }
        out
    }
}

/// SDK configuration for an endpoint on loopback, with moto's dummy credentials.
#[allow(dead_code)] // not every test binary talks to moto through the SDK
async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    cis::backends::aws::sdk_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

impl Drop for Moto {
    fn drop(&mut self) {
        for child in self.proxy.iter_mut().chain(std::iter::once(&mut self.child)) {
            let child = child.get_mut().unwrap_or_else(|p| p.into_inner());
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test's logs stay for a look; a passing one's go.
        if !std::thread::panicking() {
            for (_, path) in &self.logs {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
