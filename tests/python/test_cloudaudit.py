"""The audit log through Tencent CloudAudit's API: the official SDK's CloudauditClient and
`tccli cloudaudit LookUpEvents` query the requests this test just made."""

import base64
import json
import time
import uuid

import pytest
from tencentcloud.cloudaudit.v20190319 import cloudaudit_client
from tencentcloud.cloudaudit.v20190319 import models as ca_models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import models as kms_models

from test_tccli import run_tccli


def audit_client(keyward):
    return cloudaudit_client.CloudauditClient(
        credential.Credential(keyward.secret_id, keyward.secret_key), keyward.region,
        ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyward.host)))


def look_up(client, start, end, attributes=(), max_results=50, next_token=None):
    req = ca_models.LookUpEventsRequest()
    req.StartTime, req.EndTime, req.MaxResults = start, end, max_results
    req.LookupAttributes = []
    for k, v in attributes:
        a = ca_models.LookupAttribute()
        a.AttributeKey, a.AttributeValue = k, v
        req.LookupAttributes.append(a)
    if next_token:
        req.NextToken = next_token
    return client.LookUpEvents(req)


def encrypt_once(kms, plaintext):
    req = kms_models.CreateKeyRequest()
    req.Alias = f"audit-{uuid.uuid4().hex[:12]}"
    key_id = kms.CreateKey(req).KeyId
    enc = kms_models.EncryptRequest()
    enc.KeyId, enc.Plaintext = key_id, base64.b64encode(plaintext).decode()
    resp = kms.Encrypt(enc)
    return key_id, resp.RequestId, resp.CiphertextBlob


def test_sdk_finds_the_encrypt_it_made(keyward, kms):
    start = int(time.time()) - 5
    secret = b"audit-must-never-see-this-" + uuid.uuid4().hex.encode()
    key_id, request_id, blob = encrypt_once(kms, secret)
    client = audit_client(keyward)
    resp = look_up(client, start, int(time.time()) + 5, [("RequestId", request_id)])
    assert len(resp.Events) == 1, resp.to_json_string()
    ev = resp.Events[0]
    assert ev.EventName == "Encrypt"
    assert ev.RequestID == request_id
    assert ev.ErrorCode == 0
    assert ev.Username == "root"
    assert ev.SecretId == keyward.secret_id
    assert ev.EventSource == "kms.tencentcloudapi.com"
    assert ev.SourceIPAddress == "127.0.0.1"
    assert ev.Resources.ResourceName == key_id
    assert int(ev.EventTime) >= start
    detail = json.loads(ev.CloudAuditEvent)
    assert detail["keyId"] == key_id and detail["keyVersion"] == 1
    assert detail["apiErrorCode"] == "Success"
    # Neither the plaintext nor the ciphertext is in the record.
    raw = resp.to_json_string()
    for needle in (secret.decode(), base64.b64encode(secret).decode(), blob):
        assert needle not in raw

    # By resource name: the CreateKey and the Encrypt of that key, newest first.
    resp = look_up(client, start, int(time.time()) + 5, [("ResourceName", key_id)])
    names = [e.EventName for e in resp.Events]
    assert names[:2] == ["Encrypt", "CreateKey"], names


def test_paging_and_filters(keyward, kms):
    start = int(time.time()) - 5
    ids = [encrypt_once(kms, b"x")[1] for _ in range(3)]
    client = audit_client(keyward)
    seen, token = [], None
    while True:
        resp = look_up(client, start, int(time.time()) + 5, [("EventName", "Encrypt")],
                       max_results=1, next_token=token)
        seen += [e.RequestID for e in resp.Events]
        assert resp.TotalCount >= 3
        if resp.ListOver:
            break
        token = resp.NextToken
        assert token
    for rid in ids:
        assert seen.count(rid) == 1
    # Two values of one key are alternatives; different keys must both hold.
    resp = look_up(client, start, int(time.time()) + 5,
                   [("EventName", "Encrypt"), ("EventName", "CreateKey"),
                    ("AccessKeyId", keyward.secret_id)])
    assert {e.EventName for e in resp.Events} <= {"Encrypt", "CreateKey"}
    assert {"Encrypt", "CreateKey"} <= {e.EventName for e in resp.Events}


@pytest.mark.parametrize("fields,code", [
    ({"StartTime": 10, "EndTime": 5}, "InvalidParameterValue.Time"),
    ({"StartTime": 0, "EndTime": 30 * 86400}, "LimitExceeded.OverTime"),
    ({"StartTime": 0, "EndTime": 5, "MaxResults": 51}, "InvalidParameterValue.MaxResult"),
])
def test_documented_errors(keyward, fields, code):
    req = ca_models.LookUpEventsRequest()
    for k, v in fields.items():
        setattr(req, k, v)
    with pytest.raises(TencentCloudSDKException) as e:
        audit_client(keyward).LookUpEvents(req)
    assert e.value.code == code


def test_bad_attribute_key(keyward):
    now = int(time.time())
    with pytest.raises(TencentCloudSDKException) as e:
        look_up(audit_client(keyward), now - 60, now, [("Colour", "blue")])
    assert e.value.code == "InvalidParameterValue.attributeKey"


def test_tccli_look_up_events(keyward, kms):
    start = int(time.time()) - 5
    _, request_id, _ = encrypt_once(kms, b"tccli")
    out = run_tccli(keyward, "cloudaudit", "LookUpEvents",
                    "--StartTime", str(start), "--EndTime", str(int(time.time()) + 5),
                    "--MaxResults", "10",
                    "--LookupAttributes",
                    json.dumps([{"AttributeKey": "RequestId", "AttributeValue": request_id}]))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [e["RequestID"] for e in got["Events"]] == [request_id]
    assert got["Events"][0]["EventName"] == "Encrypt"
