"""CMK lifecycle through the official Tencent Cloud Python SDK (KMS 2019-01-18).

Scheduled deletion, archiving, rotation (automatic and manual), ReEncrypt, batch state changes,
cloud resource bindings, the service-managed key and the state/tag filters of ListKeyDetail.

Every call goes through `tencentcloud.kms.v20190118` models and `KmsClient`; errors are checked
by `TencentCloudSDKException.code`. The daemon is shared by the whole session (see conftest.py),
so every test creates its own keys under unique aliases and never relies on global counts.
"""

import base64
import struct
import time
import uuid

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.kms.v20190118 import models

DAY = 86_400
# Allowed distance between a server-computed timestamp and the one the test expects.
TIME_SLACK = 300
MANAGED_ALIAS = "KMS-Default"
MAX_BATCH = 100


# ----------------------------------------------------------------------------- helpers


def unique_alias(prefix="life"):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def blob_version(blob: str) -> int:
    """Key version recorded in a Keyward ciphertext blob (big-endian u32 at bytes 17..21)."""
    raw = unb64(blob)
    assert len(raw) > 21, f"blob too short: {len(raw)} bytes"
    return struct.unpack(">I", raw[17:21])[0]


def blob_key_id(blob: str) -> str:
    """Key id (UUID, bytes 1..17) recorded in a Keyward ciphertext blob."""
    return str(uuid.UUID(bytes=unb64(blob)[1:17]))


def expect_error(code, fn, *args):
    """Runs fn(*args); asserts it raises TencentCloudSDKException with exactly `code`."""
    with pytest.raises(TencentCloudSDKException) as info:
        result = fn(*args)
        pytest.fail(f"expected {code}, got success: {result.to_json_string()}")
    assert info.value.code == code, (
        f"expected {code}, got {info.value.code}: {info.value.message}"
        f" (RequestId {info.value.requestId})"
    )
    assert info.value.requestId, "error responses must carry a RequestId"
    return info.value


def assert_near(actual, expected, what, slack=TIME_SLACK):
    assert abs(actual - expected) <= slack, (
        f"{what}: {actual} is {actual - expected:+d}s away from the expected {expected}"
    )


def create_key(kms, alias=None, key_type=None, tags=None, description=None):
    req = models.CreateKeyRequest()
    req.Alias = alias or unique_alias()
    if key_type is not None:
        req.Type = key_type
    if description is not None:
        req.Description = description
    if tags is not None:
        req.Tags = []
        for k, v in tags.items():
            t = models.Tag()
            t.TagKey = k
            t.TagValue = v
            req.Tags.append(t)
    return kms.CreateKey(req)


def new_key(kms, **kw):
    return create_key(kms, **kw).KeyId


def describe(kms, key_id):
    req = models.DescribeKeyRequest()
    req.KeyId = key_id
    return kms.DescribeKey(req).KeyMetadata


def encrypt(kms, key_id, plaintext: bytes, context=None):
    req = models.EncryptRequest()
    req.KeyId = key_id
    req.Plaintext = b64(plaintext)
    if context is not None:
        req.EncryptionContext = context
    return kms.Encrypt(req)


def decrypt(kms, blob: str, context=None):
    req = models.DecryptRequest()
    req.CiphertextBlob = blob
    if context is not None:
        req.EncryptionContext = context
    return kms.Decrypt(req)


def decrypt_plain(kms, blob, context=None) -> bytes:
    return unb64(decrypt(kms, blob, context).Plaintext)


def generate_data_key(kms, key_id):
    req = models.GenerateDataKeyRequest()
    req.KeyId = key_id
    req.KeySpec = "AES_256"
    return kms.GenerateDataKey(req)


def enable_key(kms, key_id):
    req = models.EnableKeyRequest()
    req.KeyId = key_id
    return kms.EnableKey(req)


def disable_key(kms, key_id):
    req = models.DisableKeyRequest()
    req.KeyId = key_id
    return kms.DisableKey(req)


def schedule_deletion(kms, key_id, days):
    req = models.ScheduleKeyDeletionRequest()
    req.KeyId = key_id
    if days is not None:
        req.PendingWindowInDays = days
    return kms.ScheduleKeyDeletion(req)


