//! A real Kafka-protocol broker per test: tansu on a free loopback port, with memory storage (it
//! forgets everything when stopped) or, for the tests that restart it, durable storage in a
//! bucket of an S3-protocol test server (`support::s3`), where topics, records and committed
//! offsets survive a kill -9 as they do on a production broker.
//! The binary comes from `KIDJAMO_TEST_TANSU` (scripts/services/kafka.sh installs tansu and
//! sets it) or `tansu` on PATH; a missing broker fails the test, it never skips.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    storage: String,
    env: Vec<(String, String)>,
}

/// A loopback port nobody listens on now (for brokers and servers the tests start).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn tansu_binary() -> String {
    std::env::var("KIDJAMO_TEST_TANSU").unwrap_or_else(|_| "tansu".into())
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
            storage: "memory://tansu/".into(),
            env: Vec::new(),
        };
        b.launch();
        b
    }

    /// A broker that keeps its log in `s3`'s bucket (created there by `S3Server::start`).
    pub fn start_durable(s3: &super::s3::S3Server) -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
            storage: format!("s3://{}/", s3.bucket),
            env: s3.env(),
        };
        b.launch();
        b
    }

    /// `host:port` for `--from`/`--to` URLs and client settings.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, topic: &str) -> String {
        format!("kafka://{}/{topic}", self.address())
    }

    fn launch(&mut self) {
        let bin = tansu_binary();
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
                "--storage-engine",
                &self.storage,
            ])
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("a Kafka broker is required: cannot start tansu ({bin}): {e} (run scripts/test.sh, which installs it)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on port {} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the broker and starts a new one on the same port (memory storage: with nothing).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
