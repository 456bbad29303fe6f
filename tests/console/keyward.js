"use strict";
// Test harness for the console suite: starts one `keyward serve` on a fresh SoftHSM2 token and
// data directory on an ephemeral loopback port — tests/node/keyward.js's arrangement, plus a
// [console] section (short timeouts for the expiry test) and, with KEYWARD_TEST_STORE=postgres,
// a throw-away PostgreSQL cluster (pgcluster.js) as the store.
//
// Environment:
//   KEYWARD_BIN         the keyward binary (default: <repo>/target/debug/keyward)
//   SOFTHSM2_MODULE     PKCS#11 module (default: /usr/lib/softhsm/libsofthsm2.so)
//   KEYWARD_TEST_STORE  `postgres` for a PostgreSQL store (default: SQLite in the data dir)
//   KEYWARD_TEST_BACKEND `embedded` for the in-process firmware backend (default: `softhsm`)
//   KEYWARD_KEEP_TMP    if set, keep the temporary directory (token, data, daemon log)
// Missing prerequisites fail the suite; nothing is skipped.

const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

// The SDK's fetch wrapper sends every request through `http_proxy` when it is set; the
// browser is started without a proxy.
for (const v of ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]) {
  delete process.env[v];
}

const REPO = path.resolve(__dirname, "..", "..");
const PIN = "keyward-test-pin-1234";
const LISTEN = /keyward: listening on (https?):\/\/127\.0\.0\.1:(\d+)/;

function requireFile(p, what) {
  if (!p || !fs.existsSync(p)) {
    throw new Error(`${what} not found at ${p}; it is required (tests are never skipped)`);
  }
}

/**
 * Starts a daemon; resolves to {port, url, secretId, secretKey, region, binary, credFile,
 * stop()}. `extraToml` is appended to keyward.toml; `tls` serves HTTPS with a self-signed
 * certificate for 127.0.0.1 made by openssl.
 */
async function startKeyward({ extraToml = "", tls = false } = {}) {
  const binary = process.env.KEYWARD_BIN || path.join(REPO, "target", "debug", "keyward");
  requireFile(binary, "keyward binary (set KEYWARD_BIN or build target/debug/keyward)");
  const backend = process.env.KEYWARD_TEST_BACKEND || "softhsm";
  if (backend !== "softhsm" && backend !== "embedded") {
    throw new Error(`KEYWARD_TEST_BACKEND ${backend}: the console suite runs on softhsm or embedded`);
  }
  const module = process.env.SOFTHSM2_MODULE || "/usr/lib/softhsm/libsofthsm2.so";
  if (backend === "softhsm") requireFile(module, "SoftHSM2 PKCS#11 module");

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "keyward-console-"));
  const tokens = path.join(tmp, "tokens");
  fs.mkdirSync(tokens);
  const softhsmConf = path.join(tmp, "softhsm2.conf");
  fs.writeFileSync(
    softhsmConf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  const env = { ...process.env, SOFTHSM2_CONF: softhsmConf, KEYWARD_PIN: PIN };
  let store = "";
  let cluster = null;
  const storeKind = process.env.KEYWARD_TEST_STORE || "sqlite";
  if (storeKind === "postgres") {
    const { Cluster, PASSWORD_ENV } = require("./pgcluster");
    cluster = await Cluster.start();
    store = cluster.storeSection(cluster.createDatabase());
    env[PASSWORD_ENV] = cluster.password;
  } else if (storeKind !== "sqlite") {
    throw new Error(`unknown KEYWARD_TEST_STORE ${storeKind}`);
  }
  let tlsSection = "";
  if (tls) {
    const [cert, key] = [path.join(tmp, "cert.pem"), path.join(tmp, "key.pem")];
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    tlsSection = `[tls]\ncert = "${cert}"\nkey = "${key}"\n`;
  }
  const config = path.join(tmp, "keyward.toml");
  fs.writeFileSync(
    config,
    `data_dir = "${path.join(tmp, "data")}"\n` +
      tlsSection +
      (backend === "softhsm"
        ? "[hsm]\n" +
          'backend = "pkcs11"\n' +
          `module = "${module}"\n` +
          'token_label = "keyward"\n' +
          'pin_env = "KEYWARD_PIN"\n'
        : "") +
      store +
      extraToml,
  );
  if (backend === "softhsm") {
    execFileSync(
      "softhsm2-util",
      ["--init-token", "--free", "--label", "keyward", "--pin", PIN, "--so-pin", "5678"],
      { env, stdio: ["ignore", "ignore", "inherit"] },
    );
  }
  const init = execFileSync(binary, ["init", "--config", config], {
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const line = init.split("\n").find((l) => l.trim().startsWith("{"));
  if (!line) throw new Error(`keyward init printed no credential:\n${init}`);
  const cred = JSON.parse(line);
  const credFile = path.join(tmp, "root.json");
  fs.writeFileSync(credFile, line, { mode: 0o600 });

  const logPath = path.join(tmp, "keyward.log");
  const log = fs.createWriteStream(logPath);
  const proc = spawn(binary, ["serve", "--config", config, "--listen", "127.0.0.1:0"], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const [scheme, port] = await new Promise((resolve, reject) => {
    let buffered = "";
    let found = false;
    const timer = setTimeout(() => reject(new Error(`keyward did not start; log in ${logPath}`)), 60000);
    proc.stderr.on("data", (chunk) => {
      log.write(chunk);
      if (found) return;
      buffered += chunk.toString();
      const m = LISTEN.exec(buffered);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolve([m[1], Number(m[2])]);
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`keyward exited with ${code} before listening:\n${buffered}`));
    });
  });

  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    secretId: cred.SecretId,
    secretKey: cred.SecretKey,
    region: cred.Region,
    binary,
    credFile,
    logPath,
    /** `keyward admin` (the extension API's access-management actions) as root. */
    admin(action, params = {}) {
      const out = execFileSync(
        binary,
        ["admin", "--endpoint", `${scheme}://127.0.0.1:${port}`, "--credentials", credFile, action, JSON.stringify(params)],
        { encoding: "utf8" },
      );
      return JSON.parse(out);
    },
    async stop({ keep = false } = {}) {
      if (proc.exitCode === null) {
        const exited = new Promise((resolve) => proc.on("exit", resolve));
        proc.kill("SIGTERM");
        await exited;
      }
      log.end();
      if (cluster) await cluster.stop();
      if (keep || process.env.KEYWARD_KEEP_TMP) {
        console.log(`keyward test directory kept: ${tmp}`);
      } else {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

module.exports = { startKeyward };
