//! A minimal Lambda Runtime API on loopback, enough to run one function process at a time the
//! way Lambda's init and first invoke do, with the instants the cold-start harness measures.
//!
//! Plain threads and blocking sockets rather than an async server: the emulator's own latency
//! is part of every measurement, and it must not compete with the child for a runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the function process did, in the order it did it.
#[derive(Debug)]
pub enum Mark {
    /// Its first `GET /runtime/invocation/next`: init is over. `cpu_ns` is the process's CPU time
    /// at that moment (every thread's, from `/proc/<pid>/task/*/schedstat`), if readable.
    FirstNext { at: Instant, cpu_ns: Option<u64> },
    /// `POST /runtime/invocation/<id>/response` with its body.
    Response { at: Instant, body: Vec<u8> },
    /// `POST /runtime/invocation/<id>/error` with its body.
    InvocationError { at: Instant, body: Vec<u8> },
    /// `POST /runtime/init/error` with its body.
    InitError { at: Instant, body: Vec<u8> },
    /// The next `GET /next` after the first invocation was answered: the process is idle.
    IdleNext { at: Instant },
}

#[derive(Default)]
struct Invocation {
    pid: Option<u32>,
    event: Vec<u8>,
    request_id: String,
    served: bool,
    marks: Option<Sender<Mark>>,
}

#[derive(Default)]
struct Shared {
    current: Mutex<Invocation>,
    pid_set: Condvar,
}

/// The emulator: a listener on 127.0.0.1 and a thread per connection.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    sequence: u64,
}

impl Emulator {
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = accept_shared.clone();
                std::thread::spawn(move || serve_connection(stream, &shared));
            }
        });
        Ok(Self { addr, shared, sequence: 0 })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// Prepares the next process's single invocation: `event` is what its first `GET /next`
    /// receives. Call [`Emulator::started`] with the process id once it is spawned.
    pub fn arm(&mut self, event: Vec<u8>) -> Receiver<Mark> {
        self.sequence += 1;
        let (sender, receiver) = channel();
        *self.shared.current.lock().unwrap() = Invocation {
            pid: None,
            event,
            request_id: format!("00000000-0000-4000-8000-{:012}", self.sequence),
            served: false,
            marks: Some(sender),
        };
        receiver
    }

    /// The armed invocation's process id (its CPU time is read when it first asks for work).
    pub fn started(&self, pid: u32) {
        self.shared.current.lock().unwrap().pid = Some(pid);
        self.shared.pid_set.notify_all();
    }
}

/// The CPU time of every live thread of `pid`, in nanoseconds.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse().ok()?;
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Request { method, path, body })
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    stream.set_nodelay(true).ok();
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let at = Instant::now();
        let path = request.path.trim_start_matches("/2018-06-01/runtime");
        let accepted = || r#"{"status":"OK"}"#.as_bytes();
        if request.method == "GET" && path == "/invocation/next" {
            let mut current = shared.current.lock().unwrap();
            if current.served {
                if let Some(marks) = &current.marks {
                    marks.send(Mark::IdleNext { at }).ok();
                }
                // Never answered: the harness ends the process, which closes the connection.
                drop(current);
                let mut sink = Vec::new();
                reader.read_to_end(&mut sink).ok();
                return;
            }
            while current.pid.is_none() {
                current = shared.pid_set.wait_timeout(current, Duration::from_secs(5)).unwrap().0;
            }
            let cpu_ns = current.pid.and_then(process_cpu_ns);
            current.served = true;
            if let Some(marks) = &current.marks {
                marks.send(Mark::FirstNext { at, cpu_ns }).ok();
            }
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(30);
            let headers = [
                ("content-type", "application/json".to_string()),
                ("lambda-runtime-aws-request-id", current.request_id.clone()),
                ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:eu-central-1:123456789012:function:bench".to_string(),
                ),
                ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".to_string()),
            ];
            let event = current.event.clone();
            drop(current);
            if respond(&mut writer, "200 OK", &headers, &event).is_err() {
                return;
            }
            continue;
        }
        let mark = if request.method == "POST" && path == "/init/error" {
            Some(Mark::InitError { at, body: request.body })
        } else if request.method == "POST" && path.ends_with("/response") {
            Some(Mark::Response { at, body: request.body })
        } else if request.method == "POST" && path.ends_with("/error") {
            Some(Mark::InvocationError { at, body: request.body })
        } else {
            None
        };
        let Some(mark) = mark else {
            if respond(&mut writer, "404 Not Found", &[], b"{}").is_err() {
                return;
            }
            continue;
        };
        if respond(&mut writer, "202 Accepted", &[("content-type", "application/json".to_string())], accepted())
            .is_err()
        {
            return;
        }
        if let Some(marks) = &shared.current.lock().unwrap().marks {
            marks.send(mark).ok();
        }
    }
}
