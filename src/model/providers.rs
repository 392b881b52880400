//! Where a model's sessions run: the execution providers of `execution_providers` (`cuda,cpu`),
//! tried in order, and what happens when one cannot start.
//!
//! ONNX Runtime's own behaviour is to carry on quietly: ort registers a provider on a session
//! with "fail silently" unless asked otherwise, and ONNX Runtime then runs the whole graph on
//! its CPU provider. On the CPU wheel, registering CUDA returns an error (checked by
//! `tests/it/providers.rs`), which ort would only have logged.
//! So hotserve asks the library first whether it was built with the provider
//! (`GetAvailableProviders`), registers it itself with the error returned, and treats a
//! session that fails to start on it (no device, missing CUDA libraries, out of device memory)
//! the same way. Then, explicitly: when `execution_providers` ends with `cpu`, the model runs
//! on the CPU and one warning line names the provider and why; otherwise the gate refuses the
//! model with that reason ([`ModelError::Provider`]), which is this machine's fault, not the
//! version's (`blames_version` is false, so the version is not remembered as bad).
//!
//! The providers that can start are registered together, in the listed order (`tensorrt,cuda`:
//! TensorRT takes the nodes it can, CUDA the rest); ONNX Runtime places on its CPU provider
//! what none of them runs (shape computations, unsupported operators), as it always does. How
//! the sessions are laid out on a device is `sessions::build_on_devices`'s.

use std::fmt;
use std::path::Path;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _, ExecutionProviderDispatch};

use super::error::ModelError;
use super::runtime;
use super::sessions::{self, SessionOptions, Sessions};

/// The provider names `execution_providers` knows, in the order the help lists them.
pub const KNOWN: &[&str] = &["cpu", "cuda", "tensorrt"];

/// One execution provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider: every build has it.
    Cpu,
    /// NVIDIA CUDA on GPU `device` (`cuda:1`; `cuda` is device 0).
    Cuda { device: u32 },
    /// NVIDIA TensorRT on GPU `device` (`tensorrt:1`; `tensorrt` is device 0).
    TensorRt { device: u32 },
}

/// An ordered list of providers: not empty, each kind once, `cpu` (if listed) last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionProviders(Vec<ExecutionProvider>);

impl ExecutionProvider {
    /// The provider called `name` (one of [`KNOWN`]) on `device` (`None`: device 0); an error
    /// for an unknown name or a device given to `cpu`.
    pub fn named(name: &str, device: Option<u32>) -> Result<ExecutionProvider, String> {
        match (name, device) {
            ("cpu", None) => Ok(ExecutionProvider::Cpu),
            ("cpu", Some(_)) => Err("cpu takes no device number".into()),
            ("cuda", device) => Ok(ExecutionProvider::Cuda {
                device: device.unwrap_or(0),
            }),
            ("tensorrt", device) => Ok(ExecutionProvider::TensorRt {
                device: device.unwrap_or(0),
            }),
            _ => Err(format!(
                "unknown execution provider '{name}'; known: {}",
                KNOWN.join(", ")
            )),
        }
    }

