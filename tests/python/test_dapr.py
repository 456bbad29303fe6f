"""Dapr's Tencent Cloud SSM secret store (`secretstores.tencentcloud.ssm`) against Keyward, set
up as docs/dapr.md says: TLS with a certificate from a private CA for the name the Go SDK
dials (`ssm.tencentcloudapi.com`, port 443), the component's region in `[[regions]]`, and
`[ssm] omit_unused_value_field = true`.

The component (dapr/components-contrib, secretstores/tencentcloud/ssm) calls the Go SDK
(tencentcloud-sdk-go, common/client.go `sendWithSignatureV3`); its requests are rebuilt here
byte for byte: POST / over HTTP/2 (Go's transport negotiates h2 whenever TLS offers it, and
then the host travels as `:authority`, not as a Host header), `Content-Type:
application/json`, the body as Go's encoding/json writes the request struct (field order,
no spaces), `X-TC-Action`, `X-TC-Version`, `X-TC-Timestamp`, `X-TC-RequestClient:
SDK_GO_<version>`, `X-TC-Language: zh-CN`, `X-TC-Region`, and TC3 over `content-type;host`
with service `ssm` and host `ssm.tencentcloudapi.com`. The component's handling of the
responses (GetSecret, BulkGetSecret) is mirrored too, so what a Dapr application would
receive is what is checked.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import init_and_serve
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.ssm.v20190923 import models, ssm_client

REPO = Path(__file__).resolve().parents[2]
SSM_HOST = "ssm.tencentcloudapi.com"  # the Go SDK's default: service + "." + root domain
DAPR_REGION = "ap-beijing-3"  # the region in Dapr's documented example
GO_REQUEST_CLIENT = "SDK_GO_1.0.732"  # the Go SDK version components-contrib pins
TEXT, BINARY = "10", "20"  # the component's SecretValueType


def _openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_private_ca(tmp):
    """A CA, and a server certificate it signs for the SSM name (and 127.0.0.1 for setup)."""
    ca_key, ca, key, csr, cert, ext = (tmp / n for n in (
        "ca.key", "ca.pem", "key.pem", "server.csr", "cert.pem", "ext.cnf"))
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Keyward test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={SSM_HOST}")
    ext.write_text(f"subjectAltName=DNS:{SSM_HOST},IP:127.0.0.1\n"
                   "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


def start_daemon(tmp, extra_config):
    binary = os.environ.get("KEYWARD_BIN") or str(REPO / "target" / "debug" / "keyward")
    config = tmp / "keyward.toml"
    config.write_text(f'data_dir = "{tmp / "data"}"\n{extra_config}')
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc, port, cred = init_and_serve(config, env, tmp / "serve.log", binary)
    return proc, cred, port


@pytest.fixture(scope="module")
def dapr_keyward():
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates", pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="keyward-dapr-"))
    ca, cert, key = make_private_ca(tmp)
    proc, cred, port = start_daemon(tmp, (
        f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
        '[[regions]]\nname = "ap-guangzhou"\n'
        f'[[regions]]\nname = "{DAPR_REGION}"\n'
        "[ssm]\nomit_unused_value_field = true\n"))
    yield {"port": port, "ca": str(ca), "cred": cred}
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    shutil.rmtree(tmp, ignore_errors=True)


class GoSdkSsm:
    """ssm.NewClient(common.NewTokenCredential(id, key, ""), region, profile.NewClientProfile())
    as the component makes it, sending over `transport` (HTTP/2 + TLS to the SSM name)."""

    def __init__(self, secret_id, secret_key, region, send):
        self.secret_id, self.secret_key, self.region, self.send = (
            secret_id, secret_key, region, send)

    def _call(self, action, body):
        payload = json.dumps(body, separators=(",", ":")).encode()  # Go's json.Marshal
        timestamp = str(int(time.time()))
        date = datetime.datetime.fromtimestamp(int(timestamp), datetime.timezone.utc)
        date = date.strftime("%Y-%m-%d")
        canonical = (f"POST\n/\n\ncontent-type:application/json\nhost:{SSM_HOST}\n\n"
                     f"content-type;host\n{hashlib.sha256(payload).hexdigest()}")
        scope = f"{date}/ssm/tc3_request"
        to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")

        def mac(k, m):
            return hmac.new(k, m.encode(), hashlib.sha256).digest()

        k = mac(mac(mac(("TC3" + self.secret_key).encode(), date), "ssm"), "tc3_request")
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Host": SSM_HOST,
            "X-TC-Action": action,
            "X-TC-Version": "2019-09-23",
            "X-TC-Timestamp": timestamp,
            "X-TC-RequestClient": GO_REQUEST_CLIENT,
            "X-TC-Language": "zh-CN",
            "X-TC-Region": self.region,
            "Content-Type": "application/json",
            "Authorization": (f"TC3-HMAC-SHA256 Credential={self.secret_id}/{scope}, "
                              f"SignedHeaders=content-type;host, Signature={signature}"),
            "User-Agent": "Go-http-client/2.0",
            "Accept-Encoding": "gzip",
        }
        response = self.send(headers, payload)
        assert response.status_code == 200
        data = response.json()["Response"]
        if "Error" in data:
            raise RuntimeError(f'{data["Error"]["Code"]}: {data["Error"]["Message"]}')
        return data

    def get_secret_value(self, name, version_id):
        return self._call("GetSecretValue", {"SecretName": name, "VersionId": version_id})

    def list_secrets(self, offset, limit, state):
        return self._call("ListSecrets", {"Offset": offset, "Limit": limit, "State": state})


def component_get_secret(client, name, metadata):
    """ssmSecretStore.GetSecret: VersionId is metadata["VersionID"], "" when absent; a
    present SecretBinary (a non-nil pointer in Go) wins over SecretString."""
    r = client.get_secret_value(name, metadata.get("VersionID", ""))
    data = {}
    if "SecretBinary" in r and r["SecretBinary"] is not None:
        data["SecretValueType"], val = BINARY, r["SecretBinary"]
    elif "SecretString" in r and r["SecretString"] is not None:
        data["SecretValueType"], val = TEXT, r["SecretString"]
    else:
        val = ""
    data[r["SecretName"]] = val
    data["RequestID"] = r["RequestId"]
    return data


def component_bulk_get_secret(client, metadata):
    """ssmSecretStore.BulkGetSecret: every Enabled secret (pages of 100), then GetSecret."""
    names, offset = [], 0
    while True:
        page = client.list_secrets(offset, 100, 1)["SecretMetadatas"]
        names += [m["SecretName"] for m in page]
        if len(page) < 100:
            break
        offset += len(page)
    return {n: component_get_secret(client, n, {"VersionID": metadata.get("VersionID", "")})
            for n in names}


# What docs/dapr.md grants the component's API key: reading and listing the secrets of its
# region, nothing else.
DAPR_POLICY = {"version": "2.0", "statement": [{
    "effect": "allow",
    "action": ["ssm:GetSecretValue", "ssm:ListSecrets"],
    "resource": [f"qcs::ssm:{DAPR_REGION}:uin/100000000001:secret/*"]}]}


def admin_client(dapr_keyward):
    hp = HttpProfile(endpoint=f"127.0.0.1:{dapr_keyward['port']}",
                     certification=dapr_keyward["ca"])
    root = dapr_keyward["cred"]
    return CommonClient("keyward", "2026-11-01",
                        credential.Credential(root["SecretId"], root["SecretKey"]),
                        DAPR_REGION, ClientProfile(httpProfile=hp))


@pytest.fixture(scope="module")
def dapr_credentials(dapr_keyward):
    """A sub-account for the component, with the policy docs/dapr.md gives."""
    admin = admin_client(dapr_keyward)
    user = admin.call_json("AddUser", {"Name": "dapr", "UseApi": 1})["Response"]
    pid = admin.call_json("CreatePolicy", {
        "PolicyName": "dapr-secret-store",
        "PolicyDocument": json.dumps(DAPR_POLICY)})["Response"]["PolicyId"]
    admin.call_json("AttachUserPolicy", {"PolicyId": pid, "AttachUin": user["Uin"]})
    return user


@pytest.fixture(scope="module")
def go_ssm(dapr_keyward, dapr_credentials):
    """The component's client, dialling Keyward as the Go SDK would reach it under its name."""
    ctx = ssl.create_default_context(cafile=dapr_keyward["ca"])  # the private CA, trusted
    http = httpx.Client(http2=True, verify=ctx, timeout=30, trust_env=False)
    url = f"https://127.0.0.1:{dapr_keyward['port']}/"  # where the name resolves to
    versions = []

    def send(headers, payload):
        r = http.post(url, headers=headers, content=payload,
                      extensions={"sni_hostname": SSM_HOST})
        versions.append(r.http_version)
        return r

    cred = dapr_credentials
    yield GoSdkSsm(cred["SecretId"], cred["SecretKey"], DAPR_REGION, send)
    http.close()
    assert versions and set(versions) == {"HTTP/2"}, versions


