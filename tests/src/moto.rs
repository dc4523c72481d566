//! A local AWS for tests: `moto` server (PyPI `moto[server]`, installed by `scripts/test.sh` into
//! the tests' virtual environment), each test's own on a free port; and `boto3` (the official
//! AWS SDK for Python, which moto depends on) as a client nobody here wrote, to set up and check
//! what dsops did. moto answers IAM and STS on one port and does not check signatures.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::processes::free_address;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its endpoint URL.
    pub endpoint: String,
}

fn python() -> String {
    std::env::var("DSOPS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "DSOPS_TEST_PYTHON is not set: run the tests with scripts/test.sh, which installs moto"
        )
    })
}

/// Whether `address` answers `GET /moto-api/data.json` with 200, as only moto does.
fn answers_as_moto(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /moto-api/data.json HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Moto {
    /// Starts moto, and waits until it answers HTTP as moto (not merely until its port takes a
    /// connection: the server may accept before it serves, and a port picked as free may have
    /// been taken by another test's server meanwhile, in which case moto exits and another port
    /// is tried).
    pub fn start() -> Moto {
        for _ in 0..3 {
            let address = free_address();
            let (host, port) = address.rsplit_once(':').expect("host:port");
            let mut child = Command::new(python())
                .args(["-m", "moto.server", "-H", host, "-p", port])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto server");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if child.try_wait().ok().flatten().is_some() {
                    break; // it could not listen there: another port
                }
                if answers_as_moto(&address) {
                    return Moto { child, endpoint: format!("http://{address}") };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto did not start (three ports tried)")
    }

    /// Runs `code` with `iam` (a boto3 IAM client on this server) and `json` in scope, and
    /// returns what it printed.
    pub fn boto3(&self, code: &str) -> String {
        let program = format!(
            "import boto3, json\niam = boto3.client('iam', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}\n",
            self.endpoint
        );
        let output = Command::new(python()).args(["-c", &program]).output().expect("python");
        assert!(
            output.status.success(),
            "boto3: {}\n{code}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The access keys of `user`: (id, status), by creation.
    pub fn keys(&self, user: &str) -> Vec<(String, String)> {
        let printed = self.boto3(&format!(
            "keys = iam.list_access_keys(UserName='{user}')['AccessKeyMetadata']\nkeys.sort(key=lambda k: k['CreateDate'])\nprint(json.dumps([[k['AccessKeyId'], k['Status']] for k in keys]))"
        ));
        serde_json::from_str(&printed).expect("key list")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
