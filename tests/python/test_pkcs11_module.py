"""The PKCS#11 module (hsm-pkcs11/module, docs/pkcs11-module.md) under real PKCS#11
applications, against the session's daemon: OpenSC's pkcs11-tool lists, generates, signs,
verifies and decrypts; OpenSSL 3 through Debian's pkcs11-provider signs a certificate request
and serves a TLS handshake that `openssl s_client` verifies; `ssh-keygen -D` lists the public
keys. Every signature is also checked with `cryptography` against GetPublicKey, and every
public key the applications see is compared with it.

Environment:
  KEYWARD_PKCS11_MODULE  the module (default: <repo>/target/debug/libkeyward_pkcs11.so)
"""

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models

from conftest import REPO_ROOT, init_and_serve

# The module talks to the daemon over the API, whatever its backend; RSA and P-384 keys
# need the PKCS#11 backend (issue 18), so the suite runs on SoftHSM2.
pytestmark = pytest.mark.backends("softhsm")

PIN = "module-pin-4321"
MESSAGE = b"signed through PKCS#11 by keyward\n" * 50
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _need(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not on PATH (scripts/test.sh installs it)", pytrace=False)
    return path


def _provider_path():
    """Debian's pkcs11-provider in OpenSSL's module directory."""
    out = subprocess.run(["openssl", "version", "-m"], capture_output=True, text=True,
                         check=True).stdout
    moddir = re.search(r'MODULESDIR: "([^"]+)"', out).group(1)
    path = Path(moddir) / "pkcs11.so"
    if not path.is_file():
        pytest.fail(f"pkcs11-provider not found at {path} (apt package pkcs11-provider)",
                    pytrace=False)
    return path


class Module:
    """The module configured for the session's daemon, and helpers to run tools with it."""

    def __init__(self, keyward, tmp):
        self.path = os.environ.get("KEYWARD_PKCS11_MODULE") or str(
            REPO_ROOT / "target" / "debug" / "libkeyward_pkcs11.so")
        if not os.path.isfile(self.path):
            pytest.fail(f"PKCS#11 module not found at {self.path} "
                        "(cargo build -p keyward-pkcs11-module)", pytrace=False)
        self.tmp = tmp
        self.config = tmp / "keyward-pkcs11.toml"
        self.config.write_text(
            f'endpoint = "{keyward.endpoint}"\n'
            f'region = "{keyward.region}"\n'
            f'secret_id = "{keyward.secret_id}"\n'
            f'secret_key = "{keyward.secret_key}"\n'
            f'pin = "{PIN}"\n')
        self.config.chmod(0o600)
        self.env = dict(os.environ, KEYWARD_PKCS11_CONFIG=str(self.config),
                        KEYWARD_PKCS11_LOG="1")

    def run(self, args, check=True, env=None, timeout=120):
        res = subprocess.run(args, env=env or self.env, capture_output=True, timeout=timeout)
        if check and res.returncode != 0:
            pytest.fail(f"{' '.join(map(str, args))} failed (exit {res.returncode}):\n"
                        f"stdout:\n{res.stdout.decode(errors='replace')}\n"
                        f"stderr:\n{res.stderr.decode(errors='replace')}", pytrace=False)
        return res

    def tool(self, *args, login=True, check=True, env=None):
        cmd = [_need("pkcs11-tool"), "--module", self.path]
        if login:
            cmd += ["--login", "--pin", PIN]
        return self.run(cmd + list(args), check=check, env=env)


@pytest.fixture(scope="module")
def module(keyward, tmp_path_factory):
    keyward.check_alive()
    return Module(keyward, tmp_path_factory.mktemp("pkcs11"))


def create(kms, usage, prefix="p11"):
    req = models.CreateKeyRequest()
    req.Alias = f"{prefix}-{uuid.uuid4().hex[:10]}"
    req.KeyUsage = usage
    r = kms.CreateKey(req)
    return r.KeyId, req.Alias


def public_key(kms, key_id):
    req = models.GetPublicKeyRequest()
    req.KeyId = key_id
    return serialization.load_der_public_key(base64.b64decode(kms.GetPublicKey(req).PublicKey))


@pytest.fixture(scope="module")
def keys(keyward):
    """One CMK of each usage the module exposes, plus two it must not show."""
    kms = keyward.client()
    made = {name: create(kms, usage) for name, usage in [
        ("p256", "ASYMMETRIC_SIGN_VERIFY_ECC"),
        ("p384", "ASYMMETRIC_SIGN_VERIFY_ECDSA384"),
        ("rsa_sign", "ASYMMETRIC_SIGN_VERIFY_RSA_2048"),
        ("rsa_decrypt", "ASYMMETRIC_DECRYPT_RSA_2048"),
        ("sm2", "ASYMMETRIC_SIGN_VERIFY_SM2"),
        ("aes", "ENCRYPT_DECRYPT"),
    ]}
    return made


def hex_id(key_id):
    return key_id.encode().hex()


def assert_same_public(module, tmp_path, key_id, listing, want):
    """The public key object of `key_id` holds `want` (GetPublicKey's key)."""
    if isinstance(want, ec.EllipticCurvePublicKey):
        # pkcs11-tool 0.23 cannot export P-384 keys ("cannot create EVP_PKEY", SoftHSM2's
        # too), so EC keys are compared through the CKA_EC_POINT it prints: a DER OCTET
        # STRING around the uncompressed point.
        point = want.public_bytes(serialization.Encoding.X962,
                                  serialization.PublicFormat.UncompressedPoint)
        block = next(o for o in listing.split("Object;")
                     if f"ID:         {hex_id(key_id)}" in o and "EC_POINT:" in o)
        assert f"EC_POINT:   04{len(point):02x}{point.hex()}\n" in block
        return
    out = tmp_path / f"{key_id}.der"
    module.tool("--read-object", "--type", "pubkey", "--id", hex_id(key_id), "-o", str(out),
                login=False)
    got = serialization.load_der_public_key(out.read_bytes())
    assert got.public_numbers() == want.public_numbers()


def test_lists_the_asymmetric_keys_with_their_public_keys(module, keys, kms, tmp_path):
    listing = module.tool("--list-objects").stdout.decode()
    for name in ("p256", "p384", "rsa_sign", "rsa_decrypt"):
        key_id, alias = keys[name]
        # A public and a private object per CMK: CKA_LABEL = alias, CKA_ID = KeyId.
        objects = [o for o in listing.split("Object;") if f"label:      {alias}\n" in o]
        assert len(objects) == 2, listing
        assert all(f"ID:         {hex_id(key_id)}" in o for o in objects)
        assert_same_public(module, tmp_path, key_id, listing, public_key(kms, key_id))
    for name in ("sm2", "aes"):
        assert keys[name][1] not in listing, f"{name} key must not be exposed"


def test_private_keys_need_the_pin(module, keys):
    alias = keys["p256"][1]
    public_only = module.tool("--list-objects", login=False).stdout.decode()
    assert f"label:      {alias}" in public_only
    assert "Private Key Object" not in public_only
    bad = module.run([_need("pkcs11-tool"), "--module", module.path, "--login", "--pin", "wrong",
                      "--list-objects"], check=False)
    assert bad.returncode != 0
    assert b"CKR_PIN_INCORRECT" in bad.stdout + bad.stderr


def _verify_locally(pub, mechanism, message, signature):
    """Raises InvalidSignature unless `signature` (PKCS#11 form) is right for `message`."""
    if isinstance(pub, ec.EllipticCurvePublicKey):
        n = len(signature) // 2
        der = utils.encode_dss_signature(int.from_bytes(signature[:n], "big"),
                                         int.from_bytes(signature[n:], "big"))
        if mechanism == "ECDSA":
            pub.verify(der, message, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        elif mechanism == "ECDSA-SHA384":
            pub.verify(der, message, ec.ECDSA(hashes.SHA384()))
        else:
            assert mechanism == "ECDSA-SHA256", mechanism
            pub.verify(der, message, ec.ECDSA(hashes.SHA256()))
    elif mechanism == "RSA-PKCS":
        assert message.startswith(SHA256_DIGEST_INFO)
        pub.verify(signature, message[len(SHA256_DIGEST_INFO):], padding.PKCS1v15(),
                   utils.Prehashed(hashes.SHA256()))
    elif mechanism == "SHA256-RSA-PKCS":
        pub.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    elif mechanism == "RSA-PKCS-PSS":
        pub.verify(signature, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                   utils.Prehashed(hashes.SHA256()))
    elif mechanism == "SHA256-RSA-PKCS-PSS":
        pub.verify(signature, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                   hashes.SHA256())
    else:
        raise AssertionError(mechanism)


PSS = ["--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256", "--salt-len", "32"]


@pytest.mark.parametrize("name,mechanism", [
    ("p256", "ECDSA"), ("p256", "ECDSA-SHA256"), ("p256", "ECDSA-SHA384"),
    ("p384", "ECDSA"), ("p384", "ECDSA-SHA256"), ("p384", "ECDSA-SHA384"),
    ("rsa_sign", "RSA-PKCS"), ("rsa_sign", "SHA256-RSA-PKCS"),
    ("rsa_sign", "RSA-PKCS-PSS"), ("rsa_sign", "SHA256-RSA-PKCS-PSS"),
])
def test_pkcs11_tool_signs_and_verifies(module, keys, kms, tmp_path, name, mechanism):
    key_id, _ = keys[name]
    digest = hashlib.sha256(MESSAGE).digest()
    # Raw mechanisms take what the application hashed (and, for PKCS#1 v1.5, wrapped).
    data = {"ECDSA": digest, "RSA-PKCS": SHA256_DIGEST_INFO + digest,
            "RSA-PKCS-PSS": digest}.get(mechanism, MESSAGE)
    # pkcs11-tool derives the PSS parameters of SHA256-RSA-PKCS-PSS itself (SHA-256,
    # MGF1-SHA-256, salt of the hash length) and takes them explicitly for raw PSS only.
    extra = PSS if mechanism == "RSA-PKCS-PSS" else []
    inp, sig = tmp_path / "in", tmp_path / "sig"
    inp.write_bytes(data)
    module.tool("--sign", "--id", hex_id(key_id), "-m", mechanism, *extra,
                "-i", str(inp), "-o", str(sig))
    signature = sig.read_bytes()
    pub = public_key(kms, key_id)
    _verify_locally(pub, mechanism, data, signature)

    ok = module.tool("--verify", "--id", hex_id(key_id), "-m", mechanism, *extra,
                     "-i", str(inp), "--signature-file", str(sig), login=False)
    assert b"Signature is valid" in ok.stdout
    # One flipped bit: refused by the module (CKR_SIGNATURE_INVALID) and by `cryptography`.
    bad = bytearray(signature)
    bad[len(bad) // 3] ^= 0x01
    sig.write_bytes(bytes(bad))
    res = module.tool("--verify", "--id", hex_id(key_id), "-m", mechanism, *extra,
                      "-i", str(inp), "--signature-file", str(sig), login=False, check=False)
    assert b"Signature is valid" not in res.stdout
    assert b"Invalid signature" in res.stdout + res.stderr, res
    with pytest.raises(InvalidSignature):
        _verify_locally(pub, mechanism, data, bytes(bad))


@pytest.mark.parametrize("mechanism,args,pad", [
    ("RSA-PKCS", [], lambda: padding.PKCS1v15()),
    ("RSA-PKCS-OAEP", ["--hash-algorithm", "SHA-1", "--mgf", "MGF1-SHA1"],
     lambda: padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)),
    ("RSA-PKCS-OAEP", ["--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256"],
     lambda: padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)),
])
def test_pkcs11_tool_decrypts(module, keys, kms, tmp_path, mechanism, args, pad):
    key_id, _ = keys["rsa_decrypt"]
    secret = os.urandom(32)
    ct = tmp_path / "ct"
    ct.write_bytes(public_key(kms, key_id).encrypt(secret, pad()))
    res = module.tool("--decrypt", "--id", hex_id(key_id), "-m", mechanism, *args,
                      "-i", str(ct))
    assert res.stdout == secret
    # Another padding than the one used: the daemon refuses, the module says
    # CKR_ENCRYPTED_DATA_INVALID, the application carries on.
    if mechanism == "RSA-PKCS":
        ct.write_bytes(public_key(kms, key_id).encrypt(
            secret, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)))
        res = module.tool("--decrypt", "--id", hex_id(key_id), "-m", mechanism, "-i", str(ct),
                          check=False)
        assert res.returncode != 0 and secret not in res.stdout


