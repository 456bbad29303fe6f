"""Keyward compatibility with the official Tencent Cloud Python SDK (Secrets Manager 2019-09-23).

Every call goes through `tencentcloud.ssm.v20190923` models and `SsmClient` (and the KMS SDK
where a CMK is needed); errors are checked by `TencentCloudSDKException.code`. The daemon is
shared by the whole session (see conftest.py), so every test creates its own secrets under
unique names and never relies on global counts.
"""

import base64
import time
import uuid

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import models as kms_models
from tencentcloud.ssm.v20190923 import models, ssm_client

DEFAULT_VERSION = "SSM_Current"
MAX_VALUE = 32768
MAX_VERSIONS = 10
MAX_DESCRIPTION = 2048
DAY = 86400
TIME_SLACK = 5  # seconds of tolerance for "now"


# ----------------------------------------------------------------------------- helpers


def unique_name(prefix="pytest"):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def expect_error(code, fn, *args, **kwargs):
    """Runs fn(*args); asserts it raises TencentCloudSDKException with exactly `code`."""
    with pytest.raises(TencentCloudSDKException) as info:
        result = fn(*args, **kwargs)
        # Only reached when nothing was raised: show what came back.
        shown = result.to_json_string() if hasattr(result, "to_json_string") else repr(result)
        pytest.fail(f"expected {code}, got success: {shown}")
    assert info.value.code == code, (
        f"expected {code}, got {info.value.code}: {info.value.message}"
        f" (RequestId {info.value.requestId})"
    )
    assert info.value.requestId, "error responses must carry a RequestId"
    return info.value


def make_tags(tags):
    out = []
    for k, v in tags.items():
        t = models.Tag()
        t.TagKey = k
        t.TagValue = v
        out.append(t)
    return out


def create_secret(ssm, name=None, string=None, binary=None, version_id=None, kms_key_id=None,
                  description=None, tags=None, secret_type=None):
    """CreateSecret; a text value "v-<name>" is used when neither string nor binary is given."""
    req = models.CreateSecretRequest()
    req.SecretName = name or unique_name()
    if string is None and binary is None:
        string = f"v-{req.SecretName}"
    if string is not None:
        req.SecretString = string
    if binary is not None:
        req.SecretBinary = b64(binary) if isinstance(binary, bytes) else binary
    if version_id is not None:
        req.VersionId = version_id
    if kms_key_id is not None:
        req.KmsKeyId = kms_key_id
    if description is not None:
        req.Description = description
    if tags is not None:
        req.Tags = make_tags(tags)
    if secret_type is not None:
        req.SecretType = secret_type
    return ssm.CreateSecret(req)


def create_raw(ssm, **fields):
    """CreateSecret with exactly the given request fields."""
    req = models.CreateSecretRequest()
    for k, v in fields.items():
        setattr(req, k, v)
    return ssm.CreateSecret(req)


def get_value(ssm, name, version_id=DEFAULT_VERSION):
    req = models.GetSecretValueRequest()
    req.SecretName = name
    req.VersionId = version_id
    return ssm.GetSecretValue(req)


def _value_request(req, name, version_id, string, binary):
    req.SecretName = name
    req.VersionId = version_id
    if string is not None:
        req.SecretString = string
    if binary is not None:
        req.SecretBinary = b64(binary) if isinstance(binary, bytes) else binary
    return req


def put_value(ssm, name, version_id, string=None, binary=None):
    return ssm.PutSecretValue(
        _value_request(models.PutSecretValueRequest(), name, version_id, string, binary))


def update_secret(ssm, name, version_id, string=None, binary=None):
    return ssm.UpdateSecret(
        _value_request(models.UpdateSecretRequest(), name, version_id, string, binary))


def describe_secret(ssm, name):
    req = models.DescribeSecretRequest()
    req.SecretName = name
    return ssm.DescribeSecret(req)


def list_secrets(ssm, **fields):
    req = models.ListSecretsRequest()
    for k, v in fields.items():
        setattr(req, k, v)
    return ssm.ListSecrets(req)


def list_versions(ssm, name):
    req = models.ListSecretVersionIdsRequest()
    req.SecretName = name
    return ssm.ListSecretVersionIds(req)


def delete_version(ssm, name, version_id):
    req = models.DeleteSecretVersionRequest()
    req.SecretName = name
    req.VersionId = version_id
    return ssm.DeleteSecretVersion(req)


def update_description(ssm, name, description):
    req = models.UpdateDescriptionRequest()
    req.SecretName = name
    req.Description = description
    return ssm.UpdateDescription(req)


def enable_secret(ssm, name):
    req = models.EnableSecretRequest()
    req.SecretName = name
    return ssm.EnableSecret(req)


def disable_secret(ssm, name):
    req = models.DisableSecretRequest()
    req.SecretName = name
    return ssm.DisableSecret(req)


def delete_secret(ssm, name, days=None):
    req = models.DeleteSecretRequest()
    req.SecretName = name
    if days is not None:
        req.RecoveryWindowInDays = days
    return ssm.DeleteSecret(req)


def restore_secret(ssm, name):
    req = models.RestoreSecretRequest()
    req.SecretName = name
    return ssm.RestoreSecret(req)


def create_service(ssm, pay_mode, token):
    req = models.CreateServiceRequest()
    req.PayMode = pay_mode
    req.ClientToken = token
    return ssm.CreateService(req)


