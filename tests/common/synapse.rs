//! A real Synapse on a free port, with appservice registrations ([`Slot`]s) for the
//! Foyers the tests start.

use std::{
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    foyer::{WEBCHAT_ORIGIN, WEBCHAT_SECRET, WEBHOOK_SECRET},
    foyer_bin, free_port, http_status, random_token, read_tail, repo_root,
};

/// Registrations loaded by the shared Synapse; each test that runs Foyer uses one.
const SLOTS: usize = 192;
pub const SERVER_NAME: &str = "localhost";

/// One appservice registration loaded by Synapse: everything a Foyer needs to be it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub index: usize,
    pub id: String,
    pub port: u16,
    pub as_token: String,
    pub hs_token: String,
    pub api_token: String,
    pub sender_localpart: String,
    pub alias_prefix: String,
    /// `webchat.puppet_prefix`: every slot's registration holds its web fans' namespace.
    pub puppet_prefix: String,
    pub homeserver_url: String,
}

impl Slot {
    pub fn bot_user_id(&self) -> String {
        format!("@{}:{SERVER_NAME}", self.sender_localpart)
    }

    /// The alias of the room of reservation `id`: `#<alias_prefix><id>:<server>`.
    pub fn alias(&self, id: &str) -> String {
        format!("#{}{id}:{SERVER_NAME}", self.alias_prefix)
    }

