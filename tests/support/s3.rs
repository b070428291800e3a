//! An S3-protocol server per test: moto's server mode (`python3 -m moto.server`, from PyPI) on a
//! free loopback port, with one bucket. It speaks the S3 REST API over HTTP, so kidjamo talks to
//! it exactly as to AWS S3 (object_store's S3 client, signed requests), keeping objects in
//! memory. The interpreter comes from `KIDJAMO_TEST_MOTO_PYTHON` (scripts/services/s3.sh
//! installs moto and sets it); a missing server fails the test, it never skips.

use super::kafka::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    child: Child,
    pub port: u16,
    pub bucket: String,
}

impl S3Server {
    pub fn start(bucket: &str) -> S3Server {
        let python = std::env::var("KIDJAMO_TEST_MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = free_port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("an S3 server is required: cannot start moto ({python}): {e} (run scripts/test.sh, which installs it)"));
        let server = S3Server {
            child,
            port,
            bucket: bucket.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(status) = server.request("PUT", &format!("/{bucket}")) {
                assert!(status == 200, "creating bucket {bucket}: HTTP {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within 30 s (is `moto[server]` installed for {python}?)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// A bare HTTP/1.1 request (moto does not check signatures); returns the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer:?}")))
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The standard AWS variables that point a client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "kidjamo-test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "kidjamo-test-secret".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The same settings as `object_store` options (what kidjamo derives from the variables).
    pub fn options(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
