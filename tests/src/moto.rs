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

impl Moto {
    /// Starts moto.
    pub fn start() -> Moto {
        let address = free_address();
        let (host, port) = address.rsplit_once(':').expect("host:port");
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", host, "-p", port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto server");
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, endpoint: format!("http://{address}") }
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
