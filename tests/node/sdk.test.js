"use strict";
// The official Tencent Cloud Node.js SDK (tencentcloud-sdk-nodejs 4.x) against a real keyward
// daemon, through each endpoint form an application may configure:
//   - `127.0.0.1:<port>`: the SDK signs credential-scope service `127` (the endpoint's first
//     label) and host `127.0.0.1` (no port), while its Host header is `127.0.0.1:<port>`;
//   - `localhost:<port>`: service `localhost:<port>` (no dot, so the port stays), host
//     `localhost`; the name is resolved by the system resolver (/etc/hosts);
//   - `kms.keyward.test:<port>` / `ssm.keyward.test:<port>`: service `kms`/`ssm`, host without
//     the port; the name is resolved to 127.0.0.1 by the HTTP agent's `lookup` option (the
//     SDK passes `httpProfile.agent` to its fetch), so /etc/hosts is not touched.
// A capture server checks first that the SDK really signs that way.

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const dns = require("node:dns");
const http = require("node:http");
const tencentcloud = require("tencentcloud-sdk-nodejs");
const { startKeyward } = require("./keyward");

// `localhost` may resolve to ::1 first; the daemon listens on 127.0.0.1.
dns.setDefaultResultOrder("ipv4first");

const KmsClient = tencentcloud.kms.v20190118.Client;
const SsmClient = tencentcloud.ssm.v20190923.Client;

/** An HTTP agent that resolves every name to 127.0.0.1. */
function loopbackAgent() {
  return new http.Agent({
    keepAlive: true,
    lookup(hostname, options, cb) {
      if (options && options.all) cb(null, [{ address: "127.0.0.1", family: 4 }]);
      else cb(null, "127.0.0.1", 4);
    },
  });
}

const ENDPOINTS = [
  {
    name: "IP:port endpoint",
    kms: (port) => `127.0.0.1:${port}`,
    ssm: (port) => `127.0.0.1:${port}`,
    scope: () => "127",
  },
  {
    name: "named endpoint localhost:port",
    kms: (port) => `localhost:${port}`,
    ssm: (port) => `localhost:${port}`,
    scope: (port) => `localhost:${port}`,
  },
  {
    name: "named endpoint kms.keyward.test:port",
    kms: (port) => `kms.keyward.test:${port}`,
    ssm: (port) => `ssm.keyward.test:${port}`,
    scope: () => "kms",
    agent: loopbackAgent(),
  },
];

function clients(endpoint, port, cred) {
  const config = (host) => ({
    credential: { secretId: cred.secretId, secretKey: cred.secretKey },
    region: cred.region,
    profile: { httpProfile: { protocol: "http://", endpoint: host, agent: endpoint.agent } },
  });
  return {
    kms: new KmsClient(config(endpoint.kms(port))),
    ssm: new SsmClient(config(endpoint.ssm(port))),
  };
}

function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(8).toString("hex")}`;
}

const b64 = (buf) => Buffer.from(buf).toString("base64");

/** Runs `call` and returns the SDK's thrown error, asserting its code and RequestId. */
async function expectCode(code, call) {
  let error;
  try {
    const result = await call();
    assert.fail(`expected ${code}, got success: ${JSON.stringify(result)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    error = e;
  }
  assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
  assert.ok(error.requestId, "error responses carry a RequestId");
  return error;
}

describe("what the SDK signs", () => {
  let server;
  const seen = [];
  before(async () => {
    server = http.createServer((req, res) => {
      seen.push({ host: req.headers.host, authorization: req.headers.authorization });
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ Response: { RequestId: "captured" } }));
      });
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  });
  after(() => new Promise((resolve) => server.close(resolve)));

  for (const endpoint of ENDPOINTS) {
    it(`${endpoint.name}: scope service and Host header`, async () => {
      const port = server.address().port;
      const { kms } = clients(endpoint, port, { secretId: "AKIDcapture", secretKey: "k", region: "ap-guangzhou" });
      seen.length = 0;
      await kms.GetServiceStatus({});
      assert.equal(seen.length, 1);
      const { host, authorization } = seen[0];
      assert.equal(host, endpoint.kms(port), "the Host header carries the port");
      const scope = /Credential=AKIDcapture\/\d{4}-\d{2}-\d{2}\/([^/]+)\/tc3_request/.exec(authorization);
      assert.ok(scope, authorization);
      assert.equal(scope[1], endpoint.scope(port));
      assert.match(authorization, /SignedHeaders=content-type;host,/);
    });
  }
});