def test_sign_only_keys_refuse_decryption(module, keys, tmp_path):
    key_id, _ = keys["rsa_sign"]
    ct = tmp_path / "ct"
    ct.write_bytes(os.urandom(256))
    res = module.tool("--decrypt", "--id", hex_id(key_id), "-m", "RSA-PKCS", "-i", str(ct),
                      check=False)
    assert res.returncode != 0
    assert b"CKR_KEY_FUNCTION_NOT_PERMITTED" in res.stdout + res.stderr


@pytest.mark.parametrize("key_type,usage,extra", [
    ("EC:prime256v1", "ASYMMETRIC_SIGN_VERIFY_ECC", []),
    ("EC:secp384r1", "ASYMMETRIC_SIGN_VERIFY_ECDSA384", []),
    ("rsa:2048", "ASYMMETRIC_SIGN_VERIFY_RSA_2048", []),
    ("rsa:2048", "ASYMMETRIC_DECRYPT_RSA_2048", ["--usage-decrypt"]),
])
def test_pkcs11_tool_generates_a_cmk(module, kms, tmp_path, key_type, usage, extra):
    alias = f"p11gen-{uuid.uuid4().hex[:10]}"
    out = module.tool("--keypairgen", "--key-type", key_type, "--label", alias,
                      *extra).stdout.decode()
    key_id = bytes.fromhex(re.search(r"ID:\s+([0-9a-f]+)", out).group(1)).decode()
    req = models.DescribeKeyRequest()
    req.KeyId = key_id
    meta = kms.DescribeKey(req).KeyMetadata
    assert (meta.Alias, meta.KeyUsage, meta.KeyState) == (alias, usage, "Enabled")
    assert_same_public(module, tmp_path, key_id, out, public_key(kms, key_id))


