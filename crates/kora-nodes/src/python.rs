//! A warm pool of `python3` interpreter processes for PythonCodeNode.
//!
//! Each interpreter runs a small loop (below) reading one JSON request per line on stdin and
//! answering one JSON line on stdout; the user's own prints go to stderr, which the worker reads
//! line by line into its log (target `kora::python`, in the span of the task that printed, each
//! secret value the worker holds replaced by `***`, a line cut at 8 KiB). Code objects are
//! compiled once per interpreter and cached. An interpreter that dies fails only the task it was
//! running (with a retryable error) and is replaced; one that overruns its time limit is killed
//! and replaced. An interpreter whose worker died (killed, crashed) exits within 0.2 s: it
//! watches its parent process.
//!
//! With the sandbox on (the default, [`crate::sandbox`]) each interpreter is confined: files
//! only below the data root, no network unless allowed, no new processes, memory, CPU, open
//! files and file size limited, an environment without the worker's. Off, node code runs with
//! the worker's own user, files and network.

use kora_model::error_type;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::NodeError;
use crate::sandbox::{self, Prepared, SandboxConfig};
use kora_model::Map;
use std::path::PathBuf;
use std::sync::Arc;

/// The interpreter loop. Kailash semantics: inputs become variables; a `result` variable is the
/// output `{"result": result}`; without one, every public local that is not a module, function
/// or class is returned. In `function` mode the source defines a function, called with the
/// inputs it accepts (all of them with `**kwargs`); in `class` mode it defines a class,
/// instantiated once per interpreter, whose method is called the same way. Either's return
/// value is the output `{"result": value}`.
pub const RUNNER: &str = r#"
import builtins, inspect, json, math, os, resource, signal, sys, threading, time, traceback, types
# Die with the worker: an interpreter orphaned by a killed worker must not go on running the
# node's code (its side effects would happen twice once the task is redelivered).
def _watch(_parent=os.getppid()):
    while os.getppid() == _parent:
        time.sleep(0.2)
    os._exit(1)
threading.Thread(target=_watch, daemon=True).start()
_out = sys.stdout
sys.stdout = sys.stderr
# Where an output holds NaN or an infinity (JSON, the wire and the ledger have neither).
def _nonfinite(v, path, depth=0):
    if isinstance(v, float) and not math.isfinite(v):
        return path, ("NaN" if v != v else ("Infinity" if v > 0 else "-Infinity"))
    if depth > 200:
        return None
    if isinstance(v, dict):
        for k, x in v.items():
            r = _nonfinite(x, "%s.%s" % (path, k), depth + 1)
            if r:
                return r
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            r = _nonfinite(x, "%s[%d]" % (path, i), depth + 1)
            if r:
                return r
    return None
class CPUTimeExceeded(Exception):
    pass
_cpu_allowed = 0
def _xcpu(*_):
    raise CPUTimeExceeded("the node used more than its %d CPU seconds" % _cpu_allowed)
signal.signal(signal.SIGXCPU, _xcpu)
def _cpu_used():
    _u = resource.getrusage(resource.RUSAGE_SELF)
    return _u.ru_utime + _u.ru_stime
