"""Asymmetric CMKs through the official SDK, checked only with third-party libraries:
`cryptography` for RSA and ECDSA, `gmssl` for SM2. Signatures made by Keyward verify with the
public key from GetPublicKey; data encrypted locally to that key is decrypted by Keyward."""

import base64
import hashlib
import uuid

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from gmssl import sm2 as gm_sm2
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.kms.v20190118 import models

MESSAGE = b"signed by keyward, checked elsewhere"


def create(kms, usage):
    req = models.CreateKeyRequest()
    req.Alias = f"asym-{uuid.uuid4().hex[:12]}"
    req.KeyUsage = usage
    return kms.CreateKey(req).KeyId


def public_key(kms, key_id):
    req = models.GetPublicKeyRequest()
    req.KeyId = key_id
    r = kms.GetPublicKey(req)
    der = base64.b64decode(r.PublicKey)
    lines = r.PublicKeyPem.strip().splitlines()
    assert lines[0] == "-----BEGIN PUBLIC KEY-----" and lines[-1] == "-----END PUBLIC KEY-----"
    assert base64.b64decode("".join(lines[1:-1])) == der
    return der


def sign(kms, key_id, algorithm, message, message_type="RAW"):
    req = models.SignByAsymmetricKeyRequest()
    req.KeyId, req.Algorithm, req.Message, req.MessageType = key_id, algorithm, base64.b64encode(message).decode(), message_type
    return base64.b64decode(kms.SignByAsymmetricKey(req).Signature)


def verify(kms, key_id, algorithm, message, signature, message_type="RAW"):
    req = models.VerifyByAsymmetricKeyRequest()
    req.KeyId, req.Algorithm, req.MessageType = key_id, algorithm, message_type
    req.Message = base64.b64encode(message).decode()
    req.SignatureValue = base64.b64encode(signature).decode()
    return kms.VerifyByAsymmetricKey(req).SignatureValid


def expect(code, fn, req):
    with pytest.raises(TencentCloudSDKException) as e:
        fn(req)
    assert e.value.code == code, f"expected {code}, got {e.value.code}: {e.value.message}"


@pytest.mark.parametrize("algorithm", ["RSA_PKCS1_SHA_256", "RSA_PSS_SHA_256"])
@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_rsa_signatures_verify_with_cryptography(kms, algorithm, message_type):
    key_id = create(kms, "ASYMMETRIC_SIGN_VERIFY_RSA_2048")
    pub = serialization.load_der_public_key(public_key(kms, key_id))
    assert pub.key_size == 2048
    digest = hashlib.sha256(MESSAGE).digest()
    sig = sign(kms, key_id, algorithm, MESSAGE if message_type == "RAW" else digest, message_type)
    pad = padding.PKCS1v15() if algorithm == "RSA_PKCS1_SHA_256" else padding.PSS(
        mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    pub.verify(sig, MESSAGE, pad, hashes.SHA256())
    assert verify(kms, key_id, algorithm, MESSAGE if message_type == "RAW" else digest, sig, message_type)
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"something else", pad, hashes.SHA256())


@pytest.mark.parametrize("usage,algorithm,curve", [
    ("ASYMMETRIC_SIGN_VERIFY_ECC", "ECC_P256_R1", ec.SECP256R1),
    ("ASYMMETRIC_SIGN_VERIFY_ECDSA384", "ECC_P384_R1", ec.SECP384R1),
])
@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_ecdsa_signatures_verify_with_cryptography(kms, usage, algorithm, curve, message_type):
    key_id = create(kms, usage)
    pub = serialization.load_der_public_key(public_key(kms, key_id))
    assert isinstance(pub.curve, curve)
    digest = hashlib.sha256(MESSAGE).digest()
    sig = sign(kms, key_id, algorithm, MESSAGE if message_type == "RAW" else digest, message_type)
    # RAW messages are hashed with SHA-256 for every ECDSA key (documented in docs/).
    pub.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert not verify(kms, key_id, algorithm, b"tampered", sig)


