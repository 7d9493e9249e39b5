//! The Grafana HTTP API subset (health, login/logout, user, password, search, dashboards by uid,
//! save/import/delete, folders, data sources, API keys, users) and the UI's own status call.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{self, Principal, SESSION_COOKIE, SESSION_TTL};
use crate::db::{Role, now};
use crate::provisioning::slug_uid;
use crate::{Error, UiState};

type S = State<Arc<UiState>>;
type Res<T> = Result<T, Error>;

/// Most bytes a dashboard JSON may have.
const MAX_DASHBOARD_BYTES: usize = 4 << 20;

pub(crate) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/frontend/settings", get(frontend_settings))
        .route("/login", post(login))
        .route("/logout", get(logout).post(logout))
        .route("/api/user", get(user))
        .route("/api/user/password", put(change_password))
        .route("/api/search", get(search))
        .route(
            "/api/dashboards/uid/{uid}",
            get(get_dashboard).delete(delete_dashboard),
        )
        .route("/api/dashboards/db", post(save_dashboard))
        .route("/api/dashboards/db/", post(save_dashboard))
        .route("/api/dashboards/import", post(import_dashboard))
        .route("/api/folders", get(folders).post(create_folder))
        .route("/api/folders/{uid}", get(folder).delete(delete_folder))
        .route("/api/datasources", get(datasources))
        .route("/api/datasources/uid/{uid}", get(datasource_by_uid))
        .route("/api/datasources/name/{name}", get(datasource_by_name))
        .route("/api/datasources/{id}", get(datasource_by_id))
        .route("/api/auth/keys", get(keys).post(create_key))
        .route("/api/auth/keys/{id}", delete(delete_key))
        .route("/api/serviceaccounts", post(create_service_account))
        .route("/api/serviceaccounts/", post(create_service_account))
        .route("/api/serviceaccounts/search", get(search_service_accounts))
        .route(
            "/api/serviceaccounts/{id}",
            get(service_account).delete(delete_service_account),
        )
        .route(
            "/api/serviceaccounts/{id}/tokens",
            get(service_account_tokens).post(create_service_account_token),
        )
        .route(
            "/api/serviceaccounts/{id}/tokens/{token_id}",
            delete(delete_service_account_token),
        )
        .route("/api/users", get(users))
        .route("/api/org/users", get(users))
        .route("/api/admin/users", post(create_user))
        .route("/api/lookout/status", get(status))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_DASHBOARD_BYTES))
}

/// Resolves the caller; `Unauthorized` when anonymous, `Forbidden` while the default password
/// still has to be changed (only `/api/user` and the password change are open then).
fn principal(st: &UiState, h: &HeaderMap) -> Res<Principal> {
    let p = auth::authenticate(&st.db, &st.throttle, h)?
        .ok_or_else(|| Error::Unauthorized("Unauthorized".into()))?;
    if p.must_change_password() {
        return Err(Error::Forbidden("password change required".into()));
    }
    Ok(p)
}

fn editor(st: &UiState, h: &HeaderMap) -> Res<Principal> {
    let p = principal(st, h)?;
    if !p.role.can_edit() {
        return Err(Error::Forbidden(
            "Access denied: editor or admin role required".into(),
        ));
    }
    Ok(p)
}

fn admin(st: &UiState, h: &HeaderMap) -> Res<Principal> {
    let p = principal(st, h)?;
    if p.role != Role::Admin {
        return Err(Error::Forbidden(
            "Access denied: admin role required".into(),
        ));
    }
    Ok(p)
}

async fn health(State(st): S) -> Json<Value> {
    Json(json!({"commit": "lookout", "database": "ok", "version": st.config.version}))
}

/// The part of Grafana's frontend settings clients read: `buildInfo` (grafana-client takes
/// the server version from it) and the data sources by name. Open, as in Grafana.
async fn frontend_settings(State(st): S) -> Json<Value> {
    let p = st.provisioned.read();
    let mut sources = serde_json::Map::new();
    let mut default = Value::Null;
    for d in &p.datasources {
        sources.insert(
            d.name.clone(),
            json!({"id": d.id, "uid": d.uid, "type": d.kind, "name": d.name, "url": d.url, "isDefault": d.is_default}),
        );
        if d.is_default {
            default = json!(d.name);
        }
    }
    Json(json!({
        "appSubUrl": "",
        "defaultDatasource": default,
        "datasources": sources,
        "buildInfo": {
            "version": st.config.version, "commit": "lookout", "env": "production",
            "edition": "Open Source", "hideVersion": false, "hasUpdate": false,
        },
    }))
}