def cancel_deletion(kms, key_id):
    req = models.CancelKeyDeletionRequest()
    req.KeyId = key_id
    return kms.CancelKeyDeletion(req)


def archive(kms, key_id):
    req = models.ArchiveKeyRequest()
    req.KeyId = key_id
    return kms.ArchiveKey(req)


def cancel_archive(kms, key_id):
    req = models.CancelKeyArchiveRequest()
    req.KeyId = key_id
    return kms.CancelKeyArchive(req)


def enable_rotation(kms, key_id, days=None):
    req = models.EnableKeyRotationRequest()
    req.KeyId = key_id
    if days is not None:
        req.RotateDays = days
    return kms.EnableKeyRotation(req)


def disable_rotation(kms, key_id):
    req = models.DisableKeyRotationRequest()
    req.KeyId = key_id
    return kms.DisableKeyRotation(req)


def rotation_status(kms, key_id) -> bool:
    req = models.GetKeyRotationStatusRequest()
    req.KeyId = key_id
    return kms.GetKeyRotationStatus(req).KeyRotationEnabled


def rotate(kms, key_id):
    req = models.RotateKeyRequest()
    req.KeyId = key_id
    return kms.RotateKey(req)


def re_encrypt(kms, blob, destination=None, source_context=None, destination_context=None):
    req = models.ReEncryptRequest()
    req.CiphertextBlob = blob
    if destination is not None:
        req.DestinationKeyId = destination
    if source_context is not None:
        req.SourceEncryptionContext = source_context
    if destination_context is not None:
        req.DestinationEncryptionContext = destination_context
    return kms.ReEncrypt(req)


def batch(kms, action, ids):
    req = getattr(models, f"{action}Request")()
    req.KeyIds = ids
    return getattr(kms, action)(req)


def bind(kms, key_id, product, resource):
    req = models.BindCloudResourceRequest()
    req.KeyId = key_id
    req.ProductId = product
    req.ResourceId = resource
    return kms.BindCloudResource(req)


def unbind(kms, key_id, product, resource):
    req = models.UnbindCloudResourceRequest()
    req.KeyId = key_id
    req.ProductId = product
    req.ResourceId = resource
    return kms.UnbindCloudResource(req)


def list_key_detail(kms, **fields):
    req = models.ListKeyDetailRequest()
    for k, v in fields.items():
        setattr(req, k, v)
    return kms.ListKeyDetail(req)


def all_listed_key_ids(kms, role=None):
    """Every KeyId ListKeys returns for `role` (None: the default), following the pages."""
    ids, offset = [], 0
    while True:
        req = models.ListKeysRequest()
        req.Limit = 200
        req.Offset = offset
        if role is not None:
            req.Role = role
        resp = kms.ListKeys(req)
        ids.extend(k.KeyId for k in resp.Keys or [])
        offset += 200
        if offset >= resp.TotalCount or not resp.Keys:
            assert len(ids) == resp.TotalCount, (len(ids), resp.TotalCount)
            return ids


def tag_filter(key, values):
    f = models.TagFilter()
    f.TagKey = key
    f.TagValue = list(values)
    return f


@pytest.fixture
def key(kms):
    """A fresh Enabled CMK with a unique alias; returns its KeyId."""
    return new_key(kms)


@pytest.fixture
def disabled_key(kms):
    key_id = new_key(kms)
    disable_key(kms, key_id)
    return key_id


@pytest.fixture(scope="module")
def managed_key_id(keyward):
    """The service-managed CMK, found through ListKeyDetail Role=1."""
    kms = keyward.client()
    resp = list_key_detail(kms, Role=1, Limit=200)
    managed = [m for m in resp.KeyMetadatas or [] if m.Alias == MANAGED_ALIAS]
    assert len(managed) == 1, (
        f"expected exactly one {MANAGED_ALIAS} key with Role=1, got "
        f"{[(m.KeyId, m.Alias, m.Owner) for m in resp.KeyMetadatas or []]}"
    )
    return managed[0].KeyId


# ----------------------------------------------------------------------------- scheduled deletion


def test_schedule_deletion_of_enabled_key_refused(kms, key):
    expect_error("ResourceUnavailable.CmkShouldBeDisabled", schedule_deletion, kms, key, 7)
    meta = describe(kms, key)
    assert meta.KeyState == "Enabled"
    assert meta.DeletionDate == 0


