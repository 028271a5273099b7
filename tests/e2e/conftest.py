"""Real-cluster tests: opt-in, and real when a cluster is reachable.

They run against the cluster whose kubeconfig ``DASHI_E2E_KUBECONFIG`` names
(``tests/e2e/hostcluster/up.sh`` starts one on this machine and prints the path),
drive the tasks exactly as a user types them, and skip with the reason when
no cluster answers. One cluster per session; the tests of a module share
the rollout state and run in file order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.availability import unavailable

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class E2ECluster:
    kubeconfig: str
    context: str
    env: dict
    state_dir: Path
    # The enforcer the cluster runs (tests/e2e/hostcluster/up.sh LANE); how a
    # denied packet looks depends on it.
    lane: str = "cilium"

    @property
    def denied_kinds(self) -> set[str]:
        """The probe kinds a denied packet can show. Cilium drops: timeout.
        k3s's kube-router REJECTs with icmp-port-unreachable, but the kernel
        rate-limits those ICMP errors per destination (net.ipv4.icmp_ratelimit
        1000 ms, a burst of 6), so past that a denied probe times out too.
        Measured on the kube-router lane: 8 `agnhost connect` in a row from
        one pod to a denied port gave 6 refusals, then a timeout."""
        return {"timeout", "refused"} if self.lane == "kube-router" else {"timeout"}

    def inv(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        # Shown by pytest on failure (and with -s): the user's view of the run.
        print(f"$ inv {' '.join(args)}  -> exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def api(self):
        from kubernetes import client, config

        return client.ApiClient(config.new_client_from_config(config_file=self.kubeconfig,
                                                              context=self.context).configuration)


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory) -> E2ECluster:
    kubeconfig = os.environ.get("DASHI_E2E_KUBECONFIG")
    if not kubeconfig:
        unavailable("e2e", "no real cluster: set DASHI_E2E_KUBECONFIG (tests/e2e/hostcluster/up.sh starts one and "
                           "prints it)")
    if not Path(kubeconfig).is_file():
        unavailable("e2e", f"no real cluster: DASHI_E2E_KUBECONFIG={kubeconfig} does not exist")
    from kubernetes import client, config

    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
        api = config.new_client_from_config(config_file=kubeconfig)
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as e:  # any failure to reach it means: no cluster for these tests
        unavailable("e2e", f"no real cluster: {kubeconfig} does not answer ({type(e).__name__}: {e})")
    state = tmp_path_factory.mktemp("dashi-state")
    env = {**os.environ, "KUBECONFIG": kubeconfig, "DASHI_STATE_DIR": str(state), "COLUMNS": "160"}
    return E2ECluster(kubeconfig, current["name"], env, state, lane=os.environ.get("DASHI_E2E_LANE", "cilium"))


@pytest.fixture
def say(request):
    """Print past pytest's capture: what a test measured, shown as it runs."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def out(text: str) -> None:
        with capman.global_and_fixture_disabled():
            print(text, flush=True)

    return out
