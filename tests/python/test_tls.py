"""TLS: the daemon serves HTTPS with rustls when [tls] is configured, and the official SDK
reaches it with `HttpProfile(certification=...)`. Uses the embedded backend: what is under test
here is the transport, not the HSM."""

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import init_and_serve
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tls_daemon():
    binary = os.environ.get("KEYWARD_BIN") or str(REPO / "target" / "debug" / "keyward")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test certificate", pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="keyward-tls-"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=keyward-test", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    config = tmp / "keyward.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc, port, cred = init_and_serve(config, env, tmp / "serve.log", binary)
    yield {"port": port, "cert": str(cert), "key": str(key), "cred": cred, "proc": proc,
           "tmp": tmp, "log": tmp / "serve.log"}
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    shutil.rmtree(tmp, ignore_errors=True)


def _client(d, certification):
    hp = HttpProfile(endpoint=f"127.0.0.1:{d['port']}", certification=certification)
    cred = credential.Credential(d["cred"]["SecretId"], d["cred"]["SecretKey"])
    return kms_client.KmsClient(cred, d["cred"]["Region"], ClientProfile(httpProfile=hp))


def test_sdk_over_https_with_private_certificate(tls_daemon):
    c = _client(tls_daemon, tls_daemon["cert"])
    req = models.CreateKeyRequest()
    req.Alias = "tls-key"
    key_id = c.CreateKey(req).KeyId
    req = models.EncryptRequest()
    req.KeyId = key_id
    req.Plaintext = base64.b64encode(b"over tls").decode()
    blob = c.Encrypt(req).CiphertextBlob
    req = models.DecryptRequest()
    req.CiphertextBlob = blob
    assert base64.b64decode(c.Decrypt(req).Plaintext) == b"over tls"


def test_https_without_trusting_the_certificate_fails(tls_daemon):
    c = _client(tls_daemon, None)  # certifi's bundle: our private certificate is not in it
    req = models.GenerateRandomRequest()
    req.NumberOfBytes = 8
    with pytest.raises(TencentCloudSDKException) as e:
        c.GenerateRandom(req)
    assert "SSL" in str(e.value) or "certificate" in str(e.value).lower()


def _served_certificate(port):
    """The DER certificate the daemon presents to a new connection."""
    import ssl
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return ssl.PEM_cert_to_DER_cert(pem)


def _der_of(path):
    import ssl
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


def _wait_for_reload(d, count, deadline=10.0):
    end = time.monotonic() + deadline
    while d["log"].read_text().count("TLS certificate reload") < count:
        if time.monotonic() > end:
            pytest.fail(f"no reload logged:\n{d['log'].read_text()}", pytrace=False)
        time.sleep(0.05)


def test_sighup_reloads_the_certificate_without_a_restart(tls_daemon):
    """Issue 17: a renewed certificate is served after SIGHUP, by the same process; a pair that
    does not load leaves the current one in use."""
    d = tls_daemon
    old_cert, old_key = Path(d["cert"]).read_bytes(), Path(d["key"]).read_bytes()
    assert _served_certificate(d["port"]) == _der_of(d["cert"])
    new_cert, new_key = d["tmp"] / "new-cert.pem", d["tmp"] / "new-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(new_key), "-out", str(new_cert), "-days", "2",
         "-subj", "/CN=keyward-renewed", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    try:
        shutil.copy(new_cert, d["cert"])
        shutil.copy(new_key, d["key"])
        d["proc"].send_signal(signal.SIGHUP)
        _wait_for_reload(d, 1)
        assert _served_certificate(d["port"]) == _der_of(new_cert)
        assert d["proc"].poll() is None, "the same process serves on"
        # A broken pair is refused and the renewed certificate stays.
        Path(d["key"]).write_text("not a key")
        d["proc"].send_signal(signal.SIGHUP)
        _wait_for_reload(d, 2)
        assert "TLS certificate reload failed" in d["log"].read_text()
        assert _served_certificate(d["port"]) == _der_of(new_cert)
    finally:
        Path(d["cert"]).write_bytes(old_cert)
        Path(d["key"]).write_bytes(old_key)
        d["proc"].send_signal(signal.SIGHUP)
        _wait_for_reload(d, 3)
    assert _served_certificate(d["port"]) == _der_of(d["cert"])
