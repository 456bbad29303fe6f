"""A throw-away PostgreSQL cluster for the suite (KEYWARD_TEST_STORE=postgres): Debian's
binaries (/usr/lib/postgresql/<version>/bin, or KEYWARD_PG_BIN), initdb in a temporary
directory, the server on a unix socket there only, SCRAM password authentication. As root
(CI), initdb and the server run as the `postgres` system user, since PostgreSQL refuses root.
The same arrangement as the Rust harness (tests/e2e/common/pg.rs)."""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

USER = "keyward_test"
PASSWORD_ENV = "KEYWARD_TEST_PG_PASSWORD"
PORT = 5432


def bin_dir():
    if os.environ.get("KEYWARD_PG_BIN"):
        return Path(os.environ["KEYWARD_PG_BIN"])
    found = sorted(
        (int(Path(p).parent.name), Path(p))
        for p in glob.glob("/usr/lib/postgresql/*/bin")
        if Path(p).parent.name.isdigit() and (Path(p) / "initdb").exists()
    )
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                           "run scripts/test.sh, which installs it, or set KEYWARD_PG_BIN")
    return found[-1][1]


class Cluster:
    def __init__(self):
        self.bin = bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="kwpg-py-"))
        self.password = f"pw-{uuid.uuid4().hex}"
        self.as_user = {}
        if os.getuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid}
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password)
        if self.as_user:
            os.chown(pwfile, self.as_user["user"], self.as_user["group"])
        env = dict(os.environ, HOME="/tmp")
        subprocess.run(
            [self.bin / "initdb", "-D", self.dir / "data", "-U", USER, "--auth=scram-sha-256",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
             f"--pwfile={pwfile}"],
            check=True, capture_output=True, env=env, **self.as_user)
        self.log = open(self.dir / "server.log", "w")
        if self.as_user:
            os.chown(self.dir / "server.log", self.as_user["user"], self.as_user["group"])
        self.proc = subprocess.Popen(
            [self.bin / "postgres", "-D", self.dir / "data", "-k", self.dir, "-p", str(PORT),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=100"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, env=env,
            **self.as_user)
        deadline = time.monotonic() + 30
        while self.psql("SELECT 1").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start:\n"
                                   + (self.dir / "server.log").read_text(errors="replace"))
            time.sleep(0.05)

    def psql(self, sql, db="postgres"):
        return subprocess.run(
            [self.bin / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.dir,
             "-p", str(PORT), "-U", USER, "-d", db, "-c", sql],
            capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=self.password))

    def create_database(self):
        name = f"kw_{uuid.uuid4().hex}"
        res = self.psql(f"CREATE DATABASE {name}")
        if res.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE failed: {res.stderr}")
        return name

    def store_section(self, db):
        """The daemon's [store] table for database `db`."""
        return (f'\n[store]\nkind = "postgres"\nurl = "host={self.dir} port={PORT} '
                f'user={USER} dbname={db}"\npassword_env = "{PASSWORD_ENV}"\n')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
