"""Keyward compatibility with the official Tencent Cloud Python SDK (KMS 2019-01-18).

Every call goes through `tencentcloud.kms.v20190118` models and `KmsClient`; errors are checked
by `TencentCloudSDKException.code`. The daemon is shared by the whole session (see conftest.py),
so every test creates its own keys under unique aliases.
"""

import base64
import json
import time
import uuid

import pytest
import requests
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.kms.v20190118 import models

MAX_PLAINTEXT = 4096


# ----------------------------------------------------------------------------- helpers


def unique_alias(prefix="pytest"):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def expect_error(code, fn, *args):
    """Runs fn(*args); asserts it raises TencentCloudSDKException with exactly `code`."""
    with pytest.raises(TencentCloudSDKException) as info:
        result = fn(*args)
        # Only reached when nothing was raised: show what came back.
        pytest.fail(f"expected {code}, got success: {result.to_json_string()}")
    assert info.value.code == code, (
        f"expected {code}, got {info.value.code}: {info.value.message}"
        f" (RequestId {info.value.requestId})"
    )
    assert info.value.requestId, "error responses must carry a RequestId"
    return info.value


def create_key(kms, alias=None, description=None, key_usage=None, key_type=None, tags=None):
    req = models.CreateKeyRequest()
    req.Alias = alias or unique_alias()
    if description is not None:
        req.Description = description
    if key_usage is not None:
        req.KeyUsage = key_usage
    if key_type is not None:
        req.Type = key_type
    if tags is not None:
        req.Tags = []
        for k, v in tags.items():
            t = models.Tag()
            t.TagKey = k
            t.TagValue = v
            req.Tags.append(t)
    return kms.CreateKey(req)


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


def set_enabled(kms, key_id, enabled):
    req = models.EnableKeyRequest() if enabled else models.DisableKeyRequest()
    req.KeyId = key_id
    return kms.EnableKey(req) if enabled else kms.DisableKey(req)


def list_keys_total(kms):
    req = models.ListKeysRequest()
    req.Limit = 200
    return kms.ListKeys(req)


def list_key_detail(kms, **fields):
    req = models.ListKeyDetailRequest()
    for k, v in fields.items():
        setattr(req, k, v)
    return kms.ListKeyDetail(req)


def generate_data_key(kms, key_id, key_spec=None, number_of_bytes=None, context=None):
    req = models.GenerateDataKeyRequest()
    req.KeyId = key_id
    if key_spec is not None:
        req.KeySpec = key_spec
    if number_of_bytes is not None:
        req.NumberOfBytes = number_of_bytes
    if context is not None:
        req.EncryptionContext = context
    return kms.GenerateDataKey(req)


def generate_random(kms, n):
    req = models.GenerateRandomRequest()
    req.NumberOfBytes = n
    return kms.GenerateRandom(req)


@pytest.fixture
def key(kms):
    """A fresh Enabled CMK with a unique alias; returns its KeyId."""
    return create_key(kms).KeyId


# ----------------------------------------------------------------------------- create / describe


def test_create_and_describe_key(kms, keyward):
    alias = unique_alias("create")
    description = "pytest key: create+describe"
    before = int(time.time())
    created = create_key(kms, alias=alias, description=description,
                         key_usage="ENCRYPT_DECRYPT", key_type=1)
    after = int(time.time())

    assert created.KeyId
    assert created.Alias == alias
    assert created.Description == description
    assert created.KeyState == "Enabled"
    assert created.KeyUsage == "ENCRYPT_DECRYPT"
    assert before - 5 <= created.CreateTime <= after + 5
    assert created.RequestId

    meta = describe(kms, created.KeyId)
    assert meta.KeyId == created.KeyId
    assert meta.Alias == alias
    assert meta.Description == description
    assert meta.KeyState == "Enabled"
    assert meta.KeyUsage == "ENCRYPT_DECRYPT"
    assert meta.Origin == "TENCENT_KMS"
    assert meta.CreateTime == created.CreateTime
    assert meta.Owner == "user"
    assert meta.KeyRotationEnabled is False
    assert meta.DeletionDate == 0
    assert meta.CreatorUin, "CreatorUin must be set"
    assert meta.CreatorUinString == str(meta.CreatorUin)
    assert meta.Type in (2, 4)

    # DescribeKeys returns the same metadata.
    req = models.DescribeKeysRequest()
    req.KeyIds = [created.KeyId]
    metas = kms.DescribeKeys(req).KeyMetadatas
    assert [m.KeyId for m in metas] == [created.KeyId]
    assert metas[0].Alias == alias and metas[0].Description == description