def test_p384_signs_a_sha384_digest(kms):
    """A P-384 key also takes a 48-byte SHA-384 DIGEST (a Keyward extension of the reference's
    32 bytes): the signature is ECDSA with SHA-384 over the message, as `cryptography` checks
    it. Other lengths stay InvalidParameterValue, and so do 48 bytes for a P-256 key."""
    key_id = create(kms, "ASYMMETRIC_SIGN_VERIFY_ECDSA384")
    pub = serialization.load_der_public_key(public_key(kms, key_id))
    digest = hashlib.sha384(MESSAGE).digest()
    sig = sign(kms, key_id, "ECC_P384_R1", digest, "DIGEST")
    pub.verify(sig, MESSAGE, ec.ECDSA(hashes.SHA384()))
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"something else", ec.ECDSA(hashes.SHA384()))
    assert verify(kms, key_id, "ECC_P384_R1", digest, sig, "DIGEST")
    assert not verify(kms, key_id, "ECC_P384_R1", hashlib.sha384(b"other").digest(), sig, "DIGEST")
    req = models.SignByAsymmetricKeyRequest()
    req.KeyId, req.Algorithm, req.MessageType = key_id, "ECC_P384_R1", "DIGEST"
    for n in (31, 33, 47, 49, 64):
        req.Message = base64.b64encode(b"\x01" * n).decode()
        expect("InvalidParameterValue", kms.SignByAsymmetricKey, req)
    req.KeyId, req.Algorithm = create(kms, "ASYMMETRIC_SIGN_VERIFY_ECC"), "ECC_P256_R1"
    req.Message = base64.b64encode(digest).decode()
    expect("InvalidParameterValue", kms.SignByAsymmetricKey, req)


def sm2_public_hex(der):
    """The uncompressed point (x||y) that gmssl expects, from the SubjectPublicKeyInfo."""
    assert der[-65] == 0x04
    return der[-64:].hex()


def der_to_rs(sig):
    """ECDSA-Sig-Value DER -> r||s (32 bytes each), the form gmssl verifies."""
    assert sig[0] == 0x30
    i = 2
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        out += sig[i + 2:i + 2 + n].lstrip(b"\x00").rjust(32, b"\x00")
        i += 2 + n
    return out


def test_sm2_signature_verifies_with_gmssl(kms):
    key_id = create(kms, "ASYMMETRIC_SIGN_VERIFY_SM2")
    pub_hex = sm2_public_hex(public_key(kms, key_id))
    sig = sign(kms, key_id, "SM2DSA", MESSAGE)
    checker = gm_sm2.CryptSM2(private_key=None, public_key=pub_hex)
    assert checker.verify_with_sm3(der_to_rs(sig).hex(), MESSAGE)
    assert not checker.verify_with_sm3(der_to_rs(sig).hex(), b"tampered")
    assert verify(kms, key_id, "SM2DSA", MESSAGE, sig)


RSA_PADDINGS = {
    "RSAES_PKCS1_V1_5": padding.PKCS1v15(),
    "RSAES_OAEP_SHA_1": padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    # SoftHSM2 2.6.1 has no OAEP with SHA-256: raw RSA in the token, OAEP decoded by Keyward.
    "RSAES_OAEP_SHA_256": padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
}


@pytest.mark.parametrize("algorithm", list(RSA_PADDINGS))
def test_rsa_decrypt_of_local_ciphertext(kms, algorithm):
    key_id = create(kms, "ASYMMETRIC_DECRYPT_RSA_2048")
    pub = serialization.load_der_public_key(public_key(kms, key_id))
    ct = pub.encrypt(b"for keyward only", RSA_PADDINGS[algorithm])
    req = models.AsymmetricRsaDecryptRequest()
    req.KeyId, req.Algorithm, req.Ciphertext = key_id, algorithm, base64.b64encode(ct).decode()
    r = kms.AsymmetricRsaDecrypt(req)
    assert base64.b64decode(r.Plaintext) == b"for keyward only"
    assert r.KeyId == key_id


def sdk_error(fn, req):
    with pytest.raises(TencentCloudSDKException) as e:
        fn(req)
    return e.value.code, e.value.message


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_rsa_decrypt_bad_ciphertexts_get_one_answer(kms, algorithm):
    """A tampered ciphertext and one for another key get the same code and message."""
    key_id = create(kms, "ASYMMETRIC_DECRYPT_RSA_2048")
    other = create(kms, "ASYMMETRIC_DECRYPT_RSA_2048")
    pad = RSA_PADDINGS[algorithm]
    ct = serialization.load_der_public_key(public_key(kms, key_id)).encrypt(b"secret", pad)
    bad = [serialization.load_der_public_key(public_key(kms, other)).encrypt(b"secret", pad), b"\xff" * 256]
    for i in (0, 1, 100, 255):
        bad.append(ct[:i] + bytes([ct[i] ^ 1]) + ct[i + 1:])
    req = models.AsymmetricRsaDecryptRequest()
    req.KeyId, req.Algorithm = key_id, algorithm
    answers = set()
    for c in bad:
        req.Ciphertext = base64.b64encode(c).decode()
        answers.add(sdk_error(kms.AsymmetricRsaDecrypt, req))
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == "FailedOperation.DecryptError"