@pytest.fixture(scope="module")
def sdk_ssm(dapr_keyward):
    """The Python SDK, to set secrets up in the component's region."""
    hp = HttpProfile(endpoint=f"127.0.0.1:{dapr_keyward['port']}",
                     certification=dapr_keyward["ca"])
    cred = credential.Credential(dapr_keyward["cred"]["SecretId"],
                                 dapr_keyward["cred"]["SecretKey"])
    return ssm_client.SsmClient(cred, DAPR_REGION, ClientProfile(httpProfile=hp))


def create(sdk, name, string=None, binary=None, version_id=None):
    req = models.CreateSecretRequest()
    req.SecretName = name
    if string is not None:
        req.SecretString = string
    if binary is not None:
        req.SecretBinary = base64.b64encode(binary).decode()
    if version_id is not None:
        req.VersionId = version_id
    sdk.CreateSecret(req)


def test_get_secret_reads_ssm_current_of_text_and_binary_secrets(go_ssm, sdk_ssm):
    text, blob = f"dapr-text-{uuid.uuid4().hex[:8]}", f"dapr-bin-{uuid.uuid4().hex[:8]}"
    create(sdk_ssm, text, string="postgres://app:s3cret@db/app")
    create(sdk_ssm, blob, binary=b"\x00\x01binary\xff")

    got = component_get_secret(go_ssm, text, {})
    assert got[text] == "postgres://app:s3cret@db/app"
    assert got["SecretValueType"] == TEXT
    assert got["RequestID"]

    got = component_get_secret(go_ssm, blob, {})
    assert got["SecretValueType"] == BINARY
    # The component hands binary values over base64-encoded (it does not decode them).
    assert base64.b64decode(got[blob]) == b"\x00\x01binary\xff"