    /// `cpu`, `cuda` or `tensorrt`, without the device.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda { .. } => "cuda",
            ExecutionProvider::TensorRt { .. } => "tensorrt",
        }
    }

    /// ONNX Runtime's name for it, as `GetAvailableProviders` lists it.
    fn onnx_runtime_name(&self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => ep::CPU::NAME,
            ExecutionProvider::Cuda { .. } => ep::CUDA::NAME,
            ExecutionProvider::TensorRt { .. } => ep::TensorRT::NAME,
        }
    }

    /// Whether the loaded ONNX Runtime library was built with this provider (the CPU wheel
    /// has only `CPUExecutionProvider` and `AzureExecutionProvider`).
    fn in_library(&self) -> Result<(), String> {
        let available = match self {
            ExecutionProvider::Cpu => ep::CPU::is_available(),
            ExecutionProvider::Cuda { .. } => ep::CUDA::is_available(),
            ExecutionProvider::TensorRt { .. } => ep::TensorRT::is_available(),
        };
        match available {
            Ok(true) => Ok(()),
            Ok(false) => {
                let library = runtime::get().map_or_else(
                    || "the ONNX Runtime library".to_string(),
                    |r| format!("ONNX Runtime {} ({})", r.version, r.library.display()),
                );
                Err(format!(
                    "{library} was not built with {}",
                    self.onnx_runtime_name()
                ))
            }
            Err(err) => Err(format!("cannot ask ONNX Runtime for its providers: {err}")),
        }
    }

    /// The provider as ort registers it on a session: with an error when it cannot be
    /// registered (never ort's default, which logs and carries on without it). Nothing here
    /// touches the CPU's threads: device sessions get one intra-op thread and no spinning
    /// (`sessions::build_on_devices`).
    pub fn dispatch(&self) -> ExecutionProviderDispatch {
        match *self {
            ExecutionProvider::Cpu => ep::CPU::default().build(),
            ExecutionProvider::Cuda { device } => {
                ep::CUDA::default().with_device_id(device as i32).build()
            }
            ExecutionProvider::TensorRt { device } => ep::TensorRT::default()
                .with_device_id(device as i32)
                .build(),
        }
        .error_on_failure()
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionProvider::Cpu => f.write_str("cpu"),
            ExecutionProvider::Cuda { device } | ExecutionProvider::TensorRt { device } => {
                write!(f, "{}:{device}", self.kind())
            }
        }
    }
}

impl ExecutionProviders {
    /// Checks `list`: not empty, each kind once (a session has one device per provider), `cpu`
    /// last (providers after it would never run a node).
    pub fn new(list: Vec<ExecutionProvider>) -> Result<ExecutionProviders, String> {
        if list.is_empty() {
            return Err("expected a comma-separated list such as cuda,cpu".into());
        }
        for (at, provider) in list.iter().enumerate() {
            if list[..at].iter().any(|seen| seen.kind() == provider.kind()) {
                return Err(format!(
                    "{} is listed twice; a model's sessions use one device of each provider",
                    provider.kind()
                ));
            }
            if *provider == ExecutionProvider::Cpu && at + 1 < list.len() {
                return Err(
                    "cpu must come last: ONNX Runtime gives nodes to the first provider that runs \
                     them, so the providers after cpu would never run anything"
                        .into(),
                );
            }
        }
        Ok(ExecutionProviders(list))
    }

    /// Only the CPU: the default.
    pub fn cpu() -> ExecutionProviders {
        ExecutionProviders(vec![ExecutionProvider::Cpu])
    }

    /// The providers, in order.
    pub fn list(&self) -> &[ExecutionProvider] {
        &self.0
    }

    /// Whether a model falls back to the CPU when the providers before `cpu` cannot start.
    pub fn falls_back_to_cpu(&self) -> bool {
        self.0.last() == Some(&ExecutionProvider::Cpu)
    }

    /// The providers other than `cpu`, in order.
    fn devices(&self) -> impl Iterator<Item = ExecutionProvider> + '_ {
        self.0
            .iter()
            .copied()
            .filter(|p| *p != ExecutionProvider::Cpu)
    }
}

impl Default for ExecutionProviders {
    fn default() -> ExecutionProviders {
        ExecutionProviders::cpu()
    }
}

impl fmt::Display for ExecutionProviders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.0))
    }
}

