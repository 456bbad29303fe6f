"""tccli against the daemon, exactly as README.md documents it: plain HTTP only through a URL
endpoint (`--endpoint http://127.0.0.1:PORT`), which makes tccli sign `Host: http://…`."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.ssm.v20190923 import models, ssm_client


def tccli_path():
    path = Path(sys.executable).parent / "tccli"
    if not path.exists():
        pytest.fail(f"tccli is not installed in the venv ({path}); scripts/test.sh installs it",
                    pytrace=False)
    return str(path)


def run_tccli(keyward, *args, secret_key=None):
    home = tempfile.mkdtemp(prefix="keyward-tccli-")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({
        "HOME": home,
        "TENCENTCLOUD_SECRET_ID": keyward.secret_id,
        "TENCENTCLOUD_SECRET_KEY": secret_key or keyward.secret_key,
        "TENCENTCLOUD_REGION": keyward.region,
    })
    try:
        return subprocess.run([tccli_path(), *args, "--endpoint", keyward.endpoint],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_tccli_ssm_get_secret_value(keyward):
    ssm = ssm_client.SsmClient(
        credential.Credential(keyward.secret_id, keyward.secret_key), keyward.region,
        ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyward.host)))
    name = f"tccli-{uuid.uuid4().hex[:10]}"
    req = models.CreateSecretRequest()
    req.SecretName, req.SecretString = name, "from-tccli"
    ssm.CreateSecret(req)
    out = run_tccli(keyward, "ssm", "GetSecretValue", "--SecretName", name, "--VersionId", "SSM_Current")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["SecretString"] == "from-tccli"
    assert got["SecretName"] == name


def test_tccli_kms_and_errors(keyward):
    out = run_tccli(keyward, "kms", "GenerateRandom", "--NumberOfBytes", "16")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["Plaintext"]) == 24
    bad = run_tccli(keyward, "kms", "GenerateRandom", "--NumberOfBytes", "16",
                    secret_key="WrongWrongWrongWrongWrongWrong00")
    assert bad.returncode != 0
    assert "AuthFailure.SignatureFailure" in bad.stderr + bad.stdout
