//! `voronka serve` as a child process on a free loopback port, for the end-to-end and browser
//! tests: the real binary, real HTTP, data in a folder that survives a kill.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BINARY: &str = env!("CARGO_BIN_EXE_voronka");

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        // A free port can be taken by another test's server between the probe and the bind; a
        // connection to that one would pass for ours. So wait for this child's own "is listening"
        // line, printed only after its bind succeeded, and try another port if it exits first.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new(BINARY)
                .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
                .arg(data_dir)
                .env_remove("PUBLIC_BASE_URL")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("voronka serve starts");
            let stdout = child.stdout.take().expect("stdout is piped");
            let (listening, said) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                let mut told = false;
                // Keeps reading to the end, so the child never blocks on a full pipe.
                for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                    if !told && line.contains("is listening on") {
                        told = true;
                        let _ = listening.send(true);
                    }
                }
                let _ = listening.send(false);
            });
            match said.recv_timeout(Duration::from_secs(30)) {
                Ok(true) => return Server { child, base: format!("http://127.0.0.1:{port}") },
                Ok(false) => {
                    let _ = child.wait();
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("voronka serve did not listen within 30 s");
                }
            }
        }
        panic!("voronka serve could not listen on a free port in 5 tries");
    }

    /// Ends the server the hard way: what was acknowledged must already be on disk.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh folder for one test's data.
pub fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voronka-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
