//! The SQLite store (`<data-dir>/ui.db`): users, sessions, API tokens, folders and saved dashboards.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::Error;

/// A user's role: viewers read, admins change dashboards, users and tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Editor => "Editor",
            Role::Admin => "Admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s.to_ascii_lowercase().as_str() {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    /// Editors and admins may change dashboards.
    pub fn can_edit(self) -> bool {
        matches!(self, Role::Editor | Role::Admin)
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub password_hash: String,
    pub must_change_password: bool,
}

#[derive(Clone, Debug)]
pub struct SavedDashboard {
    pub id: i64,
    pub uid: String,
    pub title: String,
    pub folder_uid: String,
    pub version: i64,
    pub json: Value,
    pub created: i64,
    pub updated: i64,
}

#[derive(Clone, Debug)]
pub struct Folder {
    pub id: i64,
    pub uid: String,
    pub title: String,
}

/// A Grafana-style service account: a named role whose tokens are API tokens.
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created: i64,
    pub tokens: i64,
}

#[derive(Clone, Debug)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created: i64,
}

pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
  id INTEGER PRIMARY KEY AUTOINCREMENT, login TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
  email TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT NOT NULL,
  must_change INTEGER NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL, created INTEGER NOT NULL,
  expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS service_accounts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
  created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS service_account_tokens (
  token_id INTEGER PRIMARY KEY, sa_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
  id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE, title TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS dashboards (
  id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
  folder_uid TEXT NOT NULL, version INTEGER NOT NULL, json TEXT NOT NULL,
  created INTEGER NOT NULL, updated INTEGER NOT NULL);
";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(4)?;
    Ok(User {
        id: r.get(0)?,
        login: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password_hash: r.get(5)?,
        must_change_password: r.get::<_, i64>(6)? != 0,
    })
}

fn dash_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SavedDashboard> {
    let json: String = r.get(5)?;
    Ok(SavedDashboard {
        id: r.get(0)?,
        uid: r.get(1)?,
        title: r.get(2)?,
        folder_uid: r.get(3)?,
        version: r.get(4)?,
        json: serde_json::from_str(&json).unwrap_or(Value::Null),
        created: r.get(6)?,
        updated: r.get(7)?,
    })
}

const USER_COLS: &str = "id, login, name, email, role, password_hash, must_change";
const DASH_COLS: &str = "id, uid, title, folder_uid, version, json, created, updated";

impl Db {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Db, Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Db, Error> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    pub fn user_count(&self) -> Result<i64, Error> {
        Ok(self
            .conn
            .lock()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    pub fn create_user(
        &self,
        login: &str,
        name: &str,
        email: &str,
        role: Role,
        password_hash: &str,
        must_change: bool,
    ) -> Result<i64, Error> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "INSERT OR IGNORE INTO users (login, name, email, role, password_hash, must_change, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![login, name, email, role.as_str(), password_hash, must_change as i64, now()],
        )?;
        if n == 0 {
            return Err(Error::Conflict(format!("user {login:?} already exists")));
        }
        Ok(conn.last_insert_rowid())
    }

