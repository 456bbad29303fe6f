//! Changing a daemon's rows by hand, whichever store it uses: the attack tests write to the
//! database directly. SQL is written once, in SQLite's dialect with numbered `?N`
//! parameters; for PostgreSQL `?N` becomes `$N` and the empty blob `x''` becomes `'\x'`.
//! PostgreSQL statements run on a thread of their own (the synchronous client must not run
//! on the test's async runtime).
#![allow(dead_code)]

use super::pg;
use super::TestStore;
use std::path::Path;

/// One SQL value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

impl Val {
    #[track_caller]
    pub fn int(&self) -> i64 {
        match self {
            Val::Int(i) => *i,
            Val::Bool(b) => *b as i64,
            other => panic!("not an integer: {other:?}"),
        }
    }

    #[track_caller]
    pub fn text(&self) -> String {
        match self {
            Val::Text(t) => t.clone(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[track_caller]
    pub fn blob(&self) -> Vec<u8> {
        match self {
            Val::Blob(b) => b.clone(),
            other => panic!("not a blob: {other:?}"),
        }
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.into())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::Blob(v)
    }
}
impl From<&[u8]> for Val {
    fn from(v: &[u8]) -> Self {
        Val::Blob(v.to_vec())
    }
}
impl From<&Vec<u8>> for Val {
    fn from(v: &Vec<u8>) -> Self {
        Val::Blob(v.clone())
    }
}

/// Parameters: `vals![a, b, c]`.
#[macro_export]
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::common::db::Val::from($v)),*] };
}

pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres { url: String, password: String },
}

impl Db {
    pub fn open(store: &TestStore, data_dir: &Path) -> Db {
        match store {
            TestStore::Sqlite => {
                Db::Sqlite(rusqlite::Connection::open(data_dir.join("keyward.db")).unwrap())
            }
            TestStore::Postgres(name) => {
                let c = pg::cluster();
                Db::Postgres {
                    url: c.url(name),
                    password: c.password.clone(),
                }
            }
            TestStore::External => panic!("a test's own database server: query it there"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres { .. })
    }

    /// Runs one statement; returns the number of rows it changed.
    #[track_caller]
    pub fn execute(&self, sql: &str, params: &[Val]) -> u64 {
        match self {
            Db::Sqlite(c) => c
                .execute(sql, rusqlite::params_from_iter(params.iter().map(lite)))
                .unwrap_or_else(|e| panic!("{sql}: {e}")) as u64,
            Db::Postgres { .. } => {
                let sql = to_postgres(sql);
                let params = params.to_vec();
                self.on_pg(move |c| {
                    let p = pg_params(&params);
                    c.execute(&sql, &p).unwrap_or_else(|e| panic!("{sql}: {e}"))
                })
            }
        }
    }

    /// Runs several statements in one transaction.
    #[track_caller]
    pub fn batch(&self, sql: &str) {
        match self {
            Db::Sqlite(c) => c
                .execute_batch(&format!("BEGIN; {sql} COMMIT;"))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Db::Postgres { .. } => {
                let sql = to_postgres(sql);
                self.on_pg(move |c| {
                    c.batch_execute(&format!("BEGIN; {sql} COMMIT;"))
                        .unwrap_or_else(|e| panic!("{sql}: {e}"))
                })
            }
        }
    }

    /// Every row of a query, each as its column values.
    #[track_caller]
    pub fn query(&self, sql: &str, params: &[Val]) -> Vec<Vec<Val>> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = st.column_count();
                st.query_map(rusqlite::params_from_iter(params.iter().map(lite)), |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Val::Null,
                                rusqlite::types::ValueRef::Integer(i) => Val::Int(i),
                                rusqlite::types::ValueRef::Real(f) => Val::Int(f as i64),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Val::Text(String::from_utf8_lossy(t).into())
                                }
                                rusqlite::types::ValueRef::Blob(b) => Val::Blob(b.to_vec()),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
            }
            Db::Postgres { .. } => {
                let sql = to_postgres(sql);
                let params = params.to_vec();
                self.on_pg(move |c| {
                    let p = pg_params(&params);
                    let rows = c.query(&sql, &p).unwrap_or_else(|e| panic!("{sql}: {e}"));
                    rows.iter().map(pg_row).collect()
                })
            }
        }
    }

    /// The first row of a query.
    #[track_caller]
    pub fn row(&self, sql: &str, params: &[Val]) -> Vec<Val> {
        self.query(sql, params)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no row: {sql}"))
    }

    fn on_pg<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
    ) -> T {
        let Db::Postgres { url, password } = self else {
            unreachable!()
        };
        let config = format!("{url} password={password}");
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&config, postgres::NoTls).unwrap();
            f(&mut c)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

fn lite(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        Val::Null => Value::Null,
        Val::Int(i) => Value::Integer(*i),
        Val::Bool(b) => Value::Integer(*b as i64),
        Val::Text(t) => Value::Text(t.clone()),
        Val::Blob(b) => Value::Blob(b.clone()),
    }
}

fn pg_params(params: &[Val]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| -> &(dyn postgres::types::ToSql + Sync) {
            match v {
                Val::Null => &None::<String>,
                Val::Int(i) => i,
                Val::Bool(b) => b,
                Val::Text(t) => t,
                Val::Blob(b) => b,
            }
        })
        .collect()
}

fn pg_row(r: &postgres::Row) -> Vec<Val> {
    use postgres::types::Type;
    (0..r.len())
        .map(|i| {
            let t = r.columns()[i].type_().clone();
            let v = if t == Type::INT8 {
                r.get::<_, Option<i64>>(i).map(Val::Int)
            } else if t == Type::INT4 {
                r.get::<_, Option<i32>>(i).map(|v| Val::Int(v.into()))
            } else if t == Type::BOOL {
                r.get::<_, Option<bool>>(i).map(Val::Bool)
            } else if t == Type::BYTEA {
                r.get::<_, Option<Vec<u8>>>(i).map(Val::Blob)
            } else {
                r.get::<_, Option<String>>(i).map(Val::Text)
            };
            v.unwrap_or(Val::Null)
        })
        .collect()
}

/// SQLite's dialect, as far as the tests use it, in PostgreSQL's: `?N` → `$N`, `x''` →
/// `'\x'::bytea`, outside string literals.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_str = !in_str;
                out.push(c);
            }
            '?' if !in_str => out.push('$'),
            'x' if !in_str
                && out.ends_with([' ', '(', ',', '='])
                && chars.peek() == Some(&'\'') =>
            {
                chars.next();
                let mut hex = String::new();
                for h in chars.by_ref() {
                    if h == '\'' {
                        break;
                    }
                    hex.push(h);
                }
                out.push_str(&format!("'\\x{hex}'::bytea"));
            }
            _ => out.push(c),
        }
    }
    out
}
