#!/usr/bin/env python3
"""Tests deploy/kubernetes/pginval-sidecar.yaml and pginval-ha.yaml
without a cluster.

- Both files parse as YAML (PyYAML) into the expected objects, and every
  name in them that refers to another (volumes, ConfigMap and Secret keys,
  port names, the Service, Deployment, PodDisruptionBudget and
  anti-affinity selectors) resolves.
- The settings agree with each other: the metrics port and the probes, the
  conninfo and the pgpass line (and, in the sidecar, the postgres
  container's database, user and password), the grace period and
  shutdown_timeout, the user id and the Dockerfile's USER; the HA file has
  two replicas spread across nodes, one channel for the group.
- The init container's script, run here with its paths mapped into a
  scratch directory, assembles a configuration that "pginval check"
  accepts, with files of the modes libpq and the daemon need.
- End to end, against a real PostgreSQL that demands a password from the
  "app" role and a Redis that demands one too: the SQL scripts the init
  container lays out install cleanly, the daemon started the way the
  pginval container starts it (the image's entrypoint, PGPASSFILE) becomes
  healthy on the probes' paths, and an INSERT into the example table
  arrives on the channel with the keys of the ConfigMap's [table] rule.
- End to end for the HA file: two pods' init scripts and two daemons
  started the way its container starts them, both ready, exactly one
  active; an INSERT arrives once; the active one killed, the other takes
  over and publishes.

Needs python3-yaml, PostgreSQL and redis-server (scripts/install-deps) and
a built ./pginval. Prints "N passed, M failed" last.
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

try:
    import yaml
except ImportError:
    # Another python3 first on PATH may lack Debian's python3-yaml.
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
            and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("FAIL import yaml: install python3-yaml (scripts/install-deps)")
    print("0 passed, 1 failed")
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from runner import eq, run  # noqa: E402
from servers import Postgres, Redis, RespConnection, free_port  # noqa: E402

KUBE = os.path.join(ROOT, "deploy", "kubernetes")
DOCKERFILE = os.path.join(ROOT, "deploy", "Dockerfile")
BIN = os.path.join(ROOT, "pginval")

# name -> (file, the kinds of its objects)
MANIFESTS = {
    "sidecar": ("pginval-sidecar.yaml",
                ["ConfigMap", "Secret", "Service", "StatefulSet"]),
    "ha": ("pginval-ha.yaml",
           ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret"]),
}


class Manifest:
    """The objects of one file, by kind, and the names the tests ask for."""

    def __init__(self, name):
        self.name = name
        self.file, kinds = MANIFESTS[name]
        with open(os.path.join(KUBE, self.file), encoding="utf-8") as f:
            objs = [o for o in yaml.safe_load_all(f) if o is not None]
        self.docs = {}
        for o in objs:
            assert o.get("apiVersion") and o.get("metadata", {}).get("name"), o
            self.docs[o["kind"]] = o
        eq(sorted(o["kind"] for o in objs), kinds, self.file + " objects")

    def workload(self):
        return self.docs.get("StatefulSet") or self.docs["Deployment"]

    def pod(self):
        return self.workload()["spec"]["template"]["spec"]

    def container(self, name):
        for c in self.pod()["containers"] + self.pod().get("initContainers",
                                                           []):
            if c["name"] == name:
                return c
        raise AssertionError("%s: no container %r" % (self.file, name))

    def config_text(self):
        """pginval.conf as the init container assembles it."""
        return (self.docs["ConfigMap"]["data"]["pginval.conf"]
                + self.docs["Secret"]["stringData"]["redis.conf"])

    def init_script(self):
        cmd = self.container("pginval-setup")["command"]
        eq(cmd[:2], ["/bin/sh", "-ec"], "init container runs a shell script")
        return cmd[2]


manifests = {}  # name -> Manifest


def manifest(name):
    """The parsed file, read once: any test runs alone."""
    if name not in manifests:
        manifests[name] = Manifest(name)
    return manifests[name]


def ini(text):
    """{section: {name: value}} of an INI text; repeated sections merge."""
    out, section = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        m = re.match(r"\[(.+)\]$", s)
        if m:
            section = m.group(1).strip()
            out.setdefault(section, {})
            continue
        name, _, value = s.partition("=")
        out[section][name.strip()] = value.strip()
    return out


def conninfo(s):
    return dict(kv.split("=", 1) for kv in s.split())


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def pgpass_line(m):
    """(host, port, database, user, password) of the Secret's pgpass."""
    return tuple(m.docs["Secret"]["stringData"]["pgpass"].strip()
                 .split(":", 4))