_cache = {}
_objs = {}
_skip = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)
for _line in sys.stdin:
    try:
        _req = json.loads(_line)
        # The sandbox's CPU allowance for this call: the soft limit, below the process's hard one.
        _cpu_allowed = _req.get("cpu") or 0
        if _cpu_allowed:
            _hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
            _soft = int(_cpu_used()) + _cpu_allowed + 1
            resource.setrlimit(resource.RLIMIT_CPU, (_soft if _hard == resource.RLIM_INFINITY else min(_soft, _hard), _hard))
        _code = _req["code"]
        _co = _cache.get(_code)
        if _co is None:
            _co = compile(_code, "<PythonCodeNode " + str(_req.get("node", "")) + ">", "exec")
            if len(_cache) > 512:
                _cache.clear()
            _cache[_code] = _co
        _mode = _req.get("mode", "code")
        if _mode == "code":
            _ns = dict(_req["inputs"])
            _ns["__builtins__"] = builtins
            exec(_co, _ns)
            if "result" in _ns:
                _output = {"result": _ns["result"]}
            else:
                _output = {k: v for k, v in _ns.items() if not k.startswith("_") and not isinstance(v, _skip)}
        else:
            _key = (_mode, _code, _req.get("entry"), _req.get("method"))
            _fn = _objs.get(_key)
            if _fn is None:
                _ns = {"__builtins__": builtins, "__name__": "kora_node"}
                exec(_co, _ns)
                _want = type if _mode == "class" else types.FunctionType
                _defs = {k: v for k, v in _ns.items() if isinstance(v, _want) and getattr(v, "__module__", "") == "kora_node" and not k.startswith("_")}
                _name = _req.get("entry")
                _what = "class" if _mode == "class" else "function"
                if _name:
                    if _name not in _defs:
                        raise NameError("the source defines no %s named %r (it defines: %s)" % (_what, _name, ", ".join(sorted(_defs)) or "none"))
                    _fn = _defs[_name]
                elif len(_defs) == 1:
                    _fn = next(iter(_defs.values()))
                else:
                    raise NameError("the source defines %s %ss (%s): name the one to use with %s_name" % ("no" if not _defs else len(_defs), _what, ", ".join(sorted(_defs)), _what))
                if _mode == "class":
                    _inst = _fn()
                    _m = _req.get("method")
                    _names = [_m] if _m else ["process", "execute", "run", "__call__"]
                    _fn = next((getattr(_inst, n) for n in _names if callable(getattr(_inst, n, None))), None)
                    if _fn is None:
                        raise AttributeError("the class has no method %s" % " or ".join(_names))
                if len(_objs) > 256:
                    _objs.clear()
                _objs[_key] = _fn
            _params = inspect.signature(_fn).parameters.values()
            _args = dict(_req["inputs"])
            if not any(p.kind == p.VAR_KEYWORD for p in _params):
                _names = {p.name for p in _params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
                _args = {k: v for k, v in _args.items() if k in _names}
            _output = {"result": _fn(**_args)}
        try:
            _text = json.dumps({"ok": True, "output": _output}, allow_nan=False)
        except (TypeError, ValueError) as _e:
            _bad = None
            for _k, _v in _output.items():
                _bad = _bad or _nonfinite(_v, str(_k))
            if _bad:
                _text = json.dumps({"ok": False, "error_type": "InvalidOutput",
                                    "error": "node '%s': its output holds %s at %s, which Kora cannot carry (JSON, the wire and the ledger have no NaN or infinities); return None, a string such as 'nan', or a finite number" % (_req.get("node", ""), _bad[1], _bad[0])})
            else:
                _text = json.dumps({"ok": False, "error_type": "OutputError",
                                    "error": "output is not JSON-serializable: " + str(_e)})
    except BaseException as _e:
        if isinstance(_e, (KeyboardInterrupt, SystemExit)) and not isinstance(_e, SystemExit):
            raise
        _tb = traceback.extract_tb(_e.__traceback__)
        _where = ""
        for _f in _tb:
            if _f.filename.startswith("<PythonCodeNode"):
                _where = " (line %d)" % _f.lineno
        _text = json.dumps({"ok": False, "error_type": type(_e).__name__,
                            "error": "%s: %s%s" % (type(_e).__name__, _e, _where)})
    # A NUL line on stderr marks the end of this call's prints (the worker logs them first).
    try:
        sys.stderr.flush()
        os.write(2, b"\0\n")
    except Exception:
        pass
    # Sandboxed, what this interpreter has used, so the pool replaces it before its hard CPU limit.
    _out.write(_text[:-1] + ', "cpu": %.3f}\n' % _cpu_used() if _cpu_allowed else _text + "\n")
    _out.flush()
"#;

/// What PythonCodeNode's function and class forms call.
pub struct Callable<'a> {
    /// `function` or `class`.
    pub mode: &'a str,
    pub source: &'a str,
    /// The function or class name, when the source defines several.
    pub entry: Option<&'a str>,
    /// The class's method (else process, execute, run or `__call__`).
    pub method: Option<&'a str>,
}

struct Interp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
    /// The span of the task this interpreter runs (or last ran): where its prints are logged.
    printing: Arc<Mutex<Option<tracing::Span>>>,
    /// A permit per call whose prints are all logged.
    printed: Arc<Semaphore>,
}

/// How long a call waits for its prints to be logged (they normally are within microseconds).
const PRINTS_WAIT: Duration = Duration::from_millis(200);

/// The longest printed line logged as one entry; the rest of a longer one follows as more.
const PRINT_LINE_MAX: u64 = 8 * 1024;

/// Logs what node code prints (its stderr), line by line, masking `secrets`, until the
/// interpreter exits. The runner ends each call's prints with a NUL line: a permit on `printed`,
/// which the call waits for, so a call's prints are logged in its span before it returns.
async fn forward_prints(
    stderr: ChildStderr,
    printing: Arc<Mutex<Option<tracing::Span>>>,
    printed: Arc<Semaphore>,
    secrets: Arc<Vec<String>>,
) {
    use tokio::io::AsyncReadExt;
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(PRINT_LINE_MAX)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // The end-of-call mark, alone on its line or after a print without a newline.
        let ends_call = buf.ends_with(b"\0\n");
        if ends_call {
            buf.truncate(buf.len() - 2);
        }
        if !(ends_call && buf.is_empty()) {
            log_print(&buf, &printing, &secrets);
        }
        if ends_call {
            printed.add_permits(1);
        }
    }
}

