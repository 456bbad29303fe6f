"""Post-quantum CMKs (ML-KEM-768, ML-DSA-65) through the official SDK, checked with
independent pure-Python implementations of FIPS 203 and FIPS 204 (`kyber-py`,
`dilithium-py`): Keyward's ML-DSA signatures verify there, and data encapsulated there to
Keyward's ML-KEM public key (in the documented blob format, docs/post-quantum.md) is decrypted
by Keyward."""

import base64
import struct
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dilithium_py.ml_dsa import ML_DSA_65
from kyber_py.ml_kem import ML_KEM_768
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.kms.v20190118 import models

KEM_USAGE = "ASYMMETRIC_DECRYPT_ML_KEM_768"
DSA_USAGE = "ASYMMETRIC_SIGN_VERIFY_ML_DSA_65"
# The raw public keys are the last bytes of the DER SubjectPublicKeyInfo's BIT STRING.
KEM_PUBLIC_LEN = 1184
DSA_PUBLIC_LEN = 1952


def create(kms, usage):
    req = models.CreateKeyRequest()
    req.Alias = f"pq-{uuid.uuid4().hex[:12]}"
    req.KeyUsage = usage
    return kms.CreateKey(req).KeyId


def raw_public_key(kms, key_id, length, oid_tail):
    req = models.GetPublicKeyRequest()
    req.KeyId = key_id
    der = base64.b64decode(kms.GetPublicKey(req).PublicKey)
    # SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.x.y }, BIT STRING (0 unused bits) || key }
    assert bytes([0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04]) + oid_tail in der
    assert der[-length - 1] == 0, "BIT STRING with no unused bits"
    return der[-length:]


def pq_sign(kms, key_id, message):
    req = models.PostQuantumCryptoSignRequest()
    req.KeyId, req.Message = key_id, base64.b64encode(message).decode()
    return base64.b64decode(kms.PostQuantumCryptoSign(req).Signature)


def pq_verify(kms, key_id, message, signature):
    req = models.PostQuantumCryptoVerifyRequest()
    req.KeyId, req.Message = key_id, base64.b64encode(message).decode()
    req.SignatureValue = base64.b64encode(signature).decode()
    return kms.PostQuantumCryptoVerify(req).SignatureValid


def pq_encrypt(kms, key_id, plaintext):
    req = models.PostQuantumCryptoEncryptRequest()
    req.KeyId, req.PlainText = key_id, base64.b64encode(plaintext).decode()
    return kms.PostQuantumCryptoEncrypt(req).CiphertextBlob


def pq_decrypt(kms, blob, **extra):
    req = models.PostQuantumCryptoDecryptRequest()
    req.CiphertextBlob = blob
    for k, v in extra.items():
        setattr(req, k, v)
    return kms.PostQuantumCryptoDecrypt(req)


def expect(code, fn, *args):
    with pytest.raises(TencentCloudSDKException) as e:
        fn(*args)
    assert e.value.code == code, f"expected {code}, got {e.value.code}: {e.value.message}"


def test_list_algorithms_offers_both(kms):
    r = kms.ListAlgorithms(models.ListAlgorithmsRequest())
    found = {a.KeyUsage: a for a in r.AsymmetricAlgorithms + r.AsymmetricSignVerifyAlgorithms}
    assert found[KEM_USAGE].Algorithm == "ML_KEM_768"
    assert found[DSA_USAGE].Algorithm == "ML_DSA_65"


def test_ml_dsa_signatures_verify_with_dilithium_py(kms):
    key_id = create(kms, DSA_USAGE)
    pk = raw_public_key(kms, key_id, DSA_PUBLIC_LEN, bytes([0x03, 0x12]))
    message = b"signed by keyward, checked by dilithium-py"
    signature = pq_sign(kms, key_id, message)
    assert len(signature) == 3309
    assert ML_DSA_65.verify(pk, message, signature)
    assert not ML_DSA_65.verify(pk, message + b"!", signature)
    assert pq_verify(kms, key_id, message, signature)
    assert not pq_verify(kms, key_id, message + b"!", signature)
    # A signature by another ML-DSA key (made by dilithium-py) does not verify.
    _, other_sk = ML_DSA_65.keygen()
    assert not pq_verify(kms, key_id, message, ML_DSA_65.sign(other_sk, message))
    assert not pq_verify(kms, key_id, message, b"short")


def test_ml_kem_blobs_made_by_kyber_py_decrypt(kms):
    key_id = create(kms, KEM_USAGE)
    ek = raw_public_key(kms, key_id, KEM_PUBLIC_LEN, bytes([0x04, 0x02]))
    shared, kem_ct = ML_KEM_768.encaps(ek)
    header = (
        bytes([0x51])
        + uuid.UUID(key_id).bytes
        + struct.pack(">I", 1)
        + bytes([32])
        + struct.pack(">H", len(kem_ct))
        + kem_ct
    )
    nonce = b"\x07" * 12
    plaintext = b"encapsulated by kyber-py"
    blob = header + nonce + AESGCM(shared).encrypt(nonce, plaintext, header)
    r = pq_decrypt(kms, base64.b64encode(blob).decode())
    assert r.KeyId == key_id
    assert base64.b64decode(r.PlainText) == plaintext
    # Keyward's own blobs round-trip, and any flipped byte is refused.
    own = pq_encrypt(kms, key_id, b"round trip")
    assert base64.b64decode(pq_decrypt(kms, own).PlainText) == b"round trip"
    raw = bytearray(base64.b64decode(own))
    for i in (30, len(raw) // 2, len(raw) - 1):
        bad = bytearray(raw)
        bad[i] ^= 1
        expect("FailedOperation.DecryptError", pq_decrypt, kms, base64.b64encode(bytes(bad)).decode())


def test_pq_decrypt_rewraps_under_a_caller_key(kms):
    key_id = create(kms, KEM_USAGE)
    blob = pq_encrypt(kms, key_id, b"for the caller only")
    caller = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = caller.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    r = pq_decrypt(kms, blob, EncryptionPublicKey=pem, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    wrapped = base64.b64decode(r.PlainText)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert caller.decrypt(wrapped, oaep) == b"for the caller only"


def test_usages_do_not_mix(kms):
    kem, dsa = create(kms, KEM_USAGE), create(kms, DSA_USAGE)
    expect("UnsupportedOperation", pq_sign, kms, kem, b"x")
    expect("UnsupportedOperation", pq_encrypt, kms, dsa, b"x")
    req = models.SignByAsymmetricKeyRequest()
    req.KeyId, req.Algorithm, req.Message = dsa, "ML_DSA_65", base64.b64encode(b"x").decode()
    with pytest.raises(TencentCloudSDKException):
        kms.SignByAsymmetricKey(req)
    expect("InvalidParameterValue", pq_encrypt, kms, kem, b"x" * 4097)
