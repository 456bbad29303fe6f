"""Product secrets through the official SDK (docs/rotation.md): a MariaDB and a Redis server
started from Debian's packages in temporary directories, a daemon of this module's own that
declares them in `[[databases]]` and runs on the test clock. Creation, login with the
credential GetSecretValue returns, granted and refused privileges, manual and scheduled
rotation with the overlap, the history, and an API-key secret a sub-account reads with its
own key across rotations. The daemon runs on the embedded backend: what is under test is the
SDK's view of the rotation actions, not the HSM (e2e_rotation covers each backend)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import init_and_serve
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.ssm.v20190923 import models, ssm_client

REPO = Path(__file__).resolve().parents[2]
OVERLAP = 3600
DAY = 86400

# Once per suite run is enough: the daemon here is on the embedded backend whatever the pass.
pytestmark = pytest.mark.backends("softhsm")


# mariadbd refuses to run as root unless told; as anyone else it runs as that user.
_ROOT = ["--user=root"] if os.geteuid() == 0 else []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need(binary):
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin"):
        p = Path(d) / binary
        if p.exists():
            return str(p)
    pytest.fail(f"{binary} is not installed: scripts/test.sh installs mariadb-server and "
                "redis-server", pytrace=False)


def _wait_port(port, proc, what, log):
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{what} did not start:\n{Path(log).read_text(errors='replace')}",
                            pytrace=False)
            time.sleep(0.05)


class MariaDb:
    def __init__(self, tmp):
        self.dir = tmp / "mariadb"
        self.port = _free_port()
        self.password = "adm" + uuid.uuid4().hex
        # Its own temporary directory, as in tests/e2e/common/dbservers.rs: installs side by
        # side in the shared /tmp failed now and then.
        tmpdir = self.dir / "tmp"
        tmpdir.mkdir(parents=True)
        subprocess.run([_need("mariadb-install-db"), "--no-defaults", *_ROOT,
                        "--skip-test-db", "--auth-root-authentication-method=normal",
                        f"--datadir={self.dir / 'data'}", f"--tmpdir={tmpdir}"],
                       check=True, capture_output=True, env=dict(os.environ, TMPDIR=str(tmpdir)))
        self.proc = subprocess.Popen(
            [_need("mariadbd"), "--no-defaults", *_ROOT, "--skip-name-resolve",
             "--skip-log-bin", "--bind-address=127.0.0.1", "--innodb-buffer-pool-size=16M",
             f"--port={self.port}", f"--datadir={self.dir / 'data'}",
             f"--socket={self.dir / 'mysqld.sock'}", f"--pid-file={self.dir / 'mysqld.pid'}",
             f"--log-error={self.dir / 'error.log'}", f"--tmpdir={tmpdir}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "mariadbd", self.dir / "error.log")
        self.sql(f"ALTER USER root@localhost IDENTIFIED BY '{self.password}'", password="")
        self.sql("CREATE DATABASE app; CREATE TABLE app.t (x INT); CREATE TABLE app.hidden (x INT)")

    def sql(self, sql, password=None):
        env = dict(os.environ, MYSQL_PWD=self.password if password is None else password)
        subprocess.run([_need("mariadb"), "--no-defaults", f"--socket={self.dir / 'mysqld.sock'}",
                        "-u", "root", "-e", sql], check=True, capture_output=True, env=env)

    def login(self, user, password, sql):
        """Runs `sql` as `user` over TCP on 127.0.0.1; returns (ok, stderr)."""
        env = dict(os.environ, MYSQL_PWD=password)
        r = subprocess.run([_need("mariadb"), "--no-defaults", "-h", "127.0.0.1", "-P",
                            str(self.port), "--protocol=TCP", "-u", user, "-e", sql],
                           capture_output=True, text=True, env=env)
        return r.returncode == 0, r.stderr

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Redis:
    def __init__(self, tmp):
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.port = _free_port()
        self.password = "adm" + uuid.uuid4().hex
        (self.dir / "users.acl").write_text(
            f"user default off\nuser admin on >{self.password} ~* &* +@all\n")
        (self.dir / "redis.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nsave \"\"\nappendonly no\n"
            f"aclfile {self.dir / 'users.acl'}\nlogfile {self.dir / 'redis.log'}\n")
        self.proc = subprocess.Popen([_need("redis-server"), str(self.dir / "redis.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "redis-server", self.dir / "redis.log")

    def run(self, user, password, *args):
        """A command as `user`; returns its output (errors included, as redis-cli prints)."""
        env = dict(os.environ, REDISCLI_AUTH=password)
        r = subprocess.run([_need("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port),
                            "--user", user, "--no-auth-warning", *args],
                           capture_output=True, text=True, env=env)
        return (r.stdout + r.stderr).strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def rig():
    binary = os.environ.get("KEYWARD_BIN") or str(REPO / "target" / "debug" / "keyward")
    tmp = Path(tempfile.mkdtemp(prefix="keyward-rotation-"))
    maria = MariaDb(tmp)
    redis = Redis(tmp)
    config = tmp / "keyward.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n'
        "[testing]\nadjustable_clock = true\n[scheduler]\ninterval_secs = 86400\n"
        f"[rotation]\noverlap_secs = {OVERLAP}\n"
        f'[[databases]]\nid = "maria"\nkind = "mysql"\nsocket = "{maria.dir / "mysqld.sock"}"\n'
        'admin_secret = "maria-admin"\n'
        f'[[databases]]\nid = "cache"\nkind = "redis"\naddress = "127.0.0.1:{redis.port}"\n'
        'admin_secret = "cache-admin"\n')
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc, port, cred = init_and_serve(config, env, tmp / "serve.log", binary)
    rig = {"port": port, "cred": cred, "maria": maria, "redis": redis, "log": tmp / "serve.log"}
    ssm = _ssm(rig)
    for name, login in (("maria-admin", {"UserName": "root", "Password": maria.password}),
                        ("cache-admin", {"UserName": "admin", "Password": redis.password})):
        req = models.CreateSecretRequest()
        req.SecretName = name
        req.SecretString = json.dumps(login)
        ssm.CreateSecret(req)
    yield rig
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    maria.stop()
    redis.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def _profile(rig):
    return ClientProfile(httpProfile=HttpProfile(protocol="http",
                                                 endpoint=f"127.0.0.1:{rig['port']}"))


def _ssm(rig, secret_id=None, secret_key=None):
    c = credential.Credential(secret_id or rig["cred"]["SecretId"],
                              secret_key or rig["cred"]["SecretKey"])
    return ssm_client.SsmClient(c, rig["cred"]["Region"], _profile(rig))


def _keyward(rig):
    c = credential.Credential(rig["cred"]["SecretId"], rig["cred"]["SecretKey"])
    return CommonClient("keyward", "2026-11-01", c, rig["cred"]["Region"], _profile(rig))


def _advance(rig, seconds):
    return _keyward(rig).call_json("AdvanceClock", {"Seconds": seconds})["Response"]


def _current(ssm, name):
    req = models.GetSecretValueRequest()
    req.SecretName = name
    req.VersionId = "SSM_Current"
    return json.loads(ssm.GetSecretValue(req).SecretString)


def _rotate(ssm, name):
    """Starts a rotation and waits for its outcome (TaskStatus 0 while it runs)."""
    req = models.RotateProductSecretRequest()
    req.SecretName = name
    flow = ssm.RotateProductSecret(req).FlowID
    info = models.DescribeAsyncRequestInfoRequest()
    info.FlowID = flow
    deadline = time.monotonic() + 30
    while True:
        resp = ssm.DescribeAsyncRequestInfo(info)
        if resp.TaskStatus != 0 or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def _create(ssm, name, product, instance, domains, privileges):
    req = models.CreateProductSecretRequest()
    req.SecretName = name
    req.UserNamePrefix = "py"
    req.ProductName = product
    req.InstanceID = instance
    req.Domains = domains
    units = []
    for p in privileges:
        u = models.ProductPrivilegeUnit()
        u._deserialize(p)
        units.append(u)
    req.PrivilegesList = units
    flow = ssm.CreateProductSecret(req).FlowID
    info = models.DescribeAsyncRequestInfoRequest()
    info.FlowID = flow
    assert ssm.DescribeAsyncRequestInfo(info).TaskStatus == 1


def test_supported_products(rig):
    resp = _ssm(rig).DescribeSupportedProducts(models.DescribeSupportedProductsRequest())
    assert sorted(resp.Products) == ["Cam", "Mysql", "Redis"]
    assert resp.TotalCount == 3


def test_mariadb_secret_rotates_with_overlap(rig):
    ssm, maria = _ssm(rig), rig["maria"]
    name = f"py-maria-{uuid.uuid4().hex[:8]}"
    _create(ssm, name, "Mysql", "maria", ["127.0.0.1", "localhost"],
            [{"PrivilegeName": "TablePrivileges", "Privileges": ["SELECT", "INSERT"],
              "Database": "app", "TableName": "t"}])
    first = _current(ssm, name)
    assert first["UserName"] == "py_a"
    ok, err = maria.login(first["UserName"], first["Password"], "INSERT INTO app.t VALUES (1)")
    assert ok, err
    ok, err = maria.login(first["UserName"], first["Password"], "SELECT * FROM app.hidden")
    assert not ok and "denied" in err

    assert _rotate(ssm, name).TaskStatus == 1
    second = _current(ssm, name)
    assert second["UserName"] == "py_b"
    assert maria.login(second["UserName"], second["Password"], "SELECT * FROM app.t")[0]
    assert maria.login(first["UserName"], first["Password"], "SELECT * FROM app.t")[0]
    _advance(rig, OVERLAP + 1)
    assert not maria.login(first["UserName"], first["Password"], "SELECT 1")[0]

    # Scheduled rotation: enabled from "now" plus one period (30 days).
    req = models.UpdateRotationStatusRequest()
    req.SecretName = name
    req.EnableRotation = True
    req.Frequency = 30
    ssm.UpdateRotationStatus(req)
    detail_req = models.DescribeRotationDetailRequest()
    detail_req.SecretName = name
    detail = ssm.DescribeRotationDetail(detail_req)
    assert detail.EnableRotation is True and detail.Frequency == 30
    assert detail.NextRotateBeginTime and detail.LatestRotateTime
    assert _advance(rig, 30 * DAY + 1)["SecretsRotated"] >= 1
    third = _current(ssm, name)
    assert third["UserName"] == "py_a" and third["Password"] != first["Password"]
    assert maria.login(third["UserName"], third["Password"], "SELECT * FROM app.t")[0]

    hist_req = models.DescribeRotationHistoryRequest()
    hist_req.SecretName = name
    hist = ssm.DescribeRotationHistory(hist_req)
    assert hist.TotalCount == 3
    assert all(v.startswith("SSM_Rotate_") for v in hist.VersionIDs)
    assert [a.AccountName for a in hist.AccountInfoList] == ["py_a", "py_b", "py_a"]


def test_redis_secret_rotates_with_overlap(rig):
    ssm, redis = _ssm(rig), rig["redis"]
    name = f"py-redis-{uuid.uuid4().hex[:8]}"
    _create(ssm, name, "Redis", "cache", [],
            [{"PrivilegeName": "GlobalPrivileges", "Privileges": ["~app:*", "+get", "+set"]}])
    first = _current(ssm, name)
    assert redis.run(first["UserName"], first["Password"], "SET", "app:x", "1") == "OK"
    assert "NOPERM" in redis.run(first["UserName"], first["Password"], "SET", "other:x", "1")
    assert _rotate(ssm, name).TaskStatus == 1
    second = _current(ssm, name)
    assert redis.run(second["UserName"], second["Password"], "GET", "app:x") == "1"
    assert redis.run(first["UserName"], first["Password"], "GET", "app:x") == "1"
    _advance(rig, OVERLAP + 1)
    assert "1" != redis.run(first["UserName"], first["Password"], "GET", "app:x")


def test_unknown_instance_is_refused(rig):
    with pytest.raises(TencentCloudSDKException) as e:
        _create(_ssm(rig), f"py-bad-{uuid.uuid4().hex[:8]}", "Mysql", "nowhere", ["%"],
                [{"PrivilegeName": "GlobalPrivileges", "Privileges": ["SELECT"]}])
    assert e.value.code == "InvalidParameterValue"


def test_api_key_secret_reader_signs_across_rotations(rig):
    root = _ssm(rig)
    kw = _keyward(rig)
    user = kw.call_json("AddUser", {"Name": f"py-app-{uuid.uuid4().hex[:8]}",
                                    "UseApi": 0})["Response"]
    name = f"py-key-{uuid.uuid4().hex[:8]}"
    req = models.CreateSecretRequest()
    req.SecretName = name
    req.SecretType = 3
    req.AdditionalConfig = json.dumps({"TargetUin": user["Uin"]})
    root.CreateSecret(req)
    doc = {"version": "2.0", "statement": [{
        "effect": "allow", "action": ["ssm:GetSecretValue"],
        "resource": [f"qcs::ssm:{rig['cred']['Region']}:uin/100000000001:secret/"
                     f"creatorUin/100000000001/{name}"]}]}
    pid = kw.call_json("CreatePolicy", {"PolicyName": f"read-{name}",
                                        "PolicyDocument": json.dumps(doc)})["Response"]["PolicyId"]
    kw.call_json("AttachUserPolicy", {"PolicyId": pid, "AttachUin": user["Uin"]})
    held = _current(root, name)
    for _ in range(2):
        assert _rotate(root, name).TaskStatus == 1
        fresh = _current(_ssm(rig, held["SecretId"], held["SecretKey"]), name)
        assert fresh["SecretId"] != held["SecretId"]
        held = _current(_ssm(rig, fresh["SecretId"], fresh["SecretKey"]), name)
        _advance(rig, OVERLAP + 1)
        held = _current(_ssm(rig, held["SecretId"], held["SecretKey"]), name)