def demand_password(pg, user):
    """pg demands a password from user over TCP, as a real server would."""
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        rules = f.read()
    with open(hba, "w") as f:
        f.write("host all %s 127.0.0.1/32 scram-sha-256\n" % user + rules)
    pg.psql("SELECT pg_reload_conf()")

def test_parses():
    for name in MANIFESTS:
        manifests[name] = Manifest(name)


def names_resolve(m):
    spec = m.workload()["spec"]
    labels = spec["template"]["metadata"]["labels"]
    for k, v in spec["selector"]["matchLabels"].items():
        eq(labels.get(k), v, "%s: selector label %s" % (m.file, k))
    if "Service" in m.docs:
        eq(spec["serviceName"], m.docs["Service"]["metadata"]["name"],
           "serviceName")
        for k, v in m.docs["Service"]["spec"]["selector"].items():
            eq(labels.get(k), v, "Service selector label %s" % k)
    if "PodDisruptionBudget" in m.docs:
        sel = m.docs["PodDisruptionBudget"]["spec"]["selector"]
        for k, v in sel["matchLabels"].items():
            eq(labels.get(k), v, "PodDisruptionBudget selector label %s" % k)
    anti = m.pod().get("affinity", {}).get("podAntiAffinity", {})
    for term in anti.get("preferredDuringSchedulingIgnoredDuringExecution",
                         []):
        sel = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        for k, v in sel.items():
            eq(labels.get(k), v, "anti-affinity label %s" % k)

    volumes = {v["name"]: v for v in m.pod()["volumes"]}
    claims = {c["metadata"]["name"]
              for c in spec.get("volumeClaimTemplates", [])}
    for c in m.pod()["containers"] + m.pod()["initContainers"]:
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes or mount["name"] in claims, \
                "%s: %s mounts unknown volume %s" % (m.file, c["name"],
                                                     mount["name"])
    eq(volumes["config"]["configMap"]["name"],
       m.docs["ConfigMap"]["metadata"]["name"], "ConfigMap volume")
    eq(volumes["secrets"]["secret"]["secretName"],
       m.docs["Secret"]["metadata"]["name"], "Secret volume")

    secret_keys = set(m.docs["Secret"]["stringData"])
    for c in m.pod()["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                eq(ref["name"], m.docs["Secret"]["metadata"]["name"],
                   e["name"])
                assert ref["key"] in secret_keys, ref

    # Files the init script reads exist in the ConfigMap and Secret.
    script = m.init_script()
    mounts = {mount["mountPath"]: mount["name"]
              for mount in m.container("pginval-setup")["volumeMounts"]}
    for path in re.findall(r"(/[\w.-]+)/([\w.-]+)", script):
        d, name = path
        if mounts.get(d) == "config":
            assert name in m.docs["ConfigMap"]["data"], \
                "%s: ConfigMap lacks %s" % (m.file, name)
        elif mounts.get(d) == "secrets":
            assert name in secret_keys, "%s: Secret lacks %s" % (m.file, name)

    # Port names used by the Service and the probes exist.
    ports = {}
    for c in m.pod()["containers"]:
        for p in c.get("ports", []):
            ports[p["name"]] = p["containerPort"]
    for p in m.docs.get("Service", {}).get("spec", {}).get("ports", []):
        assert p["targetPort"] in ports, p
    for probe in ("readinessProbe", "livenessProbe"):
        assert m.container("pginval")[probe]["httpGet"]["port"] in ports


def test_names_resolve():
    for m in map(manifest, MANIFESTS):
        names_resolve(m)


