//! Finding and loading the ONNX Runtime shared library (`ort`'s `load-dynamic`), once per
//! process. The library comes from configuration, `ORT_DYLIB_PATH`, or the project's
//! virtualenv (`.venv`, created by `scripts/setup.sh`); if none has it, the error says how to
//! get it.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The loaded ONNX Runtime: its environment (needed to build sessions) and facts for `/health`.
pub struct Runtime {
    pub environment: ort::environment::Environment,
    /// The library file that was loaded.
    pub library: PathBuf,
    /// ONNX Runtime's own version string, e.g. `1.31.1`.
    pub version: String,
}

/// Why ONNX Runtime could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found (looked for {looked}); run scripts/setup.sh to \
         install the pinned onnxruntime wheel into .venv, or set ORT_DYLIB_PATH to a \
         libonnxruntime.so"
    )]
    NotFound { looked: String },
    #[error("cannot load ONNX Runtime from {path}: {why}; point ORT_DYLIB_PATH at a libonnxruntime.so of version 1.22 or newer")]
    Load { path: PathBuf, why: String },
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Loads ONNX Runtime on first call and returns it; later calls return the same runtime
/// whatever path they pass (ONNX Runtime allows one environment per process).
pub fn init(configured: Option<&Path>) -> Result<&'static Runtime, RuntimeError> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let library = locate(configured)?;
    let version = library_version(&library)?;
    let load_error = |why: String| RuntimeError::Load {
        path: library.clone(),
        why,
    };
    let builder = ort::init_from(&library).map_err(|err| load_error(err.to_string()))?;
    let environment = builder
        .with_name("hotserve")
        .build()
        .map_err(|err| load_error(err.to_string()))?;
    tracing::info!(library = %library.display(), %version, "loaded ONNX Runtime");
    Ok(RUNTIME.get_or_init(|| Runtime {
        environment,
        library,
        version,
    }))
}

/// The runtime, if [`init`] has succeeded.
pub fn get() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Where the library is: the configured path, else the project virtualenv next to the binary
/// or the working directory.
fn locate(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = configured {
        return if path.exists() {
            Ok(path.to_path_buf())
        } else {
            Err(RuntimeError::NotFound {
                looked: format!("{} (from ORT_DYLIB_PATH / ort_dylib_path)", path.display()),
            })
        };
    }
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/hotserve -> the project root two levels up.
        roots.extend(exe.ancestors().skip(1).take(3).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut looked = Vec::new();
    for root in roots {
        let venv = root.join(".venv");
        looked.push(venv.display().to_string());
        if let Some(found) = find_in_venv(&venv) {
            return Ok(found);
        }
    }
    looked.dedup();
    Err(RuntimeError::NotFound {
        looked: looked.join(", "),
    })
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            let capi = entry.path().join("site-packages/onnxruntime/capi");
            let Ok(files) = std::fs::read_dir(&capi) else {
                continue;
            };
            let mut candidates: Vec<PathBuf> = files
                .flatten()
                .map(|f| f.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                })
                .collect();
            candidates.sort();
            if let Some(found) = candidates.pop() {
                return Some(found);
            }
        }
    }
    None
}

/// Asks the library for its version (`OrtGetApiBase()->GetVersionString()`) before handing it
/// to `ort`, so the version can be logged and shown in `/health`.
fn library_version(path: &Path) -> Result<String, RuntimeError> {
    let load_error = |why: String| RuntimeError::Load {
        path: path.to_path_buf(),
        why,
    };
    // SAFETY: loading ONNX Runtime runs its (well-behaved) initialisers; the library stays
    // loaded for the life of the process because `ort` loads the same file right after.
    let library =
        unsafe { libloading::Library::new(path) }.map_err(|e| load_error(e.to_string()))?;
    // SAFETY: the symbol has this signature in every ONNX Runtime release.
    let get_api_base: libloading::Symbol<
        unsafe extern "system" fn() -> *const ort::sys::OrtApiBase,
    > = unsafe { library.get(b"OrtGetApiBase") }
        .map_err(|_| load_error("it does not export OrtGetApiBase; is it ONNX Runtime?".into()))?;
    // SAFETY: OrtGetApiBase returns a pointer to a static struct; GetVersionString returns a
    // static NUL-terminated string.
    let version = unsafe {
        let base = get_api_base();
        if base.is_null() {
            return Err(load_error("OrtGetApiBase returned null".into()));
        }
        CStr::from_ptr(((*base).GetVersionString)())
            .to_string_lossy()
            .into_owned()
    };
    std::mem::forget(library);
    Ok(version)
}
