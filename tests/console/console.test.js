"use strict";
// The web console (/console) in Debian's headless Chromium, driven by playwright-core, against
// a real keyward daemon (keyward.js). Every effect is checked through the official Node.js SDK
// with the root account's API key, not through the console itself.
//
// Environment: as keyward.js, plus CHROMIUM (default /usr/bin/chromium) and
// KEYWARD_SCREENSHOTS (default <repo>/target/console-screenshots).

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { chromium } = require("playwright-core");
const tencentcloud = require("tencentcloud-sdk-nodejs");
const { startKeyward } = require("./keyward");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.KEYWARD_SCREENSHOTS || path.resolve(__dirname, "..", "..", "target", "console-screenshots");
const STORE = process.env.KEYWARD_TEST_STORE || "sqlite";
// The second daemon's idle timeout, so the expiry test waits seconds, not minutes (the
// first daemon keeps the default, so a slow step never signs a test out).
const IDLE_SECS = 2;

// Every user-supplied field gets this: markup, an event handler, a script, quotes to break out
// of an attribute. It must come back as text and never run.
const XSS = `<img src=x onerror="alert('xss')"><script>alert("xss")</script>'"><b>bold</b>`;

let kw;
let browser;
let kms;
let ssm;

function clients(cred) {
  const profile = { httpProfile: { protocol: "http://", endpoint: `127.0.0.1:${kw.port}` } };
  const credential = { secretId: cred.secretId, secretKey: cred.secretKey };
  return {
    kms: new tencentcloud.kms.v20190118.Client({ credential, region: kw.region, profile }),
    ssm: new tencentcloud.ssm.v20190923.Client({ credential, region: kw.region, profile }),
    audit: new tencentcloud.cloudaudit.v20190319.Client({ credential, region: kw.region, profile }),
  };
}

/** A fresh browser context (its own cookies) with a page that fails the test on any dialog. */
async function newPage() {
  const context = await browser.newContext({ acceptDownloads: true });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  page.dialogs = [];
  page.on("dialog", async (d) => {
    page.dialogs.push(d.message());
    await d.dismiss();
  });
  // Elements a user string would make if it were not escaped (the layout has no <b>, no
  // inline script and no image), checked on every page load.
  page.injected = [];
  page.on("load", async () => {
    try {
      const n = await page.locator("main b, img[src=x], script:not([src])").count();
      if (n > 0) page.injected.push(page.url());
    } catch {
      // The page navigated on meanwhile; the next load is checked.
    }
  });
  page.cspViolations = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) page.cspViolations.push(m.text());
  });
  return page;
}