def settings_agree(m):
    """What holds in both files."""
    cfg = ini(m.config_text())
    pginval = m.container("pginval")
    metrics_port = {p["name"]: p["containerPort"]
                    for p in pginval["ports"]}["metrics"]
    eq(cfg["metrics"]["listen"], "0.0.0.0:%d" % metrics_port,
       m.file + " [metrics] listen: all addresses, on the container port")
    annotations = m.workload()["spec"]["template"]["metadata"]["annotations"]
    eq(annotations["prometheus.io/port"], str(metrics_port),
       m.file + " Prometheus port")
    # Readiness: the servers' state (and, in a group, 200 on a standby
    # too); liveness: the event loop alone (see the files' comments).
    eq(pginval["readinessProbe"]["httpGet"]["path"], "/healthz", "readiness")
    eq(pginval["livenessProbe"]["httpGet"]["path"], "/metrics", "liveness")

    ci = conninfo(cfg["postgres"]["conninfo"])
    assert "password" not in ci, "the password belongs in the pgpass file"
    eq(pgpass_line(m)[:4], (ci["host"], ci["port"], ci["dbname"], ci["user"]),
       m.file + " pgpass line matches conninfo")

    assert cfg["redis"]["url"].startswith("redis://"), cfg["redis"]
    assert "url" not in ini(m.docs["ConfigMap"]["data"]["pginval.conf"]).get(
        "redis", {}), "the Redis URL (with its password) stays in the Secret"

    grace = m.pod()["terminationGracePeriodSeconds"]
    assert grace > float(cfg["daemon"]["shutdown_timeout"]), grace

    # PGPASSFILE is on the volume the init container writes.
    pgpassfile = env_of(pginval)["PGPASSFILE"]["value"]
    mounts = {mount["mountPath"]: mount["name"]
              for mount in pginval["volumeMounts"]}
    init_mounts = {mount["name"]: mount["mountPath"]
                   for mount in m.container("pginval-setup")["volumeMounts"]}
    d = os.path.dirname(pgpassfile)
    assert d in mounts, "PGPASSFILE %s is on no volume" % pgpassfile
    eq(init_mounts.get(mounts[d]), d, "init container writes the same volume")
    assert "%s/pgpass" % d in m.init_script(), "init script writes PGPASSFILE"
    assert "%s/pginval.conf" % d in m.init_script()

    # The image's user; both pginval containers run as it.
    with open(DOCKERFILE, encoding="utf-8") as f:
        user = re.findall(r"^USER (\d+)", f.read(), re.M)[-1]
    eq(m.container("pginval-setup")["image"], pginval["image"], "same image")
    for c in (pginval, m.container("pginval-setup")):
        sc = c["securityContext"]
        eq(str(sc["runAsUser"]), user, c["name"] + " runAsUser")
        eq(sc["runAsNonRoot"], True, c["name"] + " runAsNonRoot")
        eq(sc["readOnlyRootFilesystem"], True, c["name"] + " read-only root")
        eq(sc["capabilities"]["drop"], ["ALL"], c["name"] + " capabilities")


def test_settings_agree():
    for m in map(manifest, MANIFESTS):
        settings_agree(m)

    # The sidecar: PostgreSQL in the same pod, its role and password.
    m = manifest("sidecar")
    cfg = ini(m.config_text())
    postgres = m.container("postgres")
    ci = conninfo(cfg["postgres"]["conninfo"])
    pg_env = env_of(postgres)
    pg_port = {p["name"]: p["containerPort"] for p in postgres["ports"]}
    eq(ci["host"], "127.0.0.1", "conninfo host: the pod's loopback")
    eq(int(ci["port"]), pg_port["postgres"], "conninfo port")
    eq(ci["dbname"], pg_env["POSTGRES_DB"]["value"], "dbname")
    eq(ci["user"], pg_env["POSTGRES_USER"]["value"], "user")
    eq(pgpass_line(m)[4], m.docs["Secret"]["stringData"]["postgres-password"],
       "pgpass password")

    # HA: two daemons of one group, on different nodes when possible, that
    # reach PostgreSQL through a Service, not a pod's loopback.
    m = manifest("ha")
    cfg = ini(m.config_text())
    spec = m.workload()["spec"]
    eq(spec["replicas"], 2, "replicas")
    eq(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
       "a rollout stops an old pod only after a new one stands by")
    ci = conninfo(cfg["postgres"]["conninfo"])
    assert ci["host"] not in ("127.0.0.1", "localhost", "::1"), ci
    eq(cfg["postgres"]["channel"], cfg["redis"]["channel"], "one channel")
    assert 2 <= float(cfg["daemon"]["takeover_timeout"]) <= 3600, cfg["daemon"]
    terms = m.pod()["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    eq([t["podAffinityTerm"]["topologyKey"] for t in terms],
       ["kubernetes.io/hostname"], "spread across nodes")
    eq(m.docs["PodDisruptionBudget"]["spec"]["maxUnavailable"], 1, "PDB")


