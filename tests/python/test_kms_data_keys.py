"""Hosted data keys through the official SDK: GenerateDataKey(IsHostedByKms=1), ImportDataKey,
Describe/List, GetDataKeyPlaintext/CiphertextBlob, rename, describe, enable/disable (single and
batch), schedule/cancel deletion."""

import base64
import time
import uuid

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.kms.v20190118 import models


def name(prefix="dk"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def expect(code, fn, req):
    with pytest.raises(TencentCloudSDKException) as e:
        fn(req)
    assert e.value.code == code, f"expected {code}, got {e.value.code}: {e.value.message}"


@pytest.fixture
def cmk(kms):
    req = models.CreateKeyRequest()
    req.Alias = name("cmk")
    return kms.CreateKey(req).KeyId


def hosted(kms, cmk, dk_name=None, tags=None):
    req = models.GenerateDataKeyRequest()
    req.KeyId = cmk
    req.KeySpec = "AES_256"
    req.IsHostedByKms = 1
    req.DataKeyName = dk_name or name()
    req.Description = "hosted"
    if tags:
        req.Tags = tags
    return kms.GenerateDataKey(req)


def plaintext(kms, dk):
    req = models.GetDataKeyPlaintextRequest()
    req.DataKeyId = dk
    return base64.b64decode(kms.GetDataKeyPlaintext(req).Plaintext)


def describe(kms, dk):
    req = models.DescribeDataKeyRequest()
    req.DataKeyId = dk
    return kms.DescribeDataKey(req).DataKeyMetadata


def test_generate_hosted_and_read_back(kms, cmk):
    tag = models.Tag()
    tag.TagKey, tag.TagValue = "team", "payments"
    r = hosted(kms, cmk, tags=[tag])
    assert r.DataKeyId
    value = base64.b64decode(r.Plaintext)
    assert len(value) == 32
    assert plaintext(kms, r.DataKeyId) == value
    meta = describe(kms, r.DataKeyId)
    assert (meta.KeyId, meta.NumberOfBytes, meta.KeyState, meta.Origin) == (cmk, 32, "Enabled", "TENCENT_KMS")
    assert abs(meta.CreateTime - time.time()) < 600
    req = models.GetDataKeyCiphertextBlobRequest()
    req.DataKeyId = r.DataKeyId
    blob = kms.GetDataKeyCiphertextBlob(req).CiphertextBlob
    dec = models.DecryptRequest()
    dec.CiphertextBlob = blob
    assert base64.b64decode(kms.Decrypt(dec).Plaintext) == value
    lst = models.ListDataKeyDetailRequest()
    tf = models.TagFilter()
    tf.TagKey, tf.TagValue = "team", ["payments"]
    lst.TagFilters = [tf]
    found = kms.ListDataKeyDetail(lst)
    assert r.DataKeyId in [m.DataKeyId for m in found.DataKeyMetadatas]


def test_hosted_name_rules(kms, cmk):
    n = name()
    hosted(kms, cmk, n)
    req = models.GenerateDataKeyRequest()
    req.KeyId, req.KeySpec, req.IsHostedByKms, req.DataKeyName = cmk, "AES_128", 1, n
    expect("InvalidParameterValue.DataKeyNameAlreadyExists", kms.GenerateDataKey, req)
    req.DataKeyName = "no spaces allowed"
    expect("InvalidParameterValue.InvalidDataKeyName", kms.GenerateDataKey, req)


def test_import_ciphertext_and_plaintext(kms, cmk):
    gen = models.GenerateDataKeyRequest()
    gen.KeyId, gen.NumberOfBytes = cmk, 48
    dek = kms.GenerateDataKey(gen)
    imp = models.ImportDataKeyRequest()
    imp.DataKeyName, imp.ImportKeyMaterial, imp.ImportType = name(), dek.CiphertextBlob, 1
    r1 = kms.ImportDataKey(imp)
    assert r1.KeyId == cmk
    assert plaintext(kms, r1.DataKeyId) == base64.b64decode(dek.Plaintext)
    assert describe(kms, r1.DataKeyId).Origin == "EXTERNAL"
    raw = bytes(range(16))
    imp = models.ImportDataKeyRequest()
    imp.DataKeyName, imp.ImportKeyMaterial, imp.ImportType, imp.KeyId = name(), base64.b64encode(raw).decode(), 2, cmk
    r2 = kms.ImportDataKey(imp)
    assert plaintext(kms, r2.DataKeyId) == raw
    imp.DataKeyName, imp.KeyId = name(), None
    expect("MissingParameter", kms.ImportDataKey, imp)
    imp.ImportType, imp.ImportKeyMaterial = 1, base64.b64encode(b"garbage" * 5).decode()
    expect("InvalidParameterValue.InvalidImportKeyMaterial", kms.ImportDataKey, imp)


def test_rename_describe_and_state(kms, cmk):
    a = hosted(kms, cmk).DataKeyId
    b = hosted(kms, cmk).DataKeyId
    new = name("renamed")
    req = models.UpdateDataKeyNameRequest()
    req.DataKeyId, req.DataKeyName = a, new
    kms.UpdateDataKeyName(req)
    req = models.UpdateDataKeyDescriptionRequest()
    req.DataKeyId, req.Description = a, "rotated creds"
    kms.UpdateDataKeyDescription(req)
    meta = describe(kms, a)
    assert (meta.DataKeyName, meta.Description) == (new, "rotated creds")

    req = models.DisableDataKeyRequest()
    req.DataKeyId = a
    kms.DisableDataKey(req)
    g = models.GetDataKeyPlaintextRequest()
    g.DataKeyId = a
    expect("ResourceUnavailable.DataKeyDisabled", kms.GetDataKeyPlaintext, g)
    req = models.EnableDataKeyRequest()
    req.DataKeyId = a
    kms.EnableDataKey(req)
    assert len(plaintext(kms, a)) == 32

    req = models.DisableDataKeysRequest()
    req.DataKeyIds = [a, b]
    kms.DisableDataKeys(req)
    ds = models.DescribeDataKeysRequest()
    ds.DataKeyIds = [a, b]
    assert {m.KeyState for m in kms.DescribeDataKeys(ds).DataKeyMetadatas} == {"Disabled"}
    req = models.EnableDataKeysRequest()
    req.DataKeyIds = [a, a]
    expect("InvalidParameterValue.DuplicatedDataKeyId", kms.EnableDataKeys, req)
    req.DataKeyIds = [a, b]
    kms.EnableDataKeys(req)
    assert describe(kms, b).KeyState == "Enabled"

    lst = models.ListDataKeysRequest()
    lst.Limit = 200
    r = kms.ListDataKeys(lst)
    assert {a, b} <= {k.DataKeyId for k in r.DataKeys}
    assert r.TotalCount >= 2
    det = models.ListDataKeyDetailRequest()
    det.SearchKeyAlias = new
    assert [m.DataKeyId for m in kms.ListDataKeyDetail(det).DataKeyMetadatas] == [a]


def test_schedule_and_cancel_deletion(kms, cmk):
    dk = hosted(kms, cmk).DataKeyId
    req = models.ScheduleDataKeyDeletionRequest()
    req.DataKeyId, req.PendingWindowInDays = dk, 31
    expect("InvalidParameter.InvalidPendingWindowInDays", kms.ScheduleDataKeyDeletion, req)
    req.PendingWindowInDays = 7
    r = kms.ScheduleDataKeyDeletion(req)
    assert r.DataKeyId == dk
    assert abs(r.DeletionDate - (time.time() + 7 * 86400)) < 600
    meta = describe(kms, dk)
    assert (meta.KeyState, meta.DeletionDate) == ("PendingDelete", r.DeletionDate)
    g = models.GetDataKeyPlaintextRequest()
    g.DataKeyId = dk
    expect("ResourceUnavailable.DataKeyPendingDelete", kms.GetDataKeyPlaintext, g)
    c = models.CancelDataKeyDeletionRequest()
    c.DataKeyId = dk
    kms.CancelDataKeyDeletion(c)
    assert describe(kms, dk).KeyState == "Disabled"
    expect("ResourceUnavailable.DataKeyNotPendingDelete", kms.CancelDataKeyDeletion, c)


def test_unknown_data_key(kms):
    req = models.DescribeDataKeyRequest()
    req.DataKeyId = str(uuid.uuid4())
    expect("ResourceUnavailable.DataKeyNotFound", kms.DescribeDataKey, req)
    req.DataKeyId = "not a valid id"
    expect("InvalidParameterValue.InvalidDataKeyId", kms.DescribeDataKey, req)


def test_service_status_reports_hosting(kms):
    s = kms.GetServiceStatus(models.GetServiceStatusRequest())
    assert s.IsAllowedDataKeyHosted is True
    assert s.DataKeyLimit >= 1