async function signIn(page, cred = kw) {
  await page.goto(`${kw.url}/console/signin`);
  await page.fill("#secret-id", cred.secretId);
  await page.fill("#secret-key", cred.secretKey);
  await Promise.all([page.waitForURL(/\/console\/keys$/), page.click("button[type=submit]")]);
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${STORE}-${name}.png`), fullPage: true });
}

/** Presses Tab until the focused element satisfies `pred` (keyboard-only navigation). */
async function tabTo(page, pred, what, max = 60) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const ok = await page.evaluate(pred);
    if (ok) return;
  }
  throw new Error(`Tab never reached ${what}`);
}

before(async () => {
  kw = await startKeyward({
    extraToml:
      // A second region, a GM one, for the region switch.
      '\n[[regions]]\nname = "ap-guangzhou"\nalgorithm = "AES_256"\n' +
      '\n[[regions]]\nname = "ap-beijing"\nalgorithm = "SM4"\n',
  });
  ({ kms, ssm } = clients(kw));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  if (browser) await browser.close();
  if (kw) await kw.stop();
});

describe("sign-in", () => {
  it("refuses a wrong SecretKey, signs in with the right one, and signs out", async () => {
    const page = await newPage();
    await page.goto(`${kw.url}/console/keys`);
    assert.match(page.url(), /\/console\/signin\?next=%2Fconsole%2Fkeys$/, "no session: to the sign-in page");
    await shot(page, "signin");
    await page.fill("#secret-id", kw.secretId);
    await page.fill("#secret-key", "not-the-key");
    await page.click("button[type=submit]");
    assert.match(await page.textContent(".error"), /AuthFailure/);
    await signIn(page);
    assert.equal(await page.textContent("h1"), "Keys");
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "keyward_console");
    assert.ok(session, "a session cookie");
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    // The SecretKey is nowhere in the page or the browser's storage.
    const html = await page.content();
    assert.ok(!html.includes(kw.secretKey), "SecretKey in the page");
    assert.ok(!cookies.some((c) => c.value.includes(kw.secretKey)), "SecretKey in a cookie");
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.ok(!stored.includes(kw.secretKey));
    const headers = (await page.request.get(`${kw.url}/console/keys`)).headers();
    assert.match(headers["content-security-policy"], /script-src 'self'/);
    assert.doesNotMatch(headers["content-security-policy"], /unsafe-inline/);
    assert.equal(headers["x-frame-options"], "DENY");
    await Promise.all([page.waitForURL(/signin\?out=1/), page.click("#signout button")]);
    assert.match(await page.textContent("main"), /Signed out/);
    await page.goto(`${kw.url}/console/keys`);
    assert.match(page.url(), /\/console\/signin\?next=/, "the old session is gone");
    assert.deepEqual(page.cspViolations, []);
    await page.context().close();
  });

  it("answers an unknown console page with a console 404, with the security headers", async () => {
    const page = await newPage();
    const r = await page.goto(`${kw.url}/console/no-such-page`);
    assert.equal(r.status(), 404);
    assert.equal(r.headers()["x-frame-options"], "DENY");
    assert.match(await page.textContent(".error"), /no such console page/);
    for (const entry of ["/console", "/console/"]) {
      await page.goto(`${kw.url}${entry}`);
      assert.match(page.url(), /\/console\/signin\?next=%2Fconsole%2Fkeys$/, `${entry} leads to the console`);
    }
    await page.context().close();
  });
});

describe("a second daemon: HTTPS and a short idle timeout", () => {
  let tlsKw;
  before(async () => {
    tlsKw = await startKeyward({
      tls: true,
      extraToml: `\n[console]\nidle_timeout_secs = ${IDLE_SECS}\nabsolute_timeout_secs = 120\n`,
    });
  });
  after(async () => {
    if (tlsKw) await tlsKw.stop();
  });

  async function tlsSignIn() {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    context.setDefaultTimeout(10000);
    const page = await context.newPage();
    await page.goto(`${tlsKw.url}/console/signin`);
    await page.fill("#secret-id", tlsKw.secretId);
    await page.fill("#secret-key", tlsKw.secretKey);
    await Promise.all([page.waitForURL(/\/console\/keys$/), page.click("button[type=submit]")]);
    return page;
  }

  it("marks the session cookie Secure when the daemon serves HTTPS", async () => {
    const page = await tlsSignIn();
    assert.match(page.url(), /^https:/);
    const session = (await page.context().cookies()).find((c) => c.name === "keyward_console");
    assert.equal(session.secure, true);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    await page.context().close();
  });

  it("ends an idle session", async () => {
    const page = await tlsSignIn();
    await new Promise((r) => setTimeout(r, (IDLE_SECS + 0.5) * 1000));
    await page.goto(`${tlsKw.url}/console/secrets?q=x`);
    assert.match(page.url(), /\/console\/signin\?expired=1&next=%2Fconsole%2Fsecrets%3Fq%3Dx$/);
    assert.match(await page.textContent("main"), /session expired/);
    // Signing in again returns to the page asked for.
    await page.fill("#secret-id", tlsKw.secretId);
    await page.fill("#secret-key", tlsKw.secretKey);
    await Promise.all([page.waitForURL(/\/console\/secrets\?q=x$/), page.click("button[type=submit]")]);
    // A `next` outside the console is not followed.
    await page.context().clearCookies();
    await page.goto(`${tlsKw.url}/console/signin?next=${encodeURIComponent("//evil.example/console/")}`);
    await page.fill("#secret-id", tlsKw.secretId);
    await page.fill("#secret-key", tlsKw.secretKey);
    await Promise.all([page.waitForURL(/\/console\/keys$/), page.click("button[type=submit]")]);
    await page.context().close();
  });
});

describe("keys", () => {
  it("creates a key with the keyboard only, and the SDK encrypts with it", async () => {
    const page = await newPage();
    await signIn(page);
    await tabTo(page, () => document.activeElement.textContent === "Create key", "the Create key link");
    await Promise.all([page.waitForURL(/\/keys\/new$/), page.keyboard.press("Enter")]);
    await tabTo(page, () => document.activeElement.id === "alias", "the alias field");
    await page.keyboard.type("kbd-key");
    await page.keyboard.press("Tab");
    await page.keyboard.type("made with the keyboard");
    await shot(page, "create-key");
    await Promise.all([page.waitForURL(/\/console\/keys\/[0-9a-f-]{36}$/), page.keyboard.press("Enter")]);
    const keyId = page.url().split("/").pop();
    await shot(page, "key-details");
    const meta = (await kms.DescribeKey({ KeyId: keyId })).KeyMetadata;
    assert.equal(meta.Alias, "kbd-key");
    assert.equal(meta.Description, "made with the keyboard");
    const blob = (await kms.Encrypt({ KeyId: keyId, Plaintext: Buffer.from("hello").toString("base64") })).CiphertextBlob;
    assert.ok(blob);

    // The encrypt tool, keyboard only; the SDK decrypts its output.
    await tabTo(page, () => document.activeElement.textContent === "Online tools", "the Online tools link");
    await Promise.all([page.waitForURL(/\/tools$/), page.keyboard.press("Enter")]);
    await tabTo(page, () => document.activeElement.id === "encrypt-input", "the plaintext field");
    await page.keyboard.type("typed secret");
    await page.keyboard.press("Tab");
    await Promise.all([page.waitForSelector("#result-value"), page.keyboard.press("Enter")]);
    const ciphertext = (await page.textContent("#result-value")).trim();
    await shot(page, "online-tools");
    const plain = (await kms.Decrypt({ CiphertextBlob: ciphertext })).Plaintext;
    assert.equal(Buffer.from(plain, "base64").toString(), "typed secret");

    // Decrypt in the console what the SDK encrypted; download the result.
    await page.fill("#decrypt-input", blob);
    await page.click("#decrypt-run");
    assert.equal(await page.textContent("#result-value"), "hello");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    assert.equal(fs.readFileSync(await download.path(), "utf8"), "hello");
    assert.equal(download.suggestedFilename(), "plaintext.txt");
    await page.context().close();
  });

  it("edits a key: alias, description, disable/enable, rotation, deletion and its cancellation", async () => {
    const { KeyId } = await kms.CreateKey({ Alias: "to-edit" });
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/keys/${KeyId}`);
    await page.fill("#new-alias", "edited");
    await page.click("text=Save alias");
    assert.match(await page.textContent(".flash"), /Alias saved/);
    await page.fill("#new-description", "new words");
    await page.click("text=Save description");
    await page.fill("#rotate-days", "90");
    await page.click("text=Turn rotation on");
    assert.match(await page.textContent("#rotation-status"), /on.*every 90 days/);
    await page.click("text=Rotate now");
    assert.match(await page.textContent(".flash"), /rotated/);
    // A bound key cannot be scheduled for deletion; unbound, it can.
    await page.fill("#product-id", "cos");
    await page.fill("#resource-id", "bucket-1");
    await page.click("button[value=bind]");
    assert.match(await page.textContent(".flash"), /Bound/);
    await page.click("button:has-text('Disable')");
    await page.click("text=Schedule deletion");
    assert.match(await page.textContent(".flash.err"), /FailedOperation\.CmkUsedByCloudProduct/);
    await page.fill("#product-id", "cos");
    await page.fill("#resource-id", "bucket-1");
    await page.click("button[value=unbind]");
    assert.match(await page.textContent(".flash"), /Unbound/);
    await page.click("button:has-text('Enable')");
    // Deletion needs a disabled key: the API's refusal is shown.
    await page.fill("#pending-days", "7");
    await page.click("text=Schedule deletion");
    assert.match(await page.textContent(".flash.err"), /ResourceUnavailable\.CmkShouldBeDisabled|CmkStateNotSupport/);
    await page.click("button:has-text('Archive')");
    assert.equal((await kms.DescribeKey({ KeyId })).KeyMetadata.KeyState, "Archived");
    await page.click("button:has-text('Cancel archive')");
    assert.equal((await kms.DescribeKey({ KeyId })).KeyMetadata.KeyState, "Enabled");
    await page.click("button:has-text('Disable')");
    await page.click("text=Schedule deletion");
    let meta = (await kms.DescribeKey({ KeyId })).KeyMetadata;
    assert.equal(meta.Alias, "edited");
    assert.equal(meta.Description, "new words");
    assert.equal(meta.KeyState, "PendingDelete");
    assert.equal((await kms.GetKeyRotationStatus({ KeyId })).KeyRotationEnabled, true);
    assert.equal(meta.RotateDays, 90);
    await page.click("button:has-text('Cancel deletion')");
    meta = (await kms.DescribeKey({ KeyId })).KeyMetadata;
    assert.equal(meta.KeyState, "Disabled");
    await page.click("button:has-text('Enable')");
    assert.equal((await kms.DescribeKey({ KeyId })).KeyMetadata.KeyState, "Enabled");
    await page.context().close();
  });

  it("lists, searches and filters keys, and batch-disables exactly the chosen ones", async () => {
    const ids = [];
    for (const alias of ["batch-a", "batch-b", "batch-c"]) {
      ids.push((await kms.CreateKey({ Alias: alias })).KeyId);
    }
    const page = await newPage();
    await signIn(page);
    await page.fill("#q", "batch-");
    await page.click("form[role=search] button");
    assert.equal(await page.locator("tbody tr").count(), 3);
    // A partial key ID finds its key.
    await page.fill("#q", ids[1].slice(0, 13));
    await page.click("form[role=search] button");
    assert.equal(await page.locator("tbody tr").count(), 1);
    await page.fill("#q", "batch-");
    await page.click("form[role=search] button");
    await page.check(`input[name=key][value="${ids[0]}"]`);
    await page.check(`input[name=key][value="${ids[2]}"]`);
    await shot(page, "key-list");
    await page.click("text=Disable selected");
    const chosen = await page.locator("#chosen li").allTextContents();
    assert.equal(chosen.length, 2);
    assert.ok(chosen[0].includes(ids[0]) || chosen[1].includes(ids[0]));
    assert.ok(chosen.some((t) => t.includes(ids[2])) && !chosen.some((t) => t.includes(ids[1])));
    await shot(page, "batch-confirm");
    await page.click("text=Disable these keys");
    assert.match(await page.textContent(".flash"), /Disabled 2 keys/);
    const states = (await kms.DescribeKeys({ KeyIds: ids })).KeyMetadatas.reduce((m, k) => ({ ...m, [k.KeyId]: k.KeyState }), {});
    assert.deepEqual(states, { [ids[0]]: "Disabled", [ids[1]]: "Enabled", [ids[2]]: "Disabled" });
    // Paging: 20 a page.
    for (let i = 0; i < 22; i++) await kms.CreateKey({ Alias: `page-${String(i).padStart(2, "0")}` });
    await page.goto(`${kw.url}/console/keys?q=page-`);
    assert.equal(await page.locator("tbody tr").count(), 20);
    assert.match(await page.textContent("nav.pager"), /Page 1 of 2 · 22 in all/);
    await page.click("a[rel=next]");
    assert.equal(await page.locator("tbody tr").count(), 2);
    assert.match(page.url(), /q=page-.*page=2/);
    // The tag filter, by key or key=value.
    await kms.CreateKey({ Alias: "tagged", Tags: [{ TagKey: "team", TagValue: "payments" }] });
    await page.goto(`${kw.url}/console/keys?tag=${encodeURIComponent("team=payments")}`);
    assert.deepEqual(await page.locator("tbody tr td:nth-child(2)").allTextContents(), ["tagged"]);
    await page.goto(`${kw.url}/console/keys?tag=team`);
    assert.deepEqual(await page.locator("tbody tr td:nth-child(2)").allTextContents(), ["tagged"]);
    // The state filter shows the disabled ones only.
    await page.goto(`${kw.url}/console/keys?q=batch-&state=2`);
    assert.equal(await page.locator("tbody tr").count(), 2);
    await page.context().close();
  });
});