@pytest.mark.parametrize("days", [0, 1, 6, 31, 365])
def test_schedule_deletion_pending_window_out_of_range(kms, disabled_key, days):
    expect_error("InvalidParameter.InvalidPendingWindowInDays",
                 schedule_deletion, kms, disabled_key, days)
    meta = describe(kms, disabled_key)
    assert meta.KeyState == "Disabled"
    assert meta.DeletionDate == 0


@pytest.mark.parametrize("days", [7, 15, 30])
def test_schedule_deletion(kms, days):
    key_id = new_key(kms)
    blob = encrypt(kms, key_id, b"scheduled for deletion").CiphertextBlob
    disable_key(kms, key_id)

    before = int(time.time())
    resp = schedule_deletion(kms, key_id, days)
    after = int(time.time())
    assert resp.KeyId == key_id
    assert resp.RequestId
    assert before + days * DAY - TIME_SLACK <= resp.DeletionDate <= after + days * DAY + TIME_SLACK, (
        f"DeletionDate {resp.DeletionDate} is not now + {days} days ({before + days * DAY})"
    )

    meta = describe(kms, key_id)
    assert meta.KeyState == "PendingDelete"
    assert meta.DeletionDate == resp.DeletionDate

    # A key pending deletion cannot be used.
    expect_error("ResourceUnavailable.KeyPendingDelete", encrypt, kms, key_id, b"x")
    expect_error("ResourceUnavailable.KeyPendingDelete", decrypt, kms, blob)
    expect_error("ResourceUnavailable.KeyPendingDelete", generate_data_key, kms, key_id)


def test_cancel_key_deletion(kms):
    key_id = new_key(kms)
    blob = encrypt(kms, key_id, b"saved from deletion").CiphertextBlob
    disable_key(kms, key_id)
    schedule_deletion(kms, key_id, 7)
    assert describe(kms, key_id).KeyState == "PendingDelete"

    resp = cancel_deletion(kms, key_id)
    assert resp.RequestId
    meta = describe(kms, key_id)
    assert meta.KeyState == "Disabled"
    assert meta.DeletionDate == 0

    # Cancelling again: the key is no longer pending deletion.
    expect_error("ResourceUnavailable.CmkNotPendingDelete", cancel_deletion, kms, key_id)

    # The key and its material survived: enable it and decrypt the earlier blob.
    enable_key(kms, key_id)
    assert describe(kms, key_id).KeyState == "Enabled"
    assert decrypt_plain(kms, blob) == b"saved from deletion"


def test_cancel_deletion_of_key_not_pending(kms, key, disabled_key):
    expect_error("ResourceUnavailable.CmkNotPendingDelete", cancel_deletion, kms, key)
    expect_error("ResourceUnavailable.CmkNotPendingDelete", cancel_deletion, kms, disabled_key)
    assert describe(kms, key).KeyState == "Enabled"
    assert describe(kms, disabled_key).KeyState == "Disabled"


# ----------------------------------------------------------------------------- archive


def test_archive_and_cancel_archive(kms, key):
    blob = encrypt(kms, key, b"written before archiving").CiphertextBlob

    assert archive(kms, key).RequestId
    assert describe(kms, key).KeyState == "Archived"
    expect_error("ResourceUnavailable.CmkArchived", encrypt, kms, key, b"x")
    # Archived keys still decrypt what they encrypted earlier.
    dec = decrypt(kms, blob)
    assert dec.KeyId == key
    assert unb64(dec.Plaintext) == b"written before archiving"

    assert cancel_archive(kms, key).RequestId
    assert describe(kms, key).KeyState == "Enabled"
    fresh = encrypt(kms, key, b"after unarchiving").CiphertextBlob
    assert decrypt_plain(kms, fresh) == b"after unarchiving"


def test_cancel_archive_of_enabled_key_refused(kms, key):
    expect_error("ResourceUnavailable.CmkStateNotSupport", cancel_archive, kms, key)
    assert describe(kms, key).KeyState == "Enabled"


def test_archive_of_disabled_key_refused(kms, disabled_key):
    expect_error("ResourceUnavailable.CmkDisabled", archive, kms, disabled_key)
    assert describe(kms, disabled_key).KeyState == "Disabled"


# ----------------------------------------------------------------------------- rotation settings