def test_create_key_defaults(kms):
    """Only the Alias given: KeyUsage ENCRYPT_DECRYPT, Type 1 (TENCENT_KMS), empty description."""
    alias = unique_alias("defaults")
    created = create_key(kms, alias=alias)
    meta = describe(kms, created.KeyId)
    assert meta.Alias == alias
    assert meta.KeyUsage == "ENCRYPT_DECRYPT"
    assert meta.Origin == "TENCENT_KMS"
    assert meta.KeyState == "Enabled"
    assert meta.Description == ""


def test_create_key_with_tags_is_found_by_tag_filter(kms):
    alias = unique_alias("tags")
    tag_value = uuid.uuid4().hex
    created = create_key(kms, alias=alias, tags={"pytest-suite": tag_value, "team": "kms"})
    f = models.TagFilter()
    f.TagKey = "pytest-suite"
    f.TagValue = [tag_value]
    resp = list_key_detail(kms, TagFilters=[f], Limit=200)
    assert resp.TotalCount == 1
    assert [m.KeyId for m in resp.KeyMetadatas] == [created.KeyId]
    assert resp.KeyMetadatas[0].Alias == alias


def test_create_external_key_is_pending_import(kms):
    created = create_key(kms, key_type=2)
    assert created.KeyState == "PendingImport"
    meta = describe(kms, created.KeyId)
    assert meta.KeyState == "PendingImport"
    assert meta.Origin == "EXTERNAL"


def test_duplicate_alias_rejected(kms):
    alias = unique_alias("dup")
    create_key(kms, alias=alias)
    expect_error("InvalidParameterValue.AliasAlreadyExists", create_key, kms, alias)


@pytest.mark.parametrize("alias", [
    "kms-reserved",
    "KMS-Reserved",
    "Kms-reserved",
    "-leading-dash",
    "_leading-underscore",
    "has space",
    "dot.ted",
    "a/b",
    "x" * 61,
])
def test_invalid_alias_rejected(kms, alias):
    expect_error("InvalidParameterValue.InvalidAlias", create_key, kms, alias)


def test_alias_of_sixty_characters_accepted(kms):
    alias = ("a" + uuid.uuid4().hex * 2)[:60]
    assert len(alias) == 60
    assert create_key(kms, alias=alias).Alias == alias


def test_asymmetric_key_usage_is_created(kms):
    # Every backend offers SM2 (see test_kms_asymmetric.py for the others).
    key = create_key(kms, unique_alias("asym"), None, "ASYMMETRIC_DECRYPT_SM2")
    assert key.KeyUsage == "ASYMMETRIC_DECRYPT_SM2"
    assert key.KeyState == "Enabled"


def test_describe_unknown_key(kms):
    expect_error("ResourceUnavailable.CmkNotFound", describe, kms, str(uuid.uuid4()))


# ----------------------------------------------------------------------------- listing


def test_list_keys_total_count_grows(kms):
    before = list_keys_total(kms)
    new_id = create_key(kms).KeyId
    after = list_keys_total(kms)
    assert after.TotalCount == before.TotalCount + 1
    assert len(after.Keys) == min(after.TotalCount, 200)
    # Newest first by default: the new key is listed (the session never exceeds 200 keys).
    assert new_id in [k.KeyId for k in after.Keys]


def test_list_keys_paging(kms):
    for _ in range(3):
        create_key(kms)
    req = models.ListKeysRequest()
    req.Limit = 2
    first = kms.ListKeys(req)
    assert len(first.Keys) == 2
    req.Offset = 2
    second = kms.ListKeys(req)
    assert first.TotalCount == second.TotalCount >= 3
    assert not {k.KeyId for k in first.Keys} & {k.KeyId for k in second.Keys}
    # Limit defaults to 10.
    default = kms.ListKeys(models.ListKeysRequest())
    assert len(default.Keys) == min(10, default.TotalCount)


def test_list_key_detail_search_alias(kms):
    alias = unique_alias("search")
    created = create_key(kms, alias=alias, description="searchable")
    resp = list_key_detail(kms, SearchKeyAlias=alias)
    assert resp.TotalCount == 1
    assert len(resp.KeyMetadatas) == 1
    meta = resp.KeyMetadatas[0]
    assert meta.KeyId == created.KeyId
    assert meta.Alias == alias
    assert meta.Description == "searchable"
    assert meta.KeyState == "Enabled"
    assert meta.Origin == "TENCENT_KMS"