#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

fn session_cookie(token: &str, max_age: i64) -> Res<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .map_err(|e| Error::Internal(e.to_string()))
}

async fn login(State(st): S, Json(b): Json<LoginBody>) -> Res<Response> {
    if st.throttle.blocked(&b.user) {
        return Err(Error::TooManyAttempts);
    }
    let user = st.db.user_by_login(&b.user)?;
    let ok = match &user {
        Some(u) => {
            let (pw, hash) = (b.password.clone(), u.password_hash.clone());
            tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
        }
        None => false,
    };
    let Some(u) = user.filter(|_| ok) else {
        st.throttle.fail(&b.user);
        tracing::info!(user = %b.user, "failed login");
        return Err(Error::Unauthorized("Invalid username or password".into()));
    };
    st.throttle.clear(&b.user);
    let token = auth::new_token("")?;
    st.db
        .create_session(&auth::token_hash(&token), u.id, SESSION_TTL)?;
    let mut r = Json(json!({
        "message": "Logged in",
        "mustChangePassword": u.must_change_password,
    }))
    .into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, SESSION_TTL)?);
    Ok(r)
}

async fn logout(State(st): S, h: HeaderMap) -> Res<Response> {
    if let Some(tok) = auth::cookie(&h, SESSION_COOKIE) {
        st.db.delete_session(&auth::token_hash(tok))?;
    }
    let mut r = (StatusCode::FOUND, [(header::LOCATION, "/login")]).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0)?);
    Ok(r)
}

fn user_json(p: &Principal) -> Value {
    match &p.user {
        Some(u) => json!({
            "id": u.id, "login": u.login, "name": u.name, "email": u.email,
            "orgId": 1, "role": u.role.as_str(), "isGrafanaAdmin": u.role == Role::Admin,
            "isDisabled": false, "mustChangePassword": u.must_change_password,
        }),
        None => json!({
            "id": 0, "login": p.name, "name": p.name, "email": "", "orgId": 1,
            "role": p.role.as_str(), "isGrafanaAdmin": false, "isDisabled": false,
            "mustChangePassword": false, "serviceAccount": true,
        }),
    }
}

