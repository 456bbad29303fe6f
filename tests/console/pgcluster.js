"use strict";
// A throw-away PostgreSQL cluster for KEYWARD_TEST_STORE=postgres: tests/python/pgcluster.py's
// arrangement (Debian's binaries, initdb in a temporary directory, the server on a unix socket
// there only, SCRAM password authentication; as root, initdb and the server run as the
// `postgres` system user, since PostgreSQL refuses root).

const { spawn, spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const USER = "keyward_test";
const PASSWORD_ENV = "KEYWARD_TEST_PG_PASSWORD";
const PORT = 5432;

function binDir() {
  if (process.env.KEYWARD_PG_BIN) return process.env.KEYWARD_PG_BIN;
  const base = "/usr/lib/postgresql";
  const versions = fs.existsSync(base)
    ? fs.readdirSync(base).filter((v) => /^\d+$/.test(v) && fs.existsSync(path.join(base, v, "bin", "initdb")))
    : [];
  if (versions.length === 0) {
    throw new Error("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/test.sh or set KEYWARD_PG_BIN");
  }
  versions.sort((a, b) => Number(a) - Number(b));
  return path.join(base, versions[versions.length - 1], "bin");
}

class Cluster {
  static async start() {
    const c = new Cluster();
    c.bin = binDir();
    c.dir = fs.mkdtempSync(path.join(os.tmpdir(), "kwpg-console-"));
    c.password = `pw-${crypto.randomUUID().replace(/-/g, "")}`;
    c.as = {};
    if (process.getuid() === 0) {
      const id = (flag) => Number(spawnSync("id", [flag, "postgres"], { encoding: "utf8" }).stdout.trim());
      c.as = { uid: id("-u"), gid: id("-g") };
      fs.chownSync(c.dir, c.as.uid, c.as.gid);
    }
    const pwfile = path.join(c.dir, "pwfile");
    fs.writeFileSync(pwfile, c.password);
    if (c.as.uid !== undefined) fs.chownSync(pwfile, c.as.uid, c.as.gid);
    const env = { ...process.env, HOME: "/tmp" };
    const init = spawnSync(
      path.join(c.bin, "initdb"),
      ["-D", path.join(c.dir, "data"), "-U", USER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
        "--no-sync", "--no-instructions", `--pwfile=${pwfile}`],
      { env, encoding: "utf8", ...c.as },
    );
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
    const logPath = path.join(c.dir, "server.log");
    const logFd = fs.openSync(logPath, "w");
    if (c.as.uid !== undefined) fs.fchownSync(logFd, c.as.uid, c.as.gid);
    c.proc = spawn(
      path.join(c.bin, "postgres"),
      ["-D", path.join(c.dir, "data"), "-k", c.dir, "-p", String(PORT), "-c", "listen_addresses=",
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
      { env, stdio: ["ignore", "ignore", logFd], ...c.as },
    );
    const deadline = Date.now() + 30000;
    while (c.psql("SELECT 1").status !== 0) {
      if (c.proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`PostgreSQL did not start:\n${fs.readFileSync(logPath, "utf8")}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return c;
  }

  psql(sql) {
    return spawnSync(
      path.join(this.bin, "psql"),
      ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", this.dir, "-p", String(PORT), "-U", USER, "-d", "postgres", "-c", sql],
      { encoding: "utf8", env: { ...process.env, PGPASSWORD: this.password } },
    );
  }

  createDatabase() {
    const name = `kw_${crypto.randomUUID().replace(/-/g, "")}`;
    const r = this.psql(`CREATE DATABASE ${name}`);
    if (r.status !== 0) throw new Error(`CREATE DATABASE failed: ${r.stderr}`);
    return name;
  }

  storeSection(db) {
    return `\n[store]\nkind = "postgres"\nurl = "host=${this.dir} port=${PORT} user=${USER} dbname=${db}"\npassword_env = "${PASSWORD_ENV}"\n`;
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((resolve) => this.proc.on("exit", resolve));
      this.proc.kill("SIGQUIT");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Cluster, PASSWORD_ENV };
