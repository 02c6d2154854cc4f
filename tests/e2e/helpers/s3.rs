//! A private S3-compatible server per test: `s3s-fs` (it checks SigV4 signatures) on a free
//! port, keeping its objects in a temporary directory, with a bucket made for the test.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every test store lives in.
pub const BUCKET: &str = "imageapi";
const ACCESS_KEY: &str = "imageapi-test-key";
const SECRET_KEY: &str = "imageapi-test-secret-0123456789";

pub struct S3Server {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// s3s-fs's root: one folder per bucket, one file per object.
    objects_root: PathBuf,
    binary: PathBuf,
}

/// `s3s-fs` from PATH or cargo's bin folder (`.ci/run` installs it there).
fn s3s_binary() -> Option<PathBuf> {
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin").join("s3s-fs"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"));
    on_path.chain(in_cargo_home).find(|p| p.is_file())
}

impl S3Server {
    /// A fresh server, or `None` (said on stderr; a failure with `IMAGEAPI_REQUIRE_S3`) where
    /// `s3s-fs` is not installed.
    pub fn start() -> Option<Self> {
        Self::start_storing_in(None)
    }

    /// Keeps the objects under `root` (a small filesystem, say) instead of a temporary folder.
    pub fn start_storing_in(root: Option<PathBuf>) -> Option<Self> {
        let Some(binary) = s3s_binary() else {
            imageapi_shared::testing::unavailable(
                "IMAGEAPI_REQUIRE_S3",
                "this test needs s3s-fs: cargo install s3s-fs --version 0.14.1 --features binary --locked",
            );
            return None;
        };
        let dir = tempfile::Builder::new().prefix("imageapi-s3-").tempdir().expect("temp dir for s3s-fs");
        let objects_root = root.unwrap_or_else(|| dir.path().join("objects"));
        std::fs::create_dir_all(objects_root.join(BUCKET)).expect("create the bucket");
        let mut s3 = Self { port: super::free_port(), child: None, dir, objects_root, binary };
        s3.start_again();
        Some(s3)
    }

    /// Environment for a server or worker to use this S3 under `prefix` in the bucket.
    pub fn env(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("IMAGEAPI_BLOB_URL", format!("s3://{BUCKET}/{prefix}")),
            ("IMAGEAPI_S3_ENDPOINT", self.endpoint()),
            ("IMAGEAPI_S3_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            // Short retries keep "S3 is down" tests quick.
            ("IMAGEAPI_S3_RETRY_SECS", "1".into()),
        ]
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where s3s-fs keeps the objects under `prefix` of the bucket (to check what is stored).
    pub fn objects(&self, prefix: &str) -> PathBuf {
        self.objects_root.join(BUCKET).join(prefix)
    }

    /// Starts it again on the same port and directory after [`Self::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "s3s-fs is already running");
        let log = std::fs::File::create(self.dir.path().join("s3s.log")).expect("s3s log");
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.objects_root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on port {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it at once (SIGKILL); the objects stay on disk.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