/// One printed line into the log, in the span of the call that printed it.
fn log_print(buf: &[u8], printing: &Mutex<Option<tracing::Span>>, secrets: &[String]) {
    let text = String::from_utf8_lossy(buf);
    let text = crate::secrets::mask_text(text.trim_end_matches(['\n', '\r']), secrets);
    let span = printing.lock().ok().and_then(|g| g.clone());
    let log = || tracing::info!(target: "kora::python", "{text}");
    match span {
        Some(span) => span.in_scope(log),
        None => log(),
    }
}

/// The pool. Interpreters start on first use, up to `size`.
pub struct PythonPool {
    bin: String,
    size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<Interp>>,
    default_timeout: Duration,
    /// The sandbox's settings and the data root, when it is on.
    sandbox: Option<(SandboxConfig, PathBuf)>,
    /// The sandbox, prepared on first use (it asks the interpreter where its runtime lives).
    prepared: tokio::sync::OnceCell<Result<Arc<Prepared>, String>>,
    /// The worker's secret values, masked in what node code prints.
    secrets: Arc<Vec<String>>,
}

impl PythonPool {
    /// A pool of `size` interpreters of `bin`, confined by `sandbox` (with the data root)
    /// when it is given and enabled.
    pub fn new(
        bin: &str,
        size: usize,
        default_timeout: Duration,
        sandbox: Option<(SandboxConfig, PathBuf)>,
    ) -> Self {
        PythonPool {
            bin: bin.into(),
            size: size.max(1),
            permits: Semaphore::new(size.max(1)),
            idle: Mutex::new(Vec::new()),
            default_timeout,
            sandbox: sandbox.filter(|(c, _)| c.enabled),
            prepared: tokio::sync::OnceCell::new(),
            secrets: Arc::new(crate::secrets::env_values()),
        }
    }