def test_list_key_detail_order_type(kms):
    prefix = unique_alias("order")
    ids = [create_key(kms, alias=f"{prefix}-{i}").KeyId for i in range(3)]
    asc = list_key_detail(kms, SearchKeyAlias=prefix, OrderType=1)
    desc = list_key_detail(kms, SearchKeyAlias=prefix, OrderType=0)
    default = list_key_detail(kms, SearchKeyAlias=prefix)
    assert asc.TotalCount == desc.TotalCount == 3
    assert [m.KeyId for m in asc.KeyMetadatas] == ids
    assert [m.KeyId for m in desc.KeyMetadatas] == list(reversed(ids))
    assert [m.KeyId for m in default.KeyMetadatas] == list(reversed(ids))


def test_list_key_detail_key_state_filter(kms):
    prefix = unique_alias("state")
    enabled_id = create_key(kms, alias=f"{prefix}-on").KeyId
    disabled_id = create_key(kms, alias=f"{prefix}-off").KeyId
    set_enabled(kms, disabled_id, False)

    disabled = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=2)
    assert disabled.TotalCount == 1
    assert [m.KeyId for m in disabled.KeyMetadatas] == [disabled_id]
    assert disabled.KeyMetadatas[0].KeyState == "Disabled"

    enabled = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=1)
    assert [m.KeyId for m in enabled.KeyMetadatas] == [enabled_id]

    everything = list_key_detail(kms, SearchKeyAlias=prefix, KeyState=0)
    assert everything.TotalCount == 2
    assert {m.KeyId for m in everything.KeyMetadatas} == {enabled_id, disabled_id}


def test_list_key_detail_origin_filter(kms):
    prefix = unique_alias("origin")
    kms_id = create_key(kms, alias=f"{prefix}-kms").KeyId
    ext_id = create_key(kms, alias=f"{prefix}-ext", key_type=2).KeyId
    ext = list_key_detail(kms, SearchKeyAlias=prefix, Origin="EXTERNAL")
    assert [m.KeyId for m in ext.KeyMetadatas] == [ext_id]
    own = list_key_detail(kms, SearchKeyAlias=prefix, Origin="TENCENT_KMS")
    assert [m.KeyId for m in own.KeyMetadatas] == [kms_id]
    both = list_key_detail(kms, SearchKeyAlias=prefix, Origin="ALL")
    assert both.TotalCount == 2


def test_list_key_detail_invalid_key_state(kms):
    with pytest.raises(TencentCloudSDKException) as info:
        list_key_detail(kms, KeyState=6)
    assert info.value.code == "InvalidParameterValue", info.value.message


# ----------------------------------------------------------------------------- encrypt / decrypt


def test_encrypt_decrypt_round_trip(kms, key):
    plaintext = b"hello keyward \x00\xff binary"
    enc = encrypt(kms, key, plaintext)
    assert enc.KeyId == key
    assert enc.CiphertextBlob
    unb64(enc.CiphertextBlob)  # valid base64
    dec = decrypt(kms, enc.CiphertextBlob)
    assert dec.KeyId == key
    assert unb64(dec.Plaintext) == plaintext


def test_encrypt_is_randomized(kms, key):
    a = encrypt(kms, key, b"same plaintext").CiphertextBlob
    b = encrypt(kms, key, b"same plaintext").CiphertextBlob
    assert a != b


def test_encrypt_decrypt_with_context_spacing_insensitive(kms, key):
    plaintext = b"context-bound secret"
    enc = encrypt(kms, key, plaintext, context='{"a": "1", "b": "2"}')
    for ctx in ['{"a":"1","b":"2"}', '{"b": "2", "a": "1"}', '{ "a" : "1" ,\n"b":"2" }',
                json.dumps({"a": "1", "b": "2"})]:
        dec = decrypt(kms, enc.CiphertextBlob, context=ctx)
        assert unb64(dec.Plaintext) == plaintext, ctx
        assert dec.KeyId == key


@pytest.mark.parametrize("wrong", ['{"a":"2","b":"2"}', '{"a":"1"}', '{"a":"1","b":"2","c":"3"}',
                                   '{"A":"1","b":"2"}'])
