#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/ (docs/fuzzing.md). Run from the repository root.

Everything is derived from real inputs: the captured TC3 vectors in
host/tests/data/tc3-test-vectors.json, blobs and frames in the layouts of shared/src/blob.rs and
shared/src/frame.rs (the encoder is checked against the golden frames of frame.rs's tests), the
policy of docs/access-control.md and CAM policies of the kinds the policy tests use, request
bodies the SDKs send, and public keys and signatures made by `openssl` (so those seeds change
every time this runs; the committed ones are one such run)."""
import base64
import json
import os
import struct
import subprocess
import tempfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------- tc3_authorization
vectors = json.load(open("host/tests/data/tc3-test-vectors.json"))
for v in vectors["vectors"]:
    h = v["headers"]
    if "Authorization" not in h:
        continue
    lines = [h["Authorization"]]
    lines += [f"{k}: {val}" for k, val in h.items() if k != "Authorization"]
    if "?" in v["path_and_query"]:
        lines.append("X-Fuzz-Query: " + v["path_and_query"].split("?", 1)[1])
    write("tc3_authorization", v["name"], "\n".join(lines) + "\n\n" + v["body"])

# ----------------------------------------------------------------------------- ciphertext_blob
def blob(key_id, version, alg, nonce, ct):
    return bytes([1]) + key_id + struct.pack(">I", version) + bytes([alg, len(nonce)]) + nonce + ct

kid = bytes.fromhex("11111111222233334444555555555555")
hello_blob = blob(kid, 1, 1, bytes(range(12)), b"hello" + bytes(range(0xA0, 0xB0)))
write("ciphertext_blob", "aes256gcm-hello", hello_blob)
write("ciphertext_blob", "sm4gcm-empty", blob(kid, 7, 2, b"\x07" * 12, b"\x09" * 16))
write("ciphertext_blob", "aes256gcm-v2-32", blob(bytes(16), 0x01020304, 1, b"\xff" * 12, bytes(range(48))))

# ----------------------------------------------------------------------------- frame_decoder
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def pbytes(b):
    if isinstance(b, str):
        b = b.encode()
    return varint(len(b)) + b

def cobs(data):
    out, block = bytearray(), bytearray()
    for byte in data:
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(byte)
            if len(block) == 254:
                out += bytes([255]) + block
                block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out)

def frame(payload):
    return cobs(payload + struct.pack("<I", zlib.crc32(payload))) + b"\x00"

def env(seq, body):
    return varint(seq) + body

# Algorithm and DeviceError are encoded by variant index.
AES, SM4, RSA, P256, P384, SM2 = range(6)
assert frame(env(1, varint(0) + varint(1))).hex() == "02010601b383848900"      # Hello{1}
assert frame(env(7, varint(5) + varint(32))).hex() == "080705201a1b17bc00"     # Random{32}
assert frame(env(7, varint(5) + varint(4))).hex() == "08070504cbff148000"      # Error(BadLength)
# The pairing messages (frame::tests::golden_frames_of_pairing).
assert frame(env(3, varint(10) + pbytes(b"\x04") + pbytes(b"\xaa\xbb"))).hex() == "0c030a010402aabb6bb2c2b400"  # Pair
assert frame(env(2, varint(11))).hex() == "07020bf5a93de400"                    # BeginSession
assert frame(env(4, varint(12) + varint(300) + pbytes(b"\x11\x11") + pbytes(b"\x05\x20"))).hex() == "0f040cac02021111020520d2f758db00"
assert frame(env(4, varint(11) + varint(300) + pbytes(b"\x22\x22") + pbytes(b"\x05\x04"))).hex() == "0f040bac02022222020504d3eb258700"
assert frame(env(5, varint(5) + varint(7))).hex() == "080505071f7a991a00"       # Error(NotPaired)

requests = {
    "req-hello": env(1, varint(0) + varint(1)),
    "req-random": env(7, varint(5) + varint(32)),
    "req-encrypt": env(42, varint(3) + varint(AES) + pbytes(b"\x00\x01\x02\x00\x00") + pbytes(b"aad\x00") + pbytes(bytes(300))),
    "req-decrypt": env(43, varint(4) + varint(SM4) + pbytes(b"sealed-key") + pbytes(b"") + pbytes(bytes(12)) + pbytes(bytes(range(40)))),
    "req-sign": env(44, varint(7) + varint(SM2) + pbytes(b"sealed") + pbytes(b"message") + b"\x00"),
    "req-attest": env(45, varint(9) + pbytes(bytes(range(32)))),
    "req-pair": env(46, varint(10) + pbytes(b"\x04" + bytes(range(64))) + pbytes(b"\x5c" * 48)),
    "req-begin-session": env(47, varint(11)),
    # Random{32} inside an envelope.
    "req-authenticated": env(48, varint(12) + varint(1) + pbytes(b"\x11" * 32) + pbytes(varint(5) + varint(32))),
    # The RSA and BYOK requests (issue 18): padding enums by index, `is_digest` one byte.
    "req-generate-prime": env(50, varint(13) + varint(RSA)),
    "req-assemble-key-pair": env(51, varint(14) + varint(RSA) + pbytes(b"\x03" * 60) + pbytes(b"\x04" * 60)),
    "req-sign-rsa-pss-digest": env(52, varint(15) + varint(RSA) + varint(1) + pbytes(b"sealed-rsa") + pbytes(bytes(range(32))) + b"\x01"),
    "req-decrypt-rsa-oaep256": env(53, varint(16) + varint(RSA) + varint(2) + pbytes(b"sealed-rsa") + pbytes(bytes(range(256)))),
    "req-import-wrapped": env(54, varint(17) + varint(AES) + varint(1) + pbytes(b"sealed-wrapping") + pbytes(b"\x5a" * 256)),
}
responses = {
    "resp-hello": env(1, varint(0) + varint(1) + pbytes("keyward-fw") + pbytes("0.1.0") + varint(2) + varint(AES) + varint(SM2) + varint(65536)),
    "resp-encrypted": env(42, varint(2) + pbytes(b"\x07" * 12) + pbytes(b"\xa5" * 316)),
    "resp-error": env(7, varint(5) + varint(4)),
    "resp-keypair": env(8, varint(6) + pbytes(b"\x09" * 62) + pbytes(b"\x04" * 91)),
    "resp-attestation": env(45, varint(8) + pbytes("KW-0123456789AB") + pbytes(b"\x01" * 91) + pbytes(b"\x30\x44" + b"\x02" * 68)),
    "resp-paired": env(46, varint(9)),
    "resp-session": env(47, varint(10) + pbytes(b"\x5a" * 32)),
    # Random(32 bytes) inside an envelope.
    "resp-authenticated": env(48, varint(11) + varint(1) + pbytes(b"\x22" * 32) + pbytes(varint(4) + pbytes(b"\x33" * 32))),
    "resp-sealed": env(50, varint(1) + pbytes(b"\x44" * 70)),
    "resp-plaintext": env(53, varint(3) + pbytes(b"\x55" * 32)),
    "resp-signature": env(52, varint(7) + pbytes(b"\x66" * 256)),
    "resp-imported": env(54, varint(12) + pbytes(b"\x77" * 61) + pbytes(b"\x88" * 16)),
}
for name, payload in {**requests, **responses}.items():
    write("frame_decoder", name + ".frame", frame(payload)[:-1])
    write("frame_decoder", name + ".postcard", payload)
# A serial stream: garbage, a reset, two frames back to back.
write("frame_decoder", "stream", b"\x55" * 80 + b"\x00" + b"\x01\x02\x03\x00" + frame(requests["req-hello"]) + frame(responses["resp-encrypted"]))

# ----------------------------------------------------------------------------- policy_document
doc = open("docs/access-control.md").read()
policy = doc.split("```json", 1)[1].split("```", 1)[0]
write("policy_document", "access-control-md", policy)
def stmt(effect, action, resource, condition=None):
    s = {"effect": effect, "action": action, "resource": resource}
    if condition:
        s["condition"] = condition
    return s
policies = {
    "admin-all": {"version": "2.0", "statement": stmt("allow", "*", "*")},
    "dates": {"version": "2.0", "statement": [stmt("allow", ["kms:Encrypt", "name/kms:Decrypt"], ["qcs::kms::uin/100000000001:key/*"],
        {"date_greater_than": {"qcs:current_time": "2026-11-23T00:00:00Z"},
         "date_less_than": {"qcs:current_time": "2026-11-24T00:00:00+08:00"},
         "date_not_equal": {"qcs:current_time": 1795359828}})]},
    "ip-tags": {"version": "2.0", "statement": [
        stmt("deny", "ssm:*", "qcs::ssm:ap-guangzhou:uin/100000000001:secret/creatorUin/100000000002/*",
             {"ip_not_equal_if_exist": {"qcs:ip": ["10.0.0.0/8", "2001:db8::/32", "172.16.0.1"]}}),
        stmt("allow", ["kms:List*", "kms:Get*"], "*",
             {"for_all_value:string_like": {"qcs:request_tag": ["env&prod-*", "*"]},
              "string_equal_ignore_case": {"qcs:resource_tag": "Team&Payments"}}),
        {"sid": "cam", "principal": {"qcs": ["qcs::cam::uin/100000000001:root"]}, "Effect": "Allow",
         "Action": ["cam:CreateUser", "keyward:*"], "Resource": ["qcs::cam::uin/100000000001:uin/*", "qcs::cam::uin/100000000001:group/7"]},
    ]},
}
for name, p in policies.items():
    write("policy_document", name, json.dumps(p, indent=1))

# ----------------------------------------------------------------------------- request_json
for v in vectors["vectors"]:
    if v["body"].startswith("{"):
        write("request_json", v["name"], v["body"])
bodies = {
    "list-keys": {"Offset": "10", "Limit": 20, "OrderType": 1, "Role": "0", "TagFilters": [{"TagKey": "env", "TagValue": ["prod", "dev"]}]},
    "create-alias": {"KeyId": "11111111-2222-3333-4444-555555555555", "Alias": "my-key_2", "Version": "2019-01-18", "Action": "CreateAlias"},
    "data-key": {"DataKeyName": "db-key", "DataKeyId": "abc-123", "PendingWindowInDays": "7", "Action": "Encrypt", "Version": "2019-01-18"},
    "decrypt": {"CiphertextBlob": base64.b64encode(hello_blob).decode(), "EncryptionContext": "{\"b\": 2, \"a\": [1.5, null, true]}"},
}
for name, b in bodies.items():
    write("request_json", name, json.dumps(b))
write("request_json", "context", '{"app": "demo", "n": 1e3, "u": "\\u00e9\\ud83d\\ude00"}')

# ----------------------------------------------------------------------------- public_key
def pk_input(sel, enc, key, sig, msg):
    return bytes([sel, enc]) + struct.pack(">H", len(key)) + key + struct.pack(">H", len(sig)) + sig + msg

ALG = {"rsa": 0, "p256": 1, "p384": 2, "sm2": 3}
SCHEME = {"pkcs1": 0, "pss": 1, "ecdsa": 2, "sm2": 3}
with tempfile.TemporaryDirectory() as t:
    def ossl(*args, inp=None):
        return subprocess.run(["openssl", *args], input=inp, capture_output=True, check=True, cwd=t).stdout
    msg = b"keyward fuzz seed message"
    open(os.path.join(t, "msg"), "wb").write(msg)
    gen = {
        "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "sm2": ["-algorithm", "SM2"],
    }
    for name, opts in gen.items():
        ossl("genpkey", *opts, "-out", name + ".key")
        der = ossl("pkey", "-in", name + ".key", "-pubout", "-outform", "DER")
        pem = ossl("pkey", "-in", name + ".key", "-pubout")
        schemes = {"rsa": ["pkcs1", "pss"], "p256": ["ecdsa"], "p384": ["ecdsa"], "sm2": ["sm2"]}[name]
        for scheme in schemes:
            extra = {"pss": ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"],
                     "sm2": ["-sigopt", "distid:1234567812345678"]}.get(scheme, [])
            digest = "-sm3" if scheme == "sm2" else "-sha256"
            sig = ossl("dgst", digest, "-sign", name + ".key", *extra, "msg")
            sel = ALG[name] | SCHEME[scheme] << 3
            write("public_key", f"verify-{name}-{scheme}", pk_input(sel, 0x80 | 1, der, sig, msg))
        enc = {"rsa": 5, "p256": 1, "p384": 1, "sm2": 2}[name]
        write("public_key", f"encrypt-{name}-pem", pk_input(ALG[name], enc, pem, b"", b"\x00" * 32))