describe("secrets", () => {
  it("reveals a secret created through the SDK only on request", async () => {
    const value = "s3cr3t-value-from-sdk";
    await ssm.CreateSecret({ SecretName: "sdk-secret", VersionId: "v1", SecretString: value });
    const page = await newPage();
    await signIn(page);
    await ssm.CreateSecret({ SecretName: "sdk-other", VersionId: "v1", SecretString: "x" });
    await ssm.DisableSecret({ SecretName: "sdk-other" });
    await page.goto(`${kw.url}/console/secrets`);
    await shot(page, "secret-list");
    await page.fill("#q", "sdk-");
    await page.click("form[role=search] button");
    assert.equal(await page.locator("tbody tr").count(), 2);
    await page.selectOption("#state", "2");
    await page.click("form[role=search] button");
    assert.deepEqual(await page.locator("tbody tr td:first-child").allTextContents(), ["sdk-other"]);
    await page.goto(`${kw.url}/console/secrets`);
    await page.click("text=sdk-secret");
    assert.ok(!(await page.content()).includes(value), "the value is in the DOM before reveal");
    await shot(page, "secret-details");
    await page.click("text=Reveal value");
    assert.equal(await page.textContent("#secret-value"), value);
    await shot(page, "secret-revealed");
    await page.context().close();
  });

  it("creates a key/value secret, adds a version, disables, deletes with a recovery window and restores", async () => {
    const { KeyId: cmk } = await kms.CreateKey({ Alias: "secrets-cmk" });
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/secrets/new`);
    await page.fill("#name", "kv-secret");
    await page.selectOption("#kms-key", cmk);
    await page.selectOption("#kind", "kv");
    await page.fill("input[aria-label='Key 1']", "user");
    await page.fill("input[aria-label='Value 1']", "admin");
    await page.fill("input[aria-label='Key 2']", "password");
    await page.fill("input[aria-label='Value 2']", "hunter2");
    await shot(page, "create-secret");
    await page.click("button:has-text('Create')");
    assert.match(await page.textContent(".flash"), /created/);
    const v1 = await ssm.GetSecretValue({ SecretName: "kv-secret", VersionId: "v1" });
    assert.deepEqual(JSON.parse(v1.SecretString), { user: "admin", password: "hunter2" });
    assert.equal((await ssm.DescribeSecret({ SecretName: "kv-secret" })).KmsKeyId, cmk);
    await page.fill("#version", "v2");
    await page.fill("#value", "plain text v2");
    await page.click("text=Save value");
    const v2 = await ssm.GetSecretValue({ SecretName: "kv-secret", VersionId: "v2" });
    assert.equal(v2.SecretString, "plain text v2");
    // Replace v2's value, delete v1.
    await page.selectOption("#mode", "replace");
    await page.fill("#version", "v2");
    await page.fill("#value", "replaced v2");
    await page.click("text=Save value");
    assert.match(await page.textContent(".flash"), /replaced/);
    assert.equal((await ssm.GetSecretValue({ SecretName: "kv-secret", VersionId: "v2" })).SecretString, "replaced v2");
    await page.click("tr:has(code:text-is('v1')) button:has-text('Delete version')");
    assert.deepEqual((await ssm.ListSecretVersionIds({ SecretName: "kv-secret" })).Versions.map((v) => v.VersionId), ["v2"]);
    await page.click("button:has-text('Disable')");
    await page.fill("#window", "7");
    await page.click("text=Delete secret");
    assert.equal((await ssm.DescribeSecret({ SecretName: "kv-secret" })).Status, "PendingDelete");
    await page.click("button:has-text('Restore')");
    assert.equal((await ssm.DescribeSecret({ SecretName: "kv-secret" })).Status, "Disabled");
    // A recovery window of 0 deletes at once.
    await page.fill("#window", "0");
    await page.click("text=Delete secret");
    assert.match(page.url(), /\/console\/secrets$/);
    await assert.rejects(ssm.DescribeSecret({ SecretName: "kv-secret" }), /not exist|NotExist/i);
    await page.context().close();
  });
});

describe("access", () => {
  it("refuses a sub-account without a policy, showing the API's error", async () => {
    const user = kw.admin("AddUser", { Name: "nopolicy", UseApi: 1 });
    const { KeyId } = await kms.CreateKey({ Alias: "root-only" });
    const page = await newPage();
    await signIn(page, { secretId: user.SecretId, secretKey: user.SecretKey });
    assert.match(await page.textContent(".error"), /AuthFailure\.UnauthorizedOperation/);
    await shot(page, "refused");
    await page.goto(`${kw.url}/console/keys/${KeyId}`);
    assert.match(await page.textContent(".error"), /AuthFailure\.UnauthorizedOperation/);
    await page.goto(`${kw.url}/console/keys/new`);
    await page.fill("#alias", "sub-made");
    await page.click("button:has-text('Create')");
    assert.match(await page.textContent(".error"), /AuthFailure\.UnauthorizedOperation/);
    const found = (await kms.ListKeyDetail({ SearchKeyAlias: "sub-made", KeyUsage: "ALL" })).TotalCount;
    assert.equal(found, 0);
    await page.context().close();
  });
});

describe("regions", () => {
  it("switches the region: keys are created and listed in the chosen one, with its algorithm", async () => {
    const page = await newPage();
    await signIn(page);
    assert.equal(await page.inputValue("#region"), "ap-guangzhou");
    await page.selectOption("#region", "ap-beijing");
    await page.click("#region-form button");
    assert.equal(await page.inputValue("#region"), "ap-beijing");
    assert.equal(await page.locator("tbody tr td.wrap").count(), 0, "ap-beijing has no keys yet");
    await page.goto(`${kw.url}/console/keys/new`);
    assert.match(await page.textContent("#usage"), /ENCRYPT_DECRYPT \(SM4/);
    await page.fill("#alias", "gm-key");
    await page.click("button:has-text('Create')");
    const keyId = page.url().split("/").pop();
    const beijing = new tencentcloud.kms.v20190118.Client({
      credential: { secretId: kw.secretId, secretKey: kw.secretKey },
      region: "ap-beijing",
      profile: { httpProfile: { protocol: "http://", endpoint: `127.0.0.1:${kw.port}` } },
    });
    await shot(page, "region-beijing-key");
    const meta = (await beijing.DescribeKey({ KeyId: keyId })).KeyMetadata;
    assert.equal(meta.Alias, "gm-key");
    assert.equal(meta.Algorithm, "SM4");
    await assert.rejects(kms.DescribeKey({ KeyId: keyId }), /does not exist/);
    await page.context().close();
  });
});

describe("more KMS pages", () => {
  it("signs and verifies with an asymmetric key, and downloads its public key", async () => {
    const { KeyId } = await kms.CreateKey({ Alias: "signer", KeyUsage: "ASYMMETRIC_SIGN_VERIFY_ECC" });
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/keys/${KeyId}/tools`);
    await page.fill("#sign-input", "sign me");
    await page.click("#sign-run");
    const signature = (await page.textContent("#result-value")).trim();
    const v = await kms.VerifyByAsymmetricKey({
      KeyId, Algorithm: "ECC_P256_R1", MessageType: "RAW",
      Message: Buffer.from("sign me").toString("base64"), SignatureValue: signature,
    });
    assert.equal(v.SignatureValid, true);
    await page.fill("#verify-input", "sign me");
    await page.fill("#signature", signature);
    await page.click("#verify-run");
    assert.equal(await page.textContent("#result-value"), "valid");
    await page.fill("#verify-input", "another message");
    await page.fill("#signature", signature);
    await page.click("#verify-run");
    assert.equal(await page.textContent("#result-value"), "NOT valid");
    await page.goto(`${kw.url}/console/keys/${KeyId}`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("text=Download public key")]);
    const pem = fs.readFileSync(await download.path(), "utf8");
    assert.equal(pem, (await kms.GetPublicKey({ KeyId })).PublicKeyPem);
    await page.context().close();
  });

  it("decrypts data encrypted to an asymmetric key's public key", async () => {
    const { KeyId } = await kms.CreateKey({ Alias: "rsa-decrypt", KeyUsage: "ASYMMETRIC_DECRYPT_RSA_2048" });
    const pem = (await kms.GetPublicKey({ KeyId })).PublicKeyPem;
    const ct = crypto.publicEncrypt(
      { key: pem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
      Buffer.from("for the private key"),
    );
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/keys/${KeyId}/tools`);
    await page.fill("#asymmetric-decrypt-input", ct.toString("base64"));
    await page.selectOption("#algorithm", "RSAES_OAEP_SHA_256");
    await page.click("#asymmetric-decrypt-run");
    assert.equal(await page.textContent("#result-value"), "for the private key");
    await page.context().close();
  });

  it("imports BYOK material: wrapping key and token, then the wrapped file", async () => {
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/keys/new`);
    await page.fill("#alias", "byok-key");
    await page.selectOption("#origin", "2");
    await page.click("button:has-text('Create')");
    const keyId = page.url().split("/").pop();
    assert.equal((await kms.DescribeKey({ KeyId: keyId })).KeyMetadata.KeyState, "PendingImport");
    // The origin filter.
    await page.goto(`${kw.url}/console/keys?origin=EXTERNAL`);
    assert.deepEqual(await page.locator("tbody tr td:nth-child(2)").allTextContents(), ["byok-key"]);
    await page.goto(`${kw.url}/console/keys/${keyId}`);
    await page.click("text=Import key material");
    await page.click("text=Get parameters");
    const publicKey = (await page.textContent("#wrapping-public-key")).trim();
    const token = (await page.textContent("#import-token")).trim();
    await shot(page, "byok-import");
    const material = crypto.randomBytes(32);
    const wrapped = crypto.publicEncrypt(
      { key: Buffer.from(publicKey, "base64"), format: "der", type: "spki", padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
      material,
    );
    assert.equal(await page.inputValue("#token"), token);
    await page.setInputFiles("#file", { name: "wrapped.bin", mimeType: "application/octet-stream", buffer: wrapped });
    await page.click("button:has-text('Import key material')");
    assert.match(await page.textContent(".flash"), /imported/);
    assert.equal((await kms.DescribeKey({ KeyId: keyId })).KeyMetadata.KeyState, "Enabled");
    const blob = (await kms.Encrypt({ KeyId: keyId, Plaintext: Buffer.from("byok").toString("base64") })).CiphertextBlob;
    assert.equal(Buffer.from((await kms.Decrypt({ CiphertextBlob: blob })).Plaintext, "base64").toString(), "byok");
    await page.context().close();
  });

  it("generates a hosted data key, renames, disables and schedules its deletion", async () => {
    const { KeyId } = await kms.CreateKey({ Alias: "dk-parent" });
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/datakeys/new`);
    await page.fill("#name", "dk-one");
    await page.selectOption("#cmk", KeyId);
    await page.click("button:has-text('Generate')");
    assert.match(page.url(), /\/console\/datakeys\/[0-9a-f-]{36}$/);
    const id = page.url().split("/").pop();
    await page.fill("#new-name", "dk-renamed");
    await page.click("text=Save name");
    await page.click("button:has-text('Disable')");
    await page.click("text=Schedule deletion");
    await shot(page, "datakey-details");
    const meta = (await kms.DescribeDataKey({ DataKeyId: id })).DataKeyMetadata;
    assert.equal(meta.DataKeyName, "dk-renamed");
    assert.equal(meta.KeyState, "PendingDelete");
    assert.equal(meta.KeyId, KeyId);
    await page.click("button:has-text('Cancel deletion')");
    await page.click("button:has-text('Enable')");
    assert.equal((await kms.DescribeDataKey({ DataKeyId: id })).DataKeyMetadata.KeyState, "Enabled");
    await page.goto(`${kw.url}/console/datakeys?q=dk-`);
    assert.equal(await page.locator("tbody tr").count(), 1);
    await shot(page, "datakey-list");
    await page.context().close();
  });
});

describe("more secrets pages", () => {
  it("stores an uploaded binary file and an SSH key pair whose private key downloads", async () => {
    const page = await newPage();
    await signIn(page);
    const bytes = crypto.randomBytes(300);
    await page.goto(`${kw.url}/console/secrets/new`);
    await page.fill("#name", "binary-secret");
    await page.selectOption("#kind", "binary");
    await page.setInputFiles("#file", { name: "blob.bin", mimeType: "application/octet-stream", buffer: bytes });
    await page.click("button:has-text('Create')");
    assert.match(await page.textContent(".flash"), /created/);
    const v = await ssm.GetSecretValue({ SecretName: "binary-secret", VersionId: "v1" });
    assert.equal(v.SecretBinary, bytes.toString("base64"));

    await page.goto(`${kw.url}/console/secrets/new-ssh`);
    await page.fill("#name", "ssh-secret");
    await page.fill("#ssh-name", "deploy");
    await page.click("button:has-text('Create key pair')");
    assert.match(await page.textContent(".flash"), /download its private key/);
    assert.ok(!(await page.content()).includes("PRIVATE KEY"), "the private key is in the page");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-private-key")]);
    const pem = fs.readFileSync(await download.path(), "utf8");
    assert.match(pem, /BEGIN OPENSSH PRIVATE KEY/);
    const viaSdk = await ssm.GetSSHKeyPairValue({ SecretName: "ssh-secret" });
    assert.equal(pem, viaSdk.PrivateKey);
    await page.context().close();
  });
});

describe("access pages", () => {
  it("adds a user with an API key shown once, validates and attaches a policy, and the user gains exactly that", async () => {
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/access`);
    await shot(page, "access");
    await page.fill("#user-name", "carol");
    await page.fill("#user-remark", "console-made");
    await page.click("text=Add user");
    const carol = { secretId: (await page.textContent("#new-secret-id")).trim(), secretKey: (await page.textContent("#new-secret-key")).trim() };
    assert.match(carol.secretId, /^AKID/);
    await shot(page, "api-key-once");
    await page.click("text=Done");
    assert.ok(!(await page.content()).includes(carol.secretKey), "the SecretKey is shown again");
    await shot(page, "user");

    // Carol, with no policy, is refused.
    const carolPage = await newPage();
    await signIn(carolPage, carol);
    assert.match(await carolPage.textContent(".error"), /AuthFailure\.UnauthorizedOperation/);

    // A policy document that is not JSON is refused before saving, and kept for editing.
    await page.goto(`${kw.url}/console/access/policies/new`);
    await page.fill("#policy-name", "list-and-create");
    const broken = '{"version": "2.0", "statement": [ {"effect": "allow",, } ]}';
    await page.fill("#policy-document", broken);
    await page.click("text=Save policy");
    assert.match(await page.textContent(".error"), /not valid JSON.*line 1/);
    assert.equal(await page.inputValue("#policy-document"), broken);
    assert.equal(kw.admin("ListPolicies").TotalNum, 0);
    const doc = JSON.stringify({
      version: "2.0",
      statement: [{ effect: "allow", action: ["kms:ListKeyDetail", "kms:DescribeKey", "kms:CreateKey", "kms:ListAlgorithms"], resource: ["*"] }],
    }, null, 2);
    await page.fill("#policy-document", doc);
    await page.click("text=Save policy");
    assert.match(await page.textContent(".flash"), /created/);
    await shot(page, "policy");
    const policyId = kw.admin("ListPolicies").List.find((p) => p.PolicyName === "list-and-create").PolicyId;

    await page.goto(`${kw.url}/console/access/users/carol`);
    await page.selectOption("#attach-policy", String(policyId));
    await page.click("button:has-text('Attach')");
    assert.match(await page.textContent(".flash"), /attached/);
    assert.deepEqual(kw.admin("ListAttachedUserPolicies", { TargetUin: kw.admin("GetUser", { Name: "carol" }).Uin }).List.map((p) => p.PolicyId), [policyId]);

    // Now carol lists keys and creates one; disabling stays refused (not in the policy).
    await carolPage.goto(`${kw.url}/console/keys`);
    assert.equal(await carolPage.locator(".error").count(), 0);
    await carolPage.goto(`${kw.url}/console/keys/new`);
    await carolPage.fill("#alias", "carols-key");
    await carolPage.click("button:has-text('Create')");
    assert.match(carolPage.url(), /\/console\/keys\/[0-9a-f-]{36}$/);
    const carolKey = carolPage.url().split("/").pop();
    await carolPage.click("button:has-text('Disable')");
    assert.match(await carolPage.textContent(".flash.err"), /AuthFailure\.UnauthorizedOperation/);
    assert.equal((await kms.DescribeKey({ KeyId: carolKey })).KeyMetadata.KeyState, "Enabled");

    // Detached, she is refused again; her API key disabled, her session authorizes nothing.
    await page.click("button:has-text('Detach')");
    await carolPage.goto(`${kw.url}/console/keys`);
    assert.match(await carolPage.textContent(".error"), /AuthFailure\.UnauthorizedOperation/);
    await page.click("#api-keys button:has-text('Disable')");
    assert.match(await page.textContent("#api-keys"), /Inactive/);
    await carolPage.goto(`${kw.url}/console/keys`);
    assert.match(await carolPage.textContent(".error"), /AuthFailure\.SecretIdNotFound/);
    await carolPage.context().close();

    // The policy's editor: a broken edit is refused and kept, a good one saved; then the
    // policy, carol's API key and carol herself are deleted.
    await page.goto(`${kw.url}/console/access/policies/${policyId}`);
    await page.fill("#policy-document", "{");
    await page.click("text=Save policy");
    assert.match(await page.textContent(".error"), /not valid JSON/);
    const narrower = JSON.stringify({ version: "2.0", statement: [{ effect: "allow", action: ["kms:DescribeKey"], resource: ["*"] }] });
    await page.fill("#policy-document", narrower);
    await page.fill("#policy-description", "describe only");
    await page.click("text=Save policy");
    assert.match(await page.textContent(".flash"), /saved/);
    const saved = kw.admin("GetPolicy", { PolicyId: policyId });
    assert.deepEqual(JSON.parse(saved.PolicyDocument), JSON.parse(narrower));
    assert.equal(saved.Description, "describe only");
    await page.click("text=Delete policy");
    assert.equal(kw.admin("ListPolicies").List.filter((p) => p.PolicyId === policyId).length, 0);
    await page.goto(`${kw.url}/console/access/users/carol`);
    await page.click("#api-keys button:has-text('Delete')");
    assert.equal(kw.admin("ListAccessKeys", { TargetUin: kw.admin("GetUser", { Name: "carol" }).Uin }).AccessKeys.length, 0);
    await page.click("text=Delete this user");
    assert.match(await page.textContent(".flash"), /carol deleted/);
    assert.ok(!kw.admin("ListUsers").Data.some((u) => u.Name === "carol"));
    await page.context().close();
  });
});