    pub fn user_by_login(&self, login: &str) -> Result<Option<User>, Error> {
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!(
                    "SELECT {USER_COLS} FROM users WHERE login = ?1 OR (email = ?1 AND email != '')"
                ),
                [login],
                user_row,
            )
            .optional()?)
    }

    pub fn user_by_id(&self, id: i64) -> Result<Option<User>, Error> {
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
                [id],
                user_row,
            )
            .optional()?)
    }

    pub fn users(&self) -> Result<Vec<User>, Error> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY id"))?;
        let rows = st.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_password(&self, user_id: i64, hash: &str) -> Result<(), Error> {
        self.conn.lock().execute(
            "UPDATE users SET password_hash = ?1, must_change = 0 WHERE id = ?2",
            params![hash, user_id],
        )?;
        Ok(())
    }

    pub fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        ttl_secs: i64,
    ) -> Result<(), Error> {
        let t = now();
        let conn = self.conn.lock();
        conn.execute("DELETE FROM sessions WHERE expires < ?1", [t])?;
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, created, expires) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, user_id, t, t + ttl_secs],
        )?;
        Ok(())
    }

    pub fn session_user(&self, token_hash: &str) -> Result<Option<User>, Error> {
        let uid: Option<i64> = self
            .conn
            .lock()
            .query_row(
                "SELECT user_id FROM sessions WHERE token_hash = ?1 AND expires >= ?2",
                params![token_hash, now()],
                |r| r.get(0),
            )
            .optional()?;
        match uid {
            Some(id) => self.user_by_id(id),
            None => Ok(None),
        }
    }

    pub fn delete_session(&self, token_hash: &str) -> Result<(), Error> {
        self.conn
            .lock()
            .execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
        Ok(())
    }

    /// Ends every session of a user except `keep` (after a password change).
    pub fn delete_other_sessions(&self, user_id: i64, keep: Option<&str>) -> Result<(), Error> {
        self.conn.lock().execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2",
            params![user_id, keep.unwrap_or("")],
        )?;
        Ok(())
    }

    pub fn create_token(&self, name: &str, token_hash: &str, role: Role) -> Result<i64, Error> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "INSERT OR IGNORE INTO api_tokens (name, token_hash, role, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, token_hash, role.as_str(), now()],
        )?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "a token named {name:?} already exists"
            )));
        }
        Ok(conn.last_insert_rowid())
    }

    pub fn token_role(&self, token_hash: &str) -> Result<Option<(i64, String, Role)>, Error> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, name, role FROM api_tokens WHERE token_hash = ?1",
                [token_hash],
                |r| {
                    let role: String = r.get(2)?;
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        Role::parse(&role).unwrap_or(Role::Viewer),
                    ))
                },
            )
            .optional()?)
    }

    pub fn tokens(&self) -> Result<Vec<ApiToken>, Error> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT id, name, role, created FROM api_tokens ORDER BY id")?;
        let rows = st.query_map([], |r| {
            let role: String = r.get(2)?;
            Ok(ApiToken {
                id: r.get(0)?,
                name: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                created: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn create_service_account(&self, name: &str, role: Role) -> Result<i64, Error> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "INSERT OR IGNORE INTO service_accounts (name, role, created) VALUES (?1, ?2, ?3)",
            params![name, role.as_str(), now()],
        )?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "service account {name:?} already exists"
            )));
        }
        Ok(conn.last_insert_rowid())
    }

    pub fn service_accounts(&self) -> Result<Vec<ServiceAccount>, Error> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT s.id, s.name, s.role, s.created, \
             (SELECT COUNT(*) FROM service_account_tokens t WHERE t.sa_id = s.id) \
             FROM service_accounts s ORDER BY s.name",
        )?;
        let rows = st.query_map([], |r| {
            let role: String = r.get(2)?;
            Ok(ServiceAccount {
                id: r.get(0)?,
                name: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                created: r.get(3)?,
                tokens: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn service_account(&self, id: i64) -> Result<Option<ServiceAccount>, Error> {
        Ok(self.service_accounts()?.into_iter().find(|s| s.id == id))
    }

    /// Deletes the account and its tokens.
    pub fn delete_service_account(&self, id: i64) -> Result<bool, Error> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM api_tokens WHERE id IN (SELECT token_id FROM service_account_tokens WHERE sa_id = ?1)",
            [id],
        )?;
        tx.execute("DELETE FROM service_account_tokens WHERE sa_id = ?1", [id])?;
        let n = tx.execute("DELETE FROM service_accounts WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// A token of service account `sa` (named `<account>/<name>` among the API tokens).
    pub fn create_service_account_token(
        &self,
        sa: &ServiceAccount,
        name: &str,
        token_hash: &str,
    ) -> Result<i64, Error> {
        let id = self.create_token(&format!("{}/{name}", sa.name), token_hash, sa.role)?;
        self.conn.lock().execute(
            "INSERT INTO service_account_tokens (token_id, sa_id) VALUES (?1, ?2)",
            params![id, sa.id],
        )?;
        Ok(id)
    }

    /// The tokens of service account `sa_id`, names without the account prefix.
    pub fn service_account_tokens(&self, sa_id: i64) -> Result<Vec<ApiToken>, Error> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT a.id, a.name, a.role, a.created FROM api_tokens a \
             JOIN service_account_tokens t ON t.token_id = a.id WHERE t.sa_id = ?1 ORDER BY a.id",
        )?;
        let rows = st.query_map([sa_id], |r| {
            let role: String = r.get(2)?;
            let name: String = r.get(1)?;
            Ok(ApiToken {
                id: r.get(0)?,
                name: name
                    .split_once('/')
                    .map_or(name.clone(), |(_, n)| n.to_string()),
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                created: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_service_account_token(&self, sa_id: i64, token_id: i64) -> Result<bool, Error> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM service_account_tokens WHERE sa_id = ?1 AND token_id = ?2",
            [sa_id, token_id],
        )?;
        if n > 0 {
            tx.execute("DELETE FROM api_tokens WHERE id = ?1", [token_id])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn delete_token(&self, id: i64) -> Result<bool, Error> {
        Ok(self
            .conn
            .lock()
            .execute("DELETE FROM api_tokens WHERE id = ?1", [id])?
            > 0)
    }

    pub fn folders(&self) -> Result<Vec<Folder>, Error> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT id, uid, title FROM folders ORDER BY title")?;
        let rows = st.query_map([], |r| {
            Ok(Folder {
                id: r.get(0)?,
                uid: r.get(1)?,
                title: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Returns the folder with this title, creating it (with `uid`) if needed.
    pub fn ensure_folder(&self, uid: &str, title: &str) -> Result<Folder, Error> {
        let conn = self.conn.lock();
        conn.execute(
            "INSERT OR IGNORE INTO folders (uid, title) VALUES (?1, ?2)",
            params![uid, title],
        )?;
        Ok(conn.query_row(
            "SELECT id, uid, title FROM folders WHERE title = ?1",
            [title],
            |r| {
                Ok(Folder {
                    id: r.get(0)?,
                    uid: r.get(1)?,
                    title: r.get(2)?,
                })
            },
        )?)
    }

    pub fn delete_folder(&self, uid: &str) -> Result<bool, Error> {
        let conn = self.conn.lock();
        conn.execute("DELETE FROM dashboards WHERE folder_uid = ?1", [uid])?;
        Ok(conn.execute("DELETE FROM folders WHERE uid = ?1", [uid])? > 0)
    }

    pub fn dashboards(&self) -> Result<Vec<SavedDashboard>, Error> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(&format!(
            "SELECT {DASH_COLS} FROM dashboards ORDER BY title"
        ))?;
        let rows = st.query_map([], dash_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn dashboard(&self, uid: &str) -> Result<Option<SavedDashboard>, Error> {
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!("SELECT {DASH_COLS} FROM dashboards WHERE uid = ?1"),
                [uid],
                dash_row,
            )
            .optional()?)
    }

    pub fn dashboard_by_title(
        &self,
        folder_uid: &str,
        title: &str,
    ) -> Result<Option<SavedDashboard>, Error> {
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!("SELECT {DASH_COLS} FROM dashboards WHERE folder_uid = ?1 AND title = ?2"),
                [folder_uid, title],
                dash_row,
            )
            .optional()?)
    }

    /// Inserts or replaces a dashboard; returns (id, version).
    pub fn upsert_dashboard(
        &self,
        uid: &str,
        title: &str,
        folder_uid: &str,
        version: i64,
        json: &Value,
    ) -> Result<i64, Error> {
        let t = now();
        let conn = self.conn.lock();
        conn.execute(
            "INSERT INTO dashboards (uid, title, folder_uid, version, json, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT(uid) DO UPDATE SET title = excluded.title, folder_uid = excluded.folder_uid,
               version = excluded.version, json = excluded.json, updated = excluded.updated",
            params![uid, title, folder_uid, version, json.to_string(), t],
        )?;
        Ok(
            conn.query_row("SELECT id FROM dashboards WHERE uid = ?1", [uid], |r| {
                r.get(0)
            })?,
        )
    }

    pub fn delete_dashboard(&self, uid: &str) -> Result<bool, Error> {
        Ok(self
            .conn
            .lock()
            .execute("DELETE FROM dashboards WHERE uid = ?1", [uid])?
            > 0)
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