class Sandbox:
    """One pod's paths mapped into a scratch directory, and the manifest's
    addresses mapped to the test servers: PostgreSQL's port, a Service's
    host name to 127.0.0.1 by hostaddr (libpq still matches the pgpass
    line by the host name), Redis's address, and the metrics listener to
    127.0.0.1 on a port of this pod's own."""

    def __init__(self, m, pg, redis, metrics_port):
        self.m = m
        self.dir = tempfile.mkdtemp(prefix="pginval-k8s-test-")
        atexit.register(shutil.rmtree, self.dir, True)
        self.paths = {}
        mounts = [mount["mountPath"]
                  for mount in m.container("pginval-setup")["volumeMounts"]]
        for mount in mounts + ["/usr/share/pginval"]:
            self.paths[mount] = os.path.join(self.dir, mount.strip("/"))
            os.makedirs(self.paths[mount])
        self.pg_password = pgpass_line(m)[4]
        for name, text in m.docs["ConfigMap"]["data"].items():
            text = text.replace("port=5432", "port=%d" % pg.port)
            text = re.sub(r"host=(?!127\.0\.0\.1 )(\S+)",
                          r"host=\1 hostaddr=127.0.0.1", text)
            text = text.replace("0.0.0.0:9187", "127.0.0.1:%d" % metrics_port)
            self.write("/config", name, text, 0o444)
        for name, text in m.docs["Secret"]["stringData"].items():
            text = re.sub(r"(?m)^([^:\n]*):5432:", r"\g<1>:%d:" % pg.port,
                          text)
            text = re.sub(r"@[^/@]+/", "@127.0.0.1:%d/" % redis.port, text)
            self.write("/secrets", name, text, 0o444)
        with open(os.path.join(ROOT, "sql", "pginval.sql"), "rb") as src, \
                open(self.path("/usr/share/pginval/pginval.sql"), "wb") as dst:
            dst.write(src.read())

    def write(self, mount, name, text, mode):
        p = os.path.join(self.paths[mount], name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def path(self, pod_path):
        for mount in sorted(self.paths, key=len, reverse=True):
            if pod_path == mount or pod_path.startswith(mount + "/"):
                return self.paths[mount] + pod_path[len(mount):]
        raise AssertionError("%s is outside the sandbox" % pod_path)

    def script(self):
        """The init container's script with its paths and the pginval
        binary mapped here."""
        s = self.m.init_script()
        for mount in sorted(self.paths, key=len, reverse=True):
            s = re.sub(r"(?<![\w/])%s(?=/)" % re.escape(mount),
                       self.paths[mount], s)
        return re.sub(r"(?m)^(\s*)pginval ", r"\g<1>%s " % BIN, s)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def redis_password(m):
    url = ini(m.config_text())["redis"]["url"]
    return re.match(r"redis://[^:@/]*:([^@]*)@", url).group(1)


def test_end_to_end():
    assert os.access(BIN, os.X_OK), "build ./pginval first (make)"
    m = manifest("sidecar")
    with Postgres() as pg, Redis() as redis:
        metrics_port = free_port()
        box = Sandbox(m, pg, redis, metrics_port)
        pg_env = env_of(m.container("postgres"))
        db, user = pg_env["POSTGRES_DB"]["value"], pg_env["POSTGRES_USER"]["value"]

        # What the postgres image does with POSTGRES_*: the role (a
        # superuser, which runs the /docker-entrypoint-initdb.d scripts),
        # with a password it must use over TCP, and its database.
        pg.psql("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'; "
                "CREATE DATABASE %s OWNER %s"
                % (user, box.pg_password, db, user))
        demand_password(pg, user)
        # Redis demands the password in the Secret's URL.
        with RespConnection(redis.host, redis.port) as c:
            c.command("CONFIG", "SET", "requirepass", redis_password(m))

        # The init container.
        proc = subprocess.run(["/bin/sh", "-ec", box.script()],
                              capture_output=True, text=True, timeout=60)
        eq(proc.returncode, 0, "init script:\n" + proc.stdout + proc.stderr)
        assert ": OK (" in proc.stdout, proc.stdout
        conf = box.path("/etc/pginval/pginval.conf")
        pgpass = box.path(env_of(m.container("pginval"))["PGPASSFILE"]
                          ["value"])
        eq(oct(os.stat(conf).st_mode & 0o777), "0o600", "pginval.conf mode")
        eq(oct(os.stat(pgpass).st_mode & 0o777), "0o600",
           "pgpass mode (libpq ignores a group-readable one)")
        initdb = sorted(os.listdir(box.path("/initdb")))
        eq(initdb, ["10-pginval.sql", "20-watch.sql"], "initdb scripts")
        for name in initdb:
            eq(oct(os.stat(os.path.join(box.path("/initdb"), name)).st_mode
                   & 0o777), "0o644", name + " readable by postgres")

        # The postgres image runs the scripts as POSTGRES_USER, in order.
        psql = [os.path.join(pg.bindir, "psql"), "-X", "-q",
                "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                "-p", str(pg.port), "-U", user, "-d", db]
        for name in initdb:
            p = subprocess.run(psql + ["-f", os.path.join(box.path("/initdb"),
                                                          name)],
                               capture_output=True, text=True, timeout=60,
                               env=clean_env(PGPASSFILE=pgpass))
            eq(p.returncode, 0, name + ":\n" + p.stderr)

        # A wrong password file must be refused, or the test proves nothing.
        bad = os.path.join(box.dir, "bad-pgpass")
        with open(bad, "w") as f:
            f.write("127.0.0.1:%d:%s:%s:wrong\n" % (pg.port, db, user))
        os.chmod(bad, 0o600)
        p = subprocess.run(psql + ["-w", "-c", "SELECT 1"], capture_output=True,
                           text=True, env=clean_env(PGPASSFILE=bad))
        assert p.returncode != 0, "PostgreSQL accepted a wrong password"

        # A subscriber, authenticated.
        sub = RespConnection(redis.host, redis.port)
        sub.command("AUTH", redis_password(m))
        channel = ini(m.config_text())["redis"]["channel"]
        sub.send("SUBSCRIBE", channel)
        eq(sub.read_reply(timeout=5)[0], b"subscribe", "subscribed")

        def next_message(timeout=10):
            reply = sub.read_reply(timeout=timeout)
            eq(reply[0], b"message", "a message")
            return json.loads(reply[2])

        # The pginval container: the image's entrypoint, PGPASSFILE.
        with open(DOCKERFILE, encoding="utf-8") as f:
            entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", f.read(),
                                         re.M).group(1))
        argv = [BIN] + [box.path(a) if a.startswith("/etc/") else a
                        for a in entry[1:]]
        log = open(os.path.join(box.dir, "pginval.log"), "w+")
        daemon = subprocess.Popen(argv, stdout=log, stderr=log,
                                  env=clean_env(PGPASSFILE=pgpass))
        try:
            first = next_message()
            eq((first["op"], first["seq"]), ("reset", 1), "start reset")
            base = "http://127.0.0.1:%d" % metrics_port
            probes = m.container("pginval")
            ready = probes["readinessProbe"]["httpGet"]["path"]
            live = probes["livenessProbe"]["httpGet"]["path"]
            deadline = time.monotonic() + 15
            while http_get(base + ready)[0] != 200:
                assert time.monotonic() < deadline, "never ready: %r" % (
                    http_get(base + ready),)
                time.sleep(0.1)
            status, body = http_get(base + live)
            eq(status, 200, "liveness path")
            assert "pginval_up" in body, body[:200]

            with_email = "a@example.org"
            p = subprocess.run(psql + ["-c", "INSERT INTO public.users (email) "
                                       "VALUES ('%s')" % with_email],
                               capture_output=True, text=True,
                               env=clean_env(PGPASSFILE=pgpass))
            eq(p.returncode, 0, p.stderr)
            m = next_message()
            eq((m["op"], m["table"], m["seq"]), ("insert", "public.users", 2),
               "the insert")
            eq(sorted(m["keys"]), ["user:1", "user:email:" + with_email],
               "keys from the ConfigMap's [table public.users] rule")
        except BaseException:
            log.seek(0)
            print("--- pginval log ---\n" + log.read())
            raise
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
            sub.close()
        eq(code, 0, "exit status after SIGTERM")


