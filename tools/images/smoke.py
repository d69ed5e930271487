#!/usr/bin/env python3
"""Runs each local image once without containerd: unpacks its layers and starts its entrypoint in a chroot, in new
pid and mount namespaces, as the user a pod would run it as (uid 1000 for Druid, no capabilities), on the host
network with ports moved off the defaults. Prints what it measured as JSON. Needs root.

    .venv/bin/python tools/images/smoke.py [druid versions...]      (default: every version in the fetch cache)

Checks: pause exits 0 on SIGTERM; `java -version` as uid 1000; ZooKeeper answers `srvr` and its AdminServer; MariaDB
initialises a root-owned empty volume and root logs in over TCP with the password; the S3 server creates and lists
its bucket and stores an object; `/druid.sh coordinator` starts a coordinator (Derby, local deep storage, the
ZooKeeper above, DRUID_SET_HOST) whose /status/health answers; a loadList naming a missing extension is tried too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kubedruid.devcluster import images, oci

ZK_PORT, ZK_ADMIN_PORT, MYSQL_PORT, S3_PORT, DRUID_PORT, DERBY_PORT = 22181, 28080, 23306, 29000, 28081, 21527
ROOT_PASSWORD = "smoke-Pa55'word"  # a quote, to exercise the entrypoint's SQL quoting


def host_ip() -> str:
    out = subprocess.run(["ip", "r", "get", "1"], capture_output=True, text=True, check=True).stdout.split()
    return out[out.index("src") + 1]


class Container:
    """An unpacked image run the way a runtime would: its Env, WorkingDir, User and Entrypoint/Cmd."""

    def __init__(self, image: images.LocalImage, work: Path):
        self.image = image
        self.root = work / image.name.replace("/", "_").replace(":", "_")
        shutil.rmtree(self.root, ignore_errors=True)
        started = time.monotonic()
        self.config = oci.unpack(image.archive, self.root).config["config"]
        self.unpack_seconds = round(time.monotonic() - started, 1)
        self.procs: list[subprocess.Popen] = []

    def command(self, args: list[str] | None = None, *, user: str | None = None, env: dict | None = None,
                binds: dict[str, Path] | None = None, entrypoint: list[str] | None = None) -> list[str]:
        argv = (self.config.get("Entrypoint") or []) if entrypoint is None else entrypoint
        argv = argv + (self.config.get("Cmd") or [] if args is None else args)
        variables = dict(v.split("=", 1) for v in self.config.get("Env", []))
        variables.update(env or {})
        user = user or self.config.get("User") or "0:0"
        mounts = ['mount --rbind /dev "$0/dev"'] if (self.root / "dev").is_dir() else []
        for inside, outside in (binds or {}).items():
            mounts.append(f'mount --bind {outside} "$0{inside}"')
        if (self.root / "usr/bin/env").exists():  # env -C: the image's WorkingDir (chroot itself goes to /)
            start = ["/usr/bin/env", "-i", "-C", self.config.get("WorkingDir") or "/",
                     *(f"{k}={v}" for k, v in variables.items())]
        else:  # pause: a lone static binary
            start = []
        script = " && ".join([*mounts, f'exec chroot --userspec={user} "$0" "$@"'])
        proc_mount = [f"--mount-proc={self.root / 'proc'}"] if (self.root / "proc").is_dir() else []
        return ["unshare", "--fork", "--pid", "--mount", *proc_mount, "sh", "-c", script, str(self.root),
                *start, *argv]

    def start(self, args=None, log: Path | None = None, **kw) -> subprocess.Popen:
        out = open(log, "wb") if log else subprocess.DEVNULL
        proc = subprocess.Popen(self.command(args, **kw), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, args, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args, **kw), capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def wait_for(check, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise SystemExit(f"exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if check():
                return round(time.monotonic() - started, 1)
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"not ready within {timeout} s" + (f"; log {log}" if log else ""))


def four_letter(port: int, word: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(word)
        return s.recv(4096)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def main(argv: list[str]) -> int:
    versions = argv or images.druid_versions_available()
    started = time.monotonic()
    built = images.ensure_images(versions)
    report: dict = {"ensure_images_seconds": round(time.monotonic() - started, 1), "images": {}}
    by_name = {i.name: i for i in built}
    for i in built:
        report["images"][i.name] = {"archive_mb": round(i.archive.stat().st_size / 1e6, 1), "key": i.key}
    work = Path(tempfile.mkdtemp(prefix="kd-smoke-"))
    logs = work / "logs"
    logs.mkdir()
    ip = host_ip()
    running: list[Container] = []
    try:
        # pause
        pause = Container(by_name[images.PAUSE_IMAGE], work)
        running.append(pause)
        proc = pause.start()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        report["pause"] = {"alive_after_0.5s": True, "exit_on_sigterm": proc.wait(10)}

        # ZooKeeper, started as root like the pod (the entrypoint drops to 1000)
        zk = Container(by_name[images.zookeeper_image_name()], work)
        running.append(zk)
        data = work / "zk-volume"
        data.mkdir()  # a fresh volume: root-owned
        log = logs / "zookeeper.log"
        proc = zk.start(log=log, binds={"/data": data}, env={
            "ZOO_4LW_COMMANDS_WHITELIST": "ruok,srvr", "ZOO_SERVERS": f"server.1=localhost:22888:23888;{ZK_PORT}",
            "ZOO_CFG_EXTRA": f"admin.serverPort={ZK_ADMIN_PORT}", "JVMFLAGS": "-Xms128m -Xmx128m -XX:+UseSerialGC"})
        ready = wait_for(lambda: b"Mode: standalone" in four_letter(ZK_PORT, b"srvr"), proc, 120, log)
        admin = http_ok(f"http://127.0.0.1:{ZK_ADMIN_PORT}/commands/ruok")
        pids = subprocess.run(["pgrep", "-f", "QuorumPeerMain"], capture_output=True, text=True).stdout.split()
        owner = [line.split()[1] for pid in pids for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                 if line.startswith("Uid:")]
        report["zookeeper"] = {"srvr_after_s": ready, "admin_server": admin, "volume_owner_uid": data.stat().st_uid,
                               "server_uid": owner, "java_version": _java_version(zk)}

        # MariaDB as mysql: root in the pod, an empty root-owned volume
        my = Container(by_name[images.mysql_image_name()], work)
        running.append(my)
        volume = work / "mysql-volume"
        volume.mkdir()
        log = logs / "mysql.log"
        proc = my.start(["mysqld", f"--port={MYSQL_PORT}"], log=log, binds={"/var/lib/mysql": volume},
                        env={"MYSQL_ROOT_PASSWORD": ROOT_PASSWORD, "MYSQL_DATABASE": "druid"})
        ready = wait_for(lambda: socket.create_connection((ip, MYSQL_PORT), timeout=1).close() or True, proc, 180, log)
        query = my.run(["mariadb", f"-h{ip}", f"-P{MYSQL_PORT}", "-uroot", "-N", "-e",
                        "SELECT CURRENT_USER(), plugin FROM mysql.user WHERE user='root' AND host='%';"
                        "SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name='druid'"],
                       env={"MYSQL_PWD": ROOT_PASSWORD}, entrypoint=[])
        wrong = my.run(["mariadb", f"-h{ip}", f"-P{MYSQL_PORT}", "-uroot", "-e", "SELECT 1"],
                       env={"MYSQL_PWD": "wrong"}, entrypoint=[])
        report["mysql"] = {"tcp_after_s": ready, "root_over_tcp": query.stdout.split(), "error": query.stderr.strip(),
                           "wrong_password_refused": wrong.returncode != 0,
                           "password_in_log": ROOT_PASSWORD in log.read_text(errors="replace"),
                           "server": _first_line(my.run(["mariadbd", "--version"], entrypoint=[]).stdout)}

        # S3 server
        s3 = Container(by_name[images.S3_SERVER_IMAGE], work)
        running.append(s3)
        log = logs / "s3.log"
        proc = s3.start(log=log, env={"S3_PORT": str(S3_PORT), "S3_BUCKETS": "druid"})
        ready = wait_for(lambda: b"listening" in log.read_bytes(), proc, 120, log)
        client = s3.run(["python3", "-c", S3_CLIENT.format(endpoint=f"http://{ip}:{S3_PORT}")], entrypoint=[])
        report["s3"] = {"ready_after_s": ready, "client": client.stdout.strip(), "error": client.stderr[-500:]}

        # Druid coordinators, as uid 1000 (the image's user)
        for version in versions:
            report[f"druid {version}"] = druid_checks(by_name[images.druid_image_name(version)], work, logs, ip)
    finally:
        for c in running:
            c.stop()
        for path in work.iterdir():  # unpacked images and volumes; the logs stay
            if path != logs:
                shutil.rmtree(path, ignore_errors=True)
    report["logs"] = str(logs)
    print(json.dumps(report, indent=1))
    return 0


S3_CLIENT = """
import boto3, botocore.config
s3 = boto3.client("s3", endpoint_url="{endpoint}", aws_access_key_id="minio", aws_secret_access_key="minio123",
                  region_name="us-east-1", config=botocore.config.Config(s3={{"addressing_style": "path"}}))