    /// The prepared sandbox; `None` when it is off.
    async fn sandbox(&self) -> Result<Option<Arc<Prepared>>, NodeError> {
        let Some((cfg, root)) = &self.sandbox else {
            return Ok(None);
        };
        let prepared = self
            .prepared
            .get_or_init(|| async {
                let out = Command::new(&self.bin)
                    .args(["-c", sandbox::PROBE])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot start {}: {e}; install Python 3 or set nodes.python_bin",
                            self.bin
                        )
                    })?;
                let probe: sandbox::Probe = serde_json::from_slice(&out.stdout).map_err(|e| {
                    format!(
                        "{} did not say where its runtime lives ({e}; {})",
                        self.bin,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                })?;
                Prepared::new(cfg, root, probe).map(Arc::new)
            })
            .await;
        match prepared {
            Ok(p) => Ok(Some(Arc::clone(p))),
            Err(e) => Err(NodeError::retryable(error_type::WORKER, e.clone())),
        }
    }

    async fn spawn(&self) -> Result<Interp, NodeError> {
        let sandbox = self.sandbox().await?;
        let mut cmd = match &sandbox {
            Some(p) => {
                let mut cmd = Command::new(&p.exe);
                cmd.env_clear()
                    .envs(p.env.iter().map(|(k, v)| (*k, v.as_str())));
                cmd.current_dir(&p.data_root);
                sandbox::confine(&mut cmd, p);
                cmd
            }
            None => {
                let mut cmd = Command::new(&self.bin);
                // The worker's own settings and secrets are not node code's business.
                for (k, _) in std::env::vars_os() {
                    if k.to_string_lossy().starts_with("KORA_") {
                        cmd.env_remove(k);
                    }
                }
                cmd
            }
        };
        let mut child = cmd
            .args(["-u", "-c", RUNNER])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                NodeError::retryable(
                    error_type::WORKER,
                    format!(
                        "cannot start {}: {e}; install Python 3 or set the interpreter path",
                        self.bin
                    ),
                )
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(NodeError::retryable(
                error_type::WORKER,
                "python interpreter has no pipes",
            ));
        };
        let printing = Arc::new(Mutex::new(None));
        let printed = Arc::new(Semaphore::new(0));
        tokio::spawn(forward_prints(
            stderr,
            Arc::clone(&printing),
            Arc::clone(&printed),
            Arc::clone(&self.secrets),
        ));
        Ok(Interp {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            line: String::new(),
            printing,
            printed,
        })
    }

    /// Interpreters currently idle (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |g| g.len())
    }

    /// `(busy, idle, max)`: interpreters running code, started and waiting, and the most
    /// this pool starts.
    pub fn usage(&self) -> (usize, usize, usize) {
        let busy = self.size.saturating_sub(self.permits.available_permits());
        (busy, self.idle_count(), self.size)
    }

    /// Runs `code` with `inputs` as variables and returns the node's output object.
    pub async fn execute(
        &self,
        node_id: &str,
        code: &str,
        inputs: &Map,
        timeout: Option<Duration>,
    ) -> Result<Map, NodeError> {
        self.exchange(
            json!({"node": node_id, "code": code, "inputs": inputs}),
            timeout,
        )
        .await
    }

    /// Calls the function or the class's method that `target` names, with the inputs it
    /// accepts; the return value is `result`.
    pub async fn call(
        &self,
        node_id: &str,
        target: &Callable<'_>,
        inputs: &Map,
        timeout: Option<Duration>,
    ) -> Result<Map, NodeError> {
        self.exchange(
            json!({"node": node_id, "mode": target.mode, "code": target.source,
                   "entry": target.entry, "method": target.method, "inputs": inputs}),
            timeout,
        )
        .await
    }

    async fn exchange(&self, mut req: Value, timeout: Option<Duration>) -> Result<Map, NodeError> {
        let _permit =
            self.permits.acquire().await.map_err(|_| {
                NodeError::retryable(error_type::WORKER, "python pool is shut down")
            })?;
        let reused = self.idle.lock().ok().and_then(|mut g| g.pop());
        let mut interp = match reused {
            Some(i) => i,
            None => self.spawn().await?,
        };
        if let Ok(mut g) = interp.printing.lock() {
            *g = Some(tracing::Span::current());
        }
        let sandbox = self.sandbox.as_ref();
        if let (Some((cfg, _)), Value::Object(m)) = (sandbox, &mut req) {
            m.insert("cpu".into(), cfg.cpu_secs.into());
        }
        let mut req = serde_json::to_vec(&req).map_err(|e| {
            NodeError::permanent("InputError", format!("inputs are not serializable: {e}"))
        })?;
        req.push(b'\n');
        let limit = timeout.unwrap_or(self.default_timeout);
        let exchange = async {
            interp.stdin.write_all(&req).await?;
            interp.stdin.flush().await?;
            interp.line.clear();
            interp.stdout.read_line(&mut interp.line).await
        };
        let answer = match tokio::time::timeout(limit, exchange).await {
            Err(_) => {
                let _ = interp.child.start_kill();
                return Err(NodeError::retryable(
                    error_type::TIMEOUT,
                    format!(
                        "PythonCodeNode timed out after {:.1}s; the interpreter was replaced",
                        limit.as_secs_f64()
                    ),
                ));
            }
            Ok(Err(e)) => {
                let _ = interp.child.start_kill();
                return Err(NodeError::retryable(
                    error_type::WORKER,
                    format!("python interpreter failed: {e}"),
                ));
            }
            Ok(Ok(0)) => {
                let status = interp
                    .child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                return Err(NodeError::retryable(
                    error_type::WORKER,
                    format!(
                        "python interpreter exited while running the node ({status}); it was replaced"
                    ),
                ));
            }
            Ok(Ok(_)) => {
                // The call's prints, written before its answer, are logged before it returns.
                if let Ok(Ok(p)) = tokio::time::timeout(PRINTS_WAIT, interp.printed.acquire()).await
                {
                    p.forget();
                }
                std::mem::take(&mut interp.line)
            }
        };
        let v: Value = serde_json::from_str(&answer).map_err(|e| {
            let _ = interp.child.start_kill();
            NodeError::retryable(
                error_type::WORKER,
                format!("garbled answer from interpreter: {e}"),
            )
        })?;
        // An interpreter past its CPU allowance is replaced before the kernel's hard limit
        // (three allowances) could stop it in the middle of a call.
        let spent = sandbox.is_some_and(|(cfg, _)| {
            v.get("cpu")
                .and_then(Value::as_f64)
                .is_some_and(|c| c > cfg.cpu_secs as f64)
        });
        if spent {
            let _ = interp.child.start_kill();
        } else if let Ok(mut g) = self.idle.lock() {
            g.push(interp);
        }
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            match v.get("output") {
                Some(Value::Object(m)) => Ok(m.clone()),
                _ => Err(NodeError::permanent(
                    "OutputError",
                    "node output is not an object",
                )),
            }
        } else {
            let error_type = v
                .get("error_type")
                .and_then(Value::as_str)
                .unwrap_or("Exception")
                .to_string();
            let error = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string();
            // A refusal the sandbox may have caused says what the sandbox allows.
            let refused = matches!(
                error_type.as_str(),
                "PermissionError" | "MemoryError" | "CPUTimeExceeded"
            ) || error.contains("[Errno 27]");
            let error = match sandbox {
                // The data root as the sandbox resolved it (an absolute path, not ".").
                Some((cfg, root)) if refused => {
                    let root = match self.prepared.get() {
                        Some(Ok(p)) => p.data_root.as_path(),
                        _ => root.as_path(),
                    };
                    format!("{error} — {}", cfg.hint(root))
                }
                _ => error,
            };
            Err(NodeError::permanent(error_type, error))
        }
    }
}