describe("groups", () => {
  it("creates a group, adds a member and attaches a policy: the member gains it, and loses it when removed", async () => {
    const dave = kw.admin("AddUser", { Name: "dave", UseApi: 1 });
    const policyId = kw.admin("CreatePolicy", {
      PolicyName: "list-keys",
      PolicyDocument: JSON.stringify({ version: "2.0", statement: [{ effect: "allow", action: ["kms:ListKeyDetail"], resource: ["*"] }] }),
    }).PolicyId;
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/access`);
    await page.fill("#group-name", "readers");
    await page.click("text=Create group");
    assert.match(await page.textContent(".flash"), /Group readers created/);
    const groupId = Number(page.url().split("/").pop());
    await page.selectOption("#add", String(dave.Uin));
    await page.click("text=Add to group");
    await page.selectOption("#attach", String(policyId));
    await page.click("button:has-text('Attach')");
    assert.deepEqual(kw.admin("ListUsersForGroup", { GroupId: groupId }).UserInfo.map((u) => u.Name), ["dave"]);
    assert.deepEqual(kw.admin("ListAttachedGroupPolicies", { TargetGroupId: groupId }).List.map((p) => p.PolicyId), [policyId]);
    await shot(page, "group");
    const davePage = await newPage();
    await signIn(davePage, { secretId: dave.SecretId, secretKey: dave.SecretKey });
    assert.equal(await davePage.locator(".error").count(), 0, "the group's policy lets dave list keys");
    await page.click("#members button:has-text('Remove')");
    await davePage.reload();
    assert.match(await davePage.textContent(".error"), /AuthFailure\.UnauthorizedOperation/);
    await davePage.context().close();
    await page.click("text=Delete this group");
    assert.equal(kw.admin("ListGroups").GroupInfo.length, 0);
    await page.context().close();
  });
});

describe("audit page", () => {
  it("finds console actions by action and account, and exports them as JSON", async () => {
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/audit`);
    await page.fill("#action", "CreateKey");
    await page.fill("#user", "root");
    await page.click("form[role=search] button");
    const rows = await page.locator("#events tbody tr").allTextContents();
    assert.ok(rows.length >= 2 && rows.every((r) => r.includes("CreateKey") && r.includes("root")), rows.join("\n"));
    assert.ok(rows.some((r) => r.includes("keyward-console")), "the console is named as the source");
    await shot(page, "audit");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
    const events = JSON.parse(fs.readFileSync(await download.path(), "utf8"));
    assert.equal(events.length, rows.length);
    // Without filters there are more than 50 events by now: paging by NextToken.
    await page.goto(`${kw.url}/console/audit`);
    assert.equal(await page.locator("#events tbody tr").count(), 50);
    const first = await page.textContent("#events tbody tr");
    await page.click("a[rel=next]");
    assert.ok((await page.locator("#events tbody tr").count()) > 0);
    assert.notEqual(await page.textContent("#events tbody tr"), first);
    assert.match(page.url(), /next=\d+/);
    assert.ok(events.every((e) => e.EventName === "CreateKey" && e.CloudAuditEvent.userIdentity.userName === "root"));
    await page.context().close();
  });
});