describe("against keyward", () => {
  let daemon;
  before(async () => {
    daemon = await startKeyward();
  });
  after(async () => {
    if (daemon) await daemon.stop();
  });

  for (const endpoint of ENDPOINTS) {
    describe(endpoint.name, () => {
      let kms;
      let ssm;
      before(() => {
        ({ kms, ssm } = clients(endpoint, daemon.port, daemon));
      });

      it("KMS symmetric: CreateKey, Encrypt, Decrypt, GenerateDataKey", async () => {
        const created = await kms.CreateKey({ Alias: unique("node"), Description: "node sdk" });
        const keyId = created.KeyId;
        assert.match(keyId, /^[0-9a-f-]{36}$/);
        assert.equal(created.KeyState, "Enabled");

        const plaintext = b64("hello from node");
        const enc = await kms.Encrypt({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: '{"app":"node"}' });
        assert.equal(enc.KeyId, keyId);
        const dec = await kms.Decrypt({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: '{"app":"node"}' });
        assert.equal(dec.Plaintext, plaintext);
        assert.equal(dec.KeyId, keyId);
        // The same request again in the same second (same signature) is served.
        const again = await kms.Decrypt({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: '{"app":"node"}' });
        assert.equal(again.Plaintext, plaintext);

        const dk = await kms.GenerateDataKey({ KeyId: keyId, KeySpec: "AES_256" });
        assert.equal(Buffer.from(dk.Plaintext, "base64").length, 32);
        const opened = await kms.Decrypt({ CiphertextBlob: dk.CiphertextBlob });
        assert.equal(opened.Plaintext, dk.Plaintext);

        const described = await kms.DescribeKey({ KeyId: keyId });
        assert.equal(described.KeyMetadata.KeyId, keyId);
        assert.equal(described.KeyMetadata.KeyUsage, "ENCRYPT_DECRYPT");
      });

      it("KMS asymmetric: ECC and SM2 keys sign, GetPublicKey verifies with node:crypto", async () => {
        const message = Buffer.from("signed by keyward, checked by node");
        const ecc = (await kms.CreateKey({ Alias: unique("node-ecc"), KeyUsage: "ASYMMETRIC_SIGN_VERIFY_ECC" })).KeyId;
        const pub = await kms.GetPublicKey({ KeyId: ecc });
        assert.equal(pub.KeyId, ecc);
        assert.match(pub.PublicKeyPem, /^-----BEGIN PUBLIC KEY-----/);
        const signed = await kms.SignByAsymmetricKey({
          KeyId: ecc,
          Algorithm: "ECC_P256_R1",
          MessageType: "RAW",
          Message: b64(message),
        });
        const signature = Buffer.from(signed.Signature, "base64");
        const key = crypto.createPublicKey(pub.PublicKeyPem);
        assert.equal(key.asymmetricKeyDetails.namedCurve, "prime256v1");
        assert.ok(crypto.verify("sha256", message, { key, dsaEncoding: "der" }, signature));
        assert.ok(!crypto.verify("sha256", Buffer.from("other"), { key, dsaEncoding: "der" }, signature));
        const verified = await kms.VerifyByAsymmetricKey({
          KeyId: ecc,
          Algorithm: "ECC_P256_R1",
          MessageType: "RAW",
          Message: b64(message),
          SignatureValue: signed.Signature,
        });
        assert.equal(verified.SignatureValid, true);

        const sm2 = (await kms.CreateKey({ Alias: unique("node-sm2"), KeyUsage: "ASYMMETRIC_SIGN_VERIFY_SM2" })).KeyId;
        const sm2Sig = await kms.SignByAsymmetricKey({ KeyId: sm2, Algorithm: "SM2DSA", MessageType: "RAW", Message: b64(message) });
        const sm2Ok = await kms.VerifyByAsymmetricKey({
          KeyId: sm2,
          Algorithm: "SM2DSA",
          MessageType: "RAW",
          Message: b64(message),
          SignatureValue: sm2Sig.Signature,
        });
        assert.equal(sm2Ok.SignatureValid, true);
        const sm2Bad = await kms.VerifyByAsymmetricKey({
          KeyId: sm2,
          Algorithm: "SM2DSA",
          MessageType: "RAW",
          Message: b64("tampered"),
          SignatureValue: sm2Sig.Signature,
        });
        assert.equal(sm2Bad.SignatureValid, false);
      });

      it("SSM: CreateSecret, GetSecretValue, PutSecretValue, ListSecrets", async () => {
        const name = unique("node-secret");
        const created = await ssm.CreateSecret({ SecretName: name, SecretString: "first", Description: "node" });
        assert.equal(created.SecretName, name);
        assert.equal(created.VersionId, "SSM_Current");
        const current = await ssm.GetSecretValue({ SecretName: name, VersionId: "SSM_Current" });
        assert.equal(current.SecretString, "first");
        assert.equal(current.SecretBinary, "");

        await ssm.PutSecretValue({ SecretName: name, VersionId: "v2", SecretBinary: b64(Buffer.from([0, 1, 2, 255])) });
        const v2 = await ssm.GetSecretValue({ SecretName: name, VersionId: "v2" });
        assert.deepEqual([...Buffer.from(v2.SecretBinary, "base64")], [0, 1, 2, 255]);
        assert.equal(v2.SecretString, "");

        // An empty VersionId (what Go callers such as Dapr send) reads SSM_Current.
        const empty = await ssm.GetSecretValue({ SecretName: name, VersionId: "" });
        assert.equal(empty.SecretString, "first");
        assert.equal(empty.VersionId, "SSM_Current");

        const found = await ssm.ListSecrets({ SearchSecretName: name });
        assert.equal(found.TotalCount, 1);
        assert.equal(found.SecretMetadatas[0].SecretName, name);
        assert.equal(found.SecretMetadatas[0].Status, "Enabled");
        const enabled = await ssm.ListSecrets({ Offset: 0, Limit: 100, State: 1 });
        assert.ok(enabled.SecretMetadatas.some((m) => m.SecretName === name));

        const versions = await ssm.ListSecretVersionIds({ SecretName: name });
        assert.deepEqual(versions.Versions.map((v) => v.VersionId).sort(), ["SSM_Current", "v2"]);
      });

      it("error codes reach the SDK's thrown error", async () => {
        await expectCode("ResourceUnavailable.CmkNotFound", () =>
          kms.DescribeKey({ KeyId: crypto.randomUUID() }),
        );
        await expectCode("ResourceUnavailable.CmkNotFound", () =>
          kms.Encrypt({ KeyId: crypto.randomUUID(), Plaintext: b64("x") }),
        );
        await expectCode("ResourceNotFound.SecretNotExist", () =>
          ssm.GetSecretValue({ SecretName: unique("missing"), VersionId: "SSM_Current" }),
        );
        await expectCode("MissingParameter", () => ssm.GetSecretValue({ SecretName: unique("missing") }));
        await expectCode("InvalidParameterValue", () => kms.GenerateRandom({ NumberOfBytes: 0 }));

        const wrongKey = clients(endpoint, daemon.port, { ...daemon, secretKey: `${daemon.secretKey}x` });
        await expectCode("AuthFailure.SignatureFailure", () => wrongKey.kms.GetServiceStatus({}));
        const unknownId = clients(endpoint, daemon.port, { ...daemon, secretId: unique("AKIDnobody") });
        await expectCode("AuthFailure.SecretIdNotFound", () => unknownId.ssm.GetServiceStatus({}));
        const otherRegion = clients(endpoint, daemon.port, { ...daemon, region: "ap-nowhere-1" });
        await expectCode("UnsupportedRegion", () => otherRegion.kms.GetServiceStatus({}));
      });
    });
  }
});
