"""Fixtures for the Python SDK compatibility suite.

One Keyward daemon is started per test session on an ephemeral loopback port and shared by
every test. Tests must therefore use unique aliases.

Environment:
  KEYWARD_TEST_BACKEND  softhsm (default: a fresh SoftHSM2 token), embedded (the firmware
                        core linked in) or serial (the firmware simulator behind a pty)
  KEYWARD_BIN   path of the keyward binary (default: <repo>/target/debug/keyward)
  KEYWARD_FW_SIM  the firmware simulator (default: <repo>/target/debug/keyward-fw-sim)
  SOFTHSM2_MODULE  PKCS#11 module (default: /usr/lib/softhsm/libsofthsm2.so)
  KEYWARD_KEEP_TMP if set, keep the temporary directory (token, data, daemon log); it is also
                   kept whenever a test failed, and its path is printed in the summary
  KEYWARD_TEST_STORE  `postgres`: the daemon's store is a database on a throw-away PostgreSQL
                   cluster (pgcluster.py); default `sqlite`
  KEYWARD_TEST_TESTBENCH  if set (with the softhsm backend): test-bench mode as a new user
                   runs it — `keyward init --softhsm --data-dir D` in an empty directory, then
                   `keyward serve --data-dir D` with no configuration file, no SOFTHSM2_CONF and
                   no PIN in the environment

Missing prerequisites (binary, softhsm2-util, module) FAIL the session: they are never skipped.
Tests that need what only one backend offers say so with `@pytest.mark.backends("softhsm")`;
on the other backends they are reported as skipped with that reason.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import pgcluster

# The SDK (and requests) would route 127.0.0.1 through a proxy taken from the environment.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from tencentcloud.common import credential  # noqa: E402
from tencentcloud.common.profile.client_profile import ClientProfile  # noqa: E402
from tencentcloud.common.profile.http_profile import HttpProfile  # noqa: E402
from tencentcloud.kms.v20190118 import kms_client  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "keyward"
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "keyward-test-pin-1234"
SO_PIN = "5678"
TOKEN_LABEL = "keyward"
STARTUP_TIMEOUT = 60.0
LISTEN_PREFIX = "keyward: listening on "
BACKENDS = ("softhsm", "embedded", "serial")
SIM_BANNER = "keyward-fw-sim: device "


def backend():
    name = os.environ.get("KEYWARD_TEST_BACKEND") or "softhsm"
    if name not in BACKENDS:
        pytest.fail(f"unknown KEYWARD_TEST_BACKEND {name!r}", pytrace=False)
    return name


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends(*names): the test needs one of these HSM backends")


def pytest_collection_modifyitems(config, items):
    here = backend()
    for item in items:
        marker = item.get_closest_marker("backends")
        if marker is not None and here not in marker.args:
            item.add_marker(pytest.mark.skip(
                reason=f"needs the {' or '.join(marker.args)} backend, not {here}"))


class Daemon:
    """A running `keyward serve` and the root credential `keyward init` issued."""

    def __init__(self, proc, port, secret_id, secret_key, region, log_path, tmpdir):
        self.proc = proc
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.endpoint = f"http://127.0.0.1:{port}"
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.region = region
        self.log_path = log_path
        self.tmpdir = tmpdir

    def client(self, secret_id=None, secret_key=None, region=None):
        """An official-SDK KMS client for this daemon (overrides allow auth-failure tests)."""
        cred = credential.Credential(
            self.secret_id if secret_id is None else secret_id,
            self.secret_key if secret_key is None else secret_key,
        )
        http_profile = HttpProfile(protocol="http", endpoint=self.host)
        profile = ClientProfile(httpProfile=http_profile)
        return kms_client.KmsClient(cred, self.region if region is None else region, profile)

    def log(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"

    def check_alive(self):
        rc = self.proc.poll()
        if rc is not None:
            pytest.fail(f"keyward exited early with status {rc}; log:\n{self.log()}", pytrace=False)


def init_and_serve(config, env, log_path, binary=None):
    """`keyward init` then `keyward serve` on `config`, listening on a free loopback port, for
    tests that need a daemon of their own. Returns (process, port, root credential); fails the
    test if the daemon does not listen within 30 s."""
    binary = binary or os.environ.get("KEYWARD_BIN") or str(DEFAULT_BIN)
    init = subprocess.run([binary, "init", "--config", str(config)], env=env, check=True,
                          capture_output=True, text=True)
    cred = json.loads(next(l for l in init.stdout.splitlines() if l.startswith("{")))
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([binary, "serve", "--config", str(config),
                                 "--listen", "127.0.0.1:0"],
                                env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        text = Path(log_path).read_text()
        if LISTEN_PREFIX in text:
            address = text.split(LISTEN_PREFIX, 1)[1].split()[0]
            return proc, int(address.rsplit(":", 1)[1]), cred
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"keyward did not start:\n{text}", pytrace=False)
        time.sleep(0.05)


def _require_file(path, what):
    if not path or not os.path.isfile(path):
        pytest.fail(f"{what} not found at {path!r}; it is required (tests are never skipped)",
                    pytrace=False)


def _run(cmd, env, what):
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {res.returncode}): {' '.join(map(str, cmd))}\n"
            f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}",
            pytrace=False,
        )
    return res


_KEPT_DIRS = []
_DAEMON = None  # the session's Daemon, for the report hook below


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """If a test failed because the daemon died under it, attach the daemon log."""
    outcome = yield
    report = outcome.get_result()
    daemon = _DAEMON
    if daemon is not None and report.failed and report.when == "call":
        rc = daemon.proc.poll()
        if rc is not None:
            report.sections.append((f"keyward daemon exited with status {rc}; its log",
                                    daemon.log()))


def pytest_terminal_summary(terminalreporter):
    for path in _KEPT_DIRS:
        terminalreporter.write_line(f"keyward test directory kept (daemon log: {path}/keyward.log)")


@pytest.fixture(scope="session")
def keyward(request):
    binary = os.environ.get("KEYWARD_BIN") or str(DEFAULT_BIN)
    _require_file(binary, "keyward binary (set KEYWARD_BIN or build target/debug/keyward)")
    tmp = Path(tempfile.mkdtemp(prefix="keyward-pytest-"))
    data_dir = tmp / "data"
    config = tmp / "keyward.toml"
    env = dict(os.environ)
    sim = None
    testbench = bool(os.environ.get("KEYWARD_TEST_TESTBENCH"))
    if testbench and (backend() != "softhsm"
                      or os.environ.get("KEYWARD_TEST_STORE", "sqlite") != "sqlite"):
        pytest.fail("KEYWARD_TEST_TESTBENCH runs on SoftHSM2 with the SQLite store only",
                    pytrace=False)
    if testbench:
        for var in ("SOFTHSM2_CONF", "KEYWARD_PIN"):
            env.pop(var, None)
    elif backend() == "softhsm":
        config.write_text(f'data_dir = "{data_dir}"\n' + _softhsm_section(tmp, env))
    elif backend() == "serial":
        sim, device = _start_sim(tmp / "device")
        request.addfinalizer(lambda: (sim.terminate(), sim.wait()))
        config.write_text(f'data_dir = "{data_dir}"\n[hsm]\nbackend = "serial"\n'
                          f'path = "{device}"\ntimeout_ms = 1000\n')
    else:
        config.write_text(f'data_dir = "{data_dir}"\n')
    store = os.environ.get("KEYWARD_TEST_STORE", "sqlite")
    if store not in ("sqlite", "postgres"):
        pytest.fail(f"unknown KEYWARD_TEST_STORE {store!r}", pytrace=False)
    if store == "postgres":
        cluster = pgcluster.Cluster()
        request.addfinalizer(cluster.stop)
        config.write_text(config.read_text()
                          + cluster.store_section(cluster.create_database()))
        env[pgcluster.PASSWORD_ENV] = cluster.password

    if testbench:
        init = _run([binary, "init", "--softhsm", "--data-dir", str(data_dir),
                     "--softhsm-module", os.environ.get("SOFTHSM2_MODULE", DEFAULT_MODULE)],
                    env, "keyward init --softhsm")
        if "SO PIN" not in init.stderr:
            pytest.fail(f"keyward init --softhsm did not show the SO PIN:\n{init.stderr}",
                        pytrace=False)
        serve_args = ["--data-dir", str(data_dir)]
    else:
        init = _run([binary, "init", "--config", str(config)], env, "keyward init")
        serve_args = ["--config", str(config)]
    cred_line = next((l for l in init.stdout.splitlines() if l.strip().startswith("{")), None)
    if cred_line is None:
        pytest.fail(f"keyward init printed no JSON credential:\n{init.stdout}\n{init.stderr}",
                    pytrace=False)
    cred = json.loads(cred_line)
    for field in ("SecretId", "SecretKey", "Region"):
        if not cred.get(field):
            pytest.fail(f"keyward init output lacks {field}: {cred_line}", pytrace=False)

    log_path = tmp / "keyward.log"
    log_file = open(log_path, "w", buffering=1)
    proc = subprocess.Popen(
        [binary, "serve", *serve_args, "--listen", "127.0.0.1:0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )

    # Read stderr line by line until the listen line; afterwards a thread keeps draining it.
    found = {}
    ready = threading.Event()

    def drain():
        try:
            for line in proc.stderr:
                log_file.write(line)
                if not ready.is_set() and line.startswith(LISTEN_PREFIX):
                    found["url"] = line[len(LISTEN_PREFIX):].strip()
                    ready.set()
        finally:
            ready.set()  # EOF: the daemon closed stderr (exited)

    reader = threading.Thread(target=drain, name="keyward-stderr", daemon=True)
    reader.start()

    def stop():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        log_file.close()

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready.wait(timeout=0.2):
        if time.monotonic() > deadline:
            stop()
            pytest.fail(f"keyward did not report its listen address within {STARTUP_TIMEOUT}s;"
                        f" log:\n{log_path.read_text(errors='replace')}", pytrace=False)
    if "url" not in found:
        stop()
        pytest.fail(f"keyward exited before listening (status {proc.returncode}); log:\n"
                    f"{log_path.read_text(errors='replace')}", pytrace=False)

    url = found["url"]
    if not url.startswith("http://127.0.0.1:"):
        stop()
        pytest.fail(f"unexpected listen URL {url!r}", pytrace=False)
    port = int(url.rsplit(":", 1)[1].rstrip("/"))

    daemon = Daemon(proc, port, cred["SecretId"], cred["SecretKey"], cred["Region"],
                    log_path, tmp)
    global _DAEMON
    _DAEMON = daemon
    try:
        yield daemon
    finally:
        _DAEMON = None
        early = proc.poll()
        stop()
        keep = os.environ.get("KEYWARD_KEEP_TMP") or request.session.testsfailed
        if keep or early is not None:
            _KEPT_DIRS.append(str(tmp))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if early is not None:
            # Leave the directory for post-mortem; the log is what matters most.
            pytest.fail(f"keyward exited during the session (status {early}); log kept at"
                        f" {log_path}:\n{log_path.read_text(errors='replace')}", pytrace=False)


def _softhsm_section(tmp, env):
    """A fresh SoftHSM2 token in `tmp` and the `[hsm]` section naming it (sets env)."""
    softhsm_util = shutil.which("softhsm2-util")
    if softhsm_util is None:
        pytest.fail("softhsm2-util is not on PATH; SoftHSM2 is required", pytrace=False)
    module = os.environ.get("SOFTHSM2_MODULE", DEFAULT_MODULE)
    _require_file(module, "SoftHSM2 PKCS#11 module")
    tokens = tmp / "tokens"
    tokens.mkdir()
    softhsm_conf = tmp / "softhsm2.conf"
    softhsm_conf.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    env["SOFTHSM2_CONF"] = str(softhsm_conf)
    env["KEYWARD_PIN"] = PIN
    _run([softhsm_util, "--init-token", "--free", "--label", TOKEN_LABEL,
          "--pin", PIN, "--so-pin", SO_PIN], env, "softhsm2-util --init-token")
    return ("[hsm]\n"
            'backend = "pkcs11"\n'
            f'module = "{module}"\n'
            f'token_label = "{TOKEN_LABEL}"\n'
            'pin_env = "KEYWARD_PIN"\n')


def _start_sim(state):
    """The firmware simulator with its state in `state`: the process and its device path."""
    sim_bin = os.environ.get("KEYWARD_FW_SIM") or str(REPO_ROOT / "target" / "debug" / "keyward-fw-sim")
    _require_file(sim_bin, "firmware simulator (cargo build -p keyward-firmware --features sim)")
    proc = subprocess.Popen([sim_bin, "--state-dir", str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    banner = proc.stdout.readline().strip()
    if not banner.startswith(SIM_BANNER):
        proc.kill()
        pytest.fail(f"unexpected simulator banner {banner!r}", pytrace=False)
    return proc, banner[len(SIM_BANNER):]


@pytest.fixture
def kms(keyward):
    """A fresh SDK client; fails with the daemon log if the daemon died."""
    keyward.check_alive()
    return keyward.client()