def test_decrypt_with_wrong_context_fails(kms, key, wrong):
    enc = encrypt(kms, key, b"secret", context='{"a":"1","b":"2"}')
    expect_error("FailedOperation.DecryptError", decrypt, kms, enc.CiphertextBlob, wrong)


def test_decrypt_without_context_fails(kms, key):
    enc = encrypt(kms, key, b"secret", context='{"purpose":"test"}')
    expect_error("FailedOperation.DecryptError", decrypt, kms, enc.CiphertextBlob)


def test_decrypt_with_context_when_none_was_used_fails(kms, key):
    enc = encrypt(kms, key, b"secret")
    expect_error("FailedOperation.DecryptError", decrypt, kms, enc.CiphertextBlob,
                 '{"purpose":"test"}')


def test_tampered_blob_fails(kms, key):
    enc = encrypt(kms, key, b"do not tamper with me", context='{"k":"v"}')
    raw = bytearray(unb64(enc.CiphertextBlob))
    # Flip the last byte (authentication tag) and a byte in the middle of the ciphertext.
    for pos in (len(raw) - 1, len(raw) - 20):
        tampered = bytearray(raw)
        tampered[pos] ^= 0x01
        expect_error("FailedOperation.DecryptError", decrypt, kms,
                     b64(bytes(tampered)), '{"k":"v"}')
    # The untouched blob still decrypts.
    assert unb64(decrypt(kms, enc.CiphertextBlob, '{"k":"v"}').Plaintext) == b"do not tamper with me"


def test_every_single_byte_flip_is_rejected(kms, key):
    """No single-bit change anywhere in the blob may decrypt, and none may be an InternalError.

    Changes to the nonce, ciphertext or tag (everything after the 23-byte header of Keyward's
    blob format) must be reported as FailedOperation.DecryptError; header changes may also be
    reported as an invalid ciphertext or an unknown key.
    """
    plaintext = b"bit flips"
    raw = unb64(encrypt(kms, key, plaintext).CiphertextBlob)
    header_len = 23
    assert len(raw) > header_len
    problems = []
    for pos in range(len(raw)):
        tampered = bytearray(raw)
        tampered[pos] ^= 0x01
        try:
            resp = decrypt(kms, b64(bytes(tampered)))
        except TencentCloudSDKException as e:
            if pos >= header_len:
                allowed = {"FailedOperation.DecryptError"}
            else:
                allowed = {"FailedOperation.DecryptError",
                           "InvalidParameterValue.InvalidCiphertext",
                           "ResourceUnavailable.CmkNotFound"}
            if e.code not in allowed:
                problems.append(f"byte {pos}: {e.code} ({e.message})")
            continue
        problems.append(f"byte {pos}: decrypted to {unb64(resp.Plaintext)!r}")
    assert not problems, f"{len(problems)} of {len(raw)} flips misreported:\n" + "\n".join(problems)


def test_garbage_blob_invalid_ciphertext(kms):
    expect_error("InvalidParameterValue.InvalidCiphertext", decrypt, kms, b64(b"garbage"))
    expect_error("InvalidParameterValue.InvalidCiphertext", decrypt, kms, "!!!not-base64!!!")


