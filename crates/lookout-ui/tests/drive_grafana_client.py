"""Drives Lookout's Grafana HTTP API with the `grafana-client` package from PyPI, unchanged.

Run by tests/grafana_client.rs: python drive_grafana_client.py BASE_URL NEW_ADMIN_PASSWORD
The default admin/admin password is changed through the client first; then basic auth (health, current user, search, folders, data sources, dashboard
create/get/update/delete), then a service account and its token created through the client,
and the same calls again as that bearer token (with a read-only role check). Prints one line
per step and exits non-zero on the first mismatch.
"""

import sys

from grafana_client import GrafanaApi, TokenAuth
from grafana_client.client import GrafanaClientError

base, password = sys.argv[1], sys.argv[2]


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def common_reads(g, who):
    build = g.health.check()
    check(build.get("version") and build.get("commit"), f"{who}: build info {build}")
    health = g.client.GET("/health")
    check(health.get("database") == "ok", f"{who}: /api/health {health}")
    found = g.search.search_dashboards(type_="dash-db")
    uids = {d["uid"] for d in found}
    want = {"wealist-planner", "wealist-infra", "wealist-developer", "wealist-db", "wealist-logs", "wealist-service"}
    check(want <= uids, f"{who}: search lists the six provisioned dashboards ({len(found)} found)")
    hits = g.search.search_dashboards(query="Infra")
    check(any(d["uid"] == "wealist-infra" for d in hits), f"{who}: search by query")
    infra = g.dashboard.get_dashboard("wealist-infra")
    check(infra["dashboard"]["uid"] == "wealist-infra" and infra["meta"]["provisioned"], f"{who}: get provisioned dashboard by uid")
    folders = g.folder.get_all_folders()
    check(any(f["title"] == "weAlist" for f in folders), f"{who}: folders {[f['title'] for f in folders]}")
    ds = g.datasource.list_datasources()
    kinds = sorted(d["type"] for d in ds)
    check("prometheus" in kinds and "loki" in kinds, f"{who}: data sources {kinds}")
    prom = next(d for d in ds if d["type"] == "prometheus")
    check(g.datasource.get_datasource_by_uid(prom["uid"])["name"] == prom["name"], f"{who}: data source by uid")
    return folders


# ---- basic auth ----
first = GrafanaApi.from_url(base, credential=("admin", "admin"))
check(first.user.get_actual_user()["mustChangePassword"], "basic: default password must be changed")
first.user.change_actual_user_password("admin", password)
g = GrafanaApi.from_url(base, credential=("admin", password))
check(g.version, f"basic: version {g.version}")
me = g.user.get_actual_user()
check(me["login"] == "admin" and me["isGrafanaAdmin"], f"basic: current user {me['login']}")
folders = common_reads(g, "basic")

folder = g.folder.create_folder("client folder", uid="client-folder")
check(folder["uid"] == "client-folder", "basic: create folder")
check(g.folder.get_folder("client-folder")["title"] == "client folder", "basic: get folder")

dash = {
    "dashboard": {
        "uid": "from-grafana-client",
        "title": "From grafana-client <b>",
        "tags": ["client"],
        "panels": [
            {"id": 1, "type": "timeseries", "title": "RPS", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
             "targets": [{"refId": "A", "expr": "sum(rate(http_requests_total[5m]))"}]},
        ],
        "schemaVersion": 39,
    },
    "folderUid": "client-folder",
    "overwrite": False,
    "message": "created by grafana-client",
}
r = g.dashboard.update_dashboard(dash)
check(r["status"] == "success" and r["uid"] == "from-grafana-client" and r["version"] == 1, f"basic: create dashboard {r}")
got = g.dashboard.get_dashboard("from-grafana-client")
check(got["dashboard"]["title"] == "From grafana-client <b>" and got["meta"]["folderUid"] == "client-folder", "basic: get dashboard by uid")
got["dashboard"]["panels"][0]["title"] = "RPS (edited)"
r = g.dashboard.update_dashboard({"dashboard": got["dashboard"], "folderUid": "client-folder", "overwrite": False})
check(r["version"] == 2, f"basic: update dashboard (version {r['version']})")
stale = dict(got["dashboard"], version=1)
try:
    g.dashboard.update_dashboard({"dashboard": stale, "folderUid": "client-folder", "overwrite": False})
    check(False, "basic: stale version rejected")
except GrafanaClientError as e:
    check(e.status_code == 412, f"basic: stale version rejected with {e.status_code}")
check(any(d["uid"] == "from-grafana-client" for d in g.search.search_dashboards(tag="client")), "basic: search by tag")

# ---- a service account and its token ----
sa = g.serviceaccount.create({"name": "ci-bot", "role": "Editor"})
check(sa["name"] == "ci-bot" and sa["role"] == "Editor", f"basic: create service account {sa['id']}")
tok = g.serviceaccount.create_token(sa["id"], {"name": "ci"})
check(tok["key"].startswith("glsa_"), "basic: create service account token")
check(g.serviceaccount.search_one("ci-bot")["tokens"] == 1, "basic: service account search shows one token")
viewer = g.serviceaccount.create({"name": "reader", "role": "Viewer"})
vtok = g.serviceaccount.create_token(viewer["id"], {"name": "ro"})

t = GrafanaApi.from_url(base, credential=TokenAuth(tok["key"]))
common_reads(t, "token")
me = t.user.get_actual_user()
check(me["login"], f"token: current user {me['login']}")
got = t.dashboard.get_dashboard("from-grafana-client")
check(got["dashboard"]["panels"][0]["title"] == "RPS (edited)", "token: get dashboard by uid")
r = t.dashboard.update_dashboard({"dashboard": {"uid": "by-token", "title": "By token", "panels": []}, "overwrite": True})
check(r["uid"] == "by-token", "token: create dashboard")
t.dashboard.delete_dashboard("by-token")
try:
    t.dashboard.get_dashboard("by-token")
    check(False, "token: deleted dashboard is gone")
except GrafanaClientError as e:
    check(e.status_code == 404, "token: deleted dashboard is gone (404)")

ro = GrafanaApi.from_url(base, credential=TokenAuth(vtok["key"]))
try:
    ro.dashboard.update_dashboard({"dashboard": {"uid": "nope", "title": "Nope", "panels": []}})
    check(False, "viewer token cannot save")
except GrafanaClientError as e:
    check(e.status_code == 403, f"viewer token cannot save ({e.status_code})")

# Deleting the account revokes its token.
g.serviceaccount.delete(sa["id"])
try:
    t.user.get_actual_user()
    check(False, "deleted service account's token is refused")
except GrafanaClientError as e:
    check(e.status_code == 401, f"deleted service account's token is refused ({e.status_code})")

# ---- clean up with basic auth ----
g.dashboard.delete_dashboard("from-grafana-client")
check(not any(d["uid"] == "from-grafana-client" for d in g.search.search_dashboards()), "basic: delete dashboard")
g.folder.delete_folder("client-folder")
check(not any(f["uid"] == "client-folder" for f in g.folder.get_all_folders()), "basic: delete folder")
print("ALL OK", flush=True)