def test_generate_random(module):
    res = module.tool("--generate-random", "3000", login=False)
    assert len(res.stdout) == 3000
    assert len(set(res.stdout)) > 200


def test_no_config_and_bad_credentials_fail_cleanly(module, keyward):
    """Failures are PKCS#11 errors: the application exits normally, never on a signal."""
    env = {k: v for k, v in module.env.items() if k != "KEYWARD_PKCS11_CONFIG"}
    res = module.tool("--list-objects", login=False, check=False, env=env)
    assert res.returncode > 0
    assert b"KEYWARD_PKCS11_CONFIG" in res.stderr
    wrong = module.tmp / "wrong.toml"
    wrong.write_text(module.config.read_text().replace(
        f'secret_key = "{keyward.secret_key}"', 'secret_key = "not-the-key"'))
    res = module.tool("--list-objects", login=False, check=False,
                      env=dict(module.env, KEYWARD_PKCS11_CONFIG=str(wrong)))
    assert res.returncode > 0
    assert b"CKR_DEVICE_ERROR" in res.stdout + res.stderr
    assert b"AuthFailure" in res.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def openssl_env(module):
    cnf = module.tmp / "openssl.cnf"
    cnf.write_text(
        "openssl_conf = openssl_init\n"
        "[openssl_init]\nproviders = provider_sect\n"
        "[provider_sect]\ndefault = default_sect\npkcs11 = pkcs11_sect\n"
        "[default_sect]\nactivate = 1\n"
        f"[pkcs11_sect]\nmodule = {_provider_path()}\n"
        f"pkcs11-module-path = {module.path}\n"
        f"pkcs11-module-token-pin = {PIN}\n"
        "activate = 1\n")
    return dict(module.env, OPENSSL_CONF=str(cnf))