async fn user(State(st): S, h: HeaderMap) -> Res<Json<Value>> {
    let p = auth::authenticate(&st.db, &st.throttle, &h)?
        .ok_or_else(|| Error::Unauthorized("Unauthorized".into()))?;
    Ok(Json(user_json(&p)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordBody {
    old_password: String,
    new_password: String,
    #[serde(default)]
    confirm_new: Option<String>,
}

async fn change_password(
    State(st): S,
    h: HeaderMap,
    Json(b): Json<PasswordBody>,
) -> Res<Json<Value>> {
    let p = auth::authenticate(&st.db, &st.throttle, &h)?
        .ok_or_else(|| Error::Unauthorized("Unauthorized".into()))?;
    let u = p
        .user
        .clone()
        .ok_or_else(|| Error::BadRequest("API tokens have no password".into()))?;
    if b.confirm_new
        .as_deref()
        .is_some_and(|c| c != b.new_password)
    {
        return Err(Error::BadRequest("the new passwords do not match".into()));
    }
    if b.new_password.chars().count() < 4 {
        return Err(Error::BadRequest(
            "the new password is too short (at least 4 characters)".into(),
        ));
    }
    if b.new_password == b.old_password {
        return Err(Error::BadRequest(
            "the new password must differ from the old one".into(),
        ));
    }
    let (old, hash, new) = (b.old_password, u.password_hash.clone(), b.new_password);
    let new_hash = tokio::task::spawn_blocking(move || {
        if !auth::verify_password(&old, &hash) {
            return Err(Error::Unauthorized("Invalid old password".into()));
        }
        auth::hash_password(&new)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    st.db.set_password(u.id, &new_hash)?;
    st.db.delete_other_sessions(u.id, p.session.as_deref())?;
    Ok(Json(json!({"message": "User password changed"})))
}

/// Repeated query parameters (`tag=a&tag=b`), percent-decoded.
fn query_params(raw: Option<String>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for kv in raw.unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        m.entry(percent_decode(k))
            .or_default()
            .push(percent_decode(v));
    }
    m
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One dashboard as the API sees it, from the database or provisioning.
struct Dash {
    id: i64,
    uid: String,
    title: String,
    folder_uid: String,
    json: Value,
    version: i64,
    created: i64,
    updated: i64,
    provisioned: Option<(String, bool, bool)>,
}

fn provisioned_id(i: usize) -> i64 {
    1_000_000 + i as i64
}

fn all_dashboards(st: &UiState) -> Res<Vec<Dash>> {
    let saved = st.db.dashboards()?;
    let prov = st.provisioned.read();
    let mut out = Vec::new();
    for (i, p) in prov.dashboards.iter().enumerate() {
        if saved.iter().any(|s| s.uid == p.uid) {
            continue;
        }
        out.push(Dash {
            id: provisioned_id(i),
            uid: p.uid.clone(),
            title: p.title.clone(),
            folder_uid: p.folder_uid.clone(),
            version: p.json.get("version").and_then(Value::as_i64).unwrap_or(1),
            json: p.json.clone(),
            created: 0,
            updated: 0,
            provisioned: Some((
                p.file.display().to_string(),
                p.allow_ui_updates,
                p.disable_deletion,
            )),
        });
    }
    for s in saved {
        let p = prov.dashboards.iter().find(|p| p.uid == s.uid);
        out.push(Dash {
            id: s.id,
            uid: s.uid,
            title: s.title,
            folder_uid: s.folder_uid,
            json: s.json,
            version: s.version,
            created: s.created,
            updated: s.updated,
            provisioned: p.map(|p| {
                (
                    p.file.display().to_string(),
                    p.allow_ui_updates,
                    p.disable_deletion,
                )
            }),
        });
    }
    Ok(out)
}

fn find_dashboard(st: &UiState, uid: &str) -> Res<Option<Dash>> {
    Ok(all_dashboards(st)?.into_iter().find(|d| d.uid == uid))
}

fn slug(title: &str) -> String {
    let s: String = title
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn dash_url(uid: &str, title: &str) -> String {
    format!("/d/{uid}/{}", slug(title))
}

fn folder_title(st: &UiState, uid: &str) -> Res<(i64, String)> {
    if uid.is_empty() {
        return Ok((0, "General".into()));
    }
    Ok(st
        .db
        .folders()?
        .into_iter()
        .find(|f| f.uid == uid)
        .map(|f| (f.id, f.title))
        .unwrap_or((0, "General".into())))
}

fn tags(v: &Value) -> Vec<String> {
    v.get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

async fn search(State(st): S, h: HeaderMap, RawQuery(q): RawQuery) -> Res<Json<Value>> {
    principal(&st, &h)?;
    let q = query_params(q);
    let one = |k: &str| {
        q.get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default()
    };
    let query = one("query").to_lowercase();
    let kind = one("type");
    let want_tags = q.get("tag").cloned().unwrap_or_default();
    let uids = q.get("dashboardUIDs").cloned().unwrap_or_default();
    let folder_uids = q.get("folderUIDs").cloned().unwrap_or_default();
    let limit: usize = one("limit").parse().unwrap_or(1000);
    let folders = st.db.folders()?;
    let mut out = Vec::new();
    if (kind.is_empty() || kind == "dash-folder") && want_tags.is_empty() && uids.is_empty() {
        for f in &folders {
            if f.title.to_lowercase().contains(&query) {
                out.push(json!({
                    "id": f.id, "uid": f.uid, "title": f.title, "uri": format!("db/{}", slug(&f.title)),
                    "url": format!("/dashboards/f/{}/{}", f.uid, slug(&f.title)), "slug": "",
                    "type": "dash-folder", "tags": [], "isStarred": false,
                }));
            }
        }
    }
    if kind.is_empty() || kind == "dash-db" {
        let mut dashes = all_dashboards(&st)?;
        dashes.sort_by_key(|d| d.title.to_lowercase());
        for d in dashes {
            let t = tags(&d.json);
            if !d.title.to_lowercase().contains(&query)
                || !want_tags.iter().all(|w| t.contains(w))
                || (!uids.is_empty() && !uids.contains(&d.uid))
                || (!folder_uids.is_empty() && !folder_uids.contains(&d.folder_uid))
            {
                continue;
            }
            let f = folders.iter().find(|f| f.uid == d.folder_uid);
            let mut v = json!({
                "id": d.id, "uid": d.uid, "title": d.title, "uri": format!("db/{}", slug(&d.title)),
                "url": dash_url(&d.uid, &d.title), "slug": "", "type": "dash-db", "tags": t,
                "isStarred": false, "provisioned": d.provisioned.is_some(),
            });
            if let Some(f) = f {
                v["folderId"] = json!(f.id);
                v["folderUid"] = json!(f.uid);
                v["folderTitle"] = json!(f.title);
                v["folderUrl"] = json!(format!("/dashboards/f/{}/{}", f.uid, slug(&f.title)));
            }
            out.push(v);
        }
    }
    out.truncate(limit);
    Ok(Json(Value::Array(out)))
}

async fn get_dashboard(State(st): S, h: HeaderMap, Path(uid): Path<String>) -> Res<Json<Value>> {
    let p = principal(&st, &h)?;
    let d =
        find_dashboard(&st, &uid)?.ok_or_else(|| Error::NotFound("Dashboard not found".into()))?;
    let (folder_id, folder_title) = folder_title(&st, &d.folder_uid)?;
    let editable = p.role.can_edit() && d.provisioned.as_ref().is_none_or(|(_, allow, _)| *allow);
    let mut json = d.json;
    json["id"] = json!(d.id);
    json["uid"] = json!(d.uid);
    json["version"] = json!(d.version);
    let ts = |t: i64| {
        if t == 0 {
            "0001-01-01T00:00:00Z".to_string()
        } else {
            rfc3339(t)
        }
    };
    Ok(Json(json!({
        "dashboard": json,
        "meta": {
            "type": "db", "canSave": editable, "canEdit": p.role.can_edit(), "canAdmin": p.role == Role::Admin,
            "canStar": false, "canDelete": editable && d.provisioned.is_none(),
            "slug": slug(&d.title), "url": dash_url(&d.uid, &d.title),
            "expires": "0001-01-01T00:00:00Z", "created": ts(d.created), "updated": ts(d.updated),
            "updatedBy": "admin", "createdBy": "admin", "version": d.version, "hasAcl": false,
            "isFolder": false, "folderId": folder_id, "folderUid": d.folder_uid, "folderTitle": folder_title,
            "folderUrl": if d.folder_uid.is_empty() { String::new() } else { format!("/dashboards/f/{}/{}", d.folder_uid, slug(&folder_title)) },
            "provisioned": d.provisioned.is_some(),
            "provisionedExternalId": d.provisioned.as_ref().map(|(f, _, _)| f.rsplit('/').next().unwrap_or("").to_string()).unwrap_or_default(),
        }
    })))
}

/// Seconds since the epoch as RFC 3339 (UTC).
fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveBody {
    dashboard: Value,
    #[serde(default)]
    folder_uid: Option<String>,
    #[serde(default)]
    folder_id: Option<i64>,
    #[serde(default)]
    overwrite: bool,
}

async fn save_dashboard(State(st): S, h: HeaderMap, Json(b): Json<SaveBody>) -> Res<Json<Value>> {
    editor(&st, &h)?;
    save(&st, b)
}

fn save(st: &UiState, b: SaveBody) -> Res<Json<Value>> {
    let mut json = b.dashboard;
    let obj = json
        .as_object_mut()
        .ok_or_else(|| Error::BadRequest("dashboard must be a JSON object".into()))?;
    let title = obj
        .get("title")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::BadRequest("Dashboard title cannot be empty".into()))?
        .to_string();
    if obj.get("panels").is_some_and(|p| !p.is_array()) {
        return Err(Error::BadRequest("\"panels\" must be an array".into()));
    }
    let uid = match obj.get("uid").and_then(Value::as_str) {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => auth::new_token("")?
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(14)
            .collect(),
    };
    if uid.len() > 40
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::BadRequest(
            "uid may hold at most 40 letters, digits, - and _".into(),
        ));
    }
    let folder_uid = match (
        b.folder_uid.filter(|f| !f.is_empty()),
        b.folder_id.filter(|i| *i > 0),
    ) {
        (Some(f), _) => {
            if !st.db.folders()?.iter().any(|x| x.uid == f) {
                return Err(Error::BadRequest(format!("folder {f:?} not found")));
            }
            f
        }
        (None, Some(id)) => st
            .db
            .folders()?
            .into_iter()
            .find(|x| x.id == id)
            .map(|x| x.uid)
            .ok_or_else(|| Error::BadRequest(format!("folder id {id} not found")))?,
        (None, None) => String::new(),
    };
    let existing = find_dashboard(st, &uid)?;
    if let Some(e) = &existing {
        if let Some((_, allow, _)) = &e.provisioned
            && !allow
        {
            return Err(Error::BadRequest(
                "Cannot save provisioned dashboard".into(),
            ));
        }
        let sent = obj.get("version").and_then(Value::as_i64);
        if !b.overwrite && sent.is_some_and(|v| v != e.version) {
            return Err(Error::Precondition(
                "version-mismatch",
                "The dashboard has been changed by someone else".into(),
            ));
        }
    } else if !b.overwrite
        && all_dashboards(st)?
            .iter()
            .any(|d| d.folder_uid == folder_uid && d.title.eq_ignore_ascii_case(&title))
    {
        return Err(Error::Precondition(
            "name-exists",
            "A dashboard with the same name in the folder already exists".into(),
        ));
    }
    if b.overwrite
        && existing.is_none()
        && let Some(old) = st.db.dashboard_by_title(&folder_uid, &title)?
    {
        st.db.delete_dashboard(&old.uid)?;
    }
    let version = existing.as_ref().map(|e| e.version + 1).unwrap_or(1);
    obj.insert("uid".into(), json!(uid));
    obj.insert("version".into(), json!(version));
    obj.remove("id");
    let id = st
        .db
        .upsert_dashboard(&uid, &title, &folder_uid, version, &json)?;
    tracing::info!(%uid, %title, version, "dashboard saved");
    Ok(Json(json!({
        "id": id, "uid": uid, "url": dash_url(&uid, &title), "status": "success",
        "version": version, "slug": slug(&title), "folderUid": folder_uid,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImportBody {
    dashboard: Value,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    folder_uid: Option<String>,
    #[serde(default)]
    folder_id: Option<i64>,
}

async fn import_dashboard(
    State(st): S,
    h: HeaderMap,
    Json(b): Json<ImportBody>,
) -> Res<Json<Value>> {
    editor(&st, &h)?;
    let r = save(
        &st,
        SaveBody {
            dashboard: b.dashboard,
            folder_uid: b.folder_uid,
            folder_id: b.folder_id,
            overwrite: b.overwrite,
        },
    )?;
    let v = r.0;
    Ok(Json(json!({
        "uid": v["uid"], "title": "", "imported": true, "importedUri": format!("db/{}", v["slug"].as_str().unwrap_or("")),
        "importedUrl": v["url"], "dashboardId": v["id"], "folderUid": v["folderUid"], "status": "success",
        "version": v["version"],
    })))
}

async fn delete_dashboard(State(st): S, h: HeaderMap, Path(uid): Path<String>) -> Res<Json<Value>> {
    editor(&st, &h)?;
    let d =
        find_dashboard(&st, &uid)?.ok_or_else(|| Error::NotFound("Dashboard not found".into()))?;
    if d.provisioned.is_some() {
        return Err(Error::BadRequest(
            "provisioned dashboard cannot be deleted; remove its file from the provider's directory".into(),
        ));
    }
    st.db.delete_dashboard(&uid)?;
    Ok(Json(
        json!({"title": d.title, "message": format!("Dashboard {} deleted", d.title), "id": d.id}),
    ))
}

fn folder_json(f: &crate::db::Folder, can_edit: bool) -> Value {
    json!({
        "id": f.id, "uid": f.uid, "title": f.title,
        "url": format!("/dashboards/f/{}/{}", f.uid, slug(&f.title)),
        "hasAcl": false, "canSave": can_edit, "canEdit": can_edit, "canAdmin": can_edit,
        "version": 1,
    })
}

async fn folders(State(st): S, h: HeaderMap) -> Res<Json<Value>> {
    principal(&st, &h)?;
    Ok(Json(Value::Array(
        st.db
            .folders()?
            .iter()
            .map(|f| json!({"id": f.id, "uid": f.uid, "title": f.title}))
            .collect(),
    )))
}

async fn folder(State(st): S, h: HeaderMap, Path(uid): Path<String>) -> Res<Json<Value>> {
    let p = principal(&st, &h)?;
    let f = st
        .db
        .folders()?
        .into_iter()
        .find(|f| f.uid == uid)
        .ok_or_else(|| Error::NotFound("folder not found".into()))?;
    Ok(Json(folder_json(&f, p.role.can_edit())))
}

#[derive(Deserialize)]
struct FolderBody {
    title: String,
    #[serde(default)]
    uid: Option<String>,
}

async fn create_folder(State(st): S, h: HeaderMap, Json(b): Json<FolderBody>) -> Res<Json<Value>> {
    editor(&st, &h)?;
    let title = b.title.trim();
    if title.is_empty() {
        return Err(Error::BadRequest("folder title cannot be empty".into()));
    }
    if st.db.folders()?.iter().any(|f| f.title == title) {
        return Err(Error::Conflict(
            "a folder with that name already exists".into(),
        ));
    }
    let uid = b
        .uid
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| slug_uid(title));
    let f = st.db.ensure_folder(&uid, title)?;
    Ok(Json(folder_json(&f, true)))
}

async fn delete_folder(State(st): S, h: HeaderMap, Path(uid): Path<String>) -> Res<Json<Value>> {
    admin(&st, &h)?;
    if st
        .provisioned
        .read()
        .dashboards
        .iter()
        .any(|d| d.folder_uid == uid)
    {
        return Err(Error::BadRequest(
            "the folder holds provisioned dashboards".into(),
        ));
    }
    if !st.db.delete_folder(&uid)? {
        return Err(Error::NotFound("folder not found".into()));
    }
    Ok(Json(json!({"message": "Folder deleted"})))
}

async fn datasources(State(st): S, h: HeaderMap) -> Res<Json<Value>> {
    principal(&st, &h)?;
    let ds = st.provisioned.read().datasources.clone();
    Ok(Json(
        serde_json::to_value(ds).map_err(|e| Error::Internal(e.to_string()))?,
    ))
}

fn one_datasource(st: &UiState, f: impl Fn(&crate::Datasource) -> bool) -> Res<Json<Value>> {
    let ds = st
        .provisioned
        .read()
        .datasources
        .iter()
        .find(|d| f(d))
        .cloned();
    let d = ds.ok_or_else(|| Error::NotFound("Data source not found".into()))?;
    Ok(Json(
        serde_json::to_value(d).map_err(|e| Error::Internal(e.to_string()))?,
    ))
}

async fn datasource_by_uid(
    State(st): S,
    h: HeaderMap,
    Path(uid): Path<String>,
) -> Res<Json<Value>> {
    principal(&st, &h)?;
    one_datasource(&st, |d| d.uid == uid)
}

async fn datasource_by_name(
    State(st): S,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Res<Json<Value>> {
    principal(&st, &h)?;
    one_datasource(&st, |d| d.name == name)
}

async fn datasource_by_id(State(st): S, h: HeaderMap, Path(id): Path<String>) -> Res<Json<Value>> {
    principal(&st, &h)?;
    let id: i64 = id
        .parse()
        .map_err(|_| Error::NotFound("Data source not found".into()))?;
    one_datasource(&st, |d| d.id == id)
}

async fn keys(State(st): S, h: HeaderMap) -> Res<Json<Value>> {
    admin(&st, &h)?;
    Ok(Json(Value::Array(
        st.db
            .tokens()?
            .iter()
            .map(|t| json!({"id": t.id, "name": t.name, "role": t.role.as_str(), "created": rfc3339(t.created)}))
            .collect(),
    )))
}

#[derive(Deserialize)]
struct KeyBody {
    name: String,
    #[serde(default = "viewer")]
    role: String,
}

fn viewer() -> String {
    "Viewer".into()
}

async fn create_key(State(st): S, h: HeaderMap, Json(b): Json<KeyBody>) -> Res<Json<Value>> {
    admin(&st, &h)?;
    let name = b.name.trim();
    if name.is_empty() {
        return Err(Error::BadRequest("token name cannot be empty".into()));
    }
    let role = Role::parse(&b.role)
        .ok_or_else(|| Error::BadRequest(format!("unknown role {:?}", b.role)))?;
    let token = auth::new_token("glsa_")?;
    let id = st.db.create_token(name, &auth::token_hash(&token), role)?;
    Ok(Json(
        json!({"id": id, "name": name, "key": token, "role": role.as_str()}),
    ))
}

async fn delete_key(State(st): S, h: HeaderMap, Path(id): Path<i64>) -> Res<Json<Value>> {
    admin(&st, &h)?;
    if !st.db.delete_token(id)? {
        return Err(Error::NotFound("API key not found".into()));
    }
    Ok(Json(json!({"message": "API key deleted"})))
}

fn sa_json(sa: &crate::db::ServiceAccount) -> Value {
    json!({
        "id": sa.id, "uid": format!("sa-{}", sa.id), "name": sa.name,
        "login": format!("sa-{}", sa.name), "orgId": 1, "isDisabled": false,
        "role": sa.role.as_str(), "tokens": sa.tokens, "avatarUrl": "",
    })
}

#[derive(Deserialize)]
struct ServiceAccountBody {
    name: String,
    #[serde(default = "viewer")]
    role: String,
}

/// `POST /api/serviceaccounts`: a named role; its tokens authenticate as that role.
async fn create_service_account(
    State(st): S,
    h: HeaderMap,
    Json(b): Json<ServiceAccountBody>,
) -> Res<(StatusCode, Json<Value>)> {
    admin(&st, &h)?;
    let name = b.name.trim();
    if name.is_empty() || name.contains('/') {
        return Err(Error::BadRequest(
            "service account name must be non-empty and without '/'".into(),
        ));
    }
    let role = Role::parse(&b.role)
        .ok_or_else(|| Error::BadRequest(format!("unknown role {:?}", b.role)))?;
    let id = st.db.create_service_account(name, role)?;
    let sa = st
        .db
        .service_account(id)?
        .ok_or_else(|| Error::Internal("service account vanished".into()))?;
    Ok((StatusCode::CREATED, Json(sa_json(&sa))))
}

async fn search_service_accounts(
    State(st): S,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Res<Json<Value>> {
    admin(&st, &h)?;
    let params = query_params(q);
    let one = |k: &str| params.get(k).and_then(|v| v.first()).cloned();
    let query = one("query").unwrap_or_default().to_lowercase();
    let page = one("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let per_page = one("perpage")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1000);
    let all: Vec<Value> = st
        .db
        .service_accounts()?
        .iter()
        .filter(|s| s.name.to_lowercase().contains(&query))
        .map(sa_json)
        .collect();
    let total = all.len();
    let list: Vec<Value> = all
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    Ok(Json(
        json!({"totalCount": total, "serviceAccounts": list, "page": page, "perPage": per_page}),
    ))
}

fn existing_sa(st: &UiState, id: i64) -> Res<crate::db::ServiceAccount> {
    st.db
        .service_account(id)?
        .ok_or_else(|| Error::NotFound("service account not found".into()))
}

async fn service_account(State(st): S, h: HeaderMap, Path(id): Path<i64>) -> Res<Json<Value>> {
    admin(&st, &h)?;
    Ok(Json(sa_json(&existing_sa(&st, id)?)))
}

async fn delete_service_account(
    State(st): S,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Res<Json<Value>> {
    admin(&st, &h)?;
    if !st.db.delete_service_account(id)? {
        return Err(Error::NotFound("service account not found".into()));
    }
    Ok(Json(json!({"message": "Service account deleted"})))
}

async fn service_account_tokens(
    State(st): S,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Res<Json<Value>> {
    admin(&st, &h)?;
    existing_sa(&st, id)?;
    Ok(Json(Value::Array(
        st.db
            .service_account_tokens(id)?
            .iter()
            .map(|t| json!({"id": t.id, "name": t.name, "created": rfc3339(t.created), "expiration": null, "hasExpired": false}))
            .collect(),
    )))
}

#[derive(Deserialize)]
struct SaTokenBody {
    name: String,
}

async fn create_service_account_token(
    State(st): S,
    h: HeaderMap,
    Path(id): Path<i64>,
    Json(b): Json<SaTokenBody>,
) -> Res<Json<Value>> {
    admin(&st, &h)?;
    let sa = existing_sa(&st, id)?;
    let name = b.name.trim();
    if name.is_empty() {
        return Err(Error::BadRequest("token name cannot be empty".into()));
    }
    let token = auth::new_token("glsa_")?;
    let tid = st
        .db
        .create_service_account_token(&sa, name, &auth::token_hash(&token))?;
    Ok(Json(json!({"id": tid, "name": name, "key": token})))
}

async fn delete_service_account_token(
    State(st): S,
    h: HeaderMap,
    Path((id, token_id)): Path<(i64, i64)>,
) -> Res<Json<Value>> {
    admin(&st, &h)?;
    if !st.db.delete_service_account_token(id, token_id)? {
        return Err(Error::NotFound("service account token not found".into()));
    }
    Ok(Json(json!({"message": "Service account token deleted"})))
}

async fn users(State(st): S, h: HeaderMap) -> Res<Json<Value>> {
    admin(&st, &h)?;
    Ok(Json(Value::Array(
        st.db
            .users()?
            .iter()
            .map(|u| json!({"id": u.id, "userId": u.id, "login": u.login, "name": u.name, "email": u.email, "role": u.role.as_str(), "isAdmin": u.role == Role::Admin}))
            .collect(),
    )))
}

#[derive(Deserialize)]
struct UserBody {
    login: String,
    password: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default = "viewer")]
    role: String,
}

async fn create_user(State(st): S, h: HeaderMap, Json(b): Json<UserBody>) -> Res<Json<Value>> {
    admin(&st, &h)?;
    let login = b.login.trim().to_string();
    if login.is_empty() || b.password.chars().count() < 4 {
        return Err(Error::BadRequest(
            "login and a password of at least 4 characters are required".into(),
        ));
    }
    let role = Role::parse(&b.role)
        .ok_or_else(|| Error::BadRequest(format!("unknown role {:?}", b.role)))?;
    let pw = b.password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let name = if b.name.is_empty() {
        login.clone()
    } else {
        b.name
    };
    let id = st
        .db
        .create_user(&login, &name, &b.email, role, &hash, false)?;
    Ok(Json(json!({"id": id, "message": "User created"})))
}

async fn status(State(st): S, h: HeaderMap) -> Res<Json<Value>> {
    principal(&st, &h)?;
    let p = st.provisioned.read();
    Ok(Json(json!({
        "version": st.config.version,
        "time": now(),
        "provisioningDir": st.config.provisioning_dir.as_ref().map(|d| d.display().to_string()),
        "dashboards": p.dashboards.len(),
        "datasources": p.datasources,
        "errors": p.errors,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%ED%95%9C"), "한");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        let q = query_params(Some("tag=a&tag=b&query=x%2Fy".into()));
        assert_eq!(q["tag"], vec!["a", "b"]);
        assert_eq!(q["query"], vec!["x/y"]);
    }

    #[test]
    fn slugs_and_dates() {
        assert_eq!(slug("weAlist 인프라 / Infra"), "wealist-인프라-infra");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
