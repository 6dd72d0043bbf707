//! Process plumbing shared by the test servers: free ports, the unprivileged
//! user servers run as, binary lookup, helper commands, and [`ServerProcess`],
//! which owns a server's child process and temp dir and tears both down on drop.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};

use super::{Result, TestkitError};

/// How long a server may take to accept connections.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a start is retried on a fresh port after losing a port race.
pub(crate) const PORT_ATTEMPTS: u32 = 5;
/// How long a server may take to stop after the polite signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Directories searched for binaries in addition to `$PATH`.
const EXTRA_BIN_DIRS: [&str; 5] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
];

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process may grab it;
/// server starts therefore retry on "address already in use".
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("bind 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("read the bound address"))?
        .port();
    Ok(port)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_is_listening(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A random alphanumeric password (no quoting needed anywhere).
pub fn random_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// Wraps an `io::Error` with what was being done.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> TestkitError {
    let context = context.into();
    move |error| TestkitError::Io { context, error }
}

/// The account server processes run as: `nobody:nogroup` when we are root,
/// otherwise the current user (no switching).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    ids: Option<(u32, u32)>,
}

impl RunAs {
    /// Picks the account for server processes.
    pub(crate) fn detect() -> Result<Self> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Self { ids: None });
        }
        let (uid, user_gid) = lookup_user("nobody")?;
        let gid = lookup_group("nogroup").unwrap_or(user_gid);
        Ok(Self {
            ids: Some((uid, gid)),
        })
    }

    /// Whether processes switch to another account.
    pub(crate) fn switches_user(self) -> bool {
        self.ids.is_some()
    }

    /// Makes `path` owned by the server account.
    pub(crate) fn chown(self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io_err(format!("chown {}", path.display())))?;
        }
        Ok(())
    }

    /// Makes `cmd` run as the server account. When uid is set, std drops the
    /// supplementary groups (setgroups(0)) and calls setgid before setuid.
    fn apply(self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.ids {
            cmd.gid(gid).uid(uid);
        }
    }
}

fn lookup_user(name: &str) -> Result<(u32, u32)> {
    let cname = CString::new(name).map_err(|e| TestkitError::NoUnprivilegedUser(e.to_string()))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid passwd (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(TestkitError::NoUnprivilegedUser(format!(
            "getpwnam({name}) found no such user"
        )));
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

fn lookup_group(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid group (null pointers, zero id).
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(grp.gr_gid)
}

/// `$PATH` followed by the usual sbin/bin directories.
pub(crate) fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in EXTRA_BIN_DIRS {
        let extra = PathBuf::from(extra);
        if !dirs.contains(&extra) {
            dirs.push(extra);
        }
    }
    dirs
}

/// Whether `path` is an executable regular file.
pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the first of `names` in `dirs`, or explains which package to install.
pub(crate) fn find_binary(
    names: &[&str],
    dirs: &[PathBuf],
    package: &'static str,
) -> Result<PathBuf> {
    for name in names {
        for dir in dirs {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let searched = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    Err(TestkitError::MissingBinary {
        binary: names.join("` or `"),
        searched,
        package,
    })
}

/// A command with a minimal, predictable environment, run from `dir`.
/// With `run_as`, it runs as the server account.
pub(crate) fn command(program: &Path, dir: &Path, run_as: Option<RunAs>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", dir)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .current_dir(dir)
        .stdin(Stdio::null());
    if let Some(run_as) = run_as {
        run_as.apply(&mut cmd);
    }
    cmd
}

/// Runs `cmd` to completion; a non-zero exit becomes [`TestkitError::CommandFailed`]
/// with the last lines of its stdout and stderr.
/// `label` names the command in errors (it must not contain secrets).
pub(crate) fn run(cmd: &mut Command, label: &str) -> Result<Output> {
    let output = cmd.output().map_err(io_err(format!("run `{label}`")))?;
    check_output(output, label)
}

/// Like [`run`], feeding `input` to the command's stdin (from a separate
/// thread, so large inputs and outputs cannot deadlock).
pub(crate) fn run_with_input(cmd: &mut Command, label: &str, input: &[u8]) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!("run `{label}`")))?;
    let stdin = child.stdin.take();
    let output = std::thread::scope(|scope| {
        if let Some(mut stdin) = stdin {
            // A write error means the command exited early; its status tells why.
            scope.spawn(move || stdin.write_all(input));
        }
        child.wait_with_output()
    })
    .map_err(io_err(format!("wait for `{label}`")))?;
    check_output(output, label)
}

/// A non-zero exit becomes [`TestkitError::CommandFailed`].
fn check_output(output: Output, label: &str) -> Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    const MAX_LINES: usize = 40;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(TestkitError::CommandFailed {
        command: label.to_owned(),
        status: output.status.to_string(),
        output: lines[lines.len().saturating_sub(MAX_LINES)..].join("\n"),
    })
}

/// The stdout of a successful command, without trailing newlines.
pub(crate) fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .trim_end_matches(['\n', '\r'])
        .to_owned()
}

