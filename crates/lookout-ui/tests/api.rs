//! The Grafana HTTP API subset over the router: login and forced password change, sessions,
//! roles, basic auth, API tokens, dashboards (save/get/search/delete, versions, provisioned
//! read-only), folders, data sources, persistence across restarts.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt;
use lookout_ui::{UiConfig, UiState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Resp {
    status: StatusCode,
    cookie: Option<String>,
    body: Value,
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        if a.starts_with("lookout_session=") {
            req = req.header(header::COOKIE, a);
        } else {
            req = req.header(header::AUTHORIZATION, a);
        }
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        cookie,
        body,
    }
}

fn basic(u: &str, p: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    )
}

fn session(r: &Resp) -> String {
    let c = r.cookie.as_ref().expect("a session cookie");
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
    c.split(';').next().unwrap().to_string()
}

fn provisioning(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("dashboards/json")).unwrap();
    std::fs::write(
        dir.join("dashboards/dashboards.yml"),
        "apiVersion: 1\nproviders:\n  - name: wealist\n    folder: weAlist\n    type: file\n    options:\n      path: /etc/grafana/provisioning/dashboards/json\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("dashboards/json/infra.json"),
        r#"{"uid":"infra","title":"Infra <b>","tags":["ops"],"panels":[{"type":"stat","title":"up","gridPos":{"x":0,"y":0,"w":6,"h":4},"targets":[{"expr":"up"}]}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("dashboards/json/broken.json"), "{ nope").unwrap();
}

fn config(data: &std::path::Path, prov: Option<&std::path::Path>) -> UiConfig {
    UiConfig {
        data_dir: data.to_path_buf(),
        provisioning_dir: prov.map(|p| p.to_path_buf()),
        ..UiConfig::default()
    }
}