def test_get_secret_with_a_version_id_in_the_metadata(go_ssm, sdk_ssm):
    name = f"dapr-versions-{uuid.uuid4().hex[:8]}"
    create(sdk_ssm, name, string="one")
    req = models.PutSecretValueRequest()
    req.SecretName, req.VersionId, req.SecretString = name, "v2", "two"
    sdk_ssm.PutSecretValue(req)
    assert component_get_secret(go_ssm, name, {"VersionID": "v2"})[name] == "two"
    assert component_get_secret(go_ssm, name, {})[name] == "one"


def test_a_secret_created_with_a_version_id_needs_it_in_the_metadata(go_ssm, sdk_ssm):
    name = f"dapr-named-{uuid.uuid4().hex[:8]}"
    create(sdk_ssm, name, string="named", version_id="v1")
    with pytest.raises(RuntimeError, match="ResourceNotFound"):
        component_get_secret(go_ssm, name, {})
    assert component_get_secret(go_ssm, name, {"VersionID": "v1"})[name] == "named"
    # BulkGetSecret reads every Enabled secret of the region with one VersionID, so one
    # secret without SSM_Current fails it all (docs/dapr.md: a region of its own for Dapr).
    with pytest.raises(RuntimeError, match="ResourceNotFound"):
        component_bulk_get_secret(go_ssm, {})
    req = models.DisableSecretRequest()
    req.SecretName = name
    sdk_ssm.DisableSecret(req)
    req = models.DeleteSecretRequest()
    req.SecretName, req.RecoveryWindowInDays = name, 0
    sdk_ssm.DeleteSecret(req)


def test_bulk_get_secret_lists_enabled_secrets_and_reads_each(go_ssm, sdk_ssm):
    names = [f"dapr-bulk-{i}-{uuid.uuid4().hex[:8]}" for i in range(3)]
    for n in names:
        create(sdk_ssm, n, string=f"value of {n}")
    disabled = f"dapr-off-{uuid.uuid4().hex[:8]}"
    create(sdk_ssm, disabled, string="hidden")
    req = models.DisableSecretRequest()
    req.SecretName = disabled
    sdk_ssm.DisableSecret(req)

    everything = component_bulk_get_secret(go_ssm, {})
    for n in names:
        assert everything[n][n] == f"value of {n}"
        assert everything[n]["SecretValueType"] == TEXT
    assert disabled not in everything


def test_the_components_key_reads_and_lists_only(go_ssm, sdk_ssm):
    name = f"dapr-acl-{uuid.uuid4().hex[:8]}"
    create(sdk_ssm, name, string="x")
    with pytest.raises(RuntimeError, match="UnauthorizedOperation"):
        go_ssm._call("PutSecretValue", {"SecretName": name, "VersionId": "v9",
                                        "SecretString": "overwritten"})
    with pytest.raises(RuntimeError, match="UnauthorizedOperation"):
        go_ssm._call("DescribeSecret", {"SecretName": name})


def test_the_region_must_be_configured(dapr_keyward, go_ssm):
    other = GoSdkSsm(go_ssm.secret_id, go_ssm.secret_key, "ap-beijing-4", go_ssm.send)
    with pytest.raises(RuntimeError, match="UnsupportedRegion"):
        other.list_secrets(0, 100, 1)


def test_without_the_switch_text_secrets_reach_dapr_empty(keyward):
    """The session daemon has the default `omit_unused_value_field = false` (Tencent Cloud's
    shape): the text value comes with `"SecretBinary": ""`, which the component prefers."""
    name = f"dapr-default-{uuid.uuid4().hex[:8]}"
    hp = HttpProfile(protocol="http", endpoint=keyward.host)
    sdk = ssm_client.SsmClient(credential.Credential(keyward.secret_id, keyward.secret_key),
                               keyward.region, ClientProfile(httpProfile=hp))
    create(sdk, name, string="text")
    http = httpx.Client(timeout=30, trust_env=False)

    def send(headers, payload):
        # HTTP/1.1 to the plain listener: the Host header carries the name; only the port in
        # the URL differs from what Go would dial.
        return http.post(keyward.endpoint + "/", headers=headers, content=payload)

    client = GoSdkSsm(keyward.secret_id, keyward.secret_key, keyward.region, send)
    raw = client.get_secret_value(name, "")
    assert raw["SecretString"] == "text" and raw["SecretBinary"] == ""
    assert component_get_secret(client, name, {})[name] == ""
    http.close()