/// `tensorrt:0,cuda:0`: how `/health` and `hotserve_model_info` name the providers in use.
pub fn join(providers: &[ExecutionProvider]) -> String {
    providers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds the sessions of the graph at `onnx_path` on the first of `wanted` that can run it,
/// and returns them with the providers they were built with: the device providers that
/// started, or `[cpu]` (see the module doc for the fallback and the refusal).
pub fn build(
    environment: &Environment,
    onnx_path: &Path,
    options: &SessionOptions,
    wanted: &ExecutionProviders,
) -> Result<(Sessions, Vec<ExecutionProvider>), ModelError> {
    let mut refused: Vec<String> = Vec::new();
    let mut devices: Vec<ExecutionProvider> = Vec::new();
    for provider in wanted.devices() {
        match provider.in_library() {
            Ok(()) => devices.push(provider),
            Err(why) => refused.push(format!("{provider}: {why}")),
        }
    }
    // The ones the library has, together; if their sessions do not start, without the first
    // (whose failure it most likely is), and so on.
    while !devices.is_empty() {
        let dispatches: Vec<_> = devices.iter().map(ExecutionProvider::dispatch).collect();
        match sessions::build_on_devices(environment, onnx_path, options.count, &dispatches) {
            Ok(sessions) => {
                if !refused.is_empty() {
                    tracing::warn!(
                        path = %onnx_path.display(),
                        providers = %join(&devices),
                        "execution providers refused: {}; this model runs on {}",
                        refused.join("; "),
                        join(&devices)
                    );
                }
                return Ok((sessions, devices));
            }
            Err(why) => {
                let first = devices.remove(0);
                refused.push(format!("{first}: {why}"));
            }
        }
    }
    if wanted.falls_back_to_cpu() {
        if !refused.is_empty() {
            tracing::warn!(
                path = %onnx_path.display(),
                providers = "cpu",
                "execution providers refused: {}; this model runs on the CPU (execution_providers \
                 {wanted} ends with cpu)",
                refused.join("; ")
            );
        }
        let sessions = sessions::build(environment, onnx_path, options)?;
        return Ok((sessions, vec![ExecutionProvider::Cpu]));
    }
    Err(ModelError::Provider {
        path: onnx_path.to_path_buf(),
        wanted: wanted.to_string(),
        why: refused.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::ExecutionProvider::{Cpu, Cuda, TensorRt};
    use super::*;

    fn check(list: Vec<ExecutionProvider>, expected: Result<&str, &str>) {
        let got = ExecutionProviders::new(list.clone()).map(|p| p.to_string());
        match (&got, expected) {
            (Ok(text), Ok(want)) => assert_eq!(text, want, "{list:?}"),
            (Err(why), Err(part)) => assert!(why.contains(part), "{list:?}: {why}"),
            _ => panic!("{list:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn lists() {
        check(vec![Cpu], Ok("cpu"));
        check(vec![Cuda { device: 0 }, Cpu], Ok("cuda:0,cpu"));
        check(vec![Cuda { device: 1 }], Ok("cuda:1"));
        check(
            vec![TensorRt { device: 0 }, Cuda { device: 0 }, Cpu],
            Ok("tensorrt:0,cuda:0,cpu"),
        );
        check(vec![], Err("such as cuda,cpu"));
        check(vec![Cpu, Cuda { device: 0 }], Err("cpu must come last"));
        check(
            vec![Cuda { device: 0 }, Cuda { device: 1 }],
            Err("cuda is listed twice"),
        );
        check(vec![Cpu, Cpu], Err("cpu must come last"));
        check(
            vec![TensorRt { device: 0 }, Cpu, TensorRt { device: 1 }],
            Err("cpu must come last"),
        );
    }

    #[test]
    fn names() {
        assert_eq!(ExecutionProvider::named("cpu", None), Ok(Cpu));
        assert_eq!(
            ExecutionProvider::named("cuda", None),
            Ok(Cuda { device: 0 })
        );
        assert_eq!(
            ExecutionProvider::named("tensorrt", Some(2)),
            Ok(TensorRt { device: 2 })
        );
        assert!(ExecutionProvider::named("cpu", Some(0)).is_err());
        assert!(ExecutionProvider::named("rocm", None)
            .unwrap_err()
            .contains("known: cpu, cuda, tensorrt"));
    }

    #[test]
    fn fallback_is_cpu_last() {
        let falls = |list: Vec<ExecutionProvider>| {
            ExecutionProviders::new(list).unwrap().falls_back_to_cpu()
        };
        assert!(falls(vec![Cpu]));
        assert!(falls(vec![Cuda { device: 0 }, Cpu]));
        assert!(!falls(vec![Cuda { device: 0 }]));
        assert!(!falls(vec![TensorRt { device: 0 }, Cuda { device: 0 }]));
    }
}
