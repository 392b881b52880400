//! systemd's notification protocol, in a few lines and without libsystemd: datagrams such as
//! `READY=1`, `STATUS=serving sentiment v3`, `RELOADING=1`, `STOPPING=1` and `WATCHDOG=1` sent
//! to the socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! Outside systemd the variable is unset and every call is a no-op.
//!
//! `RELOADING=1` carries `MONOTONIC_USEC=` (the `CLOCK_MONOTONIC` time it was sent), as
//! `Type=notify-reload` units (systemd 253 and later) require: systemd accepts a reload as
//! started only with a timestamp no older than its own `SIGHUP`. Older systemd ignores it.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Sends notifications to systemd; cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

struct Target {
    socket: UnixDatagram,
    address: PathBuf,
    /// `WATCHDOG_USEC` / 2, when the watchdog is enabled for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Notifier {
        let Some(address) = env("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
            return Notifier::default();
        };
        let Ok(socket) = UnixDatagram::unbound() else {
            return Notifier::default();
        };
        let pid_matches = env("WATCHDOG_PID")
            .map(|pid| pid.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = env("WATCHDOG_USEC")
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && pid_matches)
            .map(|usec| Duration::from_micros(usec / 2));
        Notifier {
            target: Some(Arc::new(Target {
                socket,
                address: PathBuf::from(address),
                watchdog,
            })),
        }
    }

    /// Sends one notification (several `KEY=value` lines); errors are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let result = match target.address.to_str().and_then(|a| a.strip_prefix('@')) {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|address| target.socket.send_to_addr(state.as_bytes(), &address))
            }
            None => target.socket.send_to(state.as_bytes(), &target.address),
        };
        if let Err(err) = result {
            tracing::debug!(%err, "sd_notify failed");
        }
    }

    /// `READY=1` plus the status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (needed by `Type=notify-reload`, see the module).
    pub fn reloading(&self) {
        if self.target.is_none() {
            return;
        }
        self.notify(&reloading_message(monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=shutting down");
    }

    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={status}"));
    }

    /// How often to send `WATCHDOG=1`, when systemd asked for it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref().and_then(|t| t.watchdog)
    }
}

fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd stamps a reload with. (std's `Instant`
/// reads the same clock but does not expose its value.)
fn monotonic_usec() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    time.tv_sec as u64 * 1_000_000 + time.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let path_text = path.to_string_lossy().to_string();
        let env = move |name: &str| match name {
            "NOTIFY_SOCKET" => Some(path_text.clone()),
            "WATCHDOG_USEC" => Some("2000000".into()),
            _ => None,
        };
        let notifier = Notifier::from_env(&env);
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(1)));
        notifier.ready("serving sentiment v3");
        notifier.stopping();
        let mut buffer = [0u8; 256];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=serving sentiment v3");
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"STOPPING=1\nSTATUS=shutting down");
    }

    #[test]
    fn reloading_carries_a_monotonic_timestamp() {
        assert_eq!(
            reloading_message(1_234_567),
            "RELOADING=1\nMONOTONIC_USEC=1234567\nSTATUS=reloading"
        );
        let before = monotonic_usec();
        std::thread::sleep(Duration::from_millis(5));
        let after = monotonic_usec();
        assert!(before > 0 && after >= before + 5_000, "{before} -> {after}");
    }

    #[test]
    fn silent_outside_systemd() {
        let notifier = Notifier::from_env(&|_| None);
        assert!(notifier.watchdog_interval().is_none());
        notifier.ready("x");
    }
}
