"""Access control driven entirely by the official SDK: the extension API through the SDK's
generic CommonClient (service `keyward`), a sub-account's KMS client refused or allowed per
key, and the refusal found again through CloudauditClient."""

import base64
import json
import time
import uuid

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import models as kms_models

from test_cloudaudit import audit_client, look_up

ROOT_UIN = 100000000001


def admin(keyward, secret_id=None, secret_key=None):
    return CommonClient(
        "keyward", "2026-11-01",
        credential.Credential(secret_id or keyward.secret_id, secret_key or keyward.secret_key),
        keyward.region,
        ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyward.host)))


def new_key(kms):
    req = kms_models.CreateKeyRequest()
    req.Alias = f"acl-{uuid.uuid4().hex[:12]}"
    return kms.CreateKey(req).KeyId


def encrypt(kms, key_id):
    req = kms_models.EncryptRequest()
    req.KeyId, req.Plaintext = key_id, base64.b64encode(b"acl").decode()
    return kms.Encrypt(req)


def test_sub_account_encrypts_with_the_one_key_its_policy_names(keyward, kms):
    a, b = new_key(kms), new_key(kms)
    root = admin(keyward)
    name = f"app-{uuid.uuid4().hex[:10]}"
    user = root.call_json("AddUser", {"Name": name, "UseApi": 1})["Response"]
    sub_kms = keyward.client(user["SecretId"], user["SecretKey"])

    with pytest.raises(TencentCloudSDKException) as e:
        encrypt(sub_kms, a)
    assert e.value.code == "AuthFailure.UnauthorizedOperation"

    doc = {"version": "2.0", "statement": [{
        "effect": "allow", "action": ["name/kms:Encrypt"],
        "resource": [f"qcs::kms:{keyward.region}:uin/{ROOT_UIN}:key/{a}"]}]}
    pid = root.call_json("CreatePolicy", {"PolicyName": f"enc-{name}",
                                          "PolicyDocument": json.dumps(doc)})["Response"]["PolicyId"]
    root.call_json("AttachUserPolicy", {"PolicyId": pid, "AttachUin": user["Uin"]})

    assert encrypt(sub_kms, a).KeyId == a
    with pytest.raises(TencentCloudSDKException) as e:
        encrypt(sub_kms, b)
    assert e.value.code == "AuthFailure.UnauthorizedOperation"
    refused_request = e.value.requestId

    # The sub-account cannot manage access itself.
    with pytest.raises(TencentCloudSDKException) as e:
        admin(keyward, user["SecretId"], user["SecretKey"]).call_json("ListUsers", {})
    assert e.value.code == "AuthFailure.UnauthorizedOperation"

    # The refusal is on the record, under the sub-account's name.
    now = int(time.time())
    events = look_up(audit_client(keyward), now - 120, now + 5,
                     [("Username", name), ("ApiErrorCode", "AuthFailure.UnauthorizedOperation")])
    assert refused_request in [ev.RequestID for ev in events.Events]
    ev = next(ev for ev in events.Events if ev.RequestID == refused_request)
    assert ev.EventName == "Encrypt" and ev.ErrorCode == 1
    assert ev.Resources.ResourceName == b

    # Disabling the key ends its use at once.
    root.call_json("UpdateAccessKey", {"AccessKeyId": user["SecretId"], "Status": "Inactive",
                                       "TargetUin": user["Uin"]})
    with pytest.raises(TencentCloudSDKException) as e:
        encrypt(sub_kms, a)
    assert e.value.code == "AuthFailure.SecretIdNotFound"


def test_bad_policy_document_is_refused(keyward):
    with pytest.raises(TencentCloudSDKException) as e:
        admin(keyward).call_json("CreatePolicy", {
            "PolicyName": f"bad-{uuid.uuid4().hex[:8]}",
            "PolicyDocument": json.dumps({"version": "2.0", "statement": [{
                "effect": "allow", "action": ["kms:Encrypt"], "resource": ["*"],
                "condition": {"ip_equall": {"qcs:ip": ["10.0.0.0/8"]}}}]})})
    assert e.value.code == "InvalidParameter.PolicyDocumentError"


@pytest.mark.parametrize("service,version,action,params,code", [
    ("keyward", "2026-11-01", "UpdateAccessKey", {"AccessKeyId": "AKIDnope", "Status": "Sleeping"},
     "InvalidParameterValue"),
    ("keyward", "2026-11-01", "UpdateAccessKey", {"AccessKeyId": "AKIDnope", "Status": "Active"},
     "ResourceNotFound.SecretNotExist"),
    ("keyward", "2026-11-01", "GetUser", {"Name": "nobody-here"}, "ResourceNotFound.UserNotExist"),
    ("keyward", "2026-11-01", "DeleteGroup", {"GroupId": 999999}, "ResourceNotFound.GroupNotExist"),
    ("keyward", "2026-11-01", "DeleteGroup", {}, "MissingParameter"),
    ("keyward", "2026-11-01", "GetPolicy", {"PolicyId": 999999}, "ResourceNotFound.PolicyIdNotFound"),
    ("keyward", "2026-11-01", "AddUser", {"Name": "bad name!"}, "InvalidParameterValue"),
    ("keyward", "2026-11-01", "DeleteUser", {"Name": "root"}, "OperationDenied"),
    ("keyward", "2026-11-01", "ExportAuditLog", {"Limit": 1001}, "InvalidParameterValue"),
    ("keyward", "2026-11-01", "AddUser", {"Name": "x", "Colour": "blue"}, "UnknownParameter"),
    ("cloudaudit", "2019-03-19", "LookUpEvents", {"StartTime": 1, "EndTime": 2, "NextToken": "abc"},
     "InvalidParameterValue"),
    ("cloudaudit", "2019-03-19", "LookUpEvents", {"StartTime": 1, "EndTime": 2, "Mode": "slow"},
     "InvalidParameterValue"),
    ("cloudaudit", "2019-03-19", "LookUpEvents", {"EndTime": 2}, "InvalidParameter.Time"),
])
def test_management_and_query_errors(keyward, service, version, action, params, code):
    client = CommonClient(
        service, version, credential.Credential(keyward.secret_id, keyward.secret_key),
        keyward.region, ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyward.host)))
    with pytest.raises(TencentCloudSDKException) as e:
        client.call_json(action, params)
    assert e.value.code == code, e.value.message