def der_len(n):
    return bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else bytes([0x82, n >> 8, n & 0xFF])


def der_int(b):
    b = b.lstrip(b"\x00")
    if not b or b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + der_len(len(b)) + b


def c1c3c2_to_der(raw):
    """gmssl's C1(x||y) C3 C2 -> the GM/T 0009 ASN.1 form AsymmetricSm2Decrypt takes."""
    x, y, c3, c2 = raw[:32], raw[32:64], raw[64:96], raw[96:]
    body = der_int(x) + der_int(y) + b"\x04" + der_len(32) + c3 + b"\x04" + der_len(len(c2)) + c2
    return b"\x30" + der_len(len(body)) + body


def test_sm2_decrypt_of_gmssl_ciphertext(kms):
    key_id = create(kms, "ASYMMETRIC_DECRYPT_SM2")
    pub_hex = sm2_public_hex(public_key(kms, key_id))
    raw = gm_sm2.CryptSM2(private_key=None, public_key=pub_hex, mode=1).encrypt(b"sm2 secret")
    req = models.AsymmetricSm2DecryptRequest()
    req.KeyId, req.Ciphertext = key_id, base64.b64encode(c1c3c2_to_der(raw)).decode()
    assert base64.b64decode(kms.AsymmetricSm2Decrypt(req).Plaintext) == b"sm2 secret"


def test_refusals(kms):
    key_id = create(kms, "ASYMMETRIC_SIGN_VERIFY_ECC")
    req = models.SignByAsymmetricKeyRequest()
    req.KeyId, req.Algorithm, req.MessageType = key_id, "ECC_P256_R1", "DIGEST"
    req.Message = base64.b64encode(b"\x00" * 33).decode()
    expect("InvalidParameterValue", kms.SignByAsymmetricKey, req)
    req.MessageType, req.Message = "RAW", base64.b64encode(b"\x00" * 4097).decode()
    expect("InvalidParameterValue", kms.SignByAsymmetricKey, req)
    enc = models.EncryptRequest()
    enc.KeyId, enc.Plaintext = key_id, base64.b64encode(b"x").decode()
    expect("UnsupportedOperation", kms.Encrypt, enc)
    ck = models.CreateKeyRequest()
    ck.Alias, ck.KeyUsage = f"bad-{uuid.uuid4().hex[:8]}", "ASYMMETRIC_SIGN_VERIFY_DSA"
    expect("InvalidParameterValue.InvalidKeyUsage", kms.CreateKey, ck)


def test_list_algorithms_reports_the_backend(kms):
    """Every backend (PKCS#11, embedded, serial) runs RSA-2048, P-256, P-384 and SM2 (issue 18).
    (ProtectionLevel is a Keyward extension the SDK's model drops; the Rust e2e suites check it.)"""
    r = kms.ListAlgorithms(models.ListAlgorithmsRequest())
    usages = {a.KeyUsage for a in r.AsymmetricSignVerifyAlgorithms}
    assert {"ASYMMETRIC_SIGN_VERIFY_ECC", "ASYMMETRIC_SIGN_VERIFY_RSA_2048", "ASYMMETRIC_SIGN_VERIFY_SM2",
            "ASYMMETRIC_SIGN_VERIFY_ECDSA384", "ASYMMETRIC_SIGN_VERIFY_ML_DSA_65"} <= usages
    assert {a.KeyUsage for a in r.AsymmetricAlgorithms} == {
        "ASYMMETRIC_DECRYPT_RSA_2048", "ASYMMETRIC_DECRYPT_SM2", "ASYMMETRIC_DECRYPT_ML_KEM_768"}


def test_plaintext_rewrapped_to_caller_rsa_key(kms):
    """Decrypt and GenerateDataKey hand the plaintext out only encrypted to the caller's key."""
    from cryptography.hazmat.primitives.asymmetric import rsa as crsa

    mine = crsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = mine.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ck = models.CreateKeyRequest()
    ck.Alias = f"rewrap-{uuid.uuid4().hex[:8]}"
    key_id = kms.CreateKey(ck).KeyId
    gdk = models.GenerateDataKeyRequest()
    gdk.KeyId, gdk.KeySpec = key_id, "AES_256"
    gdk.EncryptionPublicKey, gdk.EncryptionAlgorithm = pem, "RSAES_OAEP_SHA_256"
    r = kms.GenerateDataKey(gdk)
    oaep256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    data_key = mine.decrypt(base64.b64decode(r.Plaintext), oaep256)
    assert len(data_key) == 32
    dec = models.DecryptRequest()
    dec.CiphertextBlob = r.CiphertextBlob
    assert base64.b64decode(kms.Decrypt(dec).Plaintext) == data_key
    dec.EncryptionPublicKey, dec.EncryptionAlgorithm = pem, "RSAES_PKCS1_V1_5"
    assert mine.decrypt(base64.b64decode(kms.Decrypt(dec).Plaintext), padding.PKCS1v15()) == data_key
    dec.EncryptionAlgorithm = "RSAES_NOPE"
    expect("InvalidParameterValue", kms.Decrypt, dec)
    dec.EncryptionPublicKey, dec.EncryptionAlgorithm = "not a pem", "RSAES_OAEP_SHA_1"
    expect("InvalidParameterValue", kms.Decrypt, dec)