@pytest.mark.parametrize("name", ["p256", "p384", "rsa_sign"])
def test_openssl_signs_a_request_and_serves_tls(module, keys, kms, openssl_env, tmp_path, name):
    key_id, alias = keys[name]
    uri = f"pkcs11:token=Keyward;object={alias};type=private"
    csr, crt = tmp_path / "req.csr", tmp_path / "cert.pem"
    module.run(["openssl", "req", "-new", "-key", uri, "-subj", "/CN=localhost",
                "-out", str(csr)], env=openssl_env)
    req = x509.load_pem_x509_csr(csr.read_bytes())
    assert req.is_signature_valid
    assert req.public_key().public_numbers() == public_key(kms, key_id).public_numbers()
    # The request becomes a self-signed certificate, signed by the same Keyward key.
    module.run(["openssl", "x509", "-req", "-in", str(csr), "-key", uri, "-days", "2",
                "-out", str(crt)], env=openssl_env)
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    cert.verify_directly_issued_by(cert)

    port = _free_port()
    log = open(tmp_path / "s_server.log", "wb")
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-key", uri,
         "-cert", str(crt), "-naccept", "2", "-www"],
        env=openssl_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("s_server did not start:\n"
                                + (tmp_path / "s_server.log").read_text(errors="replace"))
                time.sleep(0.2)
        # The connection probe above used the first of the two accepts. The client is plain
        # OpenSSL (no provider): it checks the handshake signature against the certificate.
        client_env = {k: v for k, v in module.env.items() if k != "OPENSSL_CONF"}
        client_env["OPENSSL_CONF"] = "/dev/null"
        res = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(crt),
             "-verify_return_error", "-verify_hostname", "localhost"],
            env=client_env, input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True, timeout=60)
        out = res.stdout.decode(errors="replace")
        assert res.returncode == 0, out + res.stderr.decode(errors="replace")
        assert "Verify return code: 0 (ok)" in out
        peer = "RSA-PSS" if name == "rsa_sign" else "ECDSA"
        assert f"Peer signature type: {peer}" in out + res.stderr.decode(errors="replace")
        if name == "p384":
            # TLS 1.3 pairs a P-384 key with SHA-384 (ecdsa_secp384r1_sha384): the module
            # signed a 48-byte hash through the API.
            assert "Peer signing digest: SHA384" in out + res.stderr.decode(errors="replace")
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=10)
        log.close()