def test_new_key_rotation_disabled(kms, key):
    assert rotation_status(kms, key) is False
    meta = describe(kms, key)
    assert meta.KeyRotationEnabled is False
    assert meta.NextRotateTime == 0
    assert meta.LastRotateTime == 0


def test_enable_key_rotation_default_days(kms, key):
    before = int(time.time())
    assert enable_rotation(kms, key).RequestId
    meta = describe(kms, key)
    assert meta.KeyRotationEnabled is True
    assert meta.RotateDays == 365
    assert_near(meta.NextRotateTime, before + 365 * DAY, "NextRotateTime")
    assert rotation_status(kms, key) is True

    assert disable_rotation(kms, key).RequestId
    assert rotation_status(kms, key) is False
    assert describe(kms, key).KeyRotationEnabled is False


@pytest.mark.parametrize("days", [7, 90, 365])
def test_enable_key_rotation_days(kms, key, days):
    before = int(time.time())
    enable_rotation(kms, key, days)
    meta = describe(kms, key)
    assert meta.KeyRotationEnabled is True
    assert meta.RotateDays == days
    assert_near(meta.NextRotateTime, before + days * DAY, "NextRotateTime")
    assert rotation_status(kms, key) is True
    # Enabling rotation changes no key material: the key still encrypts with version 1.
    assert blob_version(encrypt(kms, key, b"x").CiphertextBlob) == 1


def test_enable_key_rotation_again_changes_period(kms, key):
    enable_rotation(kms, key, 30)
    before = int(time.time())
    enable_rotation(kms, key, 200)
    meta = describe(kms, key)
    assert meta.RotateDays == 200
    assert_near(meta.NextRotateTime, before + 200 * DAY, "NextRotateTime")


@pytest.mark.parametrize("days", [6, 366])
def test_enable_key_rotation_days_out_of_range(kms, key, days):
    expect_error("InvalidParameterValue", enable_rotation, kms, key, days)
    assert rotation_status(kms, key) is False
    assert describe(kms, key).KeyRotationEnabled is False


def test_enable_key_rotation_external_key_refused(kms):
    ext = new_key(kms, key_type=2)
    expect_error("UnsupportedOperation.ExternalCmkCanNotRotate", enable_rotation, kms, ext)
    expect_error("UnsupportedOperation.ExternalCmkCanNotRotate", enable_rotation, kms, ext, 30)
    assert rotation_status(kms, ext) is False
    assert describe(kms, ext).KeyRotationEnabled is False


def test_rotation_unknown_key(kms):
    missing = str(uuid.uuid4())
    expect_error("ResourceUnavailable.CmkNotFound", enable_rotation, kms, missing)
    expect_error("ResourceUnavailable.CmkNotFound", rotation_status, kms, missing)
    expect_error("ResourceUnavailable.CmkNotFound", rotate, kms, missing)


# ----------------------------------------------------------------------------- manual rotation


def test_rotate_key(kms, key):
    old = encrypt(kms, key, b"encrypted with version 1", '{"v":"1"}').CiphertextBlob
    assert blob_version(old) == 1
    assert blob_key_id(old) == key

    before = int(time.time())
    resp = rotate(kms, key)
    after = int(time.time())
    assert isinstance(resp.TaskId, str) and resp.TaskId, f"TaskId missing: {resp.to_json_string()}"
    assert resp.RequestId

    meta = describe(kms, key)
    assert before - 5 <= meta.LastRotateTime <= after + 5, meta.LastRotateTime
    assert meta.KeyState == "Enabled"

    # The old blob still decrypts (with version 1).
    assert decrypt_plain(kms, old, '{"v":"1"}') == b"encrypted with version 1"
    # New blobs use version 2.
    new = encrypt(kms, key, b"encrypted with version 2").CiphertextBlob
    assert blob_version(new) == 2
    assert blob_key_id(new) == key
    dec = decrypt(kms, new)
    assert dec.KeyId == key
    assert unb64(dec.Plaintext) == b"encrypted with version 2"
    dk = generate_data_key(kms, key)
    assert blob_version(dk.CiphertextBlob) == 2
    assert decrypt_plain(kms, dk.CiphertextBlob) == unb64(dk.Plaintext)

    # A second manual rotation within 24 hours is refused, and changes nothing.
    expect_error("RequestLimitExceeded.RotateRateLimited", rotate, kms, key)
    assert blob_version(encrypt(kms, key, b"still v2").CiphertextBlob) == 2
    assert describe(kms, key).LastRotateTime == meta.LastRotateTime
    assert decrypt_plain(kms, old, '{"v":"1"}') == b"encrypted with version 1"


