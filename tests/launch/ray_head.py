"""A real Ray head for the launch tests: `ray start --head` with token auth, a private HOME (its own token),
a private temp dir and free ports, the dashboard on loopback. Stopped by killing its own process group, never
by `ray stop` (which would kill every Ray process of this user on the machine).
"""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from opd_ray.runtime.process import free_port

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
PORT_FLAGS = ("port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port",
              "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
              "metrics-export-port")


@dataclass
class RayHead:
    address: str  # the dashboard / job server, http://127.0.0.1:<port>
    env: dict  # RAY_AUTH_MODE=token and the private HOME holding the token
    metrics_port: int  # the head's Prometheus endpoint: http://127.0.0.1:<port>/metrics


def opd_job_args(*overrides) -> list[str]:
    """`python launch/opd_job.py --config configs/lab_cpu.yaml ...` with absolute paths, for a submitted job."""
    return [sys.executable, str(ROOT / "launch" / "opd_job.py"), "--config", str(ROOT / "configs" / "lab_cpu.yaml"),
            *overrides]


def private_home_env(home: Path) -> dict:
    """Token auth with a private token: a private HOME (Ray reads ~/.ray/auth_token), no inherited token.
    DeepSpeed's compiled ops stay in the real home's cache: a fresh one would rebuild them (minutes here)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "HOME": str(home),
           "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR",
                                                  str(Path.home() / ".cache" / "torch_extensions"))}
    env.pop("RAY_AUTH_TOKEN", None)
    return env


@contextmanager
def ray_head(home: Path, extra_env: dict | None = None, num_cpus: int = 2):
    env = {**private_home_env(home), **(extra_env or {}),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # stop at once on SIGTERM, without draining for 30 s
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    ports = {f"--{name}": str(free_port()) for name in PORT_FLAGS}
    temp_dir = Path("/tmp") / f"ray-{os.getpid()}-{ports['--port']}"  # short: socket paths must stay < 108 bytes
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", *[x for kv in ports.items() for x in kv]],
        env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        wait_for_dashboard(address, env, head)
        yield RayHead(address, env, int(ports["--metrics-export-port"]))
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def wait_for_dashboard(address, env, head, timeout_s=120):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited: {head.stdout.read()}")
        probe = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True)
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"Ray dashboard at {address} did not come up")