def test_ssh_keygen_lists_the_public_keys(module, keys, kms):
    res = module.run([_need("ssh-keygen"), "-D", module.path])
    lines = res.stdout.decode().splitlines()
    for name in ("p256", "p384", "rsa_sign", "rsa_decrypt"):
        key_id, alias = keys[name]
        want = public_key(kms, key_id).public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        assert f"{want} {alias}" in lines, (want, lines)


def test_generating_with_a_taken_alias_is_refused(module, keys):
    _, alias = keys["p256"]
    res = module.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", alias,
                      check=False)
    assert res.returncode != 0
    assert b"CKR_ATTRIBUTE_VALUE_INVALID" in res.stdout + res.stderr


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory):
    """A daemon serving HTTPS (embedded backend: the transport is under test) with a server
    certificate for 127.0.0.1 issued by a private CA, as a production endpoint would have."""
    binary = os.environ.get("KEYWARD_BIN") or str(REPO_ROOT / "target" / "debug" / "keyward")
    tmp = tmp_path_factory.mktemp("pkcs11-tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=keyward-pkcs11-test-ca")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    config = tmp / "keyward.toml"
    config.write_text(f'data_dir = "{tmp / "data"}"\n'
                      f'[tls]\ncert = "{tmp / "server.pem"}"\nkey = "{tmp / "server.key"}"\n')
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc, port, cred = init_and_serve(config, env, tmp / "serve.log", binary)
    try:
        hp = HttpProfile(endpoint=f"127.0.0.1:{port}", certification=str(tmp / "ca.pem"))
        kms = kms_client.KmsClient(
            credential.Credential(cred["SecretId"], cred["SecretKey"]), cred["Region"],
            ClientProfile(httpProfile=hp))
        yield {"port": port, "ca": tmp / "ca.pem", "cred": cred, "kms": kms, "tmp": tmp}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def _tls_config(d, path, **extra):
    lines = [f'endpoint = "https://127.0.0.1:{d["port"]}"',
             f'region = "{d["cred"]["Region"]}"',
             f'secret_id = "{d["cred"]["SecretId"]}"',
             f'secret_key = "{d["cred"]["SecretKey"]}"']
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_module_over_https_with_a_private_ca(module, tls_daemon, tmp_path):
    """TLS through rustls: the daemon's CA from `ca_file` is trusted, nothing else is."""
    kms = tls_daemon["kms"]
    key_id, _ = create(kms, "ASYMMETRIC_SIGN_VERIFY_ECC")
    cfg = _tls_config(tls_daemon, tmp_path / "tls.toml", ca_file=tls_daemon["ca"])
    env = dict(module.env, KEYWARD_PKCS11_CONFIG=str(cfg))
    inp, sig = tmp_path / "in", tmp_path / "sig"
    inp.write_bytes(MESSAGE)
    module.tool("--sign", "--id", hex_id(key_id), "-m", "ECDSA-SHA256", "-i", str(inp),
                "-o", str(sig), login=False, env=env)
    _verify_locally(public_key(kms, key_id), "ECDSA-SHA256", MESSAGE, sig.read_bytes())

    # Without the CA the certificate is unknown: the handshake fails, CKR_DEVICE_ERROR.
    cfg = _tls_config(tls_daemon, tmp_path / "no-ca.toml")
    res = module.tool("--list-objects", login=False, check=False,
                      env=dict(module.env, KEYWARD_PKCS11_CONFIG=str(cfg)))
    assert res.returncode > 0
    assert b"CKR_DEVICE_ERROR" in res.stdout + res.stderr
    assert b"UnknownIssuer" in res.stderr, res.stderr

    # Plain http to anything but a loopback address is refused before any request.
    cfg.write_text(cfg.read_text().replace(f"https://127.0.0.1:{tls_daemon['port']}",
                                           "http://192.0.2.1:8080"))
    res = module.tool("--list-objects", login=False, check=False,
                      env=dict(module.env, KEYWARD_PKCS11_CONFIG=str(cfg)))
    assert res.returncode > 0
    assert b"only to a loopback address" in res.stderr