def test_rotate_key_external_refused(kms):
    ext = new_key(kms, key_type=2)
    expect_error("UnsupportedOperation.RotateNotSupported", rotate, kms, ext)
    assert describe(kms, ext).LastRotateTime == 0


def test_rotate_disabled_key_refused(kms, disabled_key):
    expect_error("ResourceUnavailable.CmkDisabled", rotate, kms, disabled_key)
    assert describe(kms, disabled_key).LastRotateTime == 0


# ----------------------------------------------------------------------------- ReEncrypt


@pytest.mark.parametrize("context", [None, '{"purpose":"reencrypt"}'])
def test_re_encrypt_unchanged_returns_same_blob(kms, key, context):
    blob = encrypt(kms, key, b"nothing to do", context).CiphertextBlob
    resp = re_encrypt(kms, blob, source_context=context, destination_context=context)
    assert resp.ReEncrypted is False
    assert resp.CiphertextBlob == blob
    assert resp.KeyId == key
    assert resp.SourceKeyId == key
    # Naming the same key as destination is the same thing.
    resp = re_encrypt(kms, blob, destination=key, source_context=context,
                      destination_context=context)
    assert resp.ReEncrypted is False
    assert resp.CiphertextBlob == blob
    assert resp.KeyId == key


def test_re_encrypt_after_rotation(kms, key):
    plaintext = b"upgrade me to the new version"
    blob = encrypt(kms, key, plaintext).CiphertextBlob
    assert blob_version(blob) == 1
    rotate(kms, key)

    resp = re_encrypt(kms, blob)
    assert resp.ReEncrypted is True
    assert resp.KeyId == key
    assert resp.SourceKeyId == key
    assert resp.CiphertextBlob != blob
    assert blob_version(resp.CiphertextBlob) == 2
    assert blob_key_id(resp.CiphertextBlob) == key
    dec = decrypt(kms, resp.CiphertextBlob)
    assert dec.KeyId == key
    assert unb64(dec.Plaintext) == plaintext
    # The original still decrypts too.
    assert decrypt_plain(kms, blob) == plaintext

    # A blob already at the newest version is left as it is.
    again = re_encrypt(kms, resp.CiphertextBlob)
    assert again.ReEncrypted is False
    assert again.CiphertextBlob == resp.CiphertextBlob


def test_re_encrypt_to_another_key_with_new_context(kms):
    src = new_key(kms)
    dst = new_key(kms)
    plaintext = b"moving between keys"
    src_ctx = '{"owner":"source"}'
    dst_ctx = '{"owner":"destination","stage":"2"}'
    blob = encrypt(kms, src, plaintext, src_ctx).CiphertextBlob

    resp = re_encrypt(kms, blob, destination=dst, source_context=src_ctx,
                      destination_context=dst_ctx)
    assert resp.ReEncrypted is True
    assert resp.KeyId == dst
    assert resp.SourceKeyId == src
    assert resp.CiphertextBlob != blob
    assert blob_key_id(resp.CiphertextBlob) == dst

    dec = decrypt(kms, resp.CiphertextBlob, dst_ctx)
    assert dec.KeyId == dst
    assert unb64(dec.Plaintext) == plaintext
    # The new blob is bound to the destination context only.
    expect_error("FailedOperation.DecryptError", decrypt, kms, resp.CiphertextBlob)
    expect_error("FailedOperation.DecryptError", decrypt, kms, resp.CiphertextBlob, src_ctx)
    # The source blob is untouched.
    assert decrypt_plain(kms, blob, src_ctx) == plaintext


def test_re_encrypt_same_key_new_context(kms, key):
    blob = encrypt(kms, key, b"rebind context", '{"a":"1"}').CiphertextBlob
    resp = re_encrypt(kms, blob, source_context='{"a":"1"}', destination_context='{"a":"2"}')
    assert resp.ReEncrypted is True
    assert resp.KeyId == key
    assert resp.SourceKeyId == key
    assert decrypt_plain(kms, resp.CiphertextBlob, '{"a":"2"}') == b"rebind context"
    expect_error("FailedOperation.DecryptError", decrypt, kms, resp.CiphertextBlob, '{"a":"1"}')


