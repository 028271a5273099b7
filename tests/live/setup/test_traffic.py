"""Stand-ins that carry traffic: which clients dial what, through which
headless Services, and nothing changes without --traffic."""

from cluster.live.setup import standins
from cluster.live.setup.traffic import CONTAINER, SCRIPT, with_traffic
from cluster.policy.profile import load_profile


def containers(objs):
    out = {}
    for o in objs:
        t = o if o["kind"] == "Pod" else (o.get("spec") or {}).get("template")
        if t:
            for c in t["spec"]["containers"]:
                if c["name"] == CONTAINER:
                    out[f"{o['metadata']['namespace']}/{o['metadata']['name']}"] = c
    return out


def test_clients_dial_their_intended_servers_and_the_unlisted_edges():
    p = load_profile("dashi")
    objs = with_traffic(p, p.workload_objects)
    dial = {k: c["command"][5:] for k, c in containers(objs).items()}
    assert dial["dashi-serving/titiler"] == ["dashi-traffic-rustfs.dashi-platform:9000",
                                             "dashi-traffic-stac-fastapi.dashi-catalog:8080"]  # the unlisted edge
    assert dial["dashi-catalog/stac-fastapi"] == ["dashi-traffic-pgstac.dashi-catalog:5432"]
    assert len(dial["dashi-monitoring/prometheus"]) == 7
    assert "dashi-data/prefect-server" not in dial  # a server only
    c = containers(objs)["dashi-data/flow-run"]
    assert c["command"][:5] == ["/bin/sh", "-c", SCRIPT, "dashi-traffic", "2"]
    svc = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"
           and o["metadata"]["name"].startswith("dashi-traffic-")}
    pg = svc["dashi-traffic-pgstac"]
    assert pg["spec"]["clusterIP"] == "None" and pg["spec"]["selector"] == {"app.kubernetes.io/name": "pgstac"}
    assert [p_["port"] for p_ in pg["spec"]["ports"]] == [5432, 9187]
    # The profile's own objects are left as they are.
    assert not containers(p.workload_objects)


def test_only_with_traffic():
    p = load_profile("dashi")
    _, plain = standins.objects(p)
    _, busy = standins.objects(p, traffic=True)
    assert not containers(plain) and len(containers(busy)) == 7
    assert all(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dashi-cluster"
               for o in busy if o["kind"] == "Service")