def metric(text, name):
    """The value of an unlabelled sample in a /metrics text, or None."""
    found = re.search(r"(?m)^%s (\S+)$" % re.escape(name), text)
    return float(found.group(1)) if found else None


def entrypoint(box):
    """The image's entrypoint with its paths mapped into the sandbox."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", f.read(),
                                     re.M).group(1))
    return [BIN] + [box.path(a) if a.startswith("/etc/") else a
                    for a in entry[1:]]


def test_ha_end_to_end():
    assert os.access(BIN, os.X_OK), "build ./pginval first (make)"
    m = manifest("ha")
    cfg = ini(m.config_text())
    ci = conninfo(cfg["postgres"]["conninfo"])
    db, user, channel = ci["dbname"], ci["user"], cfg["redis"]["channel"]
    with Postgres() as pg, Redis() as redis:
        # What the file's header asks of the migrations: the SQL API, the
        # daemon's role with a password and its one grant, a watched table.
        pg.psql("CREATE ROLE %s LOGIN PASSWORD '%s'; CREATE DATABASE %s"
                % (user, pgpass_line(m)[4], db))
        pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"), db=db)
        pg.psql("GRANT SELECT ON pginval.secret TO %s; "
                "CREATE TABLE public.users (id bigint GENERATED ALWAYS AS "
                "IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE); "
                "SELECT pginval.watch('public.users', ARRAY['id', 'email'])"
                % user, db=db)
        demand_password(pg, user)
        with RespConnection(redis.host, redis.port) as c:
            c.command("CONFIG", "SET", "requirepass", redis_password(m))

        # Two pods, each with its own init container and volume. In the
        # cluster both listen on 0.0.0.0:9187, each at its pod's address;
        # on one machine each needs a port of its own, which is the only
        # difference between their assembled configurations.
        pods = []
        for _ in range(2):
            port = free_port()
            while any(port == p["port"] for p in pods):
                port = free_port()
            box = Sandbox(m, pg, redis, port)
            proc = subprocess.run(["/bin/sh", "-ec", box.script()],
                                  capture_output=True, text=True, timeout=60)
            eq(proc.returncode, 0, "init script:\n" + proc.stdout
               + proc.stderr)
            assert ": OK (" in proc.stdout, proc.stdout
            pgpass = box.path(env_of(m.container("pginval"))["PGPASSFILE"]
                              ["value"])
            eq(oct(os.stat(pgpass).st_mode & 0o777), "0o600", "pgpass mode")
            pods.append({"box": box, "port": port, "pgpass": pgpass,
                         "base": "http://127.0.0.1:%d" % port})

        sub = RespConnection(redis.host, redis.port)
        sub.command("AUTH", redis_password(m))
        sub.send("SUBSCRIBE", channel)
        eq(sub.read_reply(timeout=5)[0], b"subscribe", "subscribed")

        def messages_until(key, limit=20):
            """The messages up to the first with key, which must come."""
            out = []
            while not out or key not in out[-1].get("keys", []):
                assert len(out) < limit, "no %s in %r" % (key, out)
                reply = sub.read_reply(timeout=15)
                eq(reply[0], b"message", "a message")
                out.append(json.loads(reply[2]))
            return out

        def insert(email):
            pg.psql("INSERT INTO public.users (email) VALUES ('%s')" % email,
                    db=db)

        ready = m.container("pginval")["readinessProbe"]["httpGet"]["path"]
        standby_re = (r'standby: the lock of channel "%s" is held by '
                      r'backend (\d+)' % re.escape(channel))

        def role(p):
            """"active", "standby" (ready, naming the lock's holder) or
            what the readiness path answers otherwise."""
            status, body = http_get(p["base"] + ready)
            if status == 200 and body.startswith("active; "):
                return "active"
            held = re.match(standby_re, body or "")
            if status == 200 and held:
                p["holder"] = int(held.group(1))
                return "standby"
            return (status, body)

        def active_gauge(p):
            status, body = http_get(p["base"] + "/metrics")
            eq(status, 200, "/metrics")
            return metric(body, "pginval_active")

        for p in pods:
            p["log"] = open(os.path.join(p["box"].dir, "pginval.log"), "w+")
            p["proc"] = subprocess.Popen(
                entrypoint(p["box"]), stdout=p["log"], stderr=p["log"],
                env=clean_env(PGPASSFILE=p["pgpass"]))
        try:
            # Both ready: one active, the other standing by.
            deadline = time.monotonic() + 30
            while True:
                roles = [role(p) for p in pods]
                if sorted(map(str, roles)) == ["active", "standby"]:
                    break
                assert time.monotonic() < deadline, \
                    "never one active and one standby: %r" % (roles,)
                time.sleep(0.1)
            active = pods[roles.index("active")]
            standby = pods[roles.index("standby")]
            eq((active_gauge(active), active_gauge(standby)), (1.0, 0.0),
               "pginval_active of the active daemon and of the standby")
            # The backend the standby names holds the group's lock, as the
            # daemon's role.
            holder = pg.psql(
                "SELECT l.pid || ' ' || a.usename FROM pg_locks l "
                "JOIN pg_stat_activity a USING (pid) WHERE l.granted "
                "AND l.locktype = 'advisory' AND l.classid = 1885825398 "
                "AND l.database = (SELECT oid FROM pg_database "
                "WHERE datname = '%s')" % db).split()
            eq(holder, [str(standby["holder"]), user], "the lock's holder")

            # An INSERT arrives once: the standby publishes nothing.
            insert("a@example.org")
            insert("b@example.org")
            got = messages_until("user:2")
            first_epoch = got[-1]["epoch"]
            eq([(x["op"], sorted(x["keys"])) for x in got
                if x["op"] != "reset"],
               [("insert", ["user:1", "user:email:a@example.org"]),
                ("insert", ["user:2", "user:email:b@example.org"])],
               "each insert once")

            # The active daemon dies; the standby takes over.
            active["proc"].kill()
            active["proc"].wait(30)
            deadline = time.monotonic() + 30
            while role(standby) != "active" or active_gauge(standby) != 1:
                assert time.monotonic() < deadline, \
                    "no takeover: %r" % (role(standby),)
                time.sleep(0.1)
            insert("c@example.org")
            got = messages_until("user:3")
            eq(got[-1]["op"], "insert", "the insert after the takeover")
            resets = [x for x in got if x["op"] == "reset"]
            assert resets, "the new active daemon starts with a reset: %r" \
                % got
            assert resets[0]["epoch"] != first_epoch, \
                "the new active daemon opens an epoch of its own"
        except BaseException:
            for p in pods:
                p["log"].seek(0)
                print("--- pginval log, port %d ---\n%s"
                      % (p["port"], p["log"].read()))
            raise
        finally:
            for p in pods:
                if p["proc"].poll() is None:
                    p["proc"].send_signal(signal.SIGTERM)
                p["code"] = p["proc"].wait(30)
            sub.close()
        eq(standby["code"], 0, "exit status after SIGTERM")


if __name__ == "__main__":
    sys.exit(run(globals(), sys.argv[1:]))
