"""``make docker-test``: build the CPU image on this machine and use it as a user would. Non-zero on any failure.

Installs docker.io and debootstrap when missing; starts dockerd when none runs; makes the base image with debootstrap
from apt's own mirror (Docker Hub may be unreachable); copies the host's extra CA certificates into docker/certs/;
builds; checks the image refuses to serve open; runs it with demo models and an admin key; waits for its HEALTHCHECK;
loads and predicts over HTTP (against Keras's own outputs on the host); SIGTERM must end it with 0 within the bound;
a second run on the same state volume must remember the client. Removes what it started (containers, the volume,
temp dirs, dockerd if it started it); the base and the built image stay, as caches.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checks import Failure, keras_outputs, use_api  # docker/checks.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = os.environ.get("DOCKER_TEST_BASE", "slotserve-base:bookworm-slim")
IMAGE = os.environ.get("DOCKER_TEST_IMAGE", "slotserve:test-cpu")
SHUTDOWN_TIMEOUT_S = 10  # SLOTSERVE_SHUTDOWN_TIMEOUT_S in the container
STOP_BOUND_S = SHUTDOWN_TIMEOUT_S + 5 + 15  # + the slots' close bound (app.api.app.CLOSE_TIMEOUT_S) + slack
HEALTHY_WITHIN_S = 300
SBIN_PATH = f"{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"


def run(*args: str, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    result = subprocess.run(args, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-2000:] if kwargs["capture_output"] else ""
        raise Failure(f"{' '.join(args[:4])} ... exited {result.returncode}\n{detail}")
    return result


def client() -> str:
    """Debian's own docker client when installed: it matches Debian's daemon (another may come first on PATH)."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run(client(), *args, **kwargs)