def test_plaintext_rewrapped_to_caller_sm2_key(kms):
    priv_hex = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8"
    pub_hex = ("09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
               "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13")
    # SubjectPublicKeyInfo for SM2: id-ecPublicKey with the SM2 curve OID, then the point.
    spki = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004") + bytes.fromhex(pub_hex)
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(spki).decode() + "-----END PUBLIC KEY-----\n"
    ck = models.CreateKeyRequest()
    ck.Alias = f"rewrap-{uuid.uuid4().hex[:8]}"
    key_id = kms.CreateKey(ck).KeyId
    enc = models.EncryptRequest()
    enc.KeyId, enc.Plaintext = key_id, base64.b64encode(b"sm2-wrapped plaintext").decode()
    blob = kms.Encrypt(enc).CiphertextBlob
    dec = models.DecryptRequest()
    dec.CiphertextBlob, dec.EncryptionPublicKey = blob, pem  # EncryptionAlgorithm defaults to SM2
    raw = base64.b64decode(kms.Decrypt(dec).Plaintext)
    if raw[0] == 0x04 and len(raw) == 65 + 32 + len(b"sm2-wrapped plaintext"):
        raw = raw[1:]  # C1 as an uncompressed point; gmssl wants x||y
    got = gm_sm2.CryptSM2(private_key=priv_hex, public_key=pub_hex, mode=1).decrypt(raw)
    assert got == b"sm2-wrapped plaintext"


@pytest.mark.parametrize("algorithm", ["RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_byok_material_wrapped_locally_round_trips(kms, algorithm):
    """Material wrapped with `cryptography` to the daemon's wrapping key is what the daemon
    then encrypts with: its ciphertext opens locally with that material. Bad wrapped material
    (tampered, or wrapped to another import's key) gets one code and one message."""
    import os
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ck = models.CreateKeyRequest()
    ck.Alias, ck.Type = f"byok-{uuid.uuid4().hex[:8]}", 2
    key_id = kms.CreateKey(ck).KeyId
    gp = models.GetParametersForImportRequest()
    gp.KeyId, gp.WrappingAlgorithm, gp.WrappingKeySpec = key_id, algorithm, "RSA_2048"
    params = kms.GetParametersForImport(gp)
    other = kms.GetParametersForImport(gp)
    wrapping = serialization.load_der_public_key(base64.b64decode(params.PublicKey))
    other_wrapping = serialization.load_der_public_key(base64.b64decode(other.PublicKey))
    pad = RSA_PADDINGS[algorithm]
    material = os.urandom(32)
    good = wrapping.encrypt(material, pad)
    imp = models.ImportKeyMaterialRequest()
    imp.KeyId, imp.ImportToken = key_id, params.ImportToken
    answers = set()
    for bad in [other_wrapping.encrypt(material, pad), wrapping.encrypt(material[:16], pad),
                good[:7] + bytes([good[7] ^ 1]) + good[8:], bytes([good[0] ^ 1]) + good[1:]]:
        imp.EncryptedKeyMaterial = base64.b64encode(bad).decode()
        answers.add(sdk_error(kms.ImportKeyMaterial, imp))
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == "InvalidParameter.DecryptMaterialError"

    imp.EncryptedKeyMaterial = base64.b64encode(good).decode()
    kms.ImportKeyMaterial(imp)
    enc = models.EncryptRequest()
    enc.KeyId, enc.Plaintext = key_id, base64.b64encode(b"brought my own key").decode()
    blob = base64.b64decode(kms.Encrypt(enc).CiphertextBlob)
    # Keyward blob: 22-byte authenticated prefix, nonce length, 12-byte nonce, ciphertext||tag.
    assert AESGCM(material).decrypt(blob[23:35], blob[35:], blob[:22]) == b"brought my own key"
    imp.EncryptedKeyMaterial = base64.b64encode(wrapping.encrypt(os.urandom(32), pad)).decode()
    expect("InvalidParameterValue.MaterialNotMatch", kms.ImportKeyMaterial, imp)