def test_re_encrypt_wrong_source_context(kms, key):
    other = new_key(kms)
    blob = encrypt(kms, key, b"guarded", '{"a":"1"}').CiphertextBlob
    expect_error("FailedOperation.DecryptError", re_encrypt, kms, blob, None, '{"a":"2"}')
    expect_error("FailedOperation.DecryptError", re_encrypt, kms, blob, other, '{"a":"2"}')
    # No source context at all when one was used.
    expect_error("FailedOperation.DecryptError", re_encrypt, kms, blob, other)


def test_re_encrypt_to_unknown_key(kms, key):
    blob = encrypt(kms, key, b"x").CiphertextBlob
    expect_error("ResourceUnavailable.CmkNotFound", re_encrypt, kms, blob, str(uuid.uuid4()))


def test_re_encrypt_to_disabled_key(kms, key, disabled_key):
    blob = encrypt(kms, key, b"x").CiphertextBlob
    expect_error("ResourceUnavailable.CmkDisabled", re_encrypt, kms, blob, disabled_key)


# ----------------------------------------------------------------------------- batch state changes


def test_batch_disable_enable_and_describe(kms):
    ids = [new_key(kms) for _ in range(3)]
    assert batch(kms, "DisableKeys", ids).RequestId
    metas = batch(kms, "DescribeKeys", ids).KeyMetadatas
    assert sorted(m.KeyId for m in metas) == sorted(ids)
    assert {m.KeyState for m in metas} == {"Disabled"}
    assert batch(kms, "EnableKeys", ids).RequestId
    metas = batch(kms, "DescribeKeys", ids).KeyMetadatas
    assert sorted(m.KeyId for m in metas) == sorted(ids)
    assert {m.KeyState for m in metas} == {"Enabled"}


@pytest.mark.parametrize("action", ["EnableKeys", "DisableKeys", "DescribeKeys"])
def test_batch_duplicated_key_id(kms, action):
    a = new_key(kms)
    b = new_key(kms)
    expect_error("InvalidParameterValue.DuplicatedKeyId", batch, kms, action, [a, b, a])
    assert describe(kms, a).KeyState == "Enabled"
    assert describe(kms, b).KeyState == "Enabled"


@pytest.mark.parametrize("action", ["EnableKeys", "DisableKeys", "DescribeKeys"])
def test_batch_too_many_ids(kms, action):
    real = new_key(kms)
    ids = [real] + [str(uuid.uuid4()) for _ in range(MAX_BATCH)]
    assert len(ids) == MAX_BATCH + 1
    expect_error("InvalidParameterValue", batch, kms, action, ids)
    assert describe(kms, real).KeyState == "Enabled"


def test_describe_keys_hundred_ids_accepted(kms):
    real = new_key(kms)
    ids = [real] + [str(uuid.uuid4()) for _ in range(MAX_BATCH - 1)]
    metas = batch(kms, "DescribeKeys", ids).KeyMetadatas
    assert [m.KeyId for m in metas] == [real]


def test_disable_keys_with_unknown_id_changes_nothing(kms):
    a = new_key(kms)
    b = new_key(kms)
    expect_error("ResourceUnavailable.CmkNotFound", batch, kms, "DisableKeys",
                 [a, str(uuid.uuid4()), b])
    assert describe(kms, a).KeyState == "Enabled"
    assert describe(kms, b).KeyState == "Enabled"
    encrypt(kms, a, b"still usable")
    encrypt(kms, b, b"still usable")


def test_enable_keys_with_unknown_id_changes_nothing(kms, disabled_key):
    expect_error("ResourceUnavailable.CmkNotFound", batch, kms, "EnableKeys",
                 [disabled_key, str(uuid.uuid4())])
    assert describe(kms, disabled_key).KeyState == "Disabled"


# ----------------------------------------------------------------------------- cloud bindings