def ensure_packages(timings: dict[str, str]) -> None:
    missing = [pkg for pkg, tool in (("docker.io", "dockerd"), ("debootstrap", "debootstrap"))
               if not shutil.which(tool, path=SBIN_PATH)]
    if not missing:
        timings["apt install"] = "docker.io and debootstrap present"
        return
    if os.geteuid() != 0:
        raise Failure(f"{', '.join(missing)} missing, and installing them needs root")
    print(f"docker-test: installing {' '.join(missing)} with apt", flush=True)
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:  # the package must not start a daemon of its own: this test starts (and stops) the one it uses
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    start = time.monotonic()
    try:
        lock = ("-o", "DPkg::Lock::Timeout=600")
        run("apt-get", *lock, "update", "-q", env=env, timeout=900)
        run("apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *missing, env=env, timeout=1800)
    finally:
        if ours:
            policy.unlink()
    timings["apt install"] = f"{time.monotonic() - start:.1f} s ({' '.join(missing)})"


def ensure_daemon(work: Path, timings: dict[str, str]) -> subprocess.Popen | None:
    """None when a daemon already answers; else the dockerd this test started (in its own session)."""
    if docker("info", check=False, timeout=30).returncode == 0:
        timings["dockerd start"] = "already running"
        return None
    log = (work / "dockerd.log").open("w")
    start = time.monotonic()
    daemon = subprocess.Popen([shutil.which("dockerd", path=SBIN_PATH) or "dockerd"], stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    while docker("info", check=False, timeout=30).returncode != 0:
        if daemon.poll() is not None or time.monotonic() - start > 60:
            stop_daemon(daemon)
            raise Failure(f"dockerd did not start:\n{tail(work / 'dockerd.log')}")
        time.sleep(0.2)
    timings["dockerd start"] = f"{time.monotonic() - start:.1f} s"
    return daemon


def stop_daemon(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def apt_mirror() -> str:
    """The mirror apt already uses for bookworm (debootstrap reaches it the same way apt does)."""
    targets = run("apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)", check=False).stdout
    for line in targets.splitlines():
        uri, _, release = line.partition(" ")
        if release.strip() == "bookworm" and uri.startswith(("http://", "https://")):
            return uri
    raise Failure("apt has no bookworm source to debootstrap from")


def ensure_base(work: Path, timings: dict[str, str]) -> None:
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        timings["debootstrap"] = f"cached ({BASE_IMAGE})"
        return
    rootfs, mirror = work / "rootfs", apt_mirror()
    print(f"docker-test: debootstrap --variant=minbase bookworm from {mirror}", flush=True)
    start = time.monotonic()
    run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror, timeout=1800)
    timings["debootstrap"] = f"{time.monotonic() - start:.1f} s"
    slim(rootfs)
    start = time.monotonic()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run([client(), "import", "--change", 'CMD ["bash"]', "-", BASE_IMAGE], stdin=tar.stdout,
                              capture_output=True, text=True, timeout=600)
    tar.stdout.close()
    if tar.wait() != 0 or imported.returncode != 0:
        raise Failure(f"docker import failed: {imported.stderr.strip()}")
    timings["base import"] = f"{time.monotonic() - start:.1f} s"
    shutil.rmtree(rootfs)


# what Debian's official -slim images leave out (debuerreotype's slimify), so this base stands in for bookworm-slim
SLIM_EXCLUDES = ("doc", "groff", "info", "linda", "lintian/overrides", "locale", "man")


def slim(rootfs: Path) -> None:
    """Make a debootstrapped tree like debian:bookworm-slim: no docs, man pages or locales (now or from later
    packages), no apt lists or caches."""
    rules = [f"path-exclude /usr/share/{d}/*" for d in SLIM_EXCLUDES] + ["path-include /usr/share/doc/*/copyright"]
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text("\n".join(rules) + "\n")
    for folder in SLIM_EXCLUDES:
        for path in (rootfs / "usr/share" / folder).glob("*"):
            if folder == "doc" and path.is_dir():
                for item in path.iterdir():
                    if item.name != "copyright":
                        shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
            else:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for pattern in ("var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"):
        for path in rootfs.glob(pattern):
            path.unlink()


def copy_certs() -> int:
    target = ROOT / "docker" / "certs"
    target.mkdir(exist_ok=True)
    certs = sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt"))
    for cert in certs:
        shutil.copyfile(cert, target / cert.name)
    return len(certs)


def build(timings: dict[str, str]) -> None:
    """Build IMAGE; the image it replaces goes (each code change would otherwise leave ~1 GB behind)."""
    previous = docker("image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).stdout.strip()
    start = time.monotonic()
    docker("build", "-f", "docker/Dockerfile", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
           "--build-arg", "VARIANT=cpu", "-t", IMAGE, ".", cwd=ROOT, capture_output=False, timeout=3600,
           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    timings["build"] = f"{time.monotonic() - start:.1f} s"
    if previous and previous != docker("image", "inspect", "-f", "{{.Id}}", IMAGE).stdout.strip():
        docker("rmi", previous, check=False)
    size = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    timings["image size"] = f"{size / 1e6:.0f} MB ({size / 2**20:.0f} MiB), {IMAGE}"


def check_refuses_open() -> None:
    """With no key and no --no-auth, the image must not serve 0.0.0.0: it is never open by default."""
    result = docker("run", "--rm", IMAGE, check=False, timeout=300)
    if result.returncode != 2 or "without authentication" not in result.stderr:
        raise Failure(f"the image without a key should refuse to start (exit 2), got {result.returncode}: "
                      f"{result.stderr.strip()[-500:]}")


def start_container(name: str, key: str, models: Path, volume: str) -> None:
    docker("run", "-d", "--name", name, "--health-interval", "1s", "-p", "127.0.0.1::8000",
           "-v", f"{models}:/models:ro", "-v", f"{volume}:/state", "-e", f"SLOTSERVE_ADMIN_KEY={key}",
           "-e", f"SLOTSERVE_SHUTDOWN_TIMEOUT_S={SHUTDOWN_TIMEOUT_S}", IMAGE)


def wait_healthy(name: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < HEALTHY_WITHIN_S:
        state = json.loads(docker("inspect", "-f", "{{json .State}}", name).stdout)
        if state["Status"] in ("exited", "dead"):
            raise Failure(f"{name} exited {state['ExitCode']} before healthy:\n{logs(name)}")
        if (state.get("Health") or {}).get("Status") == "healthy":
            return time.monotonic() - start
        time.sleep(0.25)
    raise Failure(f"{name} not healthy within {HEALTHY_WITHIN_S} s:\n{logs(name)}")


def stop(name: str) -> float:
    start = time.monotonic()
    docker("stop", "-t", str(STOP_BOUND_S), name, timeout=STOP_BOUND_S + 60)
    elapsed = time.monotonic() - start
    code = int(docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout)
    if code != 0:
        raise Failure(f"{name} exited {code} on SIGTERM (0 expected within {STOP_BOUND_S} s):\n{logs(name)}")
    return elapsed


def logs(name: str) -> str:
    result = docker("logs", "--tail", "40", name, check=False)
    return (result.stdout + result.stderr).strip()


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def demo_models(work: Path) -> Path:
    """Demo models written by the host's slotserve; the folder holding iris.keras is the store to mount."""
    slotserve = ROOT / ".venv" / "bin" / "slotserve"
    run(str(slotserve) if slotserve.exists() else "slotserve", "demo-models", str(work / "models"))
    iris = next((work / "models").rglob("iris.keras"), None)
    if iris is None:
        raise Failure("slotserve demo-models wrote no iris.keras")
    for path in [work / "models", *(work / "models").rglob("*")]:  # readable by the image's user (uid 10001)
        path.chmod(0o755 if path.is_dir() else 0o644)
    return iris


def main() -> int:
    timings: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="slotserve-docker-test-"))
    tag = f"slotserve-test-{os.getpid()}"
    containers: list[str] = []
    daemon, volume = None, False
    try:
        ensure_packages(timings)
        daemon = ensure_daemon(work, timings)
        ensure_base(work, timings)
        timings["CA certificates"] = f"{copy_certs()} copied into docker/certs/"
        build(timings)
        check_refuses_open()
        iris = demo_models(work)
        want, key = keras_outputs(iris), secrets.token_urlsafe(32)
        volume = docker("volume", "create", tag).returncode == 0
        for run_no, remembered in enumerate((False, True), start=1):
            name = f"{tag}-{run_no}"
            containers.append(name)
            start_container(name, key, iris.parent, tag)
            timings[f"run {run_no} to healthy"] = f"{wait_healthy(name):.1f} s"
            host, _, port = docker("port", name, "8000/tcp").stdout.splitlines()[0].rpartition(":")
            use_api(f"http://{host}:{port}", key, want, remembered)
            timings[f"run {run_no} SIGTERM to exit 0"] = f"{stop(name):.1f} s (bound {STOP_BOUND_S} s)"
        print("docker-test: passed")
        return 0
    except (Failure, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
        print(f"docker-test: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for name in containers:
            docker("rm", "-f", name, check=False)
        if volume:
            docker("volume", "rm", "-f", tag, check=False)
        if daemon is not None:
            stop_daemon(daemon)
            timings["dockerd"] = "stopped (this test started it)"
        shutil.rmtree(work, ignore_errors=True)
        for step, figure in timings.items():
            print(f"  {step:<26} {figure}")


if __name__ == "__main__":
    sys.exit(main())
