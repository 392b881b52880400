//! The settings of many models in one process: when a model is loaded (`load`, `pin`) and how
//! much memory the loaded ones may take together (`memory_budget`), with their parsers.

use super::parse::parse_size;

/// When a model is loaded into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// At start (and after every new version), like a model that is always wanted.
    #[default]
    Eager,
    /// On its first request: downloaded and validated ahead of time, then kept on disk.
    Lazy,
}

impl LoadMode {
    pub fn parse(value: &str) -> Result<LoadMode, String> {
        match value {
            "eager" => Ok(LoadMode::Eager),
            "lazy" => Ok(LoadMode::Lazy),
            _ => Err("expected eager or lazy".into()),
        }
    }
}

/// The memory the loaded models may take together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryBudget {
    /// So many bytes.
    Bytes(u64),
    /// [`AUTO_SHARE`] of the cgroup's memory limit (a Kubernetes memory limit), else of the
    /// machine's memory; decided at start ([`MemoryBudget::resolve`]).
    Auto,
}

/// The share of the memory limit `memory_budget: auto` gives the models; the rest is the
/// daemon's own (runtime, connections, request bodies, the queue) and a load's transient peak.
pub const AUTO_SHARE: f64 = 0.7;

impl MemoryBudget {
    pub fn parse(value: &str) -> Result<MemoryBudget, String> {
        if value == "auto" {
            return Ok(MemoryBudget::Auto);
        }
        match parse_size(value) {
            Ok(0) => Err("expected a size above 0".into()),
            Ok(bytes) => Ok(MemoryBudget::Bytes(bytes)),
            Err(why) => Err(format!("{why}, or auto")),
        }
    }

    /// The budget in bytes and where it came from (for the start log line): `limit` is the
    /// cgroup's memory limit, `physical` the machine's memory.
    pub fn resolve(self, limit: Option<u64>, physical: u64) -> (u64, String) {
        match (self, limit) {
            (MemoryBudget::Bytes(bytes), _) => (bytes, "memory_budget".into()),
            (MemoryBudget::Auto, Some(limit)) => (
                (limit as f64 * AUTO_SHARE) as u64,
                format!("{AUTO_SHARE} of the cgroup memory limit of {limit} bytes"),
            ),
            (MemoryBudget::Auto, None) => (
                (physical as f64 * AUTO_SHARE) as u64,
                format!("{AUTO_SHARE} of the machine's {physical} bytes (no cgroup memory limit)"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_a_size_or_auto() {
        assert_eq!(
            MemoryBudget::parse("4GiB"),
            Ok(MemoryBudget::Bytes(4 << 30))
        );
        assert_eq!(MemoryBudget::parse("auto"), Ok(MemoryBudget::Auto));
        let zero = MemoryBudget::parse("0").unwrap_err();
        assert!(zero.contains("above 0"), "{zero}");
        assert!(MemoryBudget::parse("lots").unwrap_err().contains("auto"));
    }

    #[test]
    fn auto_is_a_share_of_the_cgroup_limit_else_of_the_machine() {
        let (bytes, why) = MemoryBudget::Auto.resolve(Some(1000), 64_000);
        assert_eq!(bytes, 700);
        assert!(why.contains("cgroup"), "{why}");
        let (bytes, why) = MemoryBudget::Auto.resolve(None, 10_000);
        assert_eq!(bytes, 7000);
        assert!(why.contains("machine"), "{why}");
        assert_eq!(MemoryBudget::Bytes(5).resolve(Some(1), 1).0, 5);
    }

    #[test]
    fn load_modes() {
        assert_eq!(LoadMode::parse("lazy"), Ok(LoadMode::Lazy));
        assert_eq!(LoadMode::parse("eager"), Ok(LoadMode::Eager));
        assert!(LoadMode::parse("later").is_err());
    }
}