def metadata_of(ssm, name):
    """The ListSecrets SecretMetadata of `name` (searched by its exact, unique name)."""
    resp = list_secrets(ssm, SearchSecretName=name, Limit=100)
    found = [m for m in resp.SecretMetadatas or [] if m.SecretName == name]
    assert len(found) == 1, f"ListSecrets found {len(found)} entries named {name}"
    return found[0]


def names_of(resp):
    return [m.SecretName for m in resp.SecretMetadatas or []]


def create_cmk(kms):
    req = kms_models.CreateKeyRequest()
    req.Alias = unique_name("ssm-cmk")
    return kms.CreateKey(req)


def set_cmk_enabled(kms, key_id, enabled):
    req = kms_models.EnableKeyRequest() if enabled else kms_models.DisableKeyRequest()
    req.KeyId = key_id
    return kms.EnableKey(req) if enabled else kms.DisableKey(req)


def managed_key_ids(kms):
    """KeyIds of the service-created CMKs (ListKeyDetail Role=1)."""
    req = kms_models.ListKeyDetailRequest()
    req.Role = 1
    req.Limit = 200
    return {m.KeyId: m for m in kms.ListKeyDetail(req).KeyMetadatas or []}


def assert_now(t, before, after, what):
    assert before - TIME_SLACK <= t <= after + TIME_SLACK, (
        f"{what} {t} is not within [{before}, {after}] +-{TIME_SLACK}s")


@pytest.fixture
def ssm(keyward):
    """A fresh official-SDK Secrets Manager client; fails with the daemon log if it died."""
    keyward.check_alive()
    cred = credential.Credential(keyward.secret_id, keyward.secret_key)
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyward.host))
    return ssm_client.SsmClient(cred, keyward.region, profile)


@pytest.fixture
def secret(ssm):
    """A fresh Enabled text secret; returns (name, value) of its SSM_Current version."""
    name = unique_name("sec")
    value = f"value of {name}"
    create_secret(ssm, name=name, string=value)
    return name, value


@pytest.fixture
def disabled_secret(ssm, secret):
    disable_secret(ssm, secret[0])
    return secret[0]


# ----------------------------------------------------------------------------- CreateSecret


def test_create_secret_defaults_and_describe(ssm, kms):
    name = unique_name("create")
    value = "s3cr3t text value"
    before = int(time.time())
    created = create_secret(ssm, name=name, string=value, description="pytest secret")
    after = int(time.time())
    assert created.SecretName == name
    assert created.VersionId == DEFAULT_VERSION
    assert created.RequestId

    d = describe_secret(ssm, name)
    assert d.SecretName == name
    assert d.Description == "pytest secret"
    assert d.Status == "Enabled"
    assert_now(d.CreateTime, before, after, "CreateTime")
    assert d.SecretType == 0
    assert d.DeleteTime == 0
    assert d.RotationStatus is False
    assert d.KmsKeyId, "KmsKeyId must name the CMK protecting the secret"
    # CreateUin is the caller's uin: the same one KMS records as CreatorUin for this credential.
    assert isinstance(d.CreateUin, int) and d.CreateUin > 0
    cmk = create_cmk(kms)
    req = kms_models.DescribeKeyRequest()
    req.KeyId = cmk.KeyId
    assert d.CreateUin == kms.DescribeKey(req).KeyMetadata.CreatorUin
    assert d.CreateUinString == str(d.CreateUin)

    got = get_value(ssm, name)
    assert got.SecretName == name
    assert got.VersionId == DEFAULT_VERSION
    assert got.SecretString == value


@pytest.mark.parametrize("shape", ["one-char", "max-length", "mixed"])
def test_secret_name_valid(ssm, shape):
    tok = uuid.uuid4().hex
    name = {
        "one-char": None,  # picked below among the names still free on the shared daemon
        "max-length": (tok + "-" + "x" * 128)[:128],
        "mixed": f"A_b-9_{tok[:12]}",
    }[shape]
    if name is None:
        for c in "QWERTYUIOPASDFGHJKLZXCVBNM0123456789qwertyuiopasdfghjklzxcvbnm":
            try:
                describe_secret(ssm, c)
            except TencentCloudSDKException as e:
                if e.code == "ResourceNotFound.SecretNotExist":
                    name = c
                    break
                raise
        assert name is not None, "no free one-character name left"
    created = create_secret(ssm, name=name, string="ok")
    assert created.SecretName == name
    assert describe_secret(ssm, name).SecretName == name
    assert get_value(ssm, name).SecretString == "ok"


@pytest.mark.parametrize("shape", [
    "too-long", "leading-underscore", "leading-dash", "dot", "space", "slash", "non-ascii",
])
def test_secret_name_invalid(ssm, shape):
    tok = uuid.uuid4().hex
    name = {
        "too-long": (tok + "x" * 129)[:129],
        "leading-underscore": f"_{tok}",
        "leading-dash": f"-{tok}",
        "dot": f"a.{tok}",
        "space": f"a {tok}",
        "slash": f"a/{tok}",
        "non-ascii": f"名字{tok}",
    }[shape]
    expect_error("InvalidParameterValue", create_secret, ssm, name=name, string="x")


def test_custom_version_id(ssm):
    name = unique_name("ver")
    created = create_secret(ssm, name=name, string="first", version_id="v1.2_x-Y")
    assert created.VersionId == "v1.2_x-Y"
    assert get_value(ssm, name, "v1.2_x-Y").SecretString == "first"
    # Only the given version exists: there is no implicit SSM_Current.
    expect_error("ResourceNotFound", get_value, ssm, name, DEFAULT_VERSION)
    assert [v.VersionId for v in list_versions(ssm, name).Versions] == ["v1.2_x-Y"]


