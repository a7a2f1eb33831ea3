//! The Lambda Runtime API on loopback, as the Lambda service offers it to a `bootstrap`
//! (docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): it hands out the given
//! events one by one on `GET /2018-06-01/runtime/invocation/next` and collects what the
//! function posts back; after the last event, `next` never answers (the function waits,
//! as it would for the next invocation).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// What the function posted for one invocation.
#[derive(Debug)]
pub struct Answer {
    pub request_id: String,
    /// `response` or `error`.
    pub kind: String,
    pub body: serde_json::Value,
}

pub struct RuntimeApi {
    pub address: String,
    pub answers: Receiver<Answer>,
}

impl RuntimeApi {
    /// Waits for `n` answers from the function, then stops it; on a missing answer, fails
    /// with what the function printed.
    pub fn collect(&self, n: usize, mut function: std::process::Child) -> Vec<Answer> {
        let mut answers = Vec::new();
        while answers.len() < n {
            // A readiness bound, not a timing assertion: a cold debug binary on a busy
            // machine may take a while.
            match self.answers.recv_timeout(std::time::Duration::from_secs(300)) {
                Ok(a) => answers.push(a),
                Err(e) => {
                    let _ = function.kill();
                    let out = function.wait_with_output().unwrap();
                    panic!("no answer from the function ({e}): {answers:?}\n{}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
        let _ = function.kill();
        let _ = function.wait();
        answers
    }

    pub fn serve(events: Vec<serde_json::Value>) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, rx) = channel();
        let queue = Arc::new(Mutex::new(events.into_iter().enumerate().collect::<std::collections::VecDeque<_>>()));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (queue, tx) = (Arc::clone(&queue), tx.clone());
                std::thread::spawn(move || connection(stream, &queue, &tx));
            }
        });
        RuntimeApi { address, answers: rx }
    }
}

type Queue = Mutex<std::collections::VecDeque<(usize, serde_json::Value)>>;

fn connection(stream: TcpStream, queue: &Queue, answers: &Sender<Answer>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
        if path.ends_with("/invocation/next") {
            let next = queue.lock().unwrap().pop_front();
            let Some((n, event)) = next else {
                // No more invocations: keep the function waiting.
                std::thread::park();
                return;
            };
            let body = event.to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{n}\r\nLambda-Runtime-Deadline-Ms: {}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:cis-lab-containment-function\r\nLambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\n\r\n{body}",
                // The deadline is wall time in milliseconds: an hour from the epoch's view of now.
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 3_600_000,
                body.len()
            );
            writer.write_all(response.as_bytes()).unwrap();
        } else if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
            let (request_id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let body = serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
            let _ = answers.send(Answer { request_id: request_id.into(), kind: kind.into(), body });
            writer.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        } else {
            // Initialisation errors and anything else.
            let _ = answers.send(Answer {
                request_id: String::new(),
                kind: path.clone(),
                body: serde_json::Value::String(String::from_utf8_lossy(&body).into()),
            });
            writer.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        }
    }
}