    /// The Foyer config for this slot, as YAML.
    pub fn config_yaml(&self) -> String {
        format!(
            "homeserver:
  url: {hs}
  server_name: {SERVER_NAME}
  startup_timeout: 30s
appservice:
  id: {id}
  listen: 127.0.0.1:{port}
  url: http://127.0.0.1:{port}
  as_token: {as_token}
  hs_token: {hs_token}
  sender_localpart: {sender}
  alias_prefix: {prefix}
database:
  url: sqlite://foyer.db
webhooks:
  secrets: [\"{WEBHOOK_SECRET}\"]
api:
  token: {api}
webchat:
  token_secrets: [\"{WEBCHAT_SECRET}\"]
  allowed_origins: [\"{WEBCHAT_ORIGIN}\"]
  puppet_prefix: {puppet}
",
            hs = self.homeserver_url,
            id = self.id,
            port = self.port,
            as_token = self.as_token,
            hs_token = self.hs_token,
            sender = self.sender_localpart,
            prefix = self.alias_prefix,
            api = self.api_token,
            puppet = self.puppet_prefix,
        )
    }
}

pub struct Synapse {
    pub url: String,
    port: u16,
    python: PathBuf,
    pub(super) shared_secret: String,
    dir: tempfile::TempDir,
    slots: Vec<Slot>,
    next_slot: AtomicUsize,
    process: Mutex<Option<SynapseProcess>>,
}

/// Synapse runs under a small shell that stops it when our end of its stdin closes,
/// which happens when the test process exits however it exits.
struct SynapseProcess {
    child: Child,
    stdin: ChildStdin,
}

impl SynapseProcess {
    /// Starts Synapse with `<dir>/homeserver.yaml` and waits until it answers.
    fn spawn(python: &Path, dir: &Path, port: u16) -> SynapseProcess {
        let log_path = dir.join("synapse.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("synapse log");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("\"$0\" -m synapse.app.homeserver -c \"$1\" & pid=$!; cat >/dev/null; kill $pid; wait $pid")
            .arg(python)
            .arg(dir.join("homeserver.yaml"))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start synapse");
        let stdin = child.stdin.take().expect("synapse stdin");
        let started = Instant::now();
        while http_status(port, "/_matrix/client/versions") != Some(200) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("synapse exited with {status}; log:\n{}", read_tail(&log_path));
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "synapse did not start in 120 s; log:\n{}",
                read_tail(&log_path)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        SynapseProcess { child, stdin }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Synapse> = OnceLock::new();
static USER_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Synapse {
    /// The Synapse shared by every test in this binary, started on first use.
    pub fn shared() -> &'static Synapse {
        SHARED.get_or_init(Synapse::start)
    }

    fn start() -> Synapse {
        Self::launch(SLOTS, Limits::Raised)
    }

    fn launch(slot_count: usize, limits: Limits) -> Synapse {
        let python = ensure_synapse_installed();
        let dir = tempfile::Builder::new().prefix("foyer-synapse-").tempdir().expect("tempdir");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let run_id: u32 = rand::random::<u32>() % 100_000;
        let slots: Vec<Slot> = (0..slot_count)
            .map(|index| Slot {
                index,
                id: format!("foyer{index}"),
                port: free_port(),
                as_token: random_token(),
                hs_token: random_token(),
                api_token: random_token(),
                sender_localpart: format!("foyer{index}"),
                alias_prefix: format!("live{index}_"),
                puppet_prefix: format!("web{index}_"),
                homeserver_url: url.clone(),
            })
            .collect();
        let mut registration_files = Vec::new();
        for slot in &slots {
            let config = dir.path().join(format!("foyer{}.yaml", slot.index));
            std::fs::write(&config, slot.config_yaml()).expect("write slot config");
            let registration = dir.path().join(format!("registration{}.yaml", slot.index));
            let out = Command::new(foyer_bin())
                .args(["generate-registration", "-c"])
                .arg(&config)
                .arg("-o")
                .arg(&registration)
                .output()
                .expect("run foyer generate-registration");
            assert!(out.status.success(), "generate-registration: {}", String::from_utf8_lossy(&out.stderr));
            registration_files.push(registration);
        }
        let shared_secret = random_token();
        let config = homeserver_yaml(dir.path(), port, &shared_secret, &registration_files, limits);
        let config_path = dir.path().join("homeserver.yaml");
        std::fs::write(&config_path, config).expect("write homeserver.yaml");
        write_signing_key(&dir.path().join("signing.key"));
        let process = SynapseProcess::spawn(&python, dir.path(), port);
        eprintln!("[harness] synapse {run_id} up on {url} ({})", dir.path().display());
        Synapse {
            url,
            port,
            python,
            shared_secret,
            dir,
            slots,
            next_slot: AtomicUsize::new(0),
            process: Mutex::new(Some(process)),
        }
    }

    /// A Synapse of the test's own, for tests that stop and start it.
    pub fn dedicated(slots: usize) -> Synapse {
        Self::launch(slots, Limits::Raised)
    }

    /// A Synapse of the test's own with Synapse's default rate limits, except on
    /// registering and logging in (which only make the test's users): for measuring what
    /// the default limits do to a room, as a stock homeserver has them.
    pub fn dedicated_with_default_limits(slots: usize) -> Synapse {
        Self::launch(slots, Limits::DefaultButLogins)
    }

    /// Stops Synapse (SIGTERM) and waits until it has exited.
    pub fn stop(&self) {
        let process = self.process.lock().expect("synapse lock").take();
        if let Some(mut process) = process {
            drop(process.stdin);
            let _ = process.child.wait();
        }
    }

    /// Starts a stopped Synapse again on the same port, config and database.
    pub fn start_again(&self) {
        let mut process = self.process.lock().expect("synapse lock");
        assert!(process.is_none(), "synapse is running");
        *process = Some(SynapseProcess::spawn(&self.python, self.dir.path(), self.port));
    }

    /// A registration no other test uses.
    pub fn take_slot(&self) -> Slot {
        let i = self.next_slot.fetch_add(1, Ordering::SeqCst);
        self.slots.get(i).cloned().unwrap_or_else(|| panic!("all {SLOTS} appservice slots are used; raise SLOTS"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("synapse.log")
    }

    /// The Synapse Python process (a child of the `sh` that the harness starts), for
    /// benchmarks that read its CPU time.
    pub fn python_pid(&self) -> Option<u32> {
        let config = self.dir.path().join("homeserver.yaml");
        let config = config.to_string_lossy();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("synapse.app.homeserver")
                && cmdline.contains(config.as_ref())
                && !cmdline.starts_with("sh "))
            .then_some(pid)
        })
    }
}

/// Which of Synapse's rate limits a harness Synapse raises.
#[derive(Clone, Copy, PartialEq)]
enum Limits {
    /// Tests act faster than people: messages, joins, invites, logins and registering.
    Raised,
    /// Only registering and logging in; every room and message limit is Synapse's default.
    DefaultButLogins,
}

fn homeserver_yaml(dir: &Path, port: u16, shared_secret: &str, registrations: &[PathBuf], limits: Limits) -> String {
    let d = dir.display();
    let files: String = registrations.iter().map(|p| format!("  - {}\n", p.display())).collect();
    let fast = "{per_second: 1000, burst_count: 1000}";
    let logins = format!(
        "rc_registration: {fast}
rc_login:
  address: {fast}
  account: {fast}
  failed_attempts: {fast}
"
    );
    let others = match limits {
        Limits::Raised => format!(
            "rc_message: {fast}
rc_joins:
  local: {fast}
  remote: {fast}
rc_invites:
  per_room: {fast}
  per_user: {fast}
  per_issuer: {fast}
rc_admin_redaction: {fast}
rc_3pid_validation: {fast}
rc_room_creation: {fast}
"
        ),
        Limits::DefaultButLogins => String::new(),
    };
    format!(
        "server_name: {SERVER_NAME}
pid_file: {d}/homeserver.pid
public_baseurl: http://127.0.0.1:{port}/
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
media_store_path: {d}/media_store
signing_key_path: {d}/signing.key
trusted_key_servers: []
suppress_key_server_warning: true
report_stats: false
enable_registration: false
registration_shared_secret: {shared_secret}
# Test users need no strong password hashing; 4 rounds register hundreds per second.
bcrypt_rounds: 4
app_service_config_files:
{files}{logins}{others}"
    )
}

/// Synapse's signing key file: `ed25519 <version> <unpadded base64 of a 32-byte seed>`.
fn write_signing_key(path: &Path) {
    use base64::Engine as _;
    let seed: [u8; 32] = rand::random();
    let key = base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed);
    std::fs::write(path, format!("ed25519 a_test {key}\n")).expect("write signing key");
}

/// Runs the project's install script once per test binary; returns the venv's python.
fn ensure_synapse_installed() -> PathBuf {
    let python = repo_root().join("target/synapse-venv/bin/python");
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/install-synapse.sh"))
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/install-synapse.sh");
    assert!(status.success(), "scripts/install-synapse.sh failed");
    python
}