def test_bound_key_cannot_be_scheduled_for_deletion(kms, key):
    product = "cvm"
    resource = f"ins-{uuid.uuid4().hex[:8]}"
    assert bind(kms, key, product, resource).RequestId
    disable_key(kms, key)

    expect_error("FailedOperation.CmkUsedByCloudProduct", schedule_deletion, kms, key, 7)
    meta = describe(kms, key)
    assert meta.KeyState == "Disabled"
    assert meta.DeletionDate == 0

    # Bindings that do not exist: wrong resource, wrong product.
    expect_error("ResourceUnavailable.CloudResourceBindingNotFound",
                 unbind, kms, key, product, f"ins-{uuid.uuid4().hex[:8]}")
    expect_error("ResourceUnavailable.CloudResourceBindingNotFound",
                 unbind, kms, key, "cbs", resource)
    # ...and they did not remove the real binding.
    expect_error("FailedOperation.CmkUsedByCloudProduct", schedule_deletion, kms, key, 7)

    assert unbind(kms, key, product, resource).RequestId
    expect_error("ResourceUnavailable.CloudResourceBindingNotFound",
                 unbind, kms, key, product, resource)

    resp = schedule_deletion(kms, key, 7)
    assert resp.KeyId == key
    assert describe(kms, key).KeyState == "PendingDelete"


def test_key_with_two_bindings_needs_both_removed(kms, key):
    bind(kms, key, "cos", "bucket-a")
    bind(kms, key, "cos", "bucket-b")
    disable_key(kms, key)
    unbind(kms, key, "cos", "bucket-a")
    expect_error("FailedOperation.CmkUsedByCloudProduct", schedule_deletion, kms, key, 10)
    unbind(kms, key, "cos", "bucket-b")
    schedule_deletion(kms, key, 10)
    assert describe(kms, key).KeyState == "PendingDelete"


def test_unbind_never_bound_key(kms, key):
    expect_error("ResourceUnavailable.CloudResourceBindingNotFound",
                 unbind, kms, key, "cvm", "ins-none")


def test_bind_unknown_key(kms):
    expect_error("ResourceUnavailable.CmkNotFound", bind, kms, str(uuid.uuid4()), "cvm", "ins-x")


# ----------------------------------------------------------------------------- service-managed key


def test_managed_key_listed_with_role_1(kms, managed_key_id):
    listed = all_listed_key_ids(kms, role=1)
    assert managed_key_id in listed

    detail = list_key_detail(kms, Role=1, Limit=200)
    metas = {m.KeyId: m for m in detail.KeyMetadatas}
    assert managed_key_id in metas
    m = metas[managed_key_id]
    assert m.Alias == MANAGED_ALIAS
    assert m.Owner and m.Owner != "user"
    assert m.KeyState == "Enabled"
    assert m.KeyUsage == "ENCRYPT_DECRYPT"
    # Role=1 lists only keys the service created.
    assert all(x.Owner != "user" for x in detail.KeyMetadatas)

    meta = describe(kms, managed_key_id)
    assert meta.Alias == MANAGED_ALIAS
    assert meta.Owner == m.Owner


def test_managed_key_not_listed_by_default(kms, managed_key_id):
    own = new_key(kms)
    default = all_listed_key_ids(kms)
    role0 = all_listed_key_ids(kms, role=0)
    assert managed_key_id not in default
    assert managed_key_id not in role0
    assert own in default and own in role0
    assert own not in all_listed_key_ids(kms, role=1)

    detail = list_key_detail(kms, Role=0, Limit=200, SearchKeyAlias=MANAGED_ALIAS)
    assert managed_key_id not in [m.KeyId for m in detail.KeyMetadatas or []]
    detail = list_key_detail(kms, Limit=200, SearchKeyAlias=MANAGED_ALIAS)
    assert managed_key_id not in [m.KeyId for m in detail.KeyMetadatas or []]


def test_managed_key_cannot_be_disabled_archived_or_deleted(kms, managed_key_id):
    expect_error("UnsupportedOperation.NotUserCreatedCmk", disable_key, kms, managed_key_id)
    expect_error("UnsupportedOperation.NotUserCreatedCmk", archive, kms, managed_key_id)
    expect_error("UnsupportedOperation.NotUserCreatedCmk",
                 schedule_deletion, kms, managed_key_id, 7)
    expect_error("UnsupportedOperation.NotUserCreatedCmk",
                 batch, kms, "DisableKeys", [managed_key_id])
    meta = describe(kms, managed_key_id)
    assert meta.KeyState == "Enabled"
    assert meta.DeletionDate == 0