#[tokio::test]
async fn login_forces_password_change_and_sessions_work() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(Arc::new(UiState::open(config(dir.path(), None)).unwrap()));

    let r = call(&app, "GET", "/api/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["database"], "ok");
    assert_eq!(
        call(&app, "GET", "/api/search", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let bad = call(
        &app,
        "POST",
        "/login",
        None,
        Some(json!({"user": "admin", "password": "nope"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.cookie.is_none());

    let r = call(
        &app,
        "POST",
        "/login",
        None,
        Some(json!({"user": "admin", "password": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["mustChangePassword"], true);
    let s = session(&r);
    // Everything but the user and password endpoints is closed until the password changes.
    let blocked = call(&app, "GET", "/api/search", Some(&s), None).await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert_eq!(blocked.body["message"], "password change required");
    assert_eq!(
        call(&app, "GET", "/api/user", Some(&s), None).await.body["mustChangePassword"],
        true
    );

    let same = json!({"oldPassword": "admin", "newPassword": "admin", "confirmNew": "admin"});
    assert_eq!(
        call(&app, "PUT", "/api/user/password", Some(&s), Some(same))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let wrong_old =
        json!({"oldPassword": "x", "newPassword": "n3w-secret", "confirmNew": "n3w-secret"});
    assert_eq!(
        call(&app, "PUT", "/api/user/password", Some(&s), Some(wrong_old))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let ok =
        json!({"oldPassword": "admin", "newPassword": "n3w-secret", "confirmNew": "n3w-secret"});
    assert_eq!(
        call(&app, "PUT", "/api/user/password", Some(&s), Some(ok))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/api/search", Some(&s), None)
            .await
            .status,
        StatusCode::OK
    );
    let me = call(&app, "GET", "/api/user", Some(&s), None).await;
    assert_eq!(me.body["login"], "admin");
    assert_eq!(me.body["isGrafanaAdmin"], true);

    // Old password is gone; the new one works with basic auth too.
    assert_eq!(
        call(
            &app,
            "GET",
            "/api/search",
            Some(&basic("admin", "admin")),
            None
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/api/search",
            Some(&basic("admin", "n3w-secret")),
            None
        )
        .await
        .status,
        StatusCode::OK
    );

    // Logout ends the session.
    let out = call(&app, "POST", "/logout", Some(&s), None).await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(
        call(&app, "GET", "/api/search", Some(&s), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Restart on the same data dir: the changed password persists.
    drop(app);
    let app = router(Arc::new(UiState::open(config(dir.path(), None)).unwrap()));
    let r = call(
        &app,
        "POST",
        "/login",
        None,
        Some(json!({"user": "admin", "password": "n3w-secret"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["mustChangePassword"], false);
}

#[tokio::test]
async fn login_is_throttled() {
    let app = router(Arc::new(UiState::in_memory(UiConfig::default()).unwrap()));
    for _ in 0..5 {
        let r = call(
            &app,
            "POST",
            "/login",
            None,
            Some(json!({"user": "admin", "password": "bad"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while blocked.
    let r = call(
        &app,
        "POST",
        "/login",
        None,
        Some(json!({"user": "admin", "password": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

async fn admin_session(app: &axum::Router) -> String {
    let r = call(
        app,
        "POST",
        "/login",
        None,
        Some(json!({"user": "admin", "password": "admin"})),
    )
    .await;
    let s = session(&r);
    let ok = json!({"oldPassword": "admin", "newPassword": "pw-admin", "confirmNew": "pw-admin"});
    assert_eq!(
        call(app, "PUT", "/api/user/password", Some(&s), Some(ok))
            .await
            .status,
        StatusCode::OK
    );
    s
}

#[tokio::test]
async fn dashboards_folders_tokens_and_roles() {
    let data = tempfile::tempdir().unwrap();
    let prov = tempfile::tempdir().unwrap();
    provisioning(prov.path());
    let state = Arc::new(UiState::open(config(data.path(), Some(prov.path()))).unwrap());
    let errors = state.provisioning_errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].file.ends_with("broken.json"));
    let app = router(state);
    let s = admin_session(&app).await;

    // Provisioned dashboard: listed, readable, not savable, not deletable.
    let list = call(&app, "GET", "/api/search?type=dash-db", Some(&s), None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.body[0]["title"], "Infra <b>");
    assert_eq!(list.body[0]["folderTitle"], "weAlist");
    let d = call(&app, "GET", "/api/dashboards/uid/infra", Some(&s), None).await;
    assert_eq!(d.body["meta"]["provisioned"], true);
    assert_eq!(d.body["meta"]["canSave"], false);
    let mut dash = d.body["dashboard"].clone();
    dash["title"] = json!("changed");
    let r = call(
        &app,
        "POST",
        "/api/dashboards/db",
        Some(&s),
        Some(json!({"dashboard": dash, "overwrite": true})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&app, "DELETE", "/api/dashboards/uid/infra", Some(&s), None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Folders.
    let f = call(
        &app,
        "POST",
        "/api/folders",
        Some(&s),
        Some(json!({"title": "Team", "uid": "team"})),
    )
    .await;
    assert_eq!(f.status, StatusCode::OK, "{:?}", f.body);
    let folders = call(&app, "GET", "/api/folders", Some(&s), None).await;
    let titles: Vec<_> = folders
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap().to_string())
        .collect();
    assert!(titles.contains(&"Team".to_string()) && titles.contains(&"weAlist".to_string()));

    // Create, version conflict, update, search by tag and query, delete.
    let new =
        json!({"dashboard": {"title": "Mine", "tags": ["x"], "panels": []}, "folderUid": "team"});
    let r = call(
        &app,
        "POST",
        "/api/dashboards/db",
        Some(&s),
        Some(new.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "success");
    assert_eq!(r.body["version"], 1);
    let uid = r.body["uid"].as_str().unwrap().to_string();
    assert_eq!(
        call(&app, "POST", "/api/dashboards/db", Some(&s), Some(new))
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    let stale = json!({"dashboard": {"uid": uid, "title": "Mine", "version": 7, "panels": []}, "folderUid": "team"});
    let r = call(&app, "POST", "/api/dashboards/db", Some(&s), Some(stale)).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.body["status"], "version-mismatch");
    let upd = json!({"dashboard": {"uid": uid, "title": "Mine 2", "version": 1, "panels": []}, "folderUid": "team"});
    let r = call(&app, "POST", "/api/dashboards/db", Some(&s), Some(upd)).await;
    assert_eq!(r.body["version"], 2);
    let got = call(
        &app,
        "GET",
        &format!("/api/dashboards/uid/{uid}"),
        Some(&s),
        None,
    )
    .await;
    assert_eq!(got.body["dashboard"]["title"], "Mine 2");
    assert_eq!(got.body["meta"]["folderTitle"], "Team");
    assert_eq!(
        call(&app, "GET", "/api/search?query=mine%202", Some(&s), None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        call(&app, "GET", "/api/search?tag=ops", Some(&s), None)
            .await
            .body[0]["uid"],
        "infra"
    );

    // API tokens: a viewer token reads but cannot write; an editor token writes.
    let t = call(
        &app,
        "POST",
        "/api/auth/keys",
        Some(&s),
        Some(json!({"name": "ci", "role": "Viewer"})),
    )
    .await;
    let viewer = format!("Bearer {}", t.body["key"].as_str().unwrap());
    assert_eq!(
        call(&app, "GET", "/api/search", Some(&viewer), None)
            .await
            .status,
        StatusCode::OK
    );
    let w = json!({"dashboard": {"title": "By token", "panels": []}});
    assert_eq!(
        call(
            &app,
            "POST",
            "/api/dashboards/db",
            Some(&viewer),
            Some(w.clone())
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let t = call(
        &app,
        "POST",
        "/api/auth/keys",
        Some(&s),
        Some(json!({"name": "deploy", "role": "Editor"})),
    )
    .await;
    let editor = format!("Bearer {}", t.body["key"].as_str().unwrap());
    assert_eq!(
        call(&app, "POST", "/api/dashboards/db", Some(&editor), Some(w))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/api/auth/keys", Some(&editor), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "GET", "/api/search", Some("Bearer nope"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let keys = call(&app, "GET", "/api/auth/keys", Some(&s), None).await;
    assert_eq!(keys.body.as_array().unwrap().len(), 2);
    assert!(
        keys.body.to_string().find("glsa_").is_none(),
        "tokens are never listed"
    );

    // A viewer user.
    let u = json!({"login": "pm", "password": "pm-pass", "role": "Viewer"});
    assert_eq!(
        call(&app, "POST", "/api/admin/users", Some(&s), Some(u))
            .await
            .status,
        StatusCode::OK
    );
    let pm = basic("pm", "pm-pass");
    assert_eq!(
        call(
            &app,
            "GET",
            &format!("/api/dashboards/uid/{uid}"),
            Some(&pm),
            None
        )
        .await
        .body["meta"]["canSave"],
        false
    );
    assert_eq!(
        call(
            &app,
            "DELETE",
            &format!("/api/dashboards/uid/{uid}"),
            Some(&pm),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        call(
            &app,
            "DELETE",
            &format!("/api/dashboards/uid/{uid}"),
            Some(&s),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &app,
            "GET",
            &format!("/api/dashboards/uid/{uid}"),
            Some(&s),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Data sources default to the local Prometheus and Loki APIs.
    let ds = call(&app, "GET", "/api/datasources", Some(&s), None).await;
    assert_eq!(ds.body[0]["type"], "prometheus");
    assert_eq!(ds.body[1]["type"], "loki");
    assert_eq!(
        call(&app, "GET", "/api/datasources/uid/loki", Some(&s), None)
            .await
            .body["name"],
        "Loki"
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/api/datasources/name/Prometheus",
            Some(&s),
            None
        )
        .await
        .body["uid"],
        "prometheus"
    );

    // Status lists the broken provisioning file.
    let st = call(&app, "GET", "/api/lookout/status", Some(&s), None).await;
    assert!(
        st.body["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
}

#[tokio::test]
async fn pages_are_served_with_a_strict_policy() {
    let app = router(Arc::new(UiState::in_memory(UiConfig::default()).unwrap()));
    for p in [
        "/",
        "/login",
        "/d/abc/slug",
        "/explore",
        "/alerting",
        "/targets",
        "/status",
    ] {
        let r = app
            .clone()
            .oneshot(Request::get(p).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"));
    }
    let r = app
        .clone()
        .oneshot(Request::get("/public/app.js").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(body.len() > 1000, "the bundle is embedded");
}

#[tokio::test]
async fn service_accounts_tokens_and_frontend_settings() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(UiState::open(config(dir.path(), None)).unwrap());
    let app = router(state.clone());
    let s = admin_session(&app).await;

    // Build info for clients, without credentials (as Grafana).
    let fs = call(&app, "GET", "/api/frontend/settings", None, None).await;
    assert_eq!(fs.status, StatusCode::OK);
    assert!(fs.body["buildInfo"]["version"].is_string());
    assert_eq!(fs.body["defaultDatasource"], "Prometheus");

    let sa = call(
        &app,
        "POST",
        "/api/serviceaccounts",
        Some(&s),
        Some(json!({"name": "ci", "role": "Editor"})),
    )
    .await;
    assert_eq!(sa.status, StatusCode::CREATED);
    assert_eq!(sa.body["login"], "sa-ci");
    let id = sa.body["id"].as_i64().unwrap();
    let dup = call(
        &app,
        "POST",
        "/api/serviceaccounts/",
        Some(&s),
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    let tok = call(
        &app,
        "POST",
        &format!("/api/serviceaccounts/{id}/tokens"),
        Some(&s),
        Some(json!({"name": "deploy"})),
    )
    .await;
    assert_eq!(tok.status, StatusCode::OK);
    let key = tok.body["key"].as_str().unwrap().to_string();
    let tid = tok.body["id"].as_i64().unwrap();
    let bearer = format!("Bearer {key}");
    let me = call(&app, "GET", "/api/user", Some(&bearer), None).await;
    assert_eq!(me.status, StatusCode::OK);
    // Editor role: may save, may not manage service accounts.
    let saved = call(
        &app,
        "POST",
        "/api/dashboards/db",
        Some(&bearer),
        Some(json!({"dashboard": {"uid": "sa-made", "title": "SA made", "panels": []}})),
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.body);
    assert_eq!(
        call(
            &app,
            "GET",
            "/api/serviceaccounts/search",
            Some(&bearer),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    // Search pages; the account shows its token count.
    let page1 = call(
        &app,
        "GET",
        "/api/serviceaccounts/search?query=C&page=1&perpage=10",
        Some(&s),
        None,
    )
    .await;
    assert_eq!(page1.body["totalCount"], 1);
    assert_eq!(page1.body["serviceAccounts"][0]["tokens"], 1);
    let page2 = call(
        &app,
        "GET",
        "/api/serviceaccounts/search?query=c&page=2&perpage=10",
        Some(&s),
        None,
    )
    .await;
    assert_eq!(page2.body["serviceAccounts"], json!([]));
    let toks = call(
        &app,
        "GET",
        &format!("/api/serviceaccounts/{id}/tokens"),
        Some(&s),
        None,
    )
    .await;
    assert_eq!(toks.body[0]["name"], "deploy");

    // Deleting the token revokes it; deleting the account removes the rest.
    let del = call(
        &app,
        "DELETE",
        &format!("/api/serviceaccounts/{id}/tokens/{tid}"),
        Some(&s),
        None,
    )
    .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(
        call(&app, "GET", "/api/user", Some(&bearer), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let tok2 = call(
        &app,
        "POST",
        &format!("/api/serviceaccounts/{id}/tokens"),
        Some(&s),
        Some(json!({"name": "again"})),
    )
    .await;
    let bearer2 = format!("Bearer {}", tok2.body["key"].as_str().unwrap());
    assert_eq!(
        call(
            &app,
            "DELETE",
            &format!("/api/serviceaccounts/{id}"),
            Some(&s),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/api/user", Some(&bearer2), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &app,
            "GET",
            &format!("/api/serviceaccounts/{id}"),
            Some(&s),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}