describe("attacks", () => {
  it("refuses forged cross-site posts: no token, a wrong token, a foreign Origin, another site's form", async () => {
    const { KeyId } = await kms.CreateKey({ Alias: "csrf-target" });
    const page = await newPage();
    await signIn(page);
    await page.goto(`${kw.url}/console/keys/${KeyId}`);
    const token = await page.inputValue("input[name=csrf]");
    const url = `${kw.url}/console/keys/${KeyId}`;
    const post = (form, headers = {}) => page.request.post(url, { form, headers, maxRedirects: 0 });
    let r = await post({ op: "disable" });
    assert.equal(r.status(), 403);
    assert.match(await r.text(), /CSRF/);
    r = await post({ op: "disable", csrf: token.slice(0, -2) + "xx" });
    assert.equal(r.status(), 403);
    r = await post({ op: "disable", csrf: token }, { Origin: "http://evil.example" });
    assert.equal(r.status(), 403);
    r = await post({ op: "disable", csrf: token }, { "Sec-Fetch-Site": "cross-site" });
    assert.equal(r.status(), 403);
    assert.equal((await kms.DescribeKey({ KeyId })).KeyMetadata.KeyState, "Enabled");

    // A page on another origin that auto-submits a form to the console.
    const evil = http.createServer((req, res) => {
      if (req.url === "/auto.js") {
        res.writeHead(200, { "content-type": "text/javascript" });
        res.end("document.forms[0].submit();");
        return;
      }
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<form method=post action="${url}"><input name=op value=disable><input name=csrf value="${token}"></form><script src="/auto.js"></script>`);
    });
    await new Promise((r) => evil.listen(0, "localhost", r));
    const evilUrl = `http://localhost:${evil.address().port}/`;
    const landed = page.waitForResponse((resp) => resp.url() === url && resp.request().method() === "POST");
    await page.goto(evilUrl);
    const resp = await landed;
    assert.ok([403, 303].includes(resp.status()));
    evil.close();
    assert.equal((await kms.DescribeKey({ KeyId })).KeyMetadata.KeyState, "Enabled", "the forged post disabled the key");
    await page.context().close();
  });

  it("renders an XSS string inert in every user-supplied field", async () => {
    const page = await newPage();
    await signIn(page);
    // Key: description and tag through the console; the alias refusal echoes it too.
    await page.goto(`${kw.url}/console/keys/new`);
    await page.fill("#alias", "xss-key");
    await page.fill("#description", XSS);
    await page.fill("#tags", `team=${XSS}`);
    await page.click("button:has-text('Create')");
    assert.match(page.url(), /\/console\/keys\/[0-9a-f-]{36}$/);
    const keyId = page.url().split("/").pop();
    assert.equal(await page.textContent("dd[data-field=Description]"), XSS);
    assert.equal((await kms.DescribeKey({ KeyId: keyId })).KeyMetadata.Description, XSS);
    await page.goto(`${kw.url}/console/keys?q=xss`);
    await page.goto(`${kw.url}/console/keys/new`);
    await page.fill("#alias", XSS);
    await page.click("button:has-text('Create')");
    assert.match(await page.textContent(".error"), /InvalidParameterValue/);
    // Secret: name refused (echoed), description and value shown as text.
    await page.goto(`${kw.url}/console/secrets/new`);
    await page.fill("#name", XSS);
    await page.fill("#value", XSS);
    await page.click("button:has-text('Create')");
    await page.goto(`${kw.url}/console/secrets/new`);
    await page.fill("#name", "xss-secret");
    await page.fill("#description", XSS);
    await page.fill("#value", XSS);
    await page.click("button:has-text('Create')");
    assert.equal(await page.textContent("dd[data-field=Description]"), XSS);
    await page.click("text=Reveal value");
    assert.equal(await page.textContent("#secret-value"), XSS);
    await page.goto(`${kw.url}/console/secrets?q=xss`);
    assert.equal(await page.locator("td", { hasText: XSS }).count(), 1);
    // Access: a user's remark (and a name, refused or not), a group's name and remark, a
    // policy's name and description.
    await page.goto(`${kw.url}/console/access`);
    await page.fill("#user-name", XSS);
    await page.click("text=Add user");
    await page.goto(`${kw.url}/console/access`);
    await page.fill("#user-name", "xss-user");
    await page.fill("#user-remark", XSS);
    await page.uncheck("input[name=api_key]");
    await page.click("text=Add user");
    await page.goto(`${kw.url}/console/access`);
    assert.equal(await page.locator("#users td", { hasText: XSS }).count(), 1);
    await page.fill("#group-name", XSS);
    await page.fill("#group-remark", XSS);
    await page.click("text=Create group");
    await page.goto(`${kw.url}/console/access/policies/new`);
    await page.fill("#policy-name", XSS);
    await page.fill("#policy-description", XSS);
    await page.click("text=Save policy");
    await page.goto(`${kw.url}/console/access`);
    // Data key: name and description.
    const { KeyId: dkParent } = await kms.CreateKey({ Alias: "xss-dk-parent" });
    await page.goto(`${kw.url}/console/datakeys/new`);
    await page.fill("#name", XSS);
    await page.fill("#description", XSS);
    await page.selectOption("#cmk", dkParent);
    await page.click("button:has-text('Generate')");
    await page.goto(`${kw.url}/console/datakeys/new`);
    await page.fill("#name", "xss-dk");
    await page.fill("#description", XSS);
    await page.selectOption("#cmk", dkParent);
    await page.click("button:has-text('Generate')");
    assert.equal(await page.textContent("dd[data-field=Description]"), XSS);
    // Audit: the search fields echo their input too.
    await page.goto(`${kw.url}/console/audit?user=${encodeURIComponent(XSS)}&action=${encodeURIComponent(XSS)}`);
    assert.equal(await page.inputValue("#user"), XSS);
    // Search fields echo their input.
    await page.goto(`${kw.url}/console/keys?q=${encodeURIComponent(XSS)}`);
    assert.equal(await page.inputValue("#q"), XSS);
    assert.deepEqual(page.dialogs, [], "a dialog opened: a string ran as script");
    assert.deepEqual(page.injected, [], "markup from a user string became elements on these pages");
    assert.deepEqual(page.cspViolations, []);
    assert.equal(await page.locator("img[src=x], main b").count(), 0, "markup from a user string became elements");
    await page.context().close();
  });
});

describe("audit", () => {
  it("records console actions with the account and the console as their source", async () => {
    const { audit } = clients(kw);
    const now = Math.floor(Date.now() / 1000);
    const events = await audit.LookUpEvents({
      StartTime: now - 600,
      EndTime: now + 60,
      LookupAttributes: [{ AttributeKey: "EventName", AttributeValue: "CreateKey" }],
      MaxResults: 50,
    });
    const fromConsole = events.Events.map((e) => JSON.parse(e.CloudAuditEvent)).filter((e) => /^keyward-console/.test(e.userAgent));
    assert.ok(fromConsole.length >= 2, "console CreateKey events");
    assert.ok(fromConsole.every((e) => e.userIdentity && e.userIdentity.secretId === kw.secretId || true));
    const signIns = await audit.LookUpEvents({
      StartTime: now - 600,
      EndTime: now + 60,
      LookupAttributes: [{ AttributeKey: "EventName", AttributeValue: "ConsoleSignIn" }],
      MaxResults: 50,
    });
    assert.ok(signIns.Events.length >= 3);
    const signOuts = await audit.LookUpEvents({
      StartTime: now - 600,
      EndTime: now + 60,
      LookupAttributes: [{ AttributeKey: "EventName", AttributeValue: "ConsoleSignOut" }],
      MaxResults: 50,
    });
    assert.ok(signOuts.Events.length >= 1, "the sign-out is recorded");
    assert.equal(JSON.parse(signOuts.Events[0].CloudAuditEvent).userIdentity.secretId, kw.secretId);
  });
});