@pytest.mark.parametrize("name", ["p256", "p384"])
def test_ecdsa_takes_hashes_of_other_lengths_as_ecdsa_reads_them(module, keys, kms, tmp_path,
                                                                 name):
    """CKM_ECDSA gets whatever hash the application chose, and ECDSA reads its leftmost bits
    up to the order's length as a number: P-256 the leftmost 256 bits of SHA-384 and SHA-512,
    P-384 all of SHA-384 (the API's 48-byte DIGEST for P-384 keys) and the leftmost 384 bits
    of SHA-512; a SHA-1 hash is the number it is. `cryptography` checks each signature as
    ECDSA over that hash; the module's C_Verify accepts it and refuses a tampered one."""
    inp, sig = tmp_path / "in", tmp_path / "sig"
    key_id, _ = keys[name]
    pub = public_key(kms, key_id)
    for h in [hashes.SHA384(), hashes.SHA512(), hashes.SHA1()]:
        digest = hashlib.new(h.name, MESSAGE).digest()
        inp.write_bytes(digest)
        module.tool("--sign", "--id", hex_id(key_id), "-m", "ECDSA", "-i", str(inp),
                    "-o", str(sig))
        raw = sig.read_bytes()
        n = len(raw) // 2
        assert n == (32 if name == "p256" else 48)
        der = utils.encode_dss_signature(int.from_bytes(raw[:n], "big"),
                                         int.from_bytes(raw[n:], "big"))
        pub.verify(der, digest, ec.ECDSA(utils.Prehashed(h)))
        ok = module.tool("--verify", "--id", hex_id(key_id), "-m", "ECDSA", "-i", str(inp),
                         "--signature-file", str(sig), login=False)
        assert b"Signature is valid" in ok.stdout
        inp.write_bytes(bytes([digest[0] ^ 1]) + digest[1:])
        res = module.tool("--verify", "--id", hex_id(key_id), "-m", "ECDSA", "-i", str(inp),
                          "--signature-file", str(sig), login=False, check=False)
        assert b"Invalid signature" in res.stdout + res.stderr, res