def test_version_id_of_sixty_four_characters(ssm):
    name = unique_name("ver64")
    vid = "v" + "9" * 63
    assert create_secret(ssm, name=name, string="x", version_id=vid).VersionId == vid
    assert get_value(ssm, name, vid).SecretString == "x"


@pytest.mark.parametrize("vid", [
    ".v1", "_v1", "-v1", "v/1", "v 1", "v:1", "v" * 65, "版本1",
])
def test_invalid_version_id(ssm, vid):
    name = unique_name("badver")
    expect_error("InvalidParameterValue", create_secret, ssm, name=name, string="x",
                 version_id=vid)
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


def test_both_string_and_binary_invalid(ssm):
    name = unique_name("both")
    expect_error("InvalidParameterValue", create_raw, ssm, SecretName=name,
                 SecretString="text", SecretBinary=b64(b"bin"))
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


def test_neither_string_nor_binary_missing(ssm):
    name = unique_name("neither")
    expect_error("MissingParameter", create_raw, ssm, SecretName=name)
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


@pytest.mark.parametrize("size", [4096, MAX_VALUE])
def test_value_size_accepted_text(ssm, size):
    name = unique_name("size")
    value = ("0123456789abcdef" * (size // 16 + 1))[:size]
    create_secret(ssm, name=name, string=value)
    got = get_value(ssm, name)
    assert len(got.SecretString.encode()) == size
    assert got.SecretString == value


@pytest.mark.parametrize("size", [4096, MAX_VALUE])
def test_value_size_accepted_binary(ssm, size):
    name = unique_name("bsize")
    value = bytes((i * 7 + 3) % 256 for i in range(size))
    create_secret(ssm, name=name, binary=value)
    assert unb64(get_value(ssm, name).SecretBinary) == value


def test_value_too_large_text(ssm):
    name = unique_name("big")
    expect_error("InvalidParameterValue", create_secret, ssm, name=name,
                 string="x" * (MAX_VALUE + 1))
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


def test_value_too_large_binary(ssm):
    name = unique_name("bigb")
    expect_error("InvalidParameterValue", create_secret, ssm, name=name,
                 binary=b"\x01" * (MAX_VALUE + 1))
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


def test_value_limit_counts_utf8_bytes(ssm):
    """The limit is in bytes: 16384 two-byte characters fit, 16385 do not."""
    ok = unique_name("utf8")
    create_secret(ssm, name=ok, string="é" * (MAX_VALUE // 2))
    assert get_value(ssm, ok).SecretString == "é" * (MAX_VALUE // 2)
    bad = unique_name("utf8big")
    expect_error("InvalidParameterValue", create_secret, ssm, name=bad,
                 string="é" * (MAX_VALUE // 2 + 1))


def test_duplicate_name_rejected(ssm, secret):
    name, value = secret
    expect_error("ResourceInUse.SecretExists", create_secret, ssm, name=name, string="other")
    assert get_value(ssm, name).SecretString == value


@pytest.mark.parametrize("kms_key_id", [None, ""])
def test_default_kms_key_is_managed(ssm, kms, kms_key_id):
    name = unique_name("defkey")
    create_secret(ssm, name=name, string="x", kms_key_id=kms_key_id)
    d = describe_secret(ssm, name)
    managed = managed_key_ids(kms)
    assert d.KmsKeyId in managed, (
        f"KmsKeyId {d.KmsKeyId} is not a service-managed CMK {sorted(managed)}")
    assert managed[d.KmsKeyId].KeyState == "Enabled"
    meta = metadata_of(ssm, name)
    assert meta.KmsKeyType == "DEFAULT"
    assert meta.KmsKeyId == d.KmsKeyId
    # Every default-key secret of this account shares the one managed key.
    other = unique_name("defkey2")
    create_secret(ssm, name=other, string="y")
    assert describe_secret(ssm, other).KmsKeyId == d.KmsKeyId


def test_customer_kms_key(ssm, kms):
    cmk = create_cmk(kms).KeyId
    name = unique_name("cmk")
    create_secret(ssm, name=name, string="under my key", kms_key_id=cmk)
    assert describe_secret(ssm, name).KmsKeyId == cmk
    meta = metadata_of(ssm, name)
    assert meta.KmsKeyType == "CUSTOMER"
    assert meta.KmsKeyId == cmk
    assert get_value(ssm, name).SecretString == "under my key"


def test_unknown_kms_key(ssm):
    name = unique_name("nokey")
    expect_error("FailedOperation.AccessKmsError", create_secret, ssm, name=name,
                 string="x", kms_key_id=str(uuid.uuid4()))
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


def test_tags_and_tag_filters(ssm):
    name = unique_name("tags")
    tag_value = uuid.uuid4().hex
    created = create_secret(ssm, name=name, string="x",
                            tags={"pytest-ssm": tag_value, "team": "ssm"})
    assert created.SecretName == name

    f = models.TagFilter()
    f.TagKey = "pytest-ssm"
    f.TagValue = [tag_value]
    resp = list_secrets(ssm, TagFilters=[f], Limit=100)
    assert resp.TotalCount == 1
    assert names_of(resp) == [name]

    # Both filters must hold.
    g = models.TagFilter()
    g.TagKey = "team"
    g.TagValue = ["ssm"]
    resp = list_secrets(ssm, TagFilters=[f, g], Limit=100)
    assert names_of(resp) == [name]

    # A value the secret does not carry matches nothing.
    f.TagValue = [uuid.uuid4().hex]
    resp = list_secrets(ssm, TagFilters=[f], Limit=100)
    assert resp.TotalCount == 0
    assert names_of(resp) == []


def test_secret_type_one_rejected(ssm):
    name = unique_name("type1")
    expect_error("InvalidParameterValue", create_secret, ssm, name=name, string="x",
                 secret_type=1)
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


# ----------------------------------------------------------------------------- GetSecretValue


def test_get_text_value(ssm, secret):
    name, value = secret
    got = get_value(ssm, name)
    assert got.SecretName == name
    assert got.VersionId == DEFAULT_VERSION
    assert got.SecretString == value
    assert got.SecretBinary == ""


def test_binary_round_trip(ssm):
    name = unique_name("bin")
    value = b"\x00\xff" + bytes(range(256)) + b"\x00\x00\xff\xfe\x80"
    created = create_secret(ssm, name=name, binary=value)
    assert created.VersionId == DEFAULT_VERSION
    got = get_value(ssm, name)
    assert got.SecretString == ""
    assert unb64(got.SecretBinary) == value


def test_text_value_kept_exactly(ssm):
    """Whitespace, newlines, quotes and non-ASCII text come back unchanged."""
    name = unique_name("exact")
    value = '  {"user": "admin",\n "pass": "p@ss\\w0rd\t"}  密码 \U0001F511 \r\n'
    create_secret(ssm, name=name, string=value)
    assert get_value(ssm, name).SecretString == value


def test_get_unknown_version(ssm, secret):
    expect_error("ResourceNotFound", get_value, ssm, secret[0], "no-such-version")


def test_get_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", get_value, ssm, unique_name("ghost"))


def test_get_disabled_secret(ssm, secret):
    name, value = secret
    disable_secret(ssm, name)
    expect_error("ResourceUnavailable.ResourceDisabled", get_value, ssm, name)
    enable_secret(ssm, name)
    assert get_value(ssm, name).SecretString == value


def test_empty_version_id_reads_ssm_current(ssm, secret):
    """Issue 13 item 4: Go callers (Dapr's secret store) send `"VersionId": ""` unless told a
    version; Keyward reads SSM_Current then and says so in the answer."""
    name, value = secret
    put_value(ssm, name, "v2", string="newer")
    got = get_value(ssm, name, "")
    assert got.VersionId == DEFAULT_VERSION
    assert got.SecretString == value
    assert got.SecretBinary == ""
    assert get_value(ssm, name, "v2").SecretString == "newer"


def test_empty_version_id_without_ssm_current(ssm):
    name = unique_name("named")
    create_secret(ssm, name=name, string="x", version_id="v1")
    expect_error("ResourceNotFound", get_value, ssm, name, "")


def test_omitted_version_id_is_still_required(ssm, secret):
    """The SDK leaves an unset VersionId out of the body: the reference requires the field."""
    req = models.GetSecretValueRequest()
    req.SecretName = secret[0]
    err = expect_error("MissingParameter", ssm.GetSecretValue, req)
    assert "VersionId" in err.message


def test_list_secrets_shaped_like_dapr(ssm):
    """BulkGetSecret's request: {"Offset": 0, "Limit": 100, "State": 1}, paging by Offset."""
    prefix = unique_name("dapr")
    enabled, disabled = f"{prefix}-en", f"{prefix}-dis"
    for n in (enabled, disabled):
        create_secret(ssm, name=n, string="x")
    disable_secret(ssm, disabled)
    seen, offset = [], 0
    while True:
        page = list_secrets(ssm, Offset=offset, Limit=100, State=1)
        seen += names_of(page)
        assert all(m.Status == "Enabled" for m in page.SecretMetadatas)
        if len(page.SecretMetadatas) < 100:
            break
        offset += len(page.SecretMetadatas)
    assert enabled in seen and disabled not in seen
    assert len(seen) == len(set(seen))


# ----------------------------------------------------------------------------- versions


def test_put_secret_value_adds_version(ssm, secret):
    name, value = secret
    resp = put_value(ssm, name, "v2", string="second")
    assert resp.SecretName == name
    assert resp.VersionId == "v2"
    assert get_value(ssm, name, "v2").SecretString == "second"
    assert get_value(ssm, name, DEFAULT_VERSION).SecretString == value
    put_value(ssm, name, "v3-bin", binary=b"\x00bin\xff")
    got = get_value(ssm, name, "v3-bin")
    assert unb64(got.SecretBinary) == b"\x00bin\xff"
    assert got.SecretString == ""


def test_put_duplicate_version_rejected(ssm, secret):
    name, value = secret
    expect_error("ResourceInUse.VersionIdExists", put_value, ssm, name, DEFAULT_VERSION,
                 string="clobber")
    assert get_value(ssm, name).SecretString == value
    put_value(ssm, name, "v2", string="two")
    expect_error("ResourceInUse.VersionIdExists", put_value, ssm, name, "v2", string="again")
    assert get_value(ssm, name, "v2").SecretString == "two"


def test_put_value_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", put_value, ssm, unique_name("ghost"),
                 "v1", string="x")


def test_put_value_validation(ssm, secret):
    name = secret[0]
    expect_error("InvalidParameterValue", put_value, ssm, name, "v2", string="a",
                 binary=b"b")
    expect_error("MissingParameter", put_value, ssm, name, "v2")
    expect_error("InvalidParameterValue", put_value, ssm, name, "v2",
                 string="x" * (MAX_VALUE + 1))
    expect_error("InvalidParameterValue", put_value, ssm, name, ".bad", string="x")
    assert [v.VersionId for v in list_versions(ssm, name).Versions] == [DEFAULT_VERSION]


def test_version_limit(ssm, secret):
    name = secret[0]
    for i in range(2, MAX_VERSIONS + 1):
        put_value(ssm, name, f"v{i}", string=f"value {i}")
    assert len(list_versions(ssm, name).Versions) == MAX_VERSIONS
    expect_error("LimitExceeded", put_value, ssm, name, "v11", string="one too many")
    assert len(list_versions(ssm, name).Versions) == MAX_VERSIONS
    expect_error("ResourceNotFound", get_value, ssm, name, "v11")
    # Every stored version is still readable.
    for i in range(2, MAX_VERSIONS + 1):
        assert get_value(ssm, name, f"v{i}").SecretString == f"value {i}"
    # Deleting one frees a slot.
    delete_version(ssm, name, "v5")
    put_value(ssm, name, "v11", string="fits now")
    assert get_value(ssm, name, "v11").SecretString == "fits now"


def test_update_secret_overwrites_and_switches_type(ssm, secret):
    name, _ = secret
    resp = update_secret(ssm, name, DEFAULT_VERSION, string="replaced")
    assert resp.SecretName == name
    assert resp.VersionId == DEFAULT_VERSION
    got = get_value(ssm, name)
    assert got.SecretString == "replaced"
    assert got.SecretBinary == ""

    update_secret(ssm, name, DEFAULT_VERSION, binary=b"\x00\x01\xfe\xff")
    got = get_value(ssm, name)
    assert got.SecretString == ""
    assert unb64(got.SecretBinary) == b"\x00\x01\xfe\xff"

    update_secret(ssm, name, DEFAULT_VERSION, string="text again")
    got = get_value(ssm, name)
    assert got.SecretString == "text again"
    assert got.SecretBinary == ""
    # Overwriting does not add versions.
    assert [v.VersionId for v in list_versions(ssm, name).Versions] == [DEFAULT_VERSION]


def test_update_secret_unknown_version(ssm, secret):
    name, value = secret
    expect_error("ResourceNotFound", update_secret, ssm, name, "no-such-version", string="x")
    expect_error("ResourceNotFound", get_value, ssm, name, "no-such-version")
    assert get_value(ssm, name).SecretString == value


def test_update_secret_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", update_secret, ssm, unique_name("ghost"),
                 DEFAULT_VERSION, string="x")


def test_list_and_delete_versions(ssm):
    name = unique_name("versions")
    before = int(time.time())
    create_secret(ssm, name=name, string="one")
    put_value(ssm, name, "v2", string="two")
    put_value(ssm, name, "v3", string="three")
    after = int(time.time())

    resp = list_versions(ssm, name)
    assert resp.SecretName == name
    versions = {v.VersionId: v.CreateTime for v in resp.Versions}
    assert set(versions) == {DEFAULT_VERSION, "v2", "v3"}
    for vid, t in versions.items():
        assert_now(t, before, after, f"CreateTime of {vid}")

    deleted = delete_version(ssm, name, "v2")
    assert deleted.SecretName == name
    assert deleted.VersionId == "v2"
    assert {v.VersionId for v in list_versions(ssm, name).Versions} == {DEFAULT_VERSION, "v3"}
    expect_error("ResourceNotFound", get_value, ssm, name, "v2")
    expect_error("ResourceNotFound", delete_version, ssm, name, "v2")
    assert get_value(ssm, name, DEFAULT_VERSION).SecretString == "one"
    assert get_value(ssm, name, "v3").SecretString == "three"
    # The freed VersionId may be used again.
    put_value(ssm, name, "v2", string="two again")
    assert get_value(ssm, name, "v2").SecretString == "two again"


def test_list_versions_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", list_versions, ssm, unique_name("ghost"))


# ----------------------------------------------------------------------------- description


def test_update_description(ssm, secret):
    name = secret[0]
    assert describe_secret(ssm, name).Description == ""
    resp = update_description(ssm, name, "new description")
    assert resp.SecretName == name
    assert describe_secret(ssm, name).Description == "new description"
    assert metadata_of(ssm, name).Description == "new description"

    # 2048 bytes (1024 two-byte characters) fit; one more byte does not.
    limit = "é" * (MAX_DESCRIPTION // 2)
    update_description(ssm, name, limit)
    assert describe_secret(ssm, name).Description == limit
    expect_error("InvalidParameterValue", update_description, ssm, name, limit + "x")
    expect_error("InvalidParameterValue", update_description, ssm, name,
                 "d" * (MAX_DESCRIPTION + 1))
    assert describe_secret(ssm, name).Description == limit

    update_description(ssm, name, "")
    assert describe_secret(ssm, name).Description == ""


def test_update_description_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", update_description, ssm,
                 unique_name("ghost"), "x")


# ----------------------------------------------------------------------------- enable / disable


def test_disable_enable_round_trip(ssm, secret):
    name, value = secret
    assert disable_secret(ssm, name).SecretName == name
    d = describe_secret(ssm, name)
    assert d.Status == "Disabled"
    assert d.DeleteTime == 0
    assert metadata_of(ssm, name).Status == "Disabled"
    assert enable_secret(ssm, name).SecretName == name
    assert describe_secret(ssm, name).Status == "Enabled"
    assert metadata_of(ssm, name).Status == "Enabled"
    assert get_value(ssm, name).SecretString == value


def test_enable_disable_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", enable_secret, ssm, unique_name("ghost"))
    expect_error("ResourceNotFound.SecretNotExist", disable_secret, ssm, unique_name("ghost"))


# ----------------------------------------------------------------------------- delete / restore


def test_delete_enabled_secret_denied(ssm, secret):
    name, value = secret
    expect_error("OperationDenied", delete_secret, ssm, name, 7)
    expect_error("OperationDenied", delete_secret, ssm, name, 0)
    d = describe_secret(ssm, name)
    assert d.Status == "Enabled"
    assert d.DeleteTime == 0
    assert get_value(ssm, name).SecretString == value


def test_scheduled_delete_and_restore(ssm, disabled_secret):
    name = disabled_secret
    before = int(time.time())
    resp = delete_secret(ssm, name, 7)
    after = int(time.time())
    assert resp.SecretName == name
    assert_now(resp.DeleteTime, before + 7 * DAY, after + 7 * DAY, "DeleteTime")

    d = describe_secret(ssm, name)
    assert d.Status == "PendingDelete"
    assert d.DeleteTime == resp.DeleteTime
    meta = metadata_of(ssm, name)
    assert meta.Status == "PendingDelete"
    assert meta.DeleteTime == resp.DeleteTime

    pending = "ResourceUnavailable.ResourcePendingDeleted"
    expect_error(pending, get_value, ssm, name)
    expect_error(pending, put_value, ssm, name, "v2", string="x")
    expect_error(pending, enable_secret, ssm, name)
    assert describe_secret(ssm, name).Status == "PendingDelete"

    assert restore_secret(ssm, name).SecretName == name
    d = describe_secret(ssm, name)
    assert d.Status == "Disabled"
    assert d.DeleteTime == 0
    expect_error("OperationDenied", restore_secret, ssm, name)

    enable_secret(ssm, name)
    assert get_value(ssm, name).SecretString == f"value of {name}"


def test_restore_not_pending_denied(ssm, secret):
    name = secret[0]
    expect_error("OperationDenied", restore_secret, ssm, name)
    assert describe_secret(ssm, name).Status == "Enabled"
    disable_secret(ssm, name)
    expect_error("OperationDenied", restore_secret, ssm, name)
    assert describe_secret(ssm, name).Status == "Disabled"


def test_restore_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", restore_secret, ssm, unique_name("ghost"))


def test_delete_immediately(ssm, disabled_secret):
    name = disabled_secret
    before = int(time.time())
    resp = delete_secret(ssm, name, 0)
    after = int(time.time())
    assert resp.SecretName == name
    assert_now(resp.DeleteTime, before, after, "DeleteTime")
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)
    expect_error("ResourceNotFound.SecretNotExist", get_value, ssm, name)
    expect_error("ResourceNotFound.SecretNotExist", list_versions, ssm, name)
    resp = list_secrets(ssm, SearchSecretName=name)
    assert resp.TotalCount == 0 and names_of(resp) == []
    # The name is free again.
    create_secret(ssm, name=name, string="reborn")
    assert get_value(ssm, name).SecretString == "reborn"


def test_delete_pending_secret_immediately(ssm, disabled_secret):
    name = disabled_secret
    delete_secret(ssm, name, 7)
    delete_secret(ssm, name, 0)
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


@pytest.mark.parametrize("days", [31, 365])
def test_delete_window_out_of_range(ssm, disabled_secret, days):
    name = disabled_secret
    expect_error("InvalidParameterValue", delete_secret, ssm, name, days)
    d = describe_secret(ssm, name)
    assert d.Status == "Disabled"
    assert d.DeleteTime == 0


def test_delete_unknown_secret(ssm):
    expect_error("ResourceNotFound.SecretNotExist", delete_secret, ssm, unique_name("ghost"), 7)


# ----------------------------------------------------------------------------- ListSecrets


def test_list_secrets_state_filter(ssm):
    prefix = unique_name("state")
    enabled, disabled, pending = f"{prefix}-en", f"{prefix}-dis", f"{prefix}-pend"
    for n in (enabled, disabled, pending):
        create_secret(ssm, name=n, string="x")
    disable_secret(ssm, disabled)
    disable_secret(ssm, pending)
    delete_secret(ssm, pending, 3)

    every = list_secrets(ssm, SearchSecretName=prefix, Limit=100)
    assert every.TotalCount == 3
    assert set(names_of(every)) == {enabled, disabled, pending}
    explicit0 = list_secrets(ssm, SearchSecretName=prefix, State=0, Limit=100)
    assert set(names_of(explicit0)) == {enabled, disabled, pending}

    for state, name, status in ((1, enabled, "Enabled"), (2, disabled, "Disabled"),
                                (3, pending, "PendingDelete")):
        resp = list_secrets(ssm, SearchSecretName=prefix, State=state, Limit=100)
        assert resp.TotalCount == 1, f"State={state}"
        assert names_of(resp) == [name], f"State={state}"
        assert resp.SecretMetadatas[0].Status == status


def test_list_secrets_metadata_fields(ssm):
    name = unique_name("meta")
    before = int(time.time())
    create_secret(ssm, name=name, string="x", description="listed")
    after = int(time.time())
    m = metadata_of(ssm, name)
    d = describe_secret(ssm, name)
    assert m.Description == "listed"
    assert m.Status == "Enabled"
    assert m.KmsKeyId == d.KmsKeyId
    assert m.CreateUin == d.CreateUin
    assert m.CreateTime == d.CreateTime
    assert_now(m.CreateTime, before, after, "CreateTime")
    assert m.DeleteTime == 0
    assert m.SecretType == 0


def test_list_secrets_search_substring(ssm):
    tok = uuid.uuid4().hex[:12]
    names = [f"alpha{tok}one", f"beta-{tok}-two", f"{tok}_three"]
    for n in names:
        create_secret(ssm, name=n, string="x")
    resp = list_secrets(ssm, SearchSecretName=tok, Limit=100)
    assert resp.TotalCount == 3
    assert set(names_of(resp)) == set(names)
    resp = list_secrets(ssm, SearchSecretName=f"beta-{tok}", Limit=100)
    assert names_of(resp) == [names[1]]
    resp = list_secrets(ssm, SearchSecretName=f"{tok}one", Limit=100)
    assert names_of(resp) == [names[0]]
    resp = list_secrets(ssm, SearchSecretName=f"gamma{tok}", Limit=100)
    assert resp.TotalCount == 0 and names_of(resp) == []


def test_list_secrets_order_type(ssm):
    prefix = unique_name("order")
    names = []
    for i in range(3):
        n = f"{prefix}-{i}"
        create_secret(ssm, name=n, string="x")
        names.append(n)
        if i < 2:
            time.sleep(1.1)  # distinct CreateTime seconds

    oldest_first = list_secrets(ssm, SearchSecretName=prefix, OrderType=1, Limit=100)
    assert names_of(oldest_first) == names
    times = [m.CreateTime for m in oldest_first.SecretMetadatas]
    assert times == sorted(times) and len(set(times)) == 3

    newest_first = list_secrets(ssm, SearchSecretName=prefix, OrderType=0, Limit=100)
    assert names_of(newest_first) == list(reversed(names))
    times = [m.CreateTime for m in newest_first.SecretMetadatas]
    assert times == sorted(times, reverse=True)

    default = list_secrets(ssm, SearchSecretName=prefix, Limit=100)
    assert names_of(default) == list(reversed(names))


def test_list_secrets_paging(ssm):
    prefix = unique_name("page")
    names = [f"{prefix}-{i:02d}" for i in range(25)]
    for n in names:
        create_secret(ssm, name=n, string="x")

    # Limit 0 (and no Limit) means 20.
    for fields in ({"Limit": 0}, {}):
        first = list_secrets(ssm, SearchSecretName=prefix, OrderType=1, **fields)
        assert first.TotalCount == 25, fields
        assert names_of(first) == names[:20], fields

    rest = list_secrets(ssm, SearchSecretName=prefix, OrderType=1, Offset=20, Limit=10)
    assert rest.TotalCount == 25
    assert names_of(rest) == names[20:]

    window = list_secrets(ssm, SearchSecretName=prefix, OrderType=1, Offset=5, Limit=5)
    assert window.TotalCount == 25
    assert names_of(window) == names[5:10]

    newest = list_secrets(ssm, SearchSecretName=prefix, OrderType=0, Offset=0, Limit=3)
    assert names_of(newest) == list(reversed(names))[:3]

    beyond = list_secrets(ssm, SearchSecretName=prefix, Offset=25, Limit=10)
    assert beyond.TotalCount == 25
    assert names_of(beyond) == []

    # Paging through everything yields each secret exactly once.
    seen = []
    offset = 0
    while True:
        page = list_secrets(ssm, SearchSecretName=prefix, OrderType=1, Offset=offset, Limit=7)
        batch = names_of(page)
        if not batch:
            break
        seen.extend(batch)
        offset += 7
    assert seen == names


def test_list_secrets_total_count_grows(ssm):
    before = list_secrets(ssm).TotalCount
    create_secret(ssm, name=unique_name("count"), string="x")
    after = list_secrets(ssm).TotalCount
    assert after >= before + 1


# ----------------------------------------------------------------------------- CMK state


def test_cmk_state_governs_secret(ssm, kms):
    cmk = create_cmk(kms).KeyId
    name = unique_name("cmkstate")
    create_secret(ssm, name=name, string="guarded", kms_key_id=cmk)
    assert get_value(ssm, name).SecretString == "guarded"

    set_cmk_enabled(kms, cmk, False)
    try:
        expect_error("FailedOperation.AccessKmsError", get_value, ssm, name)
        expect_error("FailedOperation.AccessKmsError", put_value, ssm, name, "v2",
                     string="new")
        # The secret itself is untouched.
        assert describe_secret(ssm, name).Status == "Enabled"
    finally:
        set_cmk_enabled(kms, cmk, True)
    assert get_value(ssm, name).SecretString == "guarded"
    put_value(ssm, name, "v2", string="new")
    assert get_value(ssm, name, "v2").SecretString == "new"


def test_create_secret_with_disabled_cmk(ssm, kms):
    cmk = create_cmk(kms).KeyId
    set_cmk_enabled(kms, cmk, False)
    name = unique_name("discmk")
    expect_error("FailedOperation.AccessKmsError", create_secret, ssm, name=name,
                 string="x", kms_key_id=cmk)
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, name)


# ----------------------------------------------------------------------------- service actions


def test_get_service_status(ssm):
    create_secret(ssm, name=unique_name("svc"), string="x")
    resp = ssm.GetServiceStatus(models.GetServiceStatusRequest())
    assert resp.ServiceEnabled is True
    assert resp.RequestId
    assert resp.TotalCount >= 1


def test_get_regions(ssm, keyward):
    resp = ssm.GetRegions(models.GetRegionsRequest())
    assert keyward.region in resp.Regions


def test_create_service_post_pay_idempotent(ssm):
    token = uuid.uuid4().hex
    first = create_service(ssm, "PostPay", token)
    second = create_service(ssm, "PostPay", token)
    assert first.OrderId
    assert first.ResourceId
    assert second.OrderId == first.OrderId
    assert second.ResourceId == first.ResourceId
    other = create_service(ssm, "PostPay", uuid.uuid4().hex)
    assert other.OrderId != first.OrderId


def test_create_service_prepaid_rejected(ssm):
    expect_error("InvalidParameterValue", create_service, ssm, "Prepaid", uuid.uuid4().hex)


# ----------------------------------------------------------------------------- product secrets


def test_create_product_secret_unknown_instance(ssm):
    # Product secrets rotate on databases declared in keyward.toml (docs/rotation.md):
    # an InstanceID that names none is refused before anything is created.
    req = models.CreateProductSecretRequest()
    req.SecretName = unique_name("prod")
    req.UserNamePrefix = "pytest"
    req.ProductName = "Mysql"
    req.InstanceID = "cdb-pytest01"
    req.Domains = ["10.0.0.%"]
    priv = models.ProductPrivilegeUnit()
    priv.PrivilegeName = "GlobalPrivileges"
    priv.Privileges = ["SELECT"]
    req.PrivilegesList = [priv]
    req.Description = "product secret"
    expect_error("InvalidParameterValue", ssm.CreateProductSecret, req)
    expect_error("ResourceNotFound.SecretNotExist", describe_secret, ssm, req.SecretName)


def _create_ssh(ssm, key_name=None):
    req = models.CreateSSHKeyPairSecretRequest()
    req.SecretName = unique_name("ssh")
    req.ProjectId = 7
    req.Description = "deploy key"
    if key_name:
        req.SSHKeyName = key_name
    return req.SecretName, ssm.CreateSSHKeyPairSecret(req)


def test_ssh_key_pair_secret_round_trip(ssm):
    """The key pair is checked with an independent library: the private key parses as OpenSSH,
    its public half is the PublicKey returned, and a signature made with it verifies."""
    from cryptography.hazmat.primitives import serialization

    name, created = _create_ssh(ssm, "deploy_key")
    assert created.SSHKeyID.startswith("skey-")
    assert created.SSHKeyName == "deploy_key"
    by_name = models.GetSSHKeyPairValueRequest()
    by_name.SecretName = name
    pair = ssm.GetSSHKeyPairValue(by_name)
    by_id = models.GetSSHKeyPairValueRequest()
    by_id.SSHKeyId = created.SSHKeyID
    same = ssm.GetSSHKeyPairValue(by_id)
    assert (same.PublicKey, same.PrivateKey) == (pair.PublicKey, pair.PrivateKey)
    assert pair.SSHKeyID == created.SSHKeyID
    assert pair.ProjectID == 7
    assert pair.PublicKey.startswith("ssh-ed25519 ")
    assert pair.PrivateKey.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    private = serialization.load_ssh_private_key(pair.PrivateKey.encode(), password=None)
    public = serialization.load_ssh_public_key(pair.PublicKey.encode())
    derived = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert derived == public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public.verify(private.sign(b"keyward"), b"keyward")

    desc = models.DescribeSecretRequest()
    desc.SecretName = name
    d = ssm.DescribeSecret(desc)
    assert (d.SecretType, d.ResourceName, d.ProjectID) == (2, "deploy_key", 7)
    lst = models.ListSecretsRequest()
    lst.SecretType = 2
    lst.SearchSecretName = name
    assert [m.SecretName for m in ssm.ListSecrets(lst).SecretMetadatas] == [name]


def test_ssh_key_pair_secret_rules(ssm):
    name, created = _create_ssh(ssm)
    put = models.PutSecretValueRequest()
    put.SecretName, put.VersionId, put.SecretString = name, "v2", "mine"
    expect_error("OperationDenied", ssm.PutSecretValue, put)
    bad = models.CreateSSHKeyPairSecretRequest()
    bad.SecretName, bad.ProjectId, bad.SSHKeyName = unique_name("ssh"), 0, "bad-name"
    expect_error("InvalidParameterValue", ssm.CreateSSHKeyPairSecret, bad)
    neither = models.GetSSHKeyPairValueRequest()
    expect_error("MissingParameter", ssm.GetSSHKeyPairValue, neither)
    unknown = models.GetSSHKeyPairValueRequest()
    unknown.SSHKeyId = "skey-00000000"
    expect_error("ResourceNotFound.SecretNotExist", ssm.GetSSHKeyPairValue, unknown)
    dis = models.DisableSecretRequest()
    dis.SecretName = name
    ssm.DisableSecret(dis)
    delete = models.DeleteSecretRequest()
    delete.SecretName, delete.RecoveryWindowInDays = name, 7
    expect_error("InvalidParameterValue", ssm.DeleteSecret, delete)
    delete.RecoveryWindowInDays = 0
    ssm.DeleteSecret(delete)
    by_id = models.GetSSHKeyPairValueRequest()
    by_id.SSHKeyId = created.SSHKeyID
    expect_error("ResourceNotFound.SecretNotExist", ssm.GetSSHKeyPairValue, by_id)