def test_managed_key_encrypts_and_decrypts(kms, managed_key_id):
    enc = encrypt(kms, managed_key_id, b"managed secret", '{"svc":"ssm"}')
    assert enc.KeyId == managed_key_id
    dec = decrypt(kms, enc.CiphertextBlob, '{"svc":"ssm"}')
    assert dec.KeyId == managed_key_id
    assert unb64(dec.Plaintext) == b"managed secret"


# ----------------------------------------------------------------------------- ListKeyDetail filters


def test_list_key_detail_pending_delete_and_archived_filters(kms):
    prefix = unique_alias("lkd")
    enabled = new_key(kms, alias=f"{prefix}-enabled")
    disabled = new_key(kms, alias=f"{prefix}-disabled")
    disable_key(kms, disabled)
    pending = new_key(kms, alias=f"{prefix}-pending")
    disable_key(kms, pending)
    deletion_date = schedule_deletion(kms, pending, 20).DeletionDate
    archived = new_key(kms, alias=f"{prefix}-archived")
    archive(kms, archived)

    resp = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=3)
    assert resp.TotalCount == 1
    assert [m.KeyId for m in resp.KeyMetadatas] == [pending]
    assert resp.KeyMetadatas[0].KeyState == "PendingDelete"
    assert resp.KeyMetadatas[0].DeletionDate == deletion_date

    resp = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=5)
    assert resp.TotalCount == 1
    assert [m.KeyId for m in resp.KeyMetadatas] == [archived]
    assert resp.KeyMetadatas[0].KeyState == "Archived"

    resp = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=0)
    assert resp.TotalCount == 4
    assert {m.KeyId: m.KeyState for m in resp.KeyMetadatas} == {
        enabled: "Enabled", disabled: "Disabled", pending: "PendingDelete", archived: "Archived",
    }

    # State changes move keys between the filters.
    cancel_deletion(kms, pending)
    cancel_archive(kms, archived)
    assert list_key_detail(kms, SearchKeyAlias=prefix, KeyState=3).TotalCount == 0
    assert list_key_detail(kms, SearchKeyAlias=prefix, KeyState=5).TotalCount == 0
    resp = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=2)
    assert sorted(m.KeyId for m in resp.KeyMetadatas) == sorted([disabled, pending])
    resp = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=1)
    assert sorted(m.KeyId for m in resp.KeyMetadatas) == sorted([enabled, archived])


def test_list_key_detail_tag_filters(kms):
    tag_key = f"life-{uuid.uuid4().hex[:8]}"
    a = new_key(kms, tags={tag_key: "alpha", "team": "kms"})
    b = new_key(kms, tags={tag_key: "beta"})
    new_key(kms, tags={"team": "kms"})  # same other tag, not the tag key under test

    resp = list_key_detail(kms, TagFilters=[tag_filter(tag_key, ["alpha"])], Limit=200)
    assert resp.TotalCount == 1
    assert [m.KeyId for m in resp.KeyMetadatas] == [a]

    resp = list_key_detail(kms, TagFilters=[tag_filter(tag_key, ["beta"])], Limit=200)
    assert [m.KeyId for m in resp.KeyMetadatas] == [b]

    resp = list_key_detail(kms, TagFilters=[tag_filter(tag_key, ["alpha", "beta"])], Limit=200)
    assert resp.TotalCount == 2
    assert sorted(m.KeyId for m in resp.KeyMetadatas) == sorted([a, b])

    resp = list_key_detail(kms, TagFilters=[tag_filter(tag_key, ["gamma"])], Limit=200)
    assert resp.TotalCount == 0
    assert not resp.KeyMetadatas

    # Tag and state filters combine.
    disable_key(kms, b)
    schedule_deletion(kms, b, 7)
    resp = list_key_detail(kms, TagFilters=[tag_filter(tag_key, ["alpha", "beta"])],
                           KeyState=3, Limit=200)
    assert [m.KeyId for m in resp.KeyMetadatas] == [b]
    resp = list_key_detail(kms, TagFilters=[tag_filter(tag_key, ["alpha", "beta"])],
                           KeyState=1, Limit=200)
    assert [m.KeyId for m in resp.KeyMetadatas] == [a]