def test_plaintext_size_limit(kms, key):
    big = bytes(range(256)) * (MAX_PLAINTEXT // 256)
    assert len(big) == MAX_PLAINTEXT
    enc = encrypt(kms, key, big)
    assert unb64(decrypt(kms, enc.CiphertextBlob).Plaintext) == big
    expect_error("InvalidParameterValue.InvalidPlaintext", encrypt, kms, key, big + b"x")


def test_encrypt_unknown_key(kms):
    expect_error("ResourceUnavailable.CmkNotFound", encrypt, kms, str(uuid.uuid4()), b"x")


def test_encrypt_with_pending_import_key_refused(kms):
    """An EXTERNAL key without key material cannot encrypt."""
    ext = create_key(kms, key_type=2).KeyId
    expect_error("ResourceUnavailable.CmkStateNotSupport", encrypt, kms, ext, b"x")


# ----------------------------------------------------------------------------- data keys and random


def test_generate_data_key_aes_256(kms, key):
    resp = generate_data_key(kms, key, key_spec="AES_256")
    assert resp.KeyId == key
    plaintext = unb64(resp.Plaintext)
    assert len(plaintext) == 32
    dec = decrypt(kms, resp.CiphertextBlob)
    assert dec.KeyId == key
    assert unb64(dec.Plaintext) == plaintext


def test_generate_data_key_aes_128_with_context(kms, key):
    ctx = '{"app": "pytest"}'
    resp = generate_data_key(kms, key, key_spec="AES_128", context=ctx)
    plaintext = unb64(resp.Plaintext)
    assert len(plaintext) == 16
    assert unb64(decrypt(kms, resp.CiphertextBlob, '{"app":"pytest"}').Plaintext) == plaintext
    expect_error("FailedOperation.DecryptError", decrypt, kms, resp.CiphertextBlob)


def test_generate_data_key_number_of_bytes(kms, key):
    resp = generate_data_key(kms, key, number_of_bytes=1024)
    plaintext = unb64(resp.Plaintext)
    assert len(plaintext) == 1024
    assert unb64(decrypt(kms, resp.CiphertextBlob).Plaintext) == plaintext
    assert len(unb64(generate_data_key(kms, key, number_of_bytes=1).Plaintext)) == 1
    expect_error("InvalidParameterValue", generate_data_key, kms, key, None, 1025)
    expect_error("InvalidParameterValue", generate_data_key, kms, key, None, 0)


def test_generate_data_key_distinct(kms, key):
    a = generate_data_key(kms, key, key_spec="AES_256").Plaintext
    b = generate_data_key(kms, key, key_spec="AES_256").Plaintext
    assert a != b


def test_generate_random(kms):
    one = generate_random(kms, 1)
    assert len(unb64(one.Plaintext)) == 1
    assert one.RequestId
    big = unb64(generate_random(kms, 1024).Plaintext)
    assert len(big) == 1024
    outputs = {unb64(generate_random(kms, 32).Plaintext) for _ in range(5)}
    assert len(outputs) == 5, "GenerateRandom returned a repeated 32-byte value"
    assert all(len(o) == 32 for o in outputs)


@pytest.mark.parametrize("n", [0, 1025])
def test_generate_random_out_of_range(kms, n):
    expect_error("InvalidParameterValue", generate_random, kms, n)


# ----------------------------------------------------------------------------- key state


def test_disable_enable_key(kms, key):
    enc = encrypt(kms, key, b"before disable")
    set_enabled(kms, key, False)
    assert describe(kms, key).KeyState == "Disabled"
    expect_error("ResourceUnavailable.CmkDisabled", encrypt, kms, key, b"while disabled")
    expect_error("ResourceUnavailable.CmkDisabled", decrypt, kms, enc.CiphertextBlob)
    expect_error("ResourceUnavailable.CmkDisabled", generate_data_key, kms, key, "AES_256")
    # Disabling twice is a no-op.
    set_enabled(kms, key, False)
    set_enabled(kms, key, True)
    assert describe(kms, key).KeyState == "Enabled"
    assert unb64(decrypt(kms, enc.CiphertextBlob).Plaintext) == b"before disable"
    assert unb64(decrypt(kms, encrypt(kms, key, b"after").CiphertextBlob).Plaintext) == b"after"


def test_batch_disable_enable_keys(kms):
    ids = [create_key(kms).KeyId for _ in range(3)]
    req = models.DisableKeysRequest()
    req.KeyIds = ids
    kms.DisableKeys(req)
    for key_id in ids:
        assert describe(kms, key_id).KeyState == "Disabled"
        expect_error("ResourceUnavailable.CmkDisabled", encrypt, kms, key_id, b"x")

    req = models.EnableKeysRequest()
    req.KeyIds = ids
    kms.EnableKeys(req)
    for key_id in ids:
        assert describe(kms, key_id).KeyState == "Enabled"
        encrypt(kms, key_id, b"x")


def test_batch_with_unknown_key_changes_nothing(kms):
    known = create_key(kms).KeyId
    req = models.DisableKeysRequest()
    req.KeyIds = [known, str(uuid.uuid4())]
    expect_error("ResourceUnavailable.CmkNotFound", kms.DisableKeys, req)
    assert describe(kms, known).KeyState == "Enabled"


def test_disable_unknown_key(kms):
    expect_error("ResourceUnavailable.CmkNotFound", set_enabled, kms, str(uuid.uuid4()), False)


# ----------------------------------------------------------------------------- edits


def test_update_alias(kms, key):
    new_alias = unique_alias("renamed")
    req = models.UpdateAliasRequest()
    req.KeyId = key
    req.Alias = new_alias
    kms.UpdateAlias(req)
    assert describe(kms, key).Alias == new_alias
    found = list_key_detail(kms, SearchKeyAlias=new_alias)
    assert [m.KeyId for m in found.KeyMetadatas] == [key]

    req.Alias = "kms-not-allowed"
    expect_error("InvalidParameterValue.InvalidAlias", kms.UpdateAlias, req)
    assert describe(kms, key).Alias == new_alias


def test_update_alias_to_taken_alias_rejected(kms):
    taken = unique_alias("taken")
    create_key(kms, alias=taken)
    other = create_key(kms).KeyId
    req = models.UpdateAliasRequest()
    req.KeyId = other
    req.Alias = taken
    expect_error("InvalidParameterValue.AliasAlreadyExists", kms.UpdateAlias, req)


def test_update_key_description(kms, key):
    req = models.UpdateKeyDescriptionRequest()
    req.KeyId = key
    req.Description = "updated by pytest – ünïcode ok"
    kms.UpdateKeyDescription(req)
    assert describe(kms, key).Description == "updated by pytest – ünïcode ok"


# ----------------------------------------------------------------------------- service queries


def test_get_regions(kms, keyward):
    resp = kms.GetRegions(models.GetRegionsRequest())
    assert keyward.region in resp.Regions


def test_list_algorithms(kms):
    resp = kms.ListAlgorithms(models.ListAlgorithmsRequest())
    pairs = [(a.KeyUsage, a.Algorithm) for a in resp.SymmetricAlgorithms]
    assert ("ENCRYPT_DECRYPT", "AES_256") in pairs


def test_get_service_status(kms):
    resp = kms.GetServiceStatus(models.GetServiceStatusRequest())
    assert resp.ServiceEnabled is True
    assert resp.RequestId


# ----------------------------------------------------------------------------- auth and region


def test_wrong_secret_key(keyward):
    bad = keyward.client(secret_key=keyward.secret_key[:-1] + ("A" if keyward.secret_key[-1] != "A" else "B"))
    expect_error("AuthFailure.SignatureFailure", bad.GetServiceStatus, models.GetServiceStatusRequest())


def test_unknown_secret_id(keyward):
    bad = keyward.client(secret_id="AKID" + uuid.uuid4().hex)
    expect_error("AuthFailure.SecretIdNotFound", bad.GetServiceStatus, models.GetServiceStatusRequest())


def test_unsupported_region(keyward):
    bad = keyward.client(region="ap-nowhere-1")
    expect_error("UnsupportedRegion", bad.GetServiceStatus, models.GetServiceStatusRequest())


# ----------------------------------------------------------------------------- wire format


def _check_envelope_headers(resp):
    assert resp.status_code == 200, resp.text
    # The SDK compares this header for string equality before looking for an Error.
    assert resp.headers.get("Content-Type") == "application/json", resp.headers


def test_unsigned_request_content_type_and_error_envelope(keyward):
    resp = requests.post(
        keyward.endpoint + "/",
        data=json.dumps({}),
        headers={
            "Content-Type": "application/json",
            "X-TC-Action": "GetServiceStatus",
            "X-TC-Version": "2019-01-18",
            "X-TC-Region": keyward.region,
            "X-TC-Timestamp": str(int(time.time())),
        },
        timeout=30,
        proxies={"http": None, "https": None},
    )
    _check_envelope_headers(resp)
    body = resp.json()
    assert set(body) == {"Response"}
    err = body["Response"]["Error"]
    assert err["Code"] == "AuthFailure.InvalidAuthorization", err
    assert isinstance(err["Message"], str) and "Authorization" in err["Message"], err
    assert isinstance(body["Response"]["RequestId"], str) and body["Response"]["RequestId"]


def test_signed_responses_content_type(kms):
    """Signed success and error responses, as the SDK receives them on the wire."""
    ok = kms._call("GetServiceStatus", {})
    _check_envelope_headers(ok)
    body = json.loads(ok.content)
    assert "Error" not in body["Response"] and body["Response"]["RequestId"]

    err = kms._call("DescribeKey", {"KeyId": str(uuid.uuid4())})
    _check_envelope_headers(err)
    body = json.loads(err.content)
    assert body["Response"]["Error"]["Code"] == "ResourceUnavailable.CmkNotFound"
    assert body["Response"]["RequestId"]