/// The last lines of a log file (or why it could not be read).
pub(crate) fn log_tail(path: &Path) -> String {
    const MAX_BYTES: u64 = 8 * 1024;
    const MAX_LINES: usize = 40;
    let read = || -> io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(MAX_LINES)..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// A temp dir under a base that the server account can traverse, with a
/// short path (unix socket paths are limited to ~107 bytes).
fn base_dir(run_as: RunAs) -> PathBuf {
    let tmp = std::env::temp_dir();
    let short = tmp.as_os_str().len() <= 60;
    let traversable = !run_as.switches_user()
        || tmp
            .ancestors()
            .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if short && traversable {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// What [`ServerProcess::wait_ready`] observed.
pub(crate) enum Readiness {
    /// The server accepts connections.
    Ready,
    /// The server exited because its port was taken; retry on another.
    PortTaken,
}

/// Owns a server's temp dir and (once spawned) its process. Dropping it
/// stops the process (polite signal, then SIGKILL) and deletes the dir.
pub(crate) struct ServerProcess {
    name: &'static str,
    stop_signal: libc::c_int,
    run_as: RunAs,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("name", &self.name)
            .field("dir", &self.dir.path())
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl ServerProcess {
    /// Creates the temp dir (mode 0700, owned by the server account).
    /// `stop_signal` is sent on drop before resorting to SIGKILL.
    pub(crate) fn new(name: &'static str, prefix: &str, stop_signal: libc::c_int) -> Result<Self> {
        let run_as = RunAs::detect()?;
        let base = base_dir(run_as);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&base)
            .map_err(io_err(format!("create a temp dir in {}", base.display())))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod {}", dir.path().display())))?;
        run_as.chown(dir.path())?;
        Ok(Self {
            name,
            stop_signal,
            run_as,
            dir,
            child: None,
        })
    }

    /// The temp dir holding everything of this server.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a sub-directory owned by the server account.
    pub(crate) fn make_dir(&self, name: &str, mode: u32) -> Result<PathBuf> {
        let path = self.dir().join(name);
        fs::create_dir(&path).map_err(io_err(format!("mkdir {}", path.display())))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        self.run_as.chown(&path)?;
        Ok(path)
    }

    /// Writes a file owned by the server account with the given mode.
    pub(crate) fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        fs::write(path, contents).map_err(io_err(format!("write {}", path.display())))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        self.run_as.chown(path)
    }

    /// A command (see [`command`]) run from the temp dir as the server account.
    pub(crate) fn server_command(&self, program: &Path) -> Command {
        command(program, self.dir(), Some(self.run_as))
    }

    /// A client command run from the temp dir as the current user.
    pub(crate) fn client_command(&self, program: &Path) -> Command {
        command(program, self.dir(), None)
    }

    /// Spawns the server process, replacing a previous (exited) one.
    pub(crate) fn spawn(&mut self, cmd: &mut Command) -> Result<()> {
        self.stop();
        let child = cmd
            .spawn()
            .map_err(io_err(format!("spawn {}", self.name)))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until TCP `port` accepts connections and `probe` succeeds.
    /// If the server exits because its port was taken, returns
    /// [`Readiness::PortTaken`]; other exits and timeouts are errors that
    /// carry the tail of `log`.
    pub(crate) fn wait_ready(
        &mut self,
        port: u16,
        log: &Path,
        mut probe: impl FnMut() -> bool,
    ) -> Result<Readiness> {
        let started = Instant::now();
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child
                    .try_wait()
                    .map_err(io_err(format!("wait for {}", self.name)))?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let log_tail = log_tail(log);
                if log_tail.contains("Address already in use") {
                    return Ok(Readiness::PortTaken);
                }
                return Err(TestkitError::ServerExited {
                    server: self.name,
                    status: status.to_string(),
                    log_tail,
                });
            }
            if port_is_listening(port) && probe() {
                return Ok(Readiness::Ready);
            }
            if started.elapsed() > START_TIMEOUT {
                self.stop();
                return Err(TestkitError::StartTimeout {
                    server: self.name,
                    seconds: START_TIMEOUT.as_secs(),
                    log_tail: log_tail(log),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the server: the polite signal, then SIGKILL after a timeout.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            signal(&child, self.stop_signal);
            if !matches!(wait_timeout(&mut child, STOP_TIMEOUT), Ok(Some(_))) {
                tracing::warn!(
                    server = self.name,
                    "server did not stop in time; killing it"
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
        if let Err(e) = fs::remove_dir_all(self.dir.path()) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!(
                    "testkit: could not remove {}: {e}",
                    self.dir.path().display()
                );
            }
        }
    }
}

/// Sends `sig` to a child that has not been reaped (so its pid is still ours).
fn signal(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; the pid belongs to our
    // unreaped child, so it cannot have been reused.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits up to `timeout` for `child` to exit.
fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_package() {
        let dirs = [PathBuf::from("/nonexistent-airlock-dir")];
        let err = find_binary(&["no-such-db"], &dirs, "some-package").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`no-such-db` not found"), "{text}");
        assert!(text.contains("apt-get install -y some-package"), "{text}");
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn failed_commands_report_their_output() {
        let mut cmd = command(Path::new("/bin/sh"), Path::new("/"), None);
        cmd.args(["-c", "echo out; echo oops >&2; exit 3"]);
        let text = run(&mut cmd, "sh").unwrap_err().to_string();
        assert!(
            text.contains("oops") && text.contains("out") && text.contains('3'),
            "{text}"
        );
        let mut cat = command(Path::new("/bin/cat"), Path::new("/"), None);
        let big = vec![b'x'; 1 << 20];
        let output = run_with_input(&mut cat, "cat", &big).unwrap();
        assert_eq!(output.stdout.len(), big.len());
    }
}