s3.put_object(Bucket="druid", Key="segments/x", Body=b"segment")
print([b["Name"] for b in s3.list_buckets()["Buckets"]], s3.get_object(Bucket="druid", Key="segments/x")["Body"].read())
"""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _java_version(c: Container) -> str:
    out = c.run(["java", "-version"], user="1000:1000", entrypoint=[])
    return _first_line(out.stderr) if out.returncode == 0 else f"failed: {out.stderr[-300:]}"


def druid_checks(image: images.LocalImage, work: Path, logs: Path, ip: str) -> dict:
    druid = Container(image, work)
    result: dict = {"unpack_s": druid.unpack_seconds, "java_version_as_1000": _java_version(druid)}
    config = druid.root / "etc" / "kd-config"
    config.mkdir()
    common = config / "common.runtime.properties"
    common.write_text("\n".join([
        'druid.extensions.loadList=[]', f"druid.zk.service.host=127.0.0.1:{ZK_PORT}", "druid.zk.paths.base=/smoke",
        "druid.metadata.storage.type=derby",
        f"druid.metadata.storage.connector.connectURI=jdbc:derby://localhost:{DERBY_PORT}/var/druid/metadata.db;create=true",
        "druid.metadata.storage.connector.host=localhost", f"druid.metadata.storage.connector.port={DERBY_PORT}",
        "druid.storage.type=local", "druid.storage.storageDirectory=var/druid/segments",
        "druid.indexer.logs.type=file", "druid.indexer.logs.directory=/druid/data/indexing-logs", ""]))
    (config / "coordinators.properties").write_text("\n".join([
        "druid.service=druid/coordinator", f"druid.plaintextPort={DRUID_PORT}",
        "druid.coordinator.startDelay=PT10S", "druid.coordinator.period=PT5S",
        "druid.coordinator.asOverlord.enabled=true", "druid.coordinator.asOverlord.overlordService=druid/overlord",
        "druid.indexer.storage.type=metadata", "druid.indexer.runner.type=remote", ""]))
    env = {"DRUID_CONFIG_COMMON": "/etc/kd-config/common.runtime.properties",
           "DRUID_CONFIG_coordinator": "/etc/kd-config/coordinators.properties", "DRUID_XMX": "256m",
           "DRUID_XMS": "256m"}
    log = logs / f"coordinator-{image.name.rsplit(':', 1)[1]}.log"
    proc = druid.start(["coordinator"], log=log, env=env)
    try:
        result["health_after_s"] = wait_for(lambda: http_ok(f"http://127.0.0.1:{DRUID_PORT}/status/health"), proc,
                                            300, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{DRUID_PORT}/status", timeout=5) as resp:
            result["status_version"] = json.loads(resp.read())["version"]
        with urllib.request.urlopen(f"http://127.0.0.1:{DRUID_PORT}/status/properties", timeout=5) as resp:
            props = json.loads(resp.read())
        result["druid.host"] = props.get("druid.host")
        result["user.name"] = props.get("user.name")
        result["rss_mb"] = _rss_mb(proc)
    finally:
        druid.stop()
        druid.procs.clear()
    # A loadList entry without a directory: what does Druid do?
    missing = images.missing_extensions(image.name.rsplit(":", 1)[1])
    if missing:
        common.write_text(common.read_text().replace(
            "druid.extensions.loadList=[]", f'druid.extensions.loadList={json.dumps(missing[:1])}'))
        log = logs / f"coordinator-{image.name.rsplit(':', 1)[1]}-missing-ext.log"
        proc = druid.start(["coordinator"], log=log, env=env)
        try:
            proc.wait(180)
            text = log.read_text(errors="replace")
            lines = [l for l in text.splitlines() if missing[0] in l and ("Exception" in l or "ERROR" in l)]
            result["missing_extension"] = {"load_list": missing[:1], "exit_code": proc.returncode,
                                           "message": lines[:2]}
        except subprocess.TimeoutExpired:
            result["missing_extension"] = {"load_list": missing[:1], "exit_code": None,
                                           "message": "still running after 180 s"}
        finally:
            druid.stop()
    shutil.rmtree(druid.root, ignore_errors=True)
    return result


def _rss_mb(proc: subprocess.Popen) -> int | None:
    out = subprocess.run(["pgrep", "-s", str(proc.pid), "java"], capture_output=True, text=True).stdout.split()
    for pid in out:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
