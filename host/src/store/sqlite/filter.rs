//! The WHERE clause builder shared by the key and data-key listings.

use super::like_pattern;
use crate::error::Result;
use crate::store::{KeyState, TagFilter};
use rusqlite::{Connection, Row};

/// A WHERE clause under construction, with its positional arguments; shared by the key and
/// data-key listings so their common filters mean the same thing.
pub(super) struct Filter {
    table: &'static str,
    columns: &'static str,
    clauses: Vec<String>,
    args: Vec<rusqlite::types::Value>,
}

impl Filter {
    pub(super) fn new(
        table: &'static str,
        columns: &'static str,
        region: &str,
        owner_uin: u64,
    ) -> Self {
        use rusqlite::types::Value;
        Filter {
            table,
            columns,
            clauses: vec!["region = ?".into(), "owner_uin = ?".into()],
            args: vec![Value::Text(region.into()), Value::Integer(owner_uin as i64)],
        }
    }

    pub(super) fn eq(&mut self, column: &str, value: rusqlite::types::Value) {
        self.clauses.push(format!("{column} = ?"));
        self.args.push(value);
    }

    pub(super) fn states(&mut self, states: &Option<Vec<KeyState>>) {
        if let Some(states) = states {
            let marks = vec!["?"; states.len()].join(",");
            self.clauses.push(format!("state IN ({marks})"));
            self.args.extend(
                states
                    .iter()
                    .map(|s| rusqlite::types::Value::Text(s.as_str().into())),
            );
        }
    }

    pub(super) fn user_created(&mut self, user_created: Option<bool>) {
        match user_created {
            Some(true) => self.clauses.push("owner = 'user'".into()),
            Some(false) => self.clauses.push("owner <> 'user'".into()),
            None => {}
        }
    }

    /// Substring match on either column, LIKE wildcards in `text` taken literally.
    pub(super) fn search(&mut self, columns: [&str; 2], text: &Option<String>) {
        if let Some(text) = text {
            self.clauses.push(format!(
                "({} LIKE ? ESCAPE '\\' OR {} LIKE ? ESCAPE '\\')",
                columns[0], columns[1]
            ));
            let p = like_pattern(text);
            self.args.push(rusqlite::types::Value::Text(p.clone()));
            self.args.push(rusqlite::types::Value::Text(p));
        }
    }

    /// Resources carrying a tag key (and, if given, one of the values) for every filter.
    pub(super) fn tags(&mut self, filters: &[TagFilter]) {
        use rusqlite::types::Value;
        let table = self.table;
        for tf in filters {
            let mut c = format!(
                "EXISTS (SELECT 1 FROM json_each({table}.tags) t \
                 WHERE json_extract(t.value, '$.TagKey') = ?"
            );
            self.args.push(Value::Text(tf.key.clone()));
            if !tf.values.is_empty() {
                let marks = vec!["?"; tf.values.len()].join(",");
                c.push_str(&format!(
                    " AND json_extract(t.value, '$.TagValue') IN ({marks})"
                ));
                self.args
                    .extend(tf.values.iter().map(|v| Value::Text(v.clone())));
            }
            c.push(')');
            self.clauses.push(c);
        }
    }

    /// The total match count and one page, ordered by creation time.
    pub(super) fn page<T>(
        &self,
        conn: &Connection,
        newest_first: bool,
        offset: u64,
        limit: u64,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<(u64, Vec<T>)> {
        use rusqlite::types::Value;
        let (table, columns) = (self.table, self.columns);
        let where_sql = self.clauses.join(" AND ");
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE {where_sql}"),
            rusqlite::params_from_iter(self.args.iter()),
            |r| r.get(0),
        )?;
        let order = if newest_first { "DESC" } else { "ASC" };
        let mut args = self.args.clone();
        args.push(Value::Integer(limit.min(i64::MAX as u64) as i64));
        args.push(Value::Integer(offset.min(i64::MAX as u64) as i64));
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {where_sql} \
             ORDER BY create_time {order}, rowid {order} LIMIT ? OFFSET ?"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((total as u64, rows))
    }
}
